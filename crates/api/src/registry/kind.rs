//! [`Kind`]: everything the server needs to serve one kind — names, scope, versions with their
//! compiled schemas, subresources and printer columns — whether it came from a Rust type or a
//! CustomResourceDefinition.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dynamic::DynamicObject;
use crate::meta::{GroupKind, GroupVersionKind, GroupVersionResource, null_as_default};
use crate::resource::{Scope, storage_key};
use crate::schema::{
    FieldIssue, NameRule, SchemaError, SchemaValidator, ValidationErrors, validate_metadata,
};

use super::json_path::JsonPath;

/// The names of a kind (`spec.names` of a CRD).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Names {
    /// Lowercase plural used in URLs and storage keys, e.g. `processsets`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub plural: String,
    /// Lowercase singular, e.g. `processset` (defaults to the lowercased kind).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub singular: String,
    /// CamelCase kind, e.g. `ProcessSet`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// Kind of the list type (defaults to `<kind>List`).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub list_kind: String,
    /// Short aliases for the CLI, e.g. `ps`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub short_names: Vec<String>,
    /// Groupings the kind belongs to, e.g. `all`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub categories: Vec<String>,
}

impl Names {
    /// Fills `singular` and `list_kind` from `kind` when empty, as Kubernetes does.
    #[must_use]
    pub fn with_defaults(mut self) -> Self {
        if self.singular.is_empty() {
            self.singular = self.kind.to_lowercase();
        }
        if self.list_kind.is_empty() {
            self.list_kind = format!("{}List", self.kind);
        }
        self
    }
}

/// A column in `get` output (`additionalPrinterColumns` of a CRD version).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrinterColumn {
    /// Column header, e.g. `Ready`.
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Optional format hint (`int32`, `date-time`, ...).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub format: String,
    /// Human-readable description.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub description: String,
    /// 0 = always shown; higher = only with `-o wide`.
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "null_as_default"
    )]
    pub priority: i32,
    /// Simple JSONPath into the object, e.g. `.status.readyReplicas`.
    pub json_path: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl PrinterColumn {
    /// A column shown by default.
    pub fn new(name: &str, type_: &str, json_path: &str) -> Self {
        PrinterColumn {
            name: name.to_owned(),
            type_: type_.to_owned(),
            json_path: json_path.to_owned(),
            ..PrinterColumn::default()
        }
    }

    /// The cell value for an object (`None` when the path selects nothing or is invalid).
    pub fn value_of<'a>(&self, object: &'a Value) -> Option<&'a Value> {
        JsonPath::parse(&self.json_path).ok()?.find(object)
    }
}

/// The `/scale` subresource: where replicas live in spec and status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSubresource {
    /// JSONPath of the desired replicas, under `.spec`.
    pub spec_replicas_path: String,
    /// JSONPath of the observed replicas, under `.status`.
    pub status_replicas_path: String,
    /// JSONPath of the serialized label selector, under `.status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector_path: Option<String>,
}

/// The subresources a version serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subresources {
    /// `/status`: status is written only there; the main resource ignores status changes.
    pub status: bool,
    /// `/scale`.
    pub scale: Option<ScaleSubresource>,
}

/// One version of a kind.
#[derive(Debug, Clone)]
pub struct KindVersion {
    /// Version name, e.g. `v1`.
    pub name: String,
    /// Whether the REST API serves this version.
    pub served: bool,
    /// Whether objects are stored in this version (exactly one per kind).
    pub storage: bool,
    /// Deprecation warning for clients, if the version is deprecated.
    pub deprecation_warning: Option<String>,
    /// Subresources of this version.
    pub subresources: Subresources,
    /// Extra `get` columns.
    pub printer_columns: Vec<PrinterColumn>,
    schema: Arc<SchemaValidator>,
}

impl KindVersion {
    /// A served storage version with the given OpenAPI v3 schema, compiled now.
    pub fn new(name: impl Into<String>, openapi_schema: &Value) -> Result<Self, SchemaError> {
        Ok(KindVersion {
            name: name.into(),
            served: true,
            storage: true,
            deprecation_warning: None,
            subresources: Subresources::default(),
            printer_columns: Vec::new(),
            schema: Arc::new(SchemaValidator::compile(openapi_schema)?),
        })
    }

    /// The compiled schema.
    pub fn schema(&self) -> &SchemaValidator {
        &self.schema
    }

    /// Removes undeclared fields and fills defaults; returns the paths that were pruned (the
    /// server rejects them under `fieldValidation=Strict` and warns otherwise).
    pub fn normalize(&self, object: &mut DynamicObject) -> Vec<String> {
        let mut value = std::mem::take(object).into_value();
        let pruned = self.schema.prune(&mut value);
        self.schema.default_fields(&mut value);
        if let Ok(obj) = DynamicObject::from_value(value) {
            *object = obj;
        }
        pruned
    }
}

/// Where a kind's definition came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindSource {
    /// A Rust type registered at start-up.
    BuiltIn,
    /// A CustomResourceDefinition with this `metadata.name`.
    CustomResourceDefinition {
        /// `<plural>.<group>`.
        name: String,
    },
}

/// A servable kind.
#[derive(Debug, Clone)]
pub struct Kind {
    /// API group, e.g. `stead.dev`.
    pub group: String,
    /// Plural, singular, kind, list kind, short names, categories.
    pub names: Names,
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Rule for `metadata.name`.
    pub name_rule: NameRule,
    /// Versions, in the order they were declared.
    pub versions: Vec<KindVersion>,
    /// Built-in or from a CRD.
    pub source: KindSource,
    /// Fields selectable besides `metadata.name` and `metadata.namespace`.
    pub selectable_fields: Vec<String>,
}

