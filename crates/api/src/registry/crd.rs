//! `apiextensions.k8s.io/v1` CustomResourceDefinition: the standard way users add kinds.
//!
//! The types mirror Kubernetes' JSON field for field (unknown fields such as `conversion` are
//! accepted and ignored), so the same YAML that works with `kubectl apply` on Kubernetes works
//! here. [`CustomResourceDefinition::validate`] applies Kubernetes' rules with its wording, and
//! [`CustomResourceDefinition::to_kind`] compiles the per-version schemas into a [`Kind`].
//!
//! A CRD is itself a built-in, cluster-scoped kind (`customresourcedefinitions`, short names
//! `crd`/`crds`, with a status subresource) so the REST API stores and serves it like any other.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json_path::JsonPath;
use super::kind::{
    Kind, KindSource, KindVersion, Names, PrinterColumn, ScaleSubresource, Subresources,
};
use crate::meta::{ObjectMeta, Timestamp, TypeMeta, names, null_as_default};
use crate::resource::{Resource, Scope};
use crate::schema::{FieldIssue, NameRule, ValidationErrors};

/// The group of CustomResourceDefinitions.
pub const CRD_GROUP: &str = "apiextensions.k8s.io";

/// A CRD that cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrdError {
    /// The document does not have the CRD shape (a field has the wrong JSON type).
    #[error("cannot decode CustomResourceDefinition: {reason}")]
    Decode {
        /// The decoder's explanation.
        reason: String,
    },
    /// The CRD breaks Kubernetes' rules; every problem is listed.
    #[error("CustomResourceDefinition.apiextensions.k8s.io {name:?} is invalid: {errors}")]
    Invalid {
        /// `metadata.name` of the CRD.
        name: String,
        /// What is wrong, by field.
        errors: ValidationErrors,
    },
}

/// `apiextensions.k8s.io/v1` CustomResourceDefinition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "Defines a user kind served by the REST API.")]
pub struct CustomResourceDefinition {
    /// `apiextensions.k8s.io/v1` and `CustomResourceDefinition`.
    #[serde(flatten)]
    pub types: TypeMeta,
    /// `metadata.name` must be `<plural>.<group>`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The kind's definition.
    #[serde(default)]
    pub spec: CustomResourceDefinitionSpec,
    /// Conditions and accepted names, written by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CustomResourceDefinitionStatus>,
}

/// `spec` of a CRD.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomResourceDefinitionSpec {
    /// API group, e.g. `example.com` (must contain a dot).
    #[serde(default, deserialize_with = "null_as_default")]
    pub group: String,
    /// Plural, singular, kind, list kind, short names and categories.
    #[serde(default)]
    pub names: Names,
    /// `Namespaced` or `Cluster`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub scope: String,
    /// Served versions with their schemas.
    #[serde(default, deserialize_with = "null_as_default")]
    pub versions: Vec<CustomResourceDefinitionVersion>,
    /// Conversion strategy; accepted for compatibility, only `None` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Value>,
    /// Deprecated v1beta1 field; must be absent or false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_unknown_fields: Option<bool>,
}

/// One entry of `spec.versions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomResourceDefinitionVersion {
    /// Version name, e.g. `v1` or `v1alpha1`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Whether the REST API serves this version.
    #[serde(default)]
    pub served: bool,
    /// Whether objects are stored in this version (exactly one version).
    #[serde(default)]
    pub storage: bool,
    /// Marks the version deprecated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    /// Warning returned to clients of a deprecated version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecation_warning: Option<String>,
    /// `openAPIV3Schema` of the objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<CustomResourceValidation>,
    /// `status` and `scale` subresources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresources: Option<CustomResourceSubresources>,
    /// Extra `get` columns.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub additional_printer_columns: Vec<PrinterColumn>,
}

