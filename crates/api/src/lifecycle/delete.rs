//! [`prepare_delete`] (finalizers) and [`is_garbage`] (owner references).

use serde_json::Value;

use crate::dynamic::DynamicObject;
use crate::meta::{OwnerReference, Timestamp};

use super::WriteOutcome;

/// Prepares a delete: an object without finalizers is removed now
/// ([`WriteOutcome::Delete`]); otherwise `deletionTimestamp = now` and
/// `deletionGracePeriodSeconds = 0` are set and `generation` increases (as Kubernetes does, so
/// controllers see the change), and the object stays until an update removes its last
/// finalizer. Deleting an object that is already terminating changes nothing.
///
/// ```
/// use stead_api::lifecycle::{WriteOutcome, prepare_delete};
/// use stead_api::{DynamicObject, Timestamp};
/// let obj = DynamicObject::from_value(serde_json::json!({
///     "metadata": {"name": "a", "generation": 1, "finalizers": ["stead.dev/stop"]}})).unwrap();
/// match prepare_delete(&obj, Timestamp::from_unix(60, 0)) {
///     WriteOutcome::Write(o) => assert_eq!(o.deletion_timestamp(), Some(Timestamp::from_unix(60, 0))),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn prepare_delete(stored: &DynamicObject, now: Timestamp) -> WriteOutcome {
    if stored.finalizers().is_empty() {
        return WriteOutcome::Delete(stored.clone());
    }
    if stored.deletion_timestamp().is_some() {
        return WriteOutcome::Unchanged;
    }
    let mut marked = stored.clone();
    marked.set_meta_str("deletionTimestamp", &now.truncated_to_seconds().to_string());
    let generation = stored.generation() + 1;
    let meta = marked.metadata_map_mut();
    meta.insert("deletionGracePeriodSeconds".to_owned(), Value::from(0));
    meta.insert("generation".to_owned(), Value::from(generation));
    WriteOutcome::Write(marked)
}

/// Whether an object should be garbage-collected: it has owner references and none of its
/// owners exists any more (`owner_exists` answers by uid, kind and name). Objects without
/// owners are never garbage.
pub fn is_garbage(object: &DynamicObject, owner_exists: impl Fn(&OwnerReference) -> bool) -> bool {
    let owners = object
        .metadata()
        .map(|m| m.owner_references)
        .unwrap_or_default();
    !owners.is_empty() && !owners.iter().any(owner_exists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::test_support::*;
    use serde_json::json;

    #[test]
    fn deletion_depends_on_finalizers_and_on_being_already_terminating() {
        let now = Timestamp::from_unix(1_704_067_200, 7);
        let plain = stored();
        assert_eq!(
            prepare_delete(&plain, now),
            WriteOutcome::Delete(plain.clone())
        );

        let mut guarded = stored();
        guarded
            .metadata_map_mut()
            .insert("finalizers".into(), json!(["stead.dev/stop"]));
        let marked = match prepare_delete(&guarded, now) {
            WriteOutcome::Write(o) => o,
            other => panic!("expected a write, got {other:?}"),
        };
        assert_eq!(
            marked.pointer("/metadata/deletionTimestamp"),
            Some(&json!("2024-01-01T00:00:00Z"))
        );
        assert_eq!(
            marked.pointer("/metadata/deletionGracePeriodSeconds"),
            Some(&json!(0))
        );
        assert_eq!(marked.generation(), 3);
        assert_eq!(marked.finalizers(), ["stead.dev/stop"]);
        assert_eq!(
            prepare_delete(&marked, now.plus_seconds(5)),
            WriteOutcome::Unchanged
        );
    }

    #[test]
    fn objects_are_garbage_only_when_every_owner_is_gone() {
        let owned = |uids: &[&str]| {
            let refs: Vec<Value> = uids
                .iter()
                .map(|u| json!({"apiVersion": "x.io/v1", "kind": "Set", "name": format!("s-{u}"), "uid": u}))
                .collect();
            obj(json!({"metadata": {"name": "child", "ownerReferences": refs}}))
        };
        let alive = |r: &OwnerReference| r.uid == "live";
        let cases: [(&[&str], bool); 4] = [
            (&[], false),
            (&["live"], false),
            (&["dead"], true),
            (&["dead", "live"], false),
        ];
        for (uids, garbage) in cases {
            assert_eq!(is_garbage(&owned(uids), alive), garbage, "{uids:?}");
        }
    }
}
