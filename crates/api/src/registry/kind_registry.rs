//! [`KindRegistry`]: the set of kinds the server serves, looked up by group/version/kind (from
//! an object's `apiVersion`/`kind`), by group/version/resource (from a URL), or by any name a
//! user types (`ps`, `processset`, `processsets.stead.dev`, `ProcessSet`).
//!
//! Built-in kinds are registered from their Rust types at start-up
//! ([`KindRegistry::with_builtins`]); user kinds come and go with CustomResourceDefinitions
//! ([`KindRegistry::register_crd`], [`KindRegistry::unregister_crd`]).

use crate::dynamic::{DynamicObject, ObjectError};
use crate::kinds::{Event, Lease, ManagedFile, Namespace, Process, ProcessSet};
use crate::meta::{GroupKind, GroupVersionKind, GroupVersionResource};
use crate::resource::Resource;
use crate::schema::{SchemaError, ValidationErrors};

use super::crd::{CrdError, CustomResourceDefinition};
use super::kind::{Kind, KindSource, KindVersion, Names, Subresources};

/// A lookup or registration failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// No served kind matches an object's `apiVersion` and `kind`.
    #[error("no matches for kind {kind:?} in version {api_version:?}; known kinds: {}", known.join(", "))]
    UnknownKind {
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
        /// Every served `apiVersion kind` pair, sorted.
        known: Vec<String>,
    },
    /// No served kind has this URL resource.
    #[error("the server could not find the requested resource ({gvr})")]
    UnknownResource {
        /// The requested group/version/resource.
        gvr: GroupVersionResource,
    },
    /// A name typed by a user matches no kind.
    #[error("the server doesn't have a resource type {name:?}")]
    UnknownName {
        /// What the user typed.
        name: String,
    },
    /// A name typed by a user matches several kinds.
    #[error("resource type {name:?} is ambiguous: it matches {}", candidates.join(", "))]
    AmbiguousName {
        /// What the user typed.
        name: String,
        /// `plural.group` of each match.
        candidates: Vec<String>,
    },
    /// The kind's plural or kind name is already taken by another definition.
    #[error("{group_kind} cannot be registered: {reason}")]
    Conflict {
        /// The kind being registered.
        group_kind: GroupKind,
        /// What it clashes with.
        reason: String,
    },
    /// A built-in schema failed to compile (a bug in the Rust type's schema).
    #[error("{group_kind}: {source}")]
    Schema {
        /// The kind whose schema is broken.
        group_kind: GroupKind,
        /// Why.
        source: SchemaError,
    },
    /// The CRD is malformed or invalid.
    #[error(transparent)]
    Crd(#[from] CrdError),
    /// The object has no usable `apiVersion`/`kind`.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The object breaks its kind's rules.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

/// The kinds a server serves.
#[derive(Debug, Clone, Default)]
pub struct KindRegistry {
    kinds: Vec<Kind>,
}

impl KindRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        KindRegistry::default()
    }

    /// A registry with the built-in kinds: `Namespace` (core `v1`), `Event`, `Lease`
    /// (`stead.dev/v1`) and `CustomResourceDefinition` (`apiextensions.k8s.io/v1`).
    pub fn with_builtins() -> Result<Self, RegistryError> {
        let mut registry = KindRegistry::new();
        registry.register_resource::<Namespace>()?;
        registry.register_resource::<Event>()?;
        registry.register_resource::<Lease>()?;
        registry.register_resource::<ProcessSet>()?;
        registry.register_resource::<Process>()?;
        registry.register_resource::<ManagedFile>()?;
        registry.register_resource::<CustomResourceDefinition>()?;
        Ok(registry)
    }

    /// The [`Kind`] record of a Rust type.
    pub fn kind_of<R: Resource>() -> Result<Kind, RegistryError> {
        let group_kind = GroupKind::new(R::GROUP, R::KIND);
        let mut version = KindVersion::new(R::VERSION, &R::schema())
            .map_err(|source| RegistryError::Schema { group_kind, source })?;
        version.subresources = Subresources {
            status: R::STATUS_SUBRESOURCE,
            scale: R::scale_subresource(),
        };
        version.printer_columns = R::printer_columns();
        Ok(Kind {
            group: R::GROUP.to_owned(),
            names: Names {
                plural: R::PLURAL.to_owned(),
                singular: R::SINGULAR.to_owned(),
                kind: R::KIND.to_owned(),
                list_kind: String::new(),
                short_names: R::SHORT_NAMES.iter().map(|s| (*s).to_owned()).collect(),
                categories: R::CATEGORIES.iter().map(|s| (*s).to_owned()).collect(),
            }
            .with_defaults(),
            scope: R::SCOPE,
            name_rule: R::NAME_RULE,
            versions: vec![version],
            source: KindSource::BuiltIn,
            selectable_fields: R::selectable_fields()
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
        })
    }

    /// Registers a Rust kind.
    pub fn register_resource<R: Resource>(&mut self) -> Result<(), RegistryError> {
        self.register(Self::kind_of::<R>()?)
    }

    /// Registers a kind. A kind from the same CRD replaces the previous definition (a CRD
    /// update); any other clash of plural or kind within the group is a conflict.
    pub fn register(&mut self, kind: Kind) -> Result<(), RegistryError> {
        let conflict = |reason: String| RegistryError::Conflict {
            group_kind: kind.group_kind(),
            reason,
        };
        for existing in &self.kinds {
            if existing.group != kind.group {
                continue;
            }
            let same_definition =
                existing.source == kind.source && kind.source != KindSource::BuiltIn;
            if same_definition {
                continue;
            }
            let by = describe_source(existing);
            if existing.names.plural == kind.names.plural {
                return Err(conflict(format!(
                    "plural {:?} is already served by {}",
                    kind.names.plural, by
                )));
            }
            if existing.names.kind == kind.names.kind {
                return Err(conflict(format!(
                    "kind {:?} is already served by {}",
                    kind.names.kind, by
                )));
            }
        }
        self.kinds
            .retain(|k| !(k.source == kind.source && kind.source != KindSource::BuiltIn));
        self.kinds.push(kind);
        Ok(())
    }

    /// Validates a CRD and serves its kind; returns the kind's group/kind.
    pub fn register_crd(
        &mut self,
        crd: &CustomResourceDefinition,
    ) -> Result<GroupKind, RegistryError> {
        let kind = crd.to_kind()?;
        let group_kind = kind.group_kind();
        self.register(kind)?;
        Ok(group_kind)
    }

    /// Stops serving the kind of the CRD named `<plural>.<group>`; returns it if it was served.
    pub fn unregister_crd(&mut self, crd_name: &str) -> Option<Kind> {
        let source = KindSource::CustomResourceDefinition {
            name: crd_name.to_owned(),
        };
        let index = self.kinds.iter().position(|k| k.source == source)?;
        Some(self.kinds.remove(index))
    }

    /// Every registered kind, in registration order.
    pub fn kinds(&self) -> impl Iterator<Item = &Kind> {
        self.kinds.iter()
    }

    /// A kind by group and CamelCase kind name.
    pub fn kind(&self, group: &str, kind: &str) -> Option<&Kind> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.names.kind == kind)
    }

    /// The kind and served version named by an object's `apiVersion` and `kind`.
    pub fn lookup(&self, gvk: &GroupVersionKind) -> Result<(&Kind, &KindVersion), RegistryError> {
        self.kind(&gvk.group, &gvk.kind)
            .and_then(|k| Some((k, k.version(&gvk.version).filter(|v| v.served)?)))
            .ok_or_else(|| RegistryError::UnknownKind {
                api_version: gvk.api_version(),
                kind: gvk.kind.clone(),
                known: self.known_kinds(),
            })
    }

    /// The kind and served version of an object.
    pub fn lookup_object(
        &self,
        object: &DynamicObject,
    ) -> Result<(&Kind, &KindVersion), RegistryError> {
        self.lookup(&object.gvk()?)
    }

    /// The kind and served version behind a URL's group/version/resource.
    pub fn lookup_resource(
        &self,
        gvr: &GroupVersionResource,
    ) -> Result<(&Kind, &KindVersion), RegistryError> {
        self.kinds
            .iter()
            .find(|k| k.group == gvr.group && k.names.plural == gvr.resource)
            .and_then(|k| Some((k, k.version(&gvr.version).filter(|v| v.served)?)))
            .ok_or_else(|| RegistryError::UnknownResource { gvr: gvr.clone() })
    }

    /// Resolves a name typed by a user, like kubectl: a plural, singular, short name or kind
    /// (case-insensitive), optionally qualified by group (`leases.stead.dev`) or by version and
    /// group (`leases.v1.stead.dev`).
    pub fn resolve(&self, name: &str) -> Result<&Kind, RegistryError> {
        let lower = name.to_lowercase();
        let matches_name = |k: &Kind, n: &str| {
            k.names.plural == n
                || k.names.singular == n
                || k.names.kind.to_lowercase() == n
                || k.names.short_names.iter().any(|s| s == n)
        };
        let mut found: Vec<&Kind> = self
            .kinds
            .iter()
            .filter(|k| matches_name(k, &lower))
            .collect();
        if found.is_empty()
            && let Some((short, group)) = lower.split_once('.')
        {
            found = self
                .kinds
                .iter()
                .filter(|k| {
                    let versioned = group
                        .split_once('.')
                        .is_some_and(|(v, g)| g == k.group && k.version(v).is_some());
                    (k.group == group || versioned) && matches_name(k, short)
                })
                .collect();
        }
        match found.as_slice() {
            [] => Err(RegistryError::UnknownName {
                name: name.to_owned(),
            }),
            [one] => Ok(one),
            many => Err(RegistryError::AmbiguousName {
                name: name.to_owned(),
                candidates: many
                    .iter()
                    .map(|k| format!("{}.{}", k.names.plural, k.group))
                    .collect(),
            }),
        }
    }

    /// Validates an object against its kind (see [`Kind::validate`]).
    pub fn validate(&self, object: &DynamicObject) -> Result<(), RegistryError> {
        let (kind, version) = self.lookup_object(object)?;
        Ok(kind.validate(version, object)?)
    }

    /// `apiVersion kind` of every served version, sorted, for "unknown kind" messages.
    pub fn known_kinds(&self) -> Vec<String> {
        let mut known: Vec<String> = self
            .kinds
            .iter()
            .flat_map(|k| {
                k.served_versions()
                    .map(|v| format!("{} {}", k.gvk(&v.name).api_version(), k.names.kind))
            })
            .collect();
        known.sort();
        known
    }
}

