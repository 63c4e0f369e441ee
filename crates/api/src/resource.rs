//! The [`Resource`] trait implemented by built-in Rust kinds, the kind [`Scope`], and the etcd
//! key layout every object is stored under ([`storage_key`]).
//!
//! A Rust kind describes itself with associated constants; the [`crate::KindRegistry`] turns
//! that description plus the schemars-generated schema into the same [`crate::Kind`] record a
//! CustomResourceDefinition produces, so built-in and user kinds are served alike.

use std::fmt;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::meta::{GroupVersionKind, ObjectMeta, TypeMeta};
use crate::registry::{PrinterColumn, ScaleSubresource};
use crate::schema::NameRule;

/// The etcd key under which a resource is stored:
/// `/registry/<group>/<plural>/<namespace>/<name>` (cluster-scoped kinds omit the namespace;
/// the core group, `""`, has no group segment, as in Kubernetes: `/registry/namespaces/a`).
///
/// ```
/// assert_eq!(
///     stead_api::storage_key("stead.dev", "leases", Some("default"), "leader"),
///     "/registry/stead.dev/leases/default/leader"
/// );
/// ```
pub fn storage_key(group: &str, plural: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", storage_prefix(group, plural, namespace))
}

/// The key prefix that lists a kind: every namespace (`namespace = None`) or one namespace.
/// Ends with `/` so that `leases` never matches `leasesets`.
pub fn storage_prefix(group: &str, plural: &str, namespace: Option<&str>) -> String {
    let group = if group.is_empty() {
        String::new()
    } else {
        format!("{group}/")
    };
    match namespace {
        Some(ns) => format!("/registry/{group}{plural}/{ns}/"),
        None => format!("/registry/{group}{plural}/"),
    }
}

/// Whether objects of a kind live inside a namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Scope {
    /// Objects have a `metadata.namespace` and keys `/registry/<g>/<plural>/<ns>/<name>`.
    #[default]
    Namespaced,
    /// Objects have no namespace and keys `/registry/<g>/<plural>/<name>`.
    Cluster,
}