/// `schema` of a CRD version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomResourceValidation {
    /// The OpenAPI v3 schema of the whole object.
    #[serde(
        rename = "openAPIV3Schema",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub open_api_v3_schema: Option<Value>,
}

/// `subresources` of a CRD version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomResourceSubresources {
    /// Present (as `{}`) to enable `/status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// Enables `/scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleSubresource>,
}

/// `status` of a CRD.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomResourceDefinitionStatus {
    /// `NamesAccepted` and `Established` conditions.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub conditions: Vec<CrdCondition>,
    /// The names actually served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_names: Option<Names>,
    /// Versions that objects have ever been stored in.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub stored_versions: Vec<String>,
}

/// A condition of a CRD (`Established`, `NamesAccepted`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrdCondition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Timestamp>,
    /// Machine-readable reason.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub reason: String,
    /// Human-readable message.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub message: String,
}

impl Resource for CustomResourceDefinition {
    const GROUP: &'static str = CRD_GROUP;
    const VERSION: &'static str = "v1";
    const KIND: &'static str = "CustomResourceDefinition";
    const PLURAL: &'static str = "customresourcedefinitions";
    const SINGULAR: &'static str = "customresourcedefinition";
    const SHORT_NAMES: &'static [&'static str] = &["crd", "crds"];
    const CATEGORIES: &'static [&'static str] = &["api-extensions"];
    const SCOPE: Scope = Scope::Cluster;
    const STATUS_SUBRESOURCE: bool = true;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn printer_columns() -> Vec<PrinterColumn> {
        vec![PrinterColumn::new(
            "Created At",
            "date",
            ".metadata.creationTimestamp",
        )]
    }
}

const COLUMN_TYPES: [&str; 5] = ["integer", "number", "string", "boolean", "date"];

impl CustomResourceDefinition {
    /// Decodes a CRD from JSON (e.g. a YAML document). Shape errors only; use
    /// [`CustomResourceDefinition::validate`] for the rules.
    pub fn from_value(value: &Value) -> Result<Self, CrdError> {
        serde_json::from_value(value.clone()).map_err(|e| CrdError::Decode {
            reason: e.to_string(),
        })
    }

    /// The scope named by `spec.scope`, if valid.
    pub fn scope(&self) -> Option<Scope> {
        match self.spec.scope.as_str() {
            "Namespaced" => Some(Scope::Namespaced),
            "Cluster" => Some(Scope::Cluster),
            _ => None,
        }
    }

