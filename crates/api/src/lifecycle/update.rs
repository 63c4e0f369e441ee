//! [`prepare_update`] (PUT, PATCH, apply on the main resource) and
//! [`prepare_status_update`] (the `/status` subresource).

use serde_json::{Map, Value};

use crate::dynamic::DynamicObject;
use crate::patch::json_equal;

use super::{KindRules, LifecycleError, WriteOutcome};

/// Metadata fields only the server sets; an update cannot change them.
const SYSTEM_METADATA: [&str; 5] = [
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
];

/// Prepares an update of `old` (as stored) to `new` (as sent, or as produced by a patch).
///
/// - `metadata.name`, `namespace` and `uid` may be omitted (they are kept) but not changed;
/// - `creationTimestamp`, deletion markers, `generation` and `resourceVersion` are kept from
///   `old` whatever the client sent;
/// - with a status subresource, `status` is kept from `old` (status changes here are ignored);
/// - `generation` increases by one when anything besides `metadata` (and `status`, with a
///   status subresource) changed — the spec, for kinds that have one;
/// - an object being deleted cannot gain finalizers, and once its last finalizer is removed
///   the outcome is [`WriteOutcome::Delete`];
/// - an update equal to the stored object (ignoring `resourceVersion`) is
///   [`WriteOutcome::Unchanged`].
pub fn prepare_update(
    old: &DynamicObject,
    new: DynamicObject,
    rules: &KindRules,
) -> Result<WriteOutcome, LifecycleError> {
    let mut new = new;
    new.metadata()?;
    keep_identity(old, &mut new, "name", "metadata.name")?;
    if rules.scope.is_namespaced() {
        keep_identity(old, &mut new, "namespace", "metadata.namespace")?;
    } else {
        new.set_meta_str("namespace", "");
    }
    keep_identity(old, &mut new, "uid", "metadata.uid")?;
    copy_metadata(old, &mut new, &SYSTEM_METADATA);
    if rules.status_subresource {
        new.set_status(old.status().cloned());
    }

    let old_finalizers = old.finalizers();
    if old.deletion_timestamp().is_some() {
        let added: Vec<String> = new
            .finalizers()
            .into_iter()
            .filter(|f| !old_finalizers.contains(f))
            .map(str::to_owned)
            .collect();
        if !added.is_empty() {
            return Err(LifecycleError::FinalizersAddedDuringDeletion { added });
        }
    }

    let (before, after) = (
        Value::Object(desired_state(old, rules)),
        Value::Object(desired_state(&new, rules)),
    );
    if !json_equal(&before, &after) {
        new.metadata_map_mut()
            .insert("generation".to_owned(), Value::from(old.generation() + 1));
    }
    Ok(outcome(old, new))
}

/// Prepares a `/status` update: the result is `old` with `new`'s `status` (removed if `new`
/// has none); every other change is ignored and `generation` does not move.
pub fn prepare_status_update(
    old: &DynamicObject,
    new: &DynamicObject,
    rules: &KindRules,
) -> Result<WriteOutcome, LifecycleError> {
    if !rules.status_subresource {
        return Err(LifecycleError::NoStatusSubresource);
    }
    for (key, field) in [
        ("name", "metadata.name"),
        ("namespace", "metadata.namespace"),
        ("uid", "metadata.uid"),
    ] {
        let sent = new
            .metadata_map()
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or("");
        let stored = old
            .metadata_map()
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !sent.is_empty() && sent != stored {
            return Err(LifecycleError::Immutable {
                field,
                old: stored.to_owned(),
                new: sent.to_owned(),
            });
        }
    }
    let mut updated = old.clone();
    updated.set_status(new.status().cloned());
    // managedFields are recomputed by the caller (apply::track_update with FieldScope::Status);
    // keep what the client sent so an explicit reset is honoured.
    if let Some(managed) = new.metadata_map().and_then(|m| m.get("managedFields")) {
        updated
            .metadata_map_mut()
            .insert("managedFields".to_owned(), managed.clone());
    }
    Ok(outcome(old, updated))
}

/// Keeps an identity field: copied from `old` when missing, an error when different.
fn keep_identity(
    old: &DynamicObject,
    new: &mut DynamicObject,
    key: &str,
    field: &'static str,
) -> Result<(), LifecycleError> {
    let stored = old
        .metadata_map()
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let sent = new
        .metadata_map()
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if sent.is_empty() {
        new.set_meta_str(key, &stored);
        Ok(())
    } else if sent != stored {
        Err(LifecycleError::Immutable {
            field,
            old: stored,
            new: sent,
        })
    } else {
        Ok(())
    }
}

