//! Objects in the store: JSON values at `crates/api` storage keys, written with etcd-style
//! optimistic concurrency.
//!
//! ```text
//!  create  Txn[mod_revision(key) == 0]   put      (else 409 AlreadyExists)
//!  update  Txn[mod_revision(key) == rv]  put      (else 409 Conflict / retry)
//!  delete  Txn[mod_revision(key) == rv]  delete
//! ```
//!
//! `metadata.resourceVersion` is never stored: it is the key's `mod_revision`, set when an
//! object is read.

use serde_json::Value;
use stead_api::DynamicObject;
use stead_store::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest,
    RequestOp, Store, TxnRequest,
};

use super::status::ApiError;

/// An object as read, with the revision it was last written at.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) object: DynamicObject,
    pub(crate) mod_revision: i64,
}

/// Decodes a stored value; its `resourceVersion` becomes `revision`.
pub(crate) fn decode(value: &[u8], revision: i64) -> Result<DynamicObject, ApiError> {
    let value: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::internal(format!("stored object is not JSON: {e}")))?;
    let mut object = DynamicObject::from_value(value)
        .map_err(|e| ApiError::internal(format!("stored object is malformed: {e}")))?;
    object.set_resource_version(&revision.to_string());
    Ok(object)
}

/// Decodes a key-value read from the store.
pub(crate) fn decode_kv(kv: &KeyValue) -> Result<DynamicObject, ApiError> {
    decode(&kv.value, kv.mod_revision)
}

/// The largest stored object: what one etcd request may carry (`--max-request-bytes`,
/// 1.5 MiB), so that every object can also be read and written through the etcd API.
pub(crate) const MAX_OBJECT_BYTES: usize = 3 << 19;

fn encode(object: &DynamicObject) -> Result<Vec<u8>, ApiError> {
    let mut copy = object.clone();
    copy.metadata_map_mut().remove("resourceVersion");
    let bytes = serde_json::to_vec(copy.as_map())
        .map_err(|e| ApiError::internal(format!("cannot encode the object: {e}")))?;
    if bytes.len() > MAX_OBJECT_BYTES {
        return Err(ApiError::object_too_large(bytes.len(), MAX_OBJECT_BYTES));
    }
    Ok(bytes)
}

/// The end of the key range holding every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Reads one object (linearizable).
pub(crate) async fn get(store: &Store, key: &str) -> Result<Option<Stored>, ApiError> {
    let resp = store
        .range(RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })
        .await?;
    match resp.kvs.first() {
        Some(kv) => Ok(Some(Stored {
            object: decode_kv(kv)?,
            mod_revision: kv.mod_revision,
        })),
        None => Ok(None),
    }
}

fn guarded(key: &str, mod_revision: i64, op: RequestOp) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Mod(mod_revision),
            key: key.as_bytes().to_vec(),
            range_end: Vec::new(),
        }],
        success: vec![op],
        failure: Vec::new(),
    }
}

/// Writes `object` if the key's `mod_revision` is still `expected` (0: the key must not
/// exist). Returns the object as stored (with its new resourceVersion), or `None` when the
/// key changed in between.
pub(crate) async fn put_if(
    store: &Store,
    key: &str,
    expected: i64,
    mut object: DynamicObject,
) -> Result<Option<DynamicObject>, ApiError> {
    let put = RequestOp::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: encode(&object)?,
        ..Default::default()
    });
    let resp = store.txn(guarded(key, expected, put)).await?;
    if !resp.succeeded {
        return Ok(None);
    }
    object.set_resource_version(&resp.revision.to_string());
    Ok(Some(object))
}

/// Deletes the key if its `mod_revision` is still `expected`; `false` when it changed.
pub(crate) async fn delete_if(store: &Store, key: &str, expected: i64) -> Result<bool, ApiError> {
    let delete = RequestOp::DeleteRange(DeleteRangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    });
    Ok(store.txn(guarded(key, expected, delete)).await?.succeeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/registry/a/"), b"/registry/a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    #[test]
    fn stored_objects_get_their_resource_version_from_the_revision() {
        let obj = decode(
            br#"{"apiVersion":"v1","kind":"K","metadata":{"name":"a"}}"#,
            7,
        );
        assert_eq!(
            obj.map(|o| o.resource_version().to_owned()).ok(),
            Some("7".into())
        );
        assert!(decode(b"not json", 7).is_err());
    }
}
