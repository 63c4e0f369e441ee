//! `metadata` of every object: identity, versioning, labels, ownership and lifecycle markers.
//!
//! Field names and omission rules follow Kubernetes' `metav1.ObjectMeta` exactly (camelCase,
//! empty values omitted), so manifests and client libraries written for Kubernetes round-trip.
//! `null` is accepted wherever Kubernetes' Go decoder accepts it (it means "empty").

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::time::Timestamp;

/// Decodes `null` (or a missing field, with `#[serde(default)]`) as the type's empty value, like
/// Go's `encoding/json` does for strings, maps and slices.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Standard object metadata (`metav1.ObjectMeta`).
///
/// ```
/// use stead_api::ObjectMeta;
/// let meta = ObjectMeta::namespaced("default", "web").with_label("app", "web");
/// assert_eq!(
///     serde_json::to_value(&meta).unwrap(),
///     serde_json::json!({"name": "web", "namespace": "default", "labels": {"app": "web"}})
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Unique name within the namespace (or cluster, for cluster-scoped kinds).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub name: String,
    /// Prefix for a server-generated name, used when `name` is empty on create.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub generate_name: String,
    /// Namespace of a namespaced object; empty for cluster-scoped objects.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub namespace: String,
    /// Server-assigned unique id, stable for the object's lifetime.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub uid: String,
    /// Opaque version for optimistic concurrency (the store's mod_revision, as a string).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub resource_version: String,
    /// Sequence number of the desired state: 1 on create, +1 on every spec change.
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub generation: i64,
    /// When the object was created (set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Timestamp>,
    /// When deletion was requested; the object is removed once `finalizers` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Timestamp>,
    /// Grace period that was requested for the deletion, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Identifying key/value pairs, matched by label selectors.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub labels: BTreeMap<String, String>,
    /// Non-identifying key/value pairs for tools and people.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub annotations: BTreeMap<String, String>,
    /// Objects this one depends on; it is garbage-collected when they are gone.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub owner_references: Vec<OwnerReference>,
    /// Names of controllers that must finish clean-up before the object is removed.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub finalizers: Vec<String>,
    /// Which field manager owns which fields (server-side apply bookkeeping).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub managed_fields: Vec<ManagedFieldsEntry>,
}

impl ObjectMeta {
    /// Metadata of a cluster-scoped object.
    pub fn named(name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            ..ObjectMeta::default()
        }
    }

    /// Metadata of a namespaced object.
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            namespace: namespace.into(),
            ..ObjectMeta::default()
        }
    }

    /// Adds (or replaces) a label.
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The namespace, or `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then_some(self.namespace.as_str())
    }

    /// Deletion was requested and finalizers are still pending (or being removed).
    pub fn is_being_deleted(&self) -> bool {
        self.deletion_timestamp.is_some()
    }

    /// Whether the named finalizer is present.
    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// The owner reference marked `controller: true`, if any.
    pub fn controller_owner(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .find(|o| o.controller == Some(true))
    }
}

/// A reference from a dependent object to its owner (`metav1.OwnerReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    /// `apiVersion` of the owner.
    pub api_version: String,
    /// Kind of the owner.
    pub kind: String,
    /// Name of the owner (same namespace as the dependent, or cluster-scoped).
    pub name: String,
    /// uid of the owner; a reference to a uid that no longer exists makes the dependent garbage.
    pub uid: String,
    /// The owner is the managing controller (at most one reference may say so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// Foreground deletion of the owner waits for this dependent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// Whether a field manager's entry was written by server-side apply or by a plain update.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum ManagedFieldsOperation {
    /// Server-side apply (`PATCH application/apply-patch+yaml`).
    Apply,
    /// Create, update, merge patch or JSON patch.
    #[default]
    Update,
}

impl ManagedFieldsOperation {
    /// `Apply` or `Update`.
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedFieldsOperation::Apply => "Apply",
            ManagedFieldsOperation::Update => "Update",
        }
    }
}

