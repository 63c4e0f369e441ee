//! `Namespace` (core `v1`, cluster-scoped): a scope for names of namespaced objects.
//! Its name follows the RFC 1123 label rule, like Kubernetes namespaces.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CORE_GROUP, CORE_VERSION};
use crate::meta::{ObjectMeta, TypeMeta, null_as_default};
use crate::registry::PrinterColumn;
use crate::resource::{Resource, Scope};
use crate::schema::NameRule;

/// A namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "A scope for the names of namespaced objects.")]
pub struct Namespace {
    /// `v1`, `Namespace`.
    #[serde(flatten)]
    pub types: TypeMeta,
    /// Standard metadata; `name` is the namespace's name.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<NamespaceSpec>,
    /// Observed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NamespaceStatus>,
}

/// `spec` of a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSpec {
    /// Finalizers that must run before the namespace is removed.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[schemars(extend("nullable" = true))]
    pub finalizers: Vec<String>,
}

/// `status` of a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    /// `Active`, or `Terminating` once deletion was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NamespacePhase>,
}

/// Lifecycle phase of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NamespacePhase {
    /// In use.
    Active,
    /// Deletion requested; its objects are being removed.
    Terminating,
}

impl Namespace {
    /// A new namespace object.
    pub fn new(name: &str) -> Self {
        Namespace {
            types: Self::type_meta(),
            metadata: ObjectMeta::named(name),
            ..Namespace::default()
        }
    }
}

impl Resource for Namespace {
    const GROUP: &'static str = CORE_GROUP;
    const VERSION: &'static str = CORE_VERSION;
    const KIND: &'static str = "Namespace";
    const PLURAL: &'static str = "namespaces";
    const SINGULAR: &'static str = "namespace";
    const SHORT_NAMES: &'static [&'static str] = &["ns"];
    const SCOPE: Scope = Scope::Cluster;
    const STATUS_SUBRESOURCE: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1123Label;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn printer_columns() -> Vec<PrinterColumn> {
        // NAME, STATUS, AGE: what `kubectl get namespaces` prints against Kubernetes.
        vec![
            PrinterColumn::new("Status", "string", ".status.phase"),
            PrinterColumn::new("Age", "date", ".metadata.creationTimestamp"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_new_namespace_serializes_like_kubernetes() {
        let mut ns = Namespace::new("team-a");
        ns.status = Some(NamespaceStatus {
            phase: Some(NamespacePhase::Active),
        });
        assert_eq!(
            serde_json::to_value(&ns).ok(),
            Some(json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "team-a"}, "status": {"phase": "Active"}}))
        );
    }

    #[test]
    fn the_namespace_schema_names_its_fields() {
        let schema = Namespace::schema();
        assert_eq!(
            schema["properties"]["status"]["properties"]["phase"]["enum"],
            json!(["Active", "Terminating"])
        );
        assert_eq!(
            schema["properties"]["spec"]["properties"]["finalizers"]["type"],
            json!("array")
        );
    }
}
