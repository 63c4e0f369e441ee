//! [`DynamicObject`]: an object of any kind as JSON, with typed accessors for the common fields.
//!
//! User kinds (from CustomResourceDefinitions) have no Rust type, and even built-in kinds pass
//! through the server as JSON so that unknown-but-preserved fields survive. A `DynamicObject` is
//! always a JSON object; accessors read `apiVersion`, `kind` and `metadata.*` without parsing the
//! whole document, and [`DynamicObject::metadata`] gives the fully typed [`ObjectMeta`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::json::{child_object_mut, type_name};
use crate::meta::{ApiVersionError, GroupVersionKind, ObjectMeta, Timestamp, TypeMeta};
use crate::resource::Resource;

/// A JSON document could not be used as an object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectError {
    /// The document is not a JSON object.
    #[error("an object must be a JSON object, got {found}")]
    NotAnObject {
        /// JSON type that was found instead.
        found: &'static str,
    },
    /// `apiVersion` or `kind` is missing.
    #[error("{field}: required field is missing")]
    MissingField {
        /// The missing field.
        field: &'static str,
    },
    /// `apiVersion` is malformed.
    #[error(transparent)]
    ApiVersion(#[from] ApiVersionError),
    /// `metadata` (or a typed kind) could not be decoded.
    #[error("{what}: {reason}")]
    Decode {
        /// What was being decoded (`metadata`, or a kind name).
        what: String,
        /// The decoder's explanation.
        reason: String,
    },
}

/// An object of any kind, backed by a JSON object.
///
/// ```
/// use stead_api::DynamicObject;
/// let obj = DynamicObject::from_value(serde_json::json!({
///     "apiVersion": "example.com/v1", "kind": "Widget",
///     "metadata": {"name": "w", "namespace": "default", "labels": {"app": "w"}},
///     "spec": {"size": 3}
/// })).unwrap();
/// assert_eq!(obj.name(), "w");
/// assert_eq!(obj.namespace(), Some("default"));
/// assert_eq!(obj.labels().get("app").map(String::as_str), Some("w"));
/// assert_eq!(obj.spec().and_then(|s| s["size"].as_i64()), Some(3));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
#[derive(Default)]
pub struct DynamicObject {
    map: Map<String, Value>,
}

impl<'de> Deserialize<'de> for DynamicObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        DynamicObject::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<Value> for DynamicObject {
    type Error = ObjectError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        DynamicObject::from_value(value)
    }
}

impl From<DynamicObject> for Value {
    fn from(obj: DynamicObject) -> Self {
        Value::Object(obj.map)
    }
}

impl DynamicObject {
    /// A new object of a kind with the given metadata.
    pub fn new(gvk: &GroupVersionKind, metadata: &ObjectMeta) -> Self {
        let mut obj = DynamicObject::default();
        obj.set_type_meta(&TypeMeta::new(gvk));
        obj.set_metadata(metadata);
        obj
    }

    /// Wraps a JSON document, which must be an object.
    pub fn from_value(value: Value) -> Result<Self, ObjectError> {
        match value {
            Value::Object(map) => Ok(DynamicObject { map }),
            other => Err(ObjectError::NotAnObject {
                found: type_name(&other),
            }),
        }
    }

    /// A typed object as JSON, with `apiVersion`/`kind` filled from the type if missing.
    pub fn from_resource<R: Resource>(resource: &R) -> Result<Self, ObjectError> {
        let decode = |e: serde_json::Error| ObjectError::Decode {
            what: R::KIND.to_owned(),
            reason: e.to_string(),
        };
        let mut obj = DynamicObject::from_value(serde_json::to_value(resource).map_err(decode)?)?;
        if obj.api_version().is_empty() || obj.kind().is_empty() {
            obj.set_type_meta(&R::type_meta());
        }
        Ok(obj)
    }