    /// Every rule violation, with Kubernetes' field paths and wording.
    pub fn validate(&self) -> Vec<FieldIssue> {
        let mut issues = Vec::new();
        let add_all = |issues: &mut Vec<FieldIssue>, more: Vec<FieldIssue>| issues.extend(more);
        let mut found = Vec::new();
        let mut add = |path: &str, rule: &str, message: String| {
            found.push(FieldIssue::new(path, rule, message))
        };
        let spec = &self.spec;
        if !self.types.api_version.is_empty() && self.types.api_version != "apiextensions.k8s.io/v1"
        {
            add(
                "apiVersion",
                "const",
                format!(
                    "must be \"apiextensions.k8s.io/v1\", got {:?}",
                    self.types.api_version
                ),
            );
        }
        if !self.types.kind.is_empty() && self.types.kind != "CustomResourceDefinition" {
            add(
                "kind",
                "const",
                format!(
                    "must be \"CustomResourceDefinition\", got {:?}",
                    self.types.kind
                ),
            );
        }
        let expected_name = format!("{}.{}", spec.names.plural, spec.group);
        if self.metadata.name != expected_name {
            add(
                "metadata.name",
                "crdName",
                format!(
                    "must be spec.names.plural+\".\"+spec.group ({expected_name:?}), got {:?}",
                    self.metadata.name
                ),
            );
        }
        if spec.group.is_empty() {
            add("spec.group", "required", "required field is missing".into());
        } else {
            for p in names::dns1123_subdomain(&spec.group) {
                add("spec.group", "dns1123Subdomain", p);
            }
            if !spec.group.contains('.') {
                add(
                    "spec.group",
                    "crdGroup",
                    "should be a domain with at least one dot".into(),
                );
            }
        }
        let n = &spec.names;
        for (field, value, required) in [
            ("plural", &n.plural, true),
            ("singular", &n.singular, false),
        ] {
            let path = format!("spec.names.{field}");
            if value.is_empty() {
                if required {
                    add(&path, "required", "required field is missing".into());
                }
            } else {
                for p in names::dns1035_label(value) {
                    add(&path, "dns1035Label", p);
                }
            }
        }
        for (field, value, required) in [("kind", &n.kind, true), ("listKind", &n.list_kind, false)]
        {
            let path = format!("spec.names.{field}");
            if value.is_empty() {
                if required {
                    add(&path, "required", "required field is missing".into());
                }
            } else if !names::dns1035_label(&value.to_lowercase()).is_empty() {
                add(
                    &path,
                    "dns1035Label",
                    format!(
                        "{value:?} may have mixed case, but should otherwise be a DNS-1035 label (letters, digits and '-', starting with a letter)"
                    ),
                );
            }
        }
        if !n.kind.is_empty() && n.list_kind == n.kind {
            add(
                "spec.names.listKind",
                "crdNames",
                "kind and listKind may not be the same".into(),
            );
        }
        for (field, list) in [
            ("shortNames", &n.short_names),
            ("categories", &n.categories),
        ] {
            for (i, value) in list.iter().enumerate() {
                for p in names::dns1035_label(value) {
                    add(&format!("spec.names.{field}[{i}]"), "dns1035Label", p);
                }
            }
        }
        if self.scope().is_none() {
            let got = if spec.scope.is_empty() {
                "missing".to_owned()
            } else {
                format!("{:?}", spec.scope)
            };
            add(
                "spec.scope",
                "enum",
                format!("unsupported value {got}: supported values: \"Cluster\", \"Namespaced\""),
            );
        }
        if spec.preserve_unknown_fields == Some(true) {
            add("spec.preserveUnknownFields", "forbidden", "must be false in apiextensions.k8s.io/v1; use x-kubernetes-preserve-unknown-fields in the schema".into());
        }
        if let Some(strategy) = spec
            .conversion
            .as_ref()
            .and_then(|c| c.get("strategy"))
            .and_then(Value::as_str)
            && strategy != "None"
        {
            add(
                "spec.conversion.strategy",
                "enum",
                format!("unsupported value {strategy:?}: only \"None\" is supported"),
            );
        }
        if spec.versions.is_empty() {
            add(
                "spec.versions",
                "required",
                "must have exactly one version marked as storage version".into(),
            );
        }
        let storage_count = spec.versions.iter().filter(|v| v.storage).count();
        if !spec.versions.is_empty() && storage_count != 1 {
            add(
                "spec.versions",
                "storage",
                format!(
                    "must have exactly one version marked as storage version, found {storage_count}"
                ),
            );
        }
        for (i, version) in spec.versions.iter().enumerate() {
            let base = format!("spec.versions[{i}]");
            if spec.versions[..i].iter().any(|v| v.name == version.name) {
                add(
                    &format!("{base}.name"),
                    "unique",
                    format!("duplicate version {:?}", version.name),
                );
            }
            add_all(&mut issues, validate_version(version, &base));
        }
        found.extend(issues);
        found
    }