impl Scope {
    /// `Namespaced` or `Cluster`, as a CRD's `spec.scope` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Namespaced => "Namespaced",
            Scope::Cluster => "Cluster",
        }
    }

    /// Whether this is [`Scope::Namespaced`].
    pub fn is_namespaced(self) -> bool {
        self == Scope::Namespaced
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind implemented as a Rust type.
///
/// # Correctness
/// - `PLURAL` and `SINGULAR` are lowercase RFC 1123 labels; `KIND` is CamelCase.
/// - The serialized form has `apiVersion` and `kind` (usually a flattened [`TypeMeta`]),
///   `metadata`, and the kind's own fields; [`Resource::schema`] describes exactly that form.
/// - If `STATUS_SUBRESOURCE` is true the type has a top-level `status` field which only the
///   `/status` subresource may write.
///
/// ```
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
/// use stead_api::{ObjectMeta, Resource, Scope, TypeMeta};
///
/// #[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
/// struct Widget {
///     #[serde(flatten)]
///     types: TypeMeta,
///     metadata: ObjectMeta,
///     spec: WidgetSpec,
/// }
/// #[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
/// struct WidgetSpec { size: u32 }
///
/// impl Resource for Widget {
///     const GROUP: &'static str = "example.com";
///     const VERSION: &'static str = "v1";
///     const KIND: &'static str = "Widget";
///     const PLURAL: &'static str = "widgets";
///     const SCOPE: Scope = Scope::Namespaced;
///     fn metadata(&self) -> &ObjectMeta { &self.metadata }
///     fn metadata_mut(&mut self) -> &mut ObjectMeta { &mut self.metadata }
/// }
/// assert_eq!(Widget::api_version(), "example.com/v1");
/// ```
pub trait Resource:
    Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static
{
    /// API group, e.g. `stead.dev`.
    const GROUP: &'static str;
    /// Version within the group, e.g. `v1`.
    const VERSION: &'static str;
    /// CamelCase kind, e.g. `Lease`.
    const KIND: &'static str;
    /// Lowercase plural used in URLs and storage keys, e.g. `leases`.
    const PLURAL: &'static str;
    /// Lowercase singular; empty means the lowercased kind.
    const SINGULAR: &'static str = "";
    /// Short aliases for the CLI, e.g. `["ns"]`.
    const SHORT_NAMES: &'static [&'static str] = &[];
    /// Groupings such as `all`.
    const CATEGORIES: &'static [&'static str] = &[];
    /// Namespaced or cluster-scoped.
    const SCOPE: Scope;
    /// Whether `status` is written only through the `/status` subresource.
    const STATUS_SUBRESOURCE: bool = false;
    /// The rule `metadata.name` must follow.
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;

    /// This object's metadata.
    fn metadata(&self) -> &ObjectMeta;
    /// This object's metadata, mutably.
    fn metadata_mut(&mut self) -> &mut ObjectMeta;

    /// Columns for `get` listings besides NAME and AGE.
    fn printer_columns() -> Vec<PrinterColumn> {
        Vec::new()
    }

    /// The `/scale` subresource, if the kind has one.
    /// Fields besides `metadata.name` and `metadata.namespace` that field selectors may
    /// name (dotted paths, e.g. `involvedObject.uid`).
    fn selectable_fields() -> &'static [&'static str] {
        &[]
    }

    fn scale_subresource() -> Option<ScaleSubresource> {
        None
    }

    /// The OpenAPI v3 schema of the serialized object (inline, no `$ref`), generated by
    /// schemars; the registry validates every write against it.
    fn schema() -> Value {
        crate::schema::openapi_schema_for::<Self>()
    }

    /// Whether objects live in a namespace.
    fn namespaced() -> bool {
        Self::SCOPE.is_namespaced()
    }

    /// The kind's group/version/kind.
    fn gvk() -> GroupVersionKind {
        GroupVersionKind::new(Self::GROUP, Self::VERSION, Self::KIND)
    }

    /// `<group>/<version>`.
    fn api_version() -> String {
        Self::gvk().api_version()
    }

    /// `apiVersion` and `kind` for a new object of this kind.
    fn type_meta() -> TypeMeta {
        TypeMeta::new(&Self::gvk())
    }

    /// Where this object is stored (uses the metadata's namespace for namespaced kinds).
    fn storage_key(&self) -> String {
        let meta = self.metadata();
        let ns = if Self::namespaced() {
            Some(meta.namespace.as_str())
        } else {
            None
        };
        storage_key(Self::GROUP, Self::PLURAL, ns, &meta.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{Lease, Namespace};

    #[test]
    fn namespaced_and_cluster_scoped_keys_follow_the_registry_layout() {
        assert_eq!(
            storage_key("stead.dev", "processsets", Some("default"), "web"),
            "/registry/stead.dev/processsets/default/web"
        );
        assert_eq!(
            storage_key("", "namespaces", None, "default"),
            "/registry/namespaces/default"
        );
        assert_eq!(
            storage_prefix("", "events", Some("a")),
            "/registry/events/a/"
        );
        assert_eq!(
            storage_prefix("stead.dev", "leases", Some("ns1")),
            "/registry/stead.dev/leases/ns1/"
        );
        assert_eq!(
            storage_prefix("stead.dev", "leases", None),
            "/registry/stead.dev/leases/"
        );
    }

    #[test]
    fn typed_objects_compute_their_key_from_scope_and_metadata() {
        let lease = Lease::new("kube-system", "leader");
        assert_eq!(
            lease.storage_key(),
            "/registry/stead.dev/leases/kube-system/leader"
        );
        let ns = Namespace::new("team-a");
        assert_eq!(ns.storage_key(), "/registry/namespaces/team-a");
        assert_eq!(Namespace::api_version(), "v1");
        assert_eq!(Lease::api_version(), "stead.dev/v1");
        assert!(Lease::namespaced() && !Namespace::namespaced());
    }

    #[test]
    fn scopes_print_as_crds_spell_them() {
        assert_eq!(Scope::Namespaced.to_string(), "Namespaced");
        assert_eq!(
            serde_json::to_value(Scope::Cluster).ok(),
            Some(Value::from("Cluster"))
        );
    }
}
