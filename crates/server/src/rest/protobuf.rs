//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! decoded to JSON for the core kinds stead serves.
//!
//! client-go's typed clients (e.g. `kubectl create namespace`) send protobuf for built-in
//! kinds; responses can still be JSON, since they accept `application/json` too. The body
//! is a `runtime.Unknown` envelope:
//!
//! ```text
//!  "k8s\0" Unknown{1: typeMeta{1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding, 4: contentType}
//!  raw = the object's message, e.g. Namespace{1: metadata, 2: spec, 3: status}
//! ```
//!
//! Fields are read by the field numbers of `k8s.io/api/core/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`; unknown fields are skipped.
//! Only kinds with a table here are accepted; anything else is 415.

use serde_json::{Map, Value};

use super::status::ApiError;

/// The media type of Kubernetes' protobuf encoding.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// How a field is decoded.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    /// RFC 3339 seconds (`metav1.Time{1: seconds, 2: nanos}`).
    Time,
    Msg(&'static [Field]),
    /// `map<string, string>` (entries `{1: key, 2: value}`).
    StrMap,
    /// Repeated (`[]string`, `[]Message`).
    List(&'static Ty),
}

type Field = (u64, &'static str, Ty);

const OWNER_REFERENCE: &[Field] = &[
    (1, "kind", Ty::Str),
    (3, "name", Ty::Str),
    (4, "uid", Ty::Str),
    (5, "apiVersion", Ty::Str),
    (6, "controller", Ty::Bool),
    (7, "blockOwnerDeletion", Ty::Bool),
];

const OBJECT_META: &[Field] = &[
    (1, "name", Ty::Str),
    (2, "generateName", Ty::Str),
    (3, "namespace", Ty::Str),
    (5, "uid", Ty::Str),
    (6, "resourceVersion", Ty::Str),
    (7, "generation", Ty::Int),
    (8, "creationTimestamp", Ty::Time),
    (9, "deletionTimestamp", Ty::Time),
    (11, "labels", Ty::StrMap),
    (12, "annotations", Ty::StrMap),
    (13, "ownerReferences", Ty::List(&Ty::Msg(OWNER_REFERENCE))),
    (14, "finalizers", Ty::List(&Ty::Str)),
];

const NAMESPACE: &[Field] = &[
    (1, "metadata", Ty::Msg(OBJECT_META)),
    (2, "spec", Ty::Msg(&[(1, "finalizers", Ty::List(&Ty::Str))])),
    (3, "status", Ty::Msg(&[(1, "phase", Ty::Str)])),
];

/// The message table of a kind sent in protobuf.
fn table(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    match (api_version, kind) {
        ("v1", "Namespace") => Some(NAMESPACE),
        _ => None,
    }
}

fn malformed(what: &str) -> ApiError {
    ApiError::bad_request(format!("the protobuf request body is malformed: {what}"))
}

/// A protobuf reader over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| malformed("truncated varint"))?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let len = usize::try_from(self.varint()?).map_err(|_| malformed("length"))?;
        if len > self.buf.len() {
            return Err(malformed("truncated field"));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    /// The next field: number and value (varint, or bytes for length-delimited).
    fn field(&mut self) -> Result<Option<(u64, Wire<'a>)>, ApiError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            2 => Wire::Bytes(self.bytes()?),
            1 => Wire::Skip(self.skip(8)?),
            5 => Wire::Skip(self.skip(4)?),
            other => return Err(malformed(&format!("wire type {other}"))),
        };
        Ok(Some((key >> 3, wire)))
    }

    fn skip(&mut self, n: usize) -> Result<(), ApiError> {
        if n > self.buf.len() {
            return Err(malformed("truncated field"));
        }
        self.buf = &self.buf[n..];
        Ok(())
    }
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skip(()),
}

fn text(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed("a string is not UTF-8"))
}