    /// Decodes this object as a typed kind.
    pub fn to_resource<R: Resource>(&self) -> Result<R, ObjectError> {
        serde_json::from_value(self.to_value()).map_err(|e| ObjectError::Decode {
            what: R::KIND.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The whole document, copied.
    pub fn to_value(&self) -> Value {
        Value::Object(self.map.clone())
    }

    /// The whole document, consuming the object.
    pub fn into_value(self) -> Value {
        Value::Object(self.map)
    }

    /// The top-level fields.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// The top-level fields, mutably.
    pub fn as_map_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.map
    }

    fn str_field(&self, key: &str) -> &str {
        self.as_map().get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// `apiVersion` (empty if missing).
    pub fn api_version(&self) -> &str {
        self.str_field("apiVersion")
    }

    /// `kind` (empty if missing).
    pub fn kind(&self) -> &str {
        self.str_field("kind")
    }

    /// The group/version/kind named by `apiVersion` and `kind`.
    pub fn gvk(&self) -> Result<GroupVersionKind, ObjectError> {
        if self.api_version().is_empty() {
            return Err(ObjectError::MissingField {
                field: "apiVersion",
            });
        }
        if self.kind().is_empty() {
            return Err(ObjectError::MissingField { field: "kind" });
        }
        Ok(GroupVersionKind::from_api_version(
            self.api_version(),
            self.kind(),
        )?)
    }

    /// Sets `apiVersion` and `kind`.
    pub fn set_type_meta(&mut self, types: &TypeMeta) {
        let map = self.as_map_mut();
        map.insert("apiVersion".into(), Value::from(types.api_version.as_str()));
        map.insert("kind".into(), Value::from(types.kind.as_str()));
    }

    /// The raw `metadata` object, if present.
    pub fn metadata_map(&self) -> Option<&Map<String, Value>> {
        self.as_map().get("metadata").and_then(Value::as_object)
    }

    /// The raw `metadata` object, created (or replacing a non-object) if needed.
    pub fn metadata_map_mut(&mut self) -> &mut Map<String, Value> {
        child_object_mut(&mut self.map, "metadata")
    }

    /// The typed metadata (missing metadata decodes as empty).
    pub fn metadata(&self) -> Result<ObjectMeta, ObjectError> {
        match self.as_map().get("metadata") {
            None | Some(Value::Null) => Ok(ObjectMeta::default()),
            Some(meta) => serde_json::from_value(meta.clone()).map_err(|e| ObjectError::Decode {
                what: "metadata".to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// Replaces `metadata` with the typed value (fields `ObjectMeta` does not know are dropped).
    pub fn set_metadata(&mut self, metadata: &ObjectMeta) {
        let value = serde_json::to_value(metadata).unwrap_or_else(|_| Value::Object(Map::new()));
        self.as_map_mut().insert("metadata".into(), value);
    }

    fn meta_str(&self, key: &str) -> &str {
        self.metadata_map()
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Sets (or, for an empty string, removes) a string field of `metadata`.
    pub fn set_meta_str(&mut self, key: &str, value: &str) {
        let meta = self.metadata_map_mut();
        if value.is_empty() {
            meta.remove(key);
        } else {
            meta.insert(key.to_owned(), Value::from(value));
        }
    }

    /// `metadata.name` (empty if missing).
    pub fn name(&self) -> &str {
        self.meta_str("name")
    }

    /// `metadata.namespace`, or `None` if missing or empty.
    pub fn namespace(&self) -> Option<&str> {
        Some(self.meta_str("namespace")).filter(|ns| !ns.is_empty())
    }

    /// `metadata.uid` (empty if missing).
    pub fn uid(&self) -> &str {
        self.meta_str("uid")
    }

    /// `metadata.resourceVersion` (empty if missing).
    pub fn resource_version(&self) -> &str {
        self.meta_str("resourceVersion")
    }

    /// Sets `metadata.resourceVersion` (the server does this from the key's mod_revision).
    pub fn set_resource_version(&mut self, resource_version: &str) {
        self.set_meta_str("resourceVersion", resource_version);
    }

    /// `metadata.generation` (0 if missing).
    pub fn generation(&self) -> i64 {
        self.metadata_map()
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// `metadata.labels` (non-string values are skipped).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.string_map("labels")
    }

    /// `metadata.annotations` (non-string values are skipped).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.string_map("annotations")
    }

    fn string_map(&self, key: &str) -> BTreeMap<String, String> {
        let Some(map) = self
            .metadata_map()
            .and_then(|m| m.get(key))
            .and_then(Value::as_object)
        else {
            return BTreeMap::new();
        };
        map.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect()
    }

    /// `metadata.finalizers`.
    pub fn finalizers(&self) -> Vec<&str> {
        let list = self
            .metadata_map()
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array);
        list.map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// `metadata.deletionTimestamp`, if set and well-formed.
    pub fn deletion_timestamp(&self) -> Option<Timestamp> {
        self.meta_str("deletionTimestamp").parse().ok()
    }

    /// `metadata.creationTimestamp`, if set and well-formed.
    pub fn creation_timestamp(&self) -> Option<Timestamp> {
        self.meta_str("creationTimestamp").parse().ok()
    }

    /// A top-level field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().get(key)
    }

    /// `spec`, if present.
    pub fn spec(&self) -> Option<&Value> {
        self.get("spec")
    }

    /// `status`, if present.
    pub fn status(&self) -> Option<&Value> {
        self.get("status")
    }

    /// Replaces (`Some`) or removes (`None`) `status`.
    pub fn set_status(&mut self, status: Option<Value>) {
        match status {
            Some(status) => self.as_map_mut().insert("status".into(), status),
            None => self.as_map_mut().remove("status"),
        };
    }

    /// A value by JSON pointer (RFC 6901), e.g. `/spec/replicas`.
    /// The empty pointer (the whole document) is not a single value here and yields `None`.
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        let rest = pointer.strip_prefix('/')?;
        let (first, tail) = rest
            .find('/')
            .map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
        let key = first.replace("~1", "/").replace("~0", "~");
        self.map.get(&key)?.pointer(tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Lease;
    use serde_json::json;

    fn sample() -> DynamicObject {
        DynamicObject::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {
                "name": "w", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "generation": 2, "labels": {"app": "w", "bad": 1},
                "annotations": {"a": "b"}, "finalizers": ["x/y"],
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "deletionTimestamp": "2024-01-02T00:00:00Z",
                "unknownMetaField": true
            },
            "spec": {"size": 1}, "status": {"ready": true}, "extra": [1]
        }))
        .unwrap_or_default()
    }

    #[test]
    fn accessors_read_the_common_fields() {
        let obj = sample();
        assert_eq!(
            (obj.api_version(), obj.kind()),
            ("example.com/v1", "Widget")
        );
        assert_eq!(
            obj.gvk().ok(),
            Some(GroupVersionKind::new("example.com", "v1", "Widget"))
        );
        assert_eq!(
            (obj.name(), obj.namespace(), obj.uid()),
            ("w", Some("ns"), "u1")
        );
        assert_eq!((obj.resource_version(), obj.generation()), ("7", 2));
        assert_eq!(obj.labels(), BTreeMap::from([("app".into(), "w".into())]));
        assert_eq!(obj.annotations().len(), 1);
        assert_eq!(obj.finalizers(), vec!["x/y"]);
        assert_eq!(
            obj.creation_timestamp().map(|t| t.unix_seconds()),
            Some(1_704_067_200)
        );
        assert!(obj.deletion_timestamp().is_some());
        assert_eq!(obj.spec(), Some(&json!({"size": 1})));
        assert_eq!(obj.status(), Some(&json!({"ready": true})));
        assert_eq!(obj.pointer("/extra/0"), Some(&json!(1)));
    }

    #[test]
    fn missing_fields_read_as_empty() {
        let obj = DynamicObject::default();
        assert_eq!(
            (obj.name(), obj.namespace(), obj.generation()),
            ("", None, 0)
        );
        assert!(obj.labels().is_empty() && obj.finalizers().is_empty());
        assert_eq!(
            obj.gvk(),
            Err(ObjectError::MissingField {
                field: "apiVersion"
            })
        );
        assert_eq!(obj.metadata().ok(), Some(ObjectMeta::default()));
    }

    #[test]
    fn only_json_objects_are_accepted() {
        for (value, found) in [
            (json!([1]), "array"),
            (json!("x"), "string"),
            (json!(null), "null"),
        ] {
            assert_eq!(
                DynamicObject::from_value(value),
                Err(ObjectError::NotAnObject { found })
            );
        }
        assert!(serde_json::from_value::<DynamicObject>(json!(3)).is_err());
    }

    #[test]
    fn setters_update_metadata_in_place_and_keep_unknown_fields() {
        let mut obj = sample();
        obj.set_resource_version("8");
        obj.set_meta_str("namespace", "");
        obj.set_status(None);
        assert_eq!(obj.resource_version(), "8");
        assert_eq!(obj.namespace(), None);
        assert_eq!(obj.status(), None);
        assert_eq!(
            obj.pointer("/metadata/unknownMetaField"),
            Some(&json!(true))
        );
    }

    #[test]
    fn malformed_metadata_is_reported_when_decoded() {
        let obj =
            DynamicObject::from_value(json!({"metadata": {"labels": [1]}})).unwrap_or_default();
        match obj.metadata() {
            Err(ObjectError::Decode { what, .. }) => assert_eq!(what, "metadata"),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn typed_resources_convert_to_and_from_dynamic_objects() {
        let mut lease = Lease::new("ns", "leader");
        lease.spec.holder_identity = Some("me".into());
        let obj = DynamicObject::from_resource(&lease).unwrap_or_default();
        assert_eq!((obj.api_version(), obj.kind()), ("stead.dev/v1", "Lease"));
        assert_eq!(obj.pointer("/spec/holderIdentity"), Some(&json!("me")));
        let back: Lease = obj.to_resource().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.spec.holder_identity.as_deref(), Some("me"));
        let bad = DynamicObject::from_value(json!({"spec": 5})).unwrap_or_default();
        assert!(bad.to_resource::<Lease>().is_err());
    }
}