/// One field manager's ownership record (`metav1.ManagedFieldsEntry`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFieldsEntry {
    /// Name of the field manager, e.g. `kubectl` or a controller's name.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub manager: String,
    /// The kind of write that produced this entry.
    #[serde(default)]
    pub operation: ManagedFieldsOperation,
    /// Version of the schema the field paths refer to.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub api_version: String,
    /// When this entry last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// Format of `fieldsV1`; always `FieldsV1`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub fields_type: String,
    /// The owned fields as a trie of `f:<name>` keys (see [`crate::apply::FieldSet`]).
    #[serde(default, rename = "fieldsV1", skip_serializing_if = "Option::is_none")]
    pub fields_v1: Option<Value>,
    /// The subresource written through (`status`), empty for the main resource.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub subresource: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_metadata_uses_kubernetes_field_names() {
        let meta = ObjectMeta {
            name: "web".into(),
            generate_name: "web-".into(),
            namespace: "default".into(),
            uid: "u-1".into(),
            resource_version: "42".into(),
            generation: 3,
            creation_timestamp: Some(Timestamp::from_unix(0, 0)),
            deletion_timestamp: Some(Timestamp::from_unix(60, 0)),
            deletion_grace_period_seconds: Some(0),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            annotations: BTreeMap::from([("note".into(), "x".into())]),
            owner_references: vec![OwnerReference {
                api_version: "stead.dev/v1".into(),
                kind: "ProcessSet".into(),
                name: "ps".into(),
                uid: "u-0".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            finalizers: vec!["stead.dev/stop".into()],
            managed_fields: vec![ManagedFieldsEntry {
                manager: "kubectl".into(),
                operation: ManagedFieldsOperation::Apply,
                api_version: "stead.dev/v1".into(),
                time: Some(Timestamp::from_unix(0, 0)),
                fields_type: "FieldsV1".into(),
                fields_v1: Some(json!({"f:metadata": {"f:labels": {"f:app": {}}}})),
                subresource: String::new(),
            }],
        };
        let want = json!({
            "name": "web", "generateName": "web-", "namespace": "default", "uid": "u-1",
            "resourceVersion": "42", "generation": 3,
            "creationTimestamp": "1970-01-01T00:00:00Z",
            "deletionTimestamp": "1970-01-01T00:01:00Z", "deletionGracePeriodSeconds": 0,
            "labels": {"app": "web"}, "annotations": {"note": "x"},
            "ownerReferences": [{"apiVersion": "stead.dev/v1", "kind": "ProcessSet",
                "name": "ps", "uid": "u-0", "controller": true, "blockOwnerDeletion": true}],
            "finalizers": ["stead.dev/stop"],
            "managedFields": [{"manager": "kubectl", "operation": "Apply",
                "apiVersion": "stead.dev/v1", "time": "1970-01-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}}],
        });
        assert_eq!(serde_json::to_value(&meta).ok(), Some(want.clone()));
        assert_eq!(serde_json::from_value::<ObjectMeta>(want).ok(), Some(meta));
    }

    #[test]
    fn empty_metadata_serializes_to_an_empty_object() {
        assert_eq!(
            serde_json::to_value(ObjectMeta::default()).ok(),
            Some(json!({}))
        );
    }

    #[test]
    fn nulls_decode_as_empty_values_like_go() {
        let meta: ObjectMeta = serde_json::from_value(json!({
            "name": "a", "labels": null, "finalizers": null, "creationTimestamp": null,
            "namespace": null, "generation": null
        }))
        .unwrap_or_default();
        assert_eq!(meta, ObjectMeta::named("a"));
    }

    #[test]
    fn helpers_report_deletion_finalizers_and_controller() {
        let mut meta = ObjectMeta::namespaced("ns", "a");
        assert_eq!(meta.namespace(), Some("ns"));
        assert!(!meta.is_being_deleted());
        meta.finalizers.push("x/y".into());
        meta.deletion_timestamp = Some(Timestamp::UNIX_EPOCH);
        assert!(meta.is_being_deleted() && meta.has_finalizer("x/y") && !meta.has_finalizer("z"));
        assert!(meta.controller_owner().is_none());
        meta.owner_references.push(OwnerReference {
            controller: Some(true),
            ..Default::default()
        });
        assert!(meta.controller_owner().is_some());
        assert_eq!(ObjectMeta::named("c").namespace(), None);
    }
}