impl Kind {
    /// The group/kind, e.g. `Lease.stead.dev`.
    pub fn group_kind(&self) -> GroupKind {
        GroupKind::new(&self.group, &self.names.kind)
    }

    /// The group/version/kind of one version.
    pub fn gvk(&self, version: &str) -> GroupVersionKind {
        GroupVersionKind::new(&self.group, version, &self.names.kind)
    }

    /// The group/version/resource of one version.
    pub fn gvr(&self, version: &str) -> GroupVersionResource {
        GroupVersionResource::new(&self.group, version, &self.names.plural)
    }

    /// A version by name.
    pub fn version(&self, name: &str) -> Option<&KindVersion> {
        self.versions.iter().find(|v| v.name == name)
    }

    /// The version objects are stored in.
    pub fn storage_version(&self) -> Option<&KindVersion> {
        self.versions.iter().find(|v| v.storage)
    }

    /// Versions the REST API serves.
    pub fn served_versions(&self) -> impl Iterator<Item = &KindVersion> {
        self.versions.iter().filter(|v| v.served)
    }

    /// Where an object of this kind is stored (the namespace is ignored for cluster-scoped
    /// kinds).
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        let ns = if self.scope.is_namespaced() {
            namespace
        } else {
            None
        };
        storage_key(&self.group, &self.names.plural, ns, name)
    }

    /// Checks an object against this kind: `apiVersion`/`kind` match, metadata rules for the
    /// kind's scope, and the version's schema. Every issue is reported.
    pub fn validate(
        &self,
        version: &KindVersion,
        object: &DynamicObject,
    ) -> Result<(), ValidationErrors> {
        let mut issues = Vec::new();
        let want_api_version = self.gvk(&version.name).api_version();
        if object.api_version() != want_api_version {
            issues.push(FieldIssue::new(
                "apiVersion",
                "const",
                format!(
                    "must be {want_api_version:?}, got {:?}",
                    object.api_version()
                ),
            ));
        }
        if object.kind() != self.names.kind {
            issues.push(FieldIssue::new(
                "kind",
                "const",
                format!("must be {:?}, got {:?}", self.names.kind, object.kind()),
            ));
        }
        issues.extend(validate_metadata(
            object.get("metadata"),
            self.scope,
            self.name_rule,
        ));
        let value = object.to_value();
        if let Err(errs) = version.schema().validate(&value) {
            issues.extend(errs.issues);
        }
        ValidationErrors::check(issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget() -> Kind {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}},
            "status": {"type": "object"}
        }});
        let version = KindVersion::new("v1", &schema).unwrap_or_else(|e| panic!("{e}"));
        Kind {
            group: "example.com".into(),
            names: Names {
                plural: "widgets".into(),
                kind: "Widget".into(),
                ..Names::default()
            }
            .with_defaults(),
            scope: Scope::Namespaced,
            name_rule: NameRule::default(),
            versions: vec![version],
            source: KindSource::BuiltIn,
            selectable_fields: Vec::new(),
        }
    }

    #[test]
    fn names_default_singular_and_list_kind() {
        let kind = widget();
        assert_eq!(kind.names.singular, "widget");
        assert_eq!(kind.names.list_kind, "WidgetList");
        assert_eq!(kind.group_kind().to_string(), "Widget.example.com");
        assert_eq!(
            kind.gvr("v1").to_string(),
            "example.com/v1, Resource=widgets"
        );
        assert_eq!(
            kind.storage_key(Some("ns"), "w"),
            "/registry/example.com/widgets/ns/w"
        );
        assert!(kind.storage_version().is_some() && kind.version("v2").is_none());
    }

    #[test]
    fn validation_reports_type_metadata_and_schema_issues_together() {
        let kind = widget();
        let version = &kind.versions[0];
        let good = DynamicObject::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 2}
        }))
        .unwrap_or_default();
        assert_eq!(kind.validate(version, &good), Ok(()));
        let bad = DynamicObject::from_value(json!({
            "apiVersion": "example.com/v2", "kind": "Gadget",
            "metadata": {"name": "W"}, "spec": {"size": 0}
        }))
        .unwrap_or_default();
        let err = kind.validate(version, &bad).expect_err("invalid");
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "apiVersion",
                "kind",
                "metadata.name",
                "metadata.namespace",
                "spec.size"
            ]
        );
    }

    #[test]
    fn normalize_prunes_and_defaults() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 1}}}
        }});
        let version = KindVersion::new("v1", &schema).unwrap_or_else(|e| panic!("{e}"));
        let mut obj = DynamicObject::from_value(json!({"spec": {"sise": 3}})).unwrap_or_default();
        assert_eq!(version.normalize(&mut obj), vec!["spec.sise"]);
        assert_eq!(obj.spec(), Some(&json!({"size": 1})));
    }

    #[test]
    fn printer_columns_read_cells_and_serialize_like_crds() {
        let col = PrinterColumn {
            priority: 1,
            ..PrinterColumn::new("Size", "integer", ".spec.size")
        };
        assert_eq!(col.value_of(&json!({"spec": {"size": 4}})), Some(&json!(4)));
        assert_eq!(
            serde_json::to_value(&col).ok(),
            Some(
                json!({"name": "Size", "type": "integer", "priority": 1, "jsonPath": ".spec.size"})
            )
        );
    }
}