    /// Validates and compiles the CRD into a servable [`Kind`].
    ///
    /// ```
    /// let crd: serde_json::Value = serde_json::json!({
    ///   "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    ///   "metadata": {"name": "widgets.example.com"},
    ///   "spec": {"group": "example.com", "scope": "Namespaced",
    ///     "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
    ///     "versions": [{"name": "v1", "served": true, "storage": true,
    ///       "schema": {"openAPIV3Schema": {"type": "object"}}}]}
    /// });
    /// let kind = stead_api::CustomResourceDefinition::from_value(&crd).unwrap().to_kind().unwrap();
    /// assert_eq!(kind.names.singular, "widget");
    /// ```
    pub fn to_kind(&self) -> Result<Kind, CrdError> {
        let invalid = |issues| CrdError::Invalid {
            name: self.metadata.name.clone(),
            errors: ValidationErrors { issues },
        };
        let issues = self.validate();
        if !issues.is_empty() {
            return Err(invalid(issues));
        }
        let mut versions = Vec::new();
        let mut issues = Vec::new();
        for (i, v) in self.spec.versions.iter().enumerate() {
            let schema = v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.clone())
                .unwrap_or(Value::Null);
            match KindVersion::new(&v.name, &schema) {
                Ok(mut kv) => {
                    kv.served = v.served;
                    kv.storage = v.storage;
                    kv.deprecation_warning = v.deprecated.then(|| {
                        v.deprecation_warning.clone().unwrap_or_else(|| {
                            format!(
                                "{}/{} {} is deprecated",
                                self.spec.group, v.name, self.spec.names.kind
                            )
                        })
                    });
                    let sub = v.subresources.clone().unwrap_or_default();
                    kv.subresources = Subresources {
                        status: sub.status.is_some(),
                        scale: sub.scale,
                    };
                    kv.printer_columns = v.additional_printer_columns.clone();
                    versions.push(kv);
                }
                Err(e) => issues.push(FieldIssue::new(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "schema",
                    e.to_string(),
                )),
            }
        }
        if !issues.is_empty() {
            return Err(invalid(issues));
        }
        Ok(Kind {
            group: self.spec.group.clone(),
            names: self.spec.names.clone().with_defaults(),
            scope: self.scope().unwrap_or_default(),
            name_rule: NameRule::Dns1123Subdomain,
            versions,
            source: KindSource::CustomResourceDefinition {
                name: self.metadata.name.clone(),
            },
            selectable_fields: Vec::new(),
        })
    }

    /// The status the server reports once the CRD is served: `NamesAccepted` and `Established`
    /// conditions (what `kubectl wait --for condition=established` waits for).
    pub fn established_status(&self, now: Timestamp) -> CustomResourceDefinitionStatus {
        let condition = |type_: &str, reason: &str, message: &str| CrdCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            last_transition_time: Some(now.truncated_to_seconds()),
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
        CustomResourceDefinitionStatus {
            conditions: vec![
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition(
                    "Established",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                ),
            ],
            accepted_names: Some(self.spec.names.clone().with_defaults()),
            stored_versions: self
                .spec
                .versions
                .iter()
                .filter(|v| v.storage)
                .map(|v| v.name.clone())
                .collect(),
        }
    }
}