fn describe_source(kind: &Kind) -> String {
    match &kind.source {
        KindSource::BuiltIn => format!("built-in kind {}", kind.group_kind()),
        KindSource::CustomResourceDefinition { name } => {
            format!("{} (CustomResourceDefinition {name:?})", kind.group_kind())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Scope;
    use crate::schema::NameRule;
    use serde_json::json;

    fn crd(group: &str, plural: &str, kind: &str, short: &[&str]) -> CustomResourceDefinition {
        CustomResourceDefinition::from_value(&json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"plural": plural, "kind": kind, "shortNames": short},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}},
                    {"name": "v0", "served": false, "storage": false,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}]}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn registry() -> KindRegistry {
        let mut r = KindRegistry::with_builtins().unwrap_or_else(|e| panic!("{e}"));
        r.register_crd(&crd("example.com", "widgets", "Widget", &["wd"]))
            .unwrap_or_else(|e| panic!("{e}"));
        r
    }

    #[test]
    fn builtin_kinds_are_registered_with_their_properties() {
        let r = registry();
        let ns = r
            .kind("", "Namespace")
            .unwrap_or_else(|| panic!("namespace"));
        assert_eq!(
            (ns.scope, ns.name_rule),
            (Scope::Cluster, NameRule::Dns1123Label)
        );
        assert!(ns.versions[0].subresources.status);
        let lease = r
            .kind("stead.dev", "Lease")
            .unwrap_or_else(|| panic!("lease"));
        assert_eq!(lease.scope, Scope::Namespaced);
        assert_eq!(lease.versions[0].printer_columns[0].name, "Holder");
        let crd_kind = r
            .kind("apiextensions.k8s.io", "CustomResourceDefinition")
            .unwrap_or_else(|| panic!("crd"));
        assert_eq!(crd_kind.names.short_names, ["crd", "crds"]);
    }

    #[test]
    fn lookups_by_gvk_and_gvr_find_served_versions_only() {
        let r = registry();
        let gvk = GroupVersionKind::new("example.com", "v1", "Widget");
        assert_eq!(
            r.lookup(&gvk)
                .map(|(k, v)| (k.names.plural.as_str(), v.name.as_str()))
                .ok(),
            Some(("widgets", "v1"))
        );
        let unserved = GroupVersionKind::new("example.com", "v0", "Widget");
        assert!(matches!(
            r.lookup(&unserved),
            Err(RegistryError::UnknownKind { .. })
        ));
        let gvr = GroupVersionResource::new("stead.dev", "v1", "leases");
        assert_eq!(
            r.lookup_resource(&gvr)
                .map(|(k, _)| k.names.kind.as_str())
                .ok(),
            Some("Lease")
        );
        let missing = GroupVersionResource::new("stead.dev", "v1", "pods");
        assert_eq!(
            r.lookup_resource(&missing)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(
                "the server could not find the requested resource (stead.dev/v1, Resource=pods)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn an_unknown_kind_lists_the_known_ones() {
        let err = registry()
            .lookup(&GroupVersionKind::new("example.com", "v1", "Gadget"))
            .map(|_| ());
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err(
                "no matches for kind \"Gadget\" in version \"example.com/v1\"; known kinds: \
                 apiextensions.k8s.io/v1 CustomResourceDefinition, example.com/v1 Widget, \
                 stead.dev/v1 Lease, stead.dev/v1 ManagedFile, stead.dev/v1 Process, \
                 stead.dev/v1 ProcessSet, v1 Event, v1 Namespace"
                    .to_owned()
            )
        );
    }

    #[test]
    fn user_typed_names_resolve_like_kubectl() {
        let r = registry();
        let cases = [
            ("widgets", Some("Widget")),
            ("widget", Some("Widget")),
            ("Widget", Some("Widget")),
            ("wd", Some("Widget")),
            ("WD", Some("Widget")),
            ("widgets.example.com", Some("Widget")),
            ("widgets.v1.example.com", Some("Widget")),
            ("ns", Some("Namespace")),
            ("crd", Some("CustomResourceDefinition")),
            ("leases.stead.dev", Some("Lease")),
            ("widgets.v9.example.com", None),
            ("gadgets", None),
        ];
        for (name, want) in cases {
            assert_eq!(
                r.resolve(name).ok().map(|k| k.names.kind.as_str()),
                want,
                "{name}"
            );
        }
        assert_eq!(
            r.resolve("gadgets").map(|_| ()).map_err(|e| e.to_string()),
            Err("the server doesn't have a resource type \"gadgets\"".to_owned())
        );
    }

    #[test]
    fn the_same_short_name_in_two_groups_is_ambiguous() {
        let mut r = registry();
        r.register_crd(&crd("other.io", "widgets", "Widget", &[]))
            .unwrap_or_else(|e| panic!("{e}"));
        match r.resolve("widget") {
            Err(RegistryError::AmbiguousName { candidates, .. }) => {
                assert_eq!(candidates, ["widgets.example.com", "widgets.other.io"]);
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
        assert_eq!(
            r.resolve("widgets.other.io").map(|k| k.group.as_str()).ok(),
            Some("other.io")
        );
    }

    #[test]
    fn crds_replace_their_own_kind_but_not_others() {
        let mut r = registry();
        let mut updated = crd("example.com", "widgets", "Widget", &["w2"]);
        updated.spec.scope = "Cluster".into();
        assert!(
            r.register_crd(&updated).is_ok(),
            "an update of the same CRD replaces it"
        );
        assert_eq!(r.resolve("w2").map(|k| k.scope).ok(), Some(Scope::Cluster));
        assert!(r.resolve("wd").is_err());

        let clash = crd("stead.dev", "leases", "Lease", &[]);
        assert_eq!(
            r.register_crd(&clash).map_err(|e| e.to_string()),
            Err("Lease.stead.dev cannot be registered: plural \"leases\" is already served by built-in kind Lease.stead.dev".to_owned())
        );
        let kind_clash = crd("example.com", "gizmos", "Widget", &[]);
        assert!(matches!(
            r.register_crd(&kind_clash),
            Err(RegistryError::Conflict { .. })
        ));

        assert!(r.unregister_crd("widgets.example.com").is_some());
        assert!(r.unregister_crd("widgets.example.com").is_none());
        assert!(r.resolve("widgets").is_err());
    }

    #[test]
    fn objects_validate_against_their_registered_kind() {
        let r = registry();
        let good =
            DynamicObject::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 1}}))
            .unwrap_or_default();
        assert_eq!(r.validate(&good), Ok(()));
        let bad =
            DynamicObject::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": "big"}}))
            .unwrap_or_default();
        assert_eq!(
            r.validate(&bad).map_err(|e| e.to_string()),
            Err("spec.size: \"big\" is not of type \"integer\"".to_owned())
        );
        let no_kind = DynamicObject::default();
        assert_eq!(
            r.validate(&no_kind).map_err(|e| e.to_string()),
            Err("apiVersion: required field is missing".to_owned())
        );
    }

    #[test]
    fn builtin_objects_validate_against_their_generated_schemas() {
        let r = registry();
        let lease = json!({"apiVersion": "stead.dev/v1", "kind": "Lease",
            "metadata": {"name": "l", "namespace": "default"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 0}});
        let obj = DynamicObject::from_value(lease).unwrap_or_default();
        assert_eq!(
            r.validate(&obj).map_err(|e| e.to_string()),
            Err("spec.leaseDurationSeconds: 0 is less than the minimum of 1".to_owned())
        );
        let ns = DynamicObject::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team-a"}, "status": {"phase": "Gone"}}))
        .unwrap_or_default();
        let err = r.validate(&ns).map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.starts_with("status.phase: \"Gone\" is not one of")),
            "{err:?}"
        );
    }
}