fn copy_metadata(old: &DynamicObject, new: &mut DynamicObject, keys: &[&str]) {
    let stored: Vec<(&str, Option<Value>)> = keys
        .iter()
        .map(|k| (*k, old.metadata_map().and_then(|m| m.get(*k)).cloned()))
        .collect();
    let meta = new.metadata_map_mut();
    for (key, value) in stored {
        match value {
            Some(v) => meta.insert(key.to_owned(), v),
            None => meta.remove(key),
        };
    }
}

/// Everything that counts as desired state: all but metadata, apiVersion, kind and (with a
/// status subresource) status.
fn desired_state(object: &DynamicObject, rules: &KindRules) -> Map<String, Value> {
    object
        .as_map()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "apiVersion" | "kind"))
        .filter(|(k, _)| !(rules.status_subresource && k.as_str() == "status"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn without_resource_version(object: &DynamicObject) -> Value {
    let mut copy = object.clone();
    copy.set_meta_str("resourceVersion", "");
    copy.into_value()
}

fn outcome(old: &DynamicObject, new: DynamicObject) -> WriteOutcome {
    if new.deletion_timestamp().is_some() && new.finalizers().is_empty() {
        return WriteOutcome::Delete(new);
    }
    if json_equal(
        &without_resource_version(old),
        &without_resource_version(&new),
    ) {
        WriteOutcome::Unchanged
    } else {
        WriteOutcome::Write(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::test_support::*;
    use serde_json::json;

    fn with(mut object: DynamicObject, pointer: &str, value: Value) -> DynamicObject {
        let mut v = object.to_value();
        if let Some((parent, key)) = pointer.rsplit_once('/')
            && let Some(Value::Object(map)) = v.pointer_mut(parent)
        {
            if value.is_null() {
                map.remove(key);
            } else {
                map.insert(key.to_owned(), value);
            }
        }
        object = obj(v);
        object
    }

    fn written(outcome: Result<WriteOutcome, LifecycleError>) -> DynamicObject {
        match outcome {
            Ok(WriteOutcome::Write(o)) => o,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn generation_moves_only_when_desired_state_changes() {
        let cases = [
            ("/spec/replicas", json!(3), Some(3)),
            ("/metadata/labels", json!({"app": "b"}), Some(2)),
            ("/metadata/annotations", json!({"note": "x"}), Some(2)),
            ("/extra", json!(true), Some(3)),
            ("/status/ready", json!(true), None),
        ];
        for (pointer, value, want_generation) in cases {
            let out = prepare_update(
                &stored(),
                with(stored(), pointer, value),
                &NAMESPACED_WITH_STATUS,
            );
            match (out, want_generation) {
                (Ok(WriteOutcome::Write(o)), Some(g)) => assert_eq!(o.generation(), g, "{pointer}"),
                (Ok(WriteOutcome::Unchanged), None) => {}
                (other, _) => panic!("{pointer}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn without_a_status_subresource_status_is_desired_state() {
        let new = with(stored(), "/status/ready", json!(true));
        let out = written(prepare_update(
            &stored(),
            new,
            &KindRules {
                scope: crate::Scope::Namespaced,
                ..CLUSTER_NO_STATUS
            },
        ));
        assert_eq!(
            (out.generation(), out.status()),
            (3, Some(&json!({"ready": true})))
        );
    }

    #[test]
    fn system_fields_are_kept_from_the_stored_object() {
        let mut new = stored();
        for (key, value) in [
            ("creationTimestamp", "1999-01-01T00:00:00Z"),
            ("resourceVersion", "1"),
            ("uid", ""),
        ] {
            new.set_meta_str(key, value);
        }
        new.metadata_map_mut()
            .insert("generation".into(), json!(40));
        new.metadata_map_mut()
            .insert("deletionTimestamp".into(), json!("2030-01-01T00:00:00Z"));
        new.set_meta_str("name", "");
        let out = prepare_update(&stored(), new, &NAMESPACED_WITH_STATUS);
        assert_eq!(
            out,
            Ok(WriteOutcome::Unchanged),
            "nothing the client may change changed"
        );
    }

    #[test]
    fn identity_fields_cannot_change() {
        let cases = [
            (
                "/metadata/name",
                json!("b"),
                "metadata.name: field is immutable (was \"a\", got \"b\")",
            ),
            (
                "/metadata/namespace",
                json!("m"),
                "metadata.namespace: field is immutable (was \"n\", got \"m\")",
            ),
            (
                "/metadata/uid",
                json!("uid-2"),
                "metadata.uid: field is immutable (was \"uid-1\", got \"uid-2\")",
            ),
        ];
        for (pointer, value, want) in cases {
            let err = prepare_update(
                &stored(),
                with(stored(), pointer, value),
                &NAMESPACED_WITH_STATUS,
            );
            assert_eq!(
                err.map_err(|e| e.to_string()),
                Err(want.to_owned()),
                "{pointer}"
            );
        }
        let issue = LifecycleError::Immutable {
            field: "metadata.uid",
            old: "a".into(),
            new: "b".into(),
        }
        .to_issue();
        assert_eq!(
            (issue.path.as_str(), issue.rule.as_str()),
            ("metadata.uid", "immutable")
        );
    }

    #[test]
    fn an_identical_update_or_only_a_new_resource_version_is_a_no_op() {
        assert_eq!(
            prepare_update(&stored(), stored(), &NAMESPACED_WITH_STATUS),
            Ok(WriteOutcome::Unchanged)
        );
        let mut stale = stored();
        stale.set_resource_version("4");
        assert_eq!(
            prepare_update(&stored(), stale, &NAMESPACED_WITH_STATUS),
            Ok(WriteOutcome::Unchanged)
        );
        let float = with(stored(), "/spec/replicas", json!(1.0));
        assert_eq!(
            prepare_update(&stored(), float, &NAMESPACED_WITH_STATUS),
            Ok(WriteOutcome::Unchanged)
        );
    }

    #[test]
    fn terminating_objects_lose_finalizers_but_never_gain_them() {
        let terminating = with(
            with(
                stored(),
                "/metadata/deletionTimestamp",
                json!("2024-02-01T00:00:00Z"),
            ),
            "/metadata/finalizers",
            json!(["a/one", "a/two"]),
        );
        let one_left = with(
            terminating.clone(),
            "/metadata/finalizers",
            json!(["a/two"]),
        );
        let out = written(prepare_update(
            &terminating,
            one_left,
            &NAMESPACED_WITH_STATUS,
        ));
        assert_eq!(out.finalizers(), ["a/two"]);
        let none_left = with(terminating.clone(), "/metadata/finalizers", Value::Null);
        assert!(matches!(
            prepare_update(&terminating, none_left, &NAMESPACED_WITH_STATUS),
            Ok(WriteOutcome::Delete(_))
        ));
        let added = with(
            terminating.clone(),
            "/metadata/finalizers",
            json!(["a/one", "a/two", "b/new"]),
        );
        assert_eq!(
            prepare_update(&terminating, added, &NAMESPACED_WITH_STATUS),
            Err(LifecycleError::FinalizersAddedDuringDeletion {
                added: vec!["b/new".into()]
            })
        );
    }

    #[test]
    fn cluster_scoped_updates_drop_any_namespace() {
        let old = with(stored(), "/metadata/namespace", Value::Null);
        let new = with(stored(), "/spec/replicas", json!(2));
        let out = written(prepare_update(&old, new, &CLUSTER_NO_STATUS));
        assert_eq!(out.namespace(), None);
    }

    #[test]
    fn status_updates_change_only_status_and_keep_generation() {
        let mut new = with(stored(), "/status/ready", json!(true));
        new = with(new, "/spec/replicas", json!(9));
        new = with(new, "/metadata/labels", json!({"hacked": "yes"}));
        let out = written(prepare_status_update(
            &stored(),
            &new,
            &NAMESPACED_WITH_STATUS,
        ));
        assert_eq!(out.status(), Some(&json!({"ready": true})));
        assert_eq!(
            (out.spec(), out.generation()),
            (Some(&json!({"replicas": 1})), 2)
        );
        assert_eq!(out.labels().get("app").map(String::as_str), Some("a"));

        assert_eq!(
            prepare_status_update(&stored(), &stored(), &NAMESPACED_WITH_STATUS),
            Ok(WriteOutcome::Unchanged)
        );
        let cleared = with(stored(), "/status", Value::Null);
        assert_eq!(
            written(prepare_status_update(
                &stored(),
                &cleared,
                &NAMESPACED_WITH_STATUS
            ))
            .status(),
            None
        );
        let renamed = with(stored(), "/metadata/name", json!("zz"));
        assert!(matches!(
            prepare_status_update(&stored(), &renamed, &NAMESPACED_WITH_STATUS),
            Err(LifecycleError::Immutable { .. })
        ));
        assert_eq!(
            prepare_status_update(&stored(), &stored(), &CLUSTER_NO_STATUS),
            Err(LifecycleError::NoStatusSubresource)
        );
    }
}