fn validate_version(version: &CustomResourceDefinitionVersion, base: &str) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    let mut add = |path: String, rule: &str, message: String| {
        issues.push(FieldIssue::new(path, rule, message))
    };
    if version.name.is_empty() {
        add(
            format!("{base}.name"),
            "required",
            "required field is missing".into(),
        );
    } else {
        for p in names::dns1035_label(&version.name) {
            add(format!("{base}.name"), "dns1035Label", p);
        }
    }
    let schema_path = format!("{base}.schema.openAPIV3Schema");
    match version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    {
        None => add(schema_path, "required", "schemas are required".into()),
        Some(schema) => {
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                add(
                    format!("{schema_path}.type"),
                    "structural",
                    "must be object at the root".into(),
                );
            }
            let mut nested = Vec::new();
            structural_issues(schema, &schema_path, &mut nested);
            for issue in nested {
                add(issue.path, &issue.rule, issue.message);
            }
        }
    }
    if let Some(sub) = &version.subresources {
        if let Some(status) = &sub.status
            && !status.is_object()
        {
            add(
                format!("{base}.subresources.status"),
                "type",
                "must be an object ({})".into(),
            );
        }
        if let Some(scale) = &sub.scale {
            let scale_base = format!("{base}.subresources.scale");
            let checks = [
                (
                    "specReplicasPath",
                    Some(&scale.spec_replicas_path),
                    &[".spec."][..],
                ),
                (
                    "statusReplicasPath",
                    Some(&scale.status_replicas_path),
                    &[".status."][..],
                ),
                (
                    "labelSelectorPath",
                    scale.label_selector_path.as_ref(),
                    &[".spec.", ".status."][..],
                ),
            ];
            for (field, value, prefixes) in checks {
                let Some(value) = value else { continue };
                if !prefixes.iter().any(|p| value.starts_with(p)) || JsonPath::parse(value).is_err()
                {
                    add(
                        format!("{scale_base}.{field}"),
                        "jsonPath",
                        format!(
                            "{value:?} should be a json path under {}",
                            prefixes.join(" or ")
                        ),
                    );
                }
            }
        }
    }
    for (i, col) in version.additional_printer_columns.iter().enumerate() {
        let col_base = format!("{base}.additionalPrinterColumns[{i}]");
        if col.name.is_empty() {
            add(
                format!("{col_base}.name"),
                "required",
                "required field is missing".into(),
            );
        }
        if !COLUMN_TYPES.contains(&col.type_.as_str()) {
            add(
                format!("{col_base}.type"),
                "enum",
                format!(
                    "unsupported value {:?}: supported values: {}",
                    col.type_,
                    COLUMN_TYPES.map(|t| format!("{t:?}")).join(", ")
                ),
            );
        }
        if let Err(e) = JsonPath::parse(&col.json_path) {
            add(
                format!("{col_base}.jsonPath"),
                "jsonPath",
                e.reason.to_owned(),
            );
        }
        if col.priority < 0 {
            add(
                format!("{col_base}.priority"),
                "minimum",
                "must be greater than or equal to 0".into(),
            );
        }
    }
    issues
}

/// Kubernetes' structural-schema rules that matter for validation and pruning: every node
/// with structure declares its `type` (unless it is int-or-string or preserves unknown
/// fields), arrays declare `items`, `$ref` is not allowed, and `properties` and
/// `additionalProperties` are mutually exclusive.
fn structural_issues(schema: &Value, path: &str, issues: &mut Vec<FieldIssue>) {
    let Some(node) = schema.as_object() else {
        if !schema.is_boolean() {
            issues.push(FieldIssue::new(path, "type", "must be a schema object"));
        }
        return;
    };
    let flag = |key: &str| node.get(key).and_then(Value::as_bool) == Some(true);
    let free_form =
        flag("x-kubernetes-int-or-string") || flag("x-kubernetes-preserve-unknown-fields");
    if node.contains_key("$ref") {
        issues.push(FieldIssue::new(
            format!("{path}.$ref"),
            "forbidden",
            "$ref is not supported",
        ));
    }
    let has_structure = node.contains_key("properties")
        || node.contains_key("items")
        || node.contains_key("additionalProperties");
    if has_structure && !free_form && !node.contains_key("type") {
        issues.push(FieldIssue::new(
            format!("{path}.type"),
            "structural",
            "must not be empty for specified object fields",
        ));
    }
    if node.get("type").and_then(Value::as_str) == Some("array") && !node.contains_key("items") {
        issues.push(FieldIssue::new(
            format!("{path}.items"),
            "structural",
            "must be specified for arrays",
        ));
    }
    if node.contains_key("properties")
        && node
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
    {
        issues.push(FieldIssue::new(
            format!("{path}.additionalProperties"),
            "forbidden",
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            structural_issues(sub, &format!("{path}.properties[{name}]"), issues);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub) = node.get(key).filter(|s| s.is_object()) {
            structural_issues(sub, &format!("{path}.{key}"), issues);
        }
    }
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;