fn message(buf: &[u8], fields: &[Field]) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    let mut reader = Reader { buf };
    while let Some((number, wire)) = reader.field()? {
        let Some((_, name, ty)) = fields.iter().find(|(n, _, _)| *n == number) else {
            continue;
        };
        match ty {
            Ty::List(item) => {
                let value = scalar(item, wire)?;
                let list = out
                    .entry((*name).to_owned())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = list {
                    items.push(value);
                }
            }
            Ty::StrMap => {
                let Wire::Bytes(entry) = wire else {
                    return Err(malformed(name));
                };
                let entry = message(entry, &[(1, "k", Ty::Str), (2, "v", Ty::Str)])?;
                let key = entry.get("k").and_then(Value::as_str).unwrap_or_default();
                let value = entry.get("v").cloned().unwrap_or(Value::from(""));
                let map = out
                    .entry((*name).to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key.to_owned(), value);
                }
            }
            other => {
                out.insert((*name).to_owned(), scalar(other, wire)?);
            }
        }
    }
    Ok(out)
}

fn scalar(ty: &Ty, wire: Wire<'_>) -> Result<Value, ApiError> {
    match (ty, wire) {
        (Ty::Str, Wire::Bytes(b)) => Ok(Value::from(text(b)?)),
        // Two's complement, as Go's int64 is sent.
        (Ty::Int, Wire::Varint(v)) => Ok(Value::from(v.cast_signed())),
        (Ty::Bool, Wire::Varint(v)) => Ok(Value::from(v != 0)),
        (Ty::Msg(fields), Wire::Bytes(b)) => Ok(Value::Object(message(b, fields)?)),
        (Ty::Time, Wire::Bytes(b)) => {
            let time = message(b, &[(1, "s", Ty::Int)])?;
            let seconds = time.get("s").and_then(Value::as_i64).unwrap_or(0);
            Ok(Value::from(
                stead_api::Timestamp::from_unix(seconds, 0).to_string(),
            ))
        }
        _ => Err(malformed("a field has an unexpected wire type")),
    }
}

/// Decodes a protobuf request body to the object's JSON.
pub(crate) fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("no k8s envelope"))?;
    let mut reader = Reader { buf: envelope };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    while let Some((number, wire)) = reader.field()? {
        match (number, wire) {
            (1, Wire::Bytes(b)) => {
                let type_meta = message(b, &[(1, "apiVersion", Ty::Str), (2, "kind", Ty::Str)])?;
                let get = |k: &str| {
                    type_meta
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                api_version = get("apiVersion");
                kind = get("kind");
            }
            (2, Wire::Bytes(b)) => raw = Some(b),
            (3, Wire::Bytes(encoding)) if !encoding.is_empty() => {
                return Err(malformed("content encodings are not supported"));
            }
            _ => {}
        }
    }
    let fields = table(&api_version, &kind).ok_or_else(|| {
        ApiError::unsupported_media_type(&format!("{MEDIA_TYPE} for {api_version} {kind}"))
    })?;
    let mut object = message(raw.unwrap_or_default(), fields)?;
    object.insert("apiVersion".into(), Value::from(api_version));
    object.insert("kind".into(), Value::from(kind));
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::try_from(number << 3 | 2).unwrap_or(0)];
        out.push(u8::try_from(bytes.len()).unwrap_or(0));
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_namespace_in_the_k8s_envelope_decodes_to_json() {
        let label = [field(1, b"team"), field(2, b"a")].concat();
        let meta = [field(1, b"ns1"), field(11, &label)].concat();
        let raw = [field(1, &meta), field(2, &[]), field(3, &[])].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        assert_eq!(
            decode(&body).ok(),
            Some(json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "ns1", "labels": {"team": "a"}},
                        "spec": {}, "status": {}}))
        );
    }

    #[test]
    fn other_kinds_and_garbage_are_refused() {
        let type_meta = [field(1, b"v1"), field(2, b"Pod")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta)].concat();
        assert_eq!(decode(&body).map_err(|e| e.code).err(), Some(415));
        assert_eq!(decode(b"{}").map_err(|e| e.code).err(), Some(400));
        let truncated = [MAGIC.to_vec(), vec![0x0a, 0x10, 1]].concat();
        assert_eq!(decode(&truncated).map_err(|e| e.code).err(), Some(400));
    }
}
