//! Which events wake which keys, as pure functions: the owners a child points at, and the
//! [`Fingerprint`] behind the generation predicate.
//!
//! ```text
//!  child event ─► ownerReferences with controller: true, of the owner's apiVersion and kind
//!              ─► owner key (child's namespace for namespaced owners)
//!
//!  primary Apply ─► Fingerprint {uid, generation, deletionTimestamp, finalizers, labels,
//!                               annotations}
//!                ─► equal to the fingerprint of the last dispatched reconcile? drop it
//! ```
//!
//! stead bumps `metadata.generation` on every change outside `metadata` (and outside `status`
//! for kinds with a status subresource), so an event whose fingerprint did not move changed
//! nothing a reconciler acts on — typically the controller's own status write.

use std::collections::BTreeMap;

use stead_api::DynamicObject;

use crate::ObjectRef;
use crate::client::ApiResource;

/// What of an object, when unchanged, makes an event not worth a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    uid: String,
    generation: i64,
    deletion_timestamp: Option<String>,
    finalizers: Vec<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl Fingerprint {
    pub(crate) fn of(object: &DynamicObject) -> Self {
        Fingerprint {
            uid: object.uid().to_owned(),
            generation: object.generation(),
            deletion_timestamp: object.deletion_timestamp().map(|t| t.to_string()),
            finalizers: object.finalizers().into_iter().map(str::to_owned).collect(),
            labels: object.labels(),
            annotations: object.annotations(),
        }
    }
}

/// The keys of `owner`-kind objects that control `child`.
pub(crate) fn controller_owners(child: &DynamicObject, owner: &ApiResource) -> Vec<ObjectRef> {
    let Ok(meta) = child.metadata() else {
        return Vec::new();
    };
    meta.owner_references
        .iter()
        .filter(|r| r.controller == Some(true))
        .filter_map(|r| ObjectRef::from_owner_reference(child, r, owner))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(value: serde_json::Value) -> DynamicObject {
        DynamicObject::from_value(value).unwrap_or_default()
    }

    #[test]
    fn only_controller_references_to_the_owner_kind_map_to_owner_keys() {
        let owner = ApiResource::new("example.com", "v1", "Widget", "widgets", true);
        let reference = |api_version: &str, kind: &str, name: &str, controller: Option<bool>| json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": "u", "controller": controller});
        let cases = [
            (
                reference("example.com/v1", "Widget", "w", Some(true)),
                vec![ObjectRef::new("w").within("ns")],
            ),
            (
                reference("example.com/v1", "Widget", "w", Some(false)),
                vec![],
            ),
            (reference("example.com/v1", "Widget", "w", None), vec![]),
            (
                reference("example.com/v2", "Widget", "w", Some(true)),
                vec![],
            ),
            (
                reference("example.com/v1", "Gadget", "w", Some(true)),
                vec![],
            ),
        ];
        for (reference, want) in cases {
            let child = obj(
                json!({"metadata": {"name": "c", "namespace": "ns", "ownerReferences": [reference.clone()]}}),
            );
            assert_eq!(controller_owners(&child, &owner), want, "{reference}");
        }
    }

    #[test]
    fn the_fingerprint_ignores_status_and_resource_version_only() {
        let base = json!({
            "metadata": {"name": "a", "uid": "u1", "generation": 1, "resourceVersion": "5",
                         "labels": {"a": "1"}},
            "spec": {"x": 1}
        });
        let changed = |f: fn(&mut serde_json::Value)| {
            let mut v = base.clone();
            f(&mut v);
            Fingerprint::of(&obj(v))
        };
        let same = Fingerprint::of(&obj(base.clone()));
        type Case = (&'static str, fn(&mut serde_json::Value), bool);
        let cases: [Case; 7] = [
            ("status", |v| v["status"] = json!({"ready": true}), true),
            (
                "resourceVersion",
                |v| v["metadata"]["resourceVersion"] = json!("6"),
                true,
            ),
            (
                "generation",
                |v| v["metadata"]["generation"] = json!(2),
                false,
            ),
            (
                "labels",
                |v| v["metadata"]["labels"]["b"] = json!("2"),
                false,
            ),
            (
                "annotations",
                |v| v["metadata"]["annotations"] = json!({"n": "x"}),
                false,
            ),
            (
                "finalizers",
                |v| v["metadata"]["finalizers"] = json!(["f"]),
                false,
            ),
            (
                "deletion",
                |v| v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z"),
                false,
            ),
        ];
        for (what, change, equal) in cases {
            assert_eq!(changed(change) == same, equal, "{what}");
        }
    }
}
