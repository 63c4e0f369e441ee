//! Kubernetes' rules for `metadata`, checked on every write independently of the kind's schema:
//! shape (against [`ObjectMeta`]'s schema), name and namespace rules for the kind's [`Scope`],
//! label and annotation keys and values, finalizer names and owner references.

use std::sync::OnceLock;

use serde_json::Value;

use super::issues::{FieldIssue, key_segment};
use super::openapi::openapi_schema_for;
use super::validator::SchemaValidator;
use crate::meta::{ObjectMeta, Timestamp, names};
use crate::resource::Scope;

/// Total size limit of all annotation keys and values, as in Kubernetes.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Which naming rule `metadata.name` must satisfy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum NameRule {
    /// An RFC 1123 subdomain (at most 253 characters, dots allowed): most kinds.
    #[default]
    Dns1123Subdomain,
    /// An RFC 1123 label (at most 63 characters, no dots): namespaces.
    Dns1123Label,
}

impl NameRule {
    /// Problems with `name` under this rule.
    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Dns1123Subdomain => names::dns1123_subdomain(name),
            NameRule::Dns1123Label => names::dns1123_label(name),
        }
    }

    fn rule_name(self) -> &'static str {
        match self {
            NameRule::Dns1123Subdomain => "dns1123Subdomain",
            NameRule::Dns1123Label => "dns1123Label",
        }
    }
}

fn metadata_schema() -> Option<&'static SchemaValidator> {
    static SCHEMA: OnceLock<Option<SchemaValidator>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| SchemaValidator::compile(&openapi_schema_for::<ObjectMeta>()).ok())
        .as_ref()
}

/// Checks an object's `metadata` (the value of the field, `None` if absent) for a kind with the
/// given scope and name rule. Issues' paths start with `metadata.`.
///
/// ```
/// use stead_api::{NameRule, Scope, validate_metadata};
/// let meta = serde_json::json!({"name": "Web_1"});
/// let issues = validate_metadata(Some(&meta), Scope::Namespaced, NameRule::default());
/// let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
/// assert_eq!(paths, ["metadata.name", "metadata.namespace"]);
/// ```
pub fn validate_metadata(
    metadata: Option<&Value>,
    scope: Scope,
    name_rule: NameRule,
) -> Vec<FieldIssue> {
    let empty = Value::Object(serde_json::Map::new());
    let value = match metadata {
        None | Some(Value::Null) => &empty,
        Some(v) => v,
    };
    if let Some(schema) = metadata_schema()
        && let Err(errs) = schema.validate(value)
    {
        return errs
            .issues
            .into_iter()
            .map(|i| i.under("metadata"))
            .collect();
    }
    let mut issues = Vec::new();
    for field in ["creationTimestamp", "deletionTimestamp"] {
        if let Some(Value::String(text)) = value.get(field)
            && let Err(e) = text.parse::<Timestamp>()
        {
            issues.push(FieldIssue::new(
                format!("metadata.{field}"),
                "format",
                e.to_string(),
            ));
        }
    }
    if !issues.is_empty() {
        return issues;
    }
    match serde_json::from_value::<ObjectMeta>(value.clone()) {
        Ok(meta) => check_meta(&meta, scope, name_rule),
        Err(e) => vec![FieldIssue::new("metadata", "type", e.to_string())],
    }
}

fn check_meta(meta: &ObjectMeta, scope: Scope, name_rule: NameRule) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    let mut push_all = |path: &str, rule: &str, problems: Vec<String>| {
        issues.extend(problems.into_iter().map(|p| FieldIssue::new(path, rule, p)));
    };
    if meta.name.is_empty() {
        push_all(
            "metadata.name",
            "required",
            vec!["name or generateName is required".to_owned()],
        );
    } else {
        push_all(
            "metadata.name",
            name_rule.rule_name(),
            name_rule.check(&meta.name),
        );
    }
    if !meta.generate_name.is_empty() {
        // The prefix only has to be valid once a suffix is appended, so a trailing '-' is fine.
        let masked = format!("{}a", meta.generate_name.trim_end_matches('-'));
        let masked = if meta.generate_name.ends_with('-') {
            masked
        } else {
            meta.generate_name.clone()
        };
        push_all(
            "metadata.generateName",
            name_rule.rule_name(),
            name_rule.check(&masked),
        );
    }
    match (scope, meta.namespace.is_empty()) {
        (Scope::Namespaced, true) => {
            push_all(
                "metadata.namespace",
                "required",
                vec!["namespace is required for a namespaced kind".to_owned()],
            );
        }
        (Scope::Namespaced, false) => {
            push_all(
                "metadata.namespace",
                "dns1123Label",
                names::dns1123_label(&meta.namespace),
            );
        }
        (Scope::Cluster, false) => {
            push_all(
                "metadata.namespace",
                "forbidden",
                vec!["not allowed on a cluster-scoped kind".to_owned()],
            );
        }
        (Scope::Cluster, true) => {}
    }
    for (key, value) in &meta.labels {
        let path = key_segment("metadata.labels", key);
        push_all(&path, "qualifiedName", names::qualified_name(key));
        push_all(&path, "labelValue", names::label_value(value));
    }
    let mut annotation_bytes = 0;
    for (key, value) in &meta.annotations {
        push_all(
            &key_segment("metadata.annotations", key),
            "qualifiedName",
            names::qualified_name(key),
        );
        annotation_bytes += key.len() + value.len();
    }
    if annotation_bytes > MAX_ANNOTATIONS_BYTES {
        push_all(
            "metadata.annotations",
            "maxLength",
            vec![format!(
                "may not have more than {MAX_ANNOTATIONS_BYTES} bytes in total, has {annotation_bytes}"
            )],
        );
    }
    for (i, finalizer) in meta.finalizers.iter().enumerate() {
        push_all(
            &format!("metadata.finalizers[{i}]"),
            "qualifiedName",
            names::qualified_name(finalizer),
        );
    }
    for (i, owner) in meta.owner_references.iter().enumerate() {
        let base = format!("metadata.ownerReferences[{i}]");
        for (field, value) in [
            ("apiVersion", &owner.api_version),
            ("kind", &owner.kind),
            ("name", &owner.name),
            ("uid", &owner.uid),
        ] {
            if value.is_empty() {
                push_all(
                    &format!("{base}.{field}"),
                    "required",
                    vec!["required field is missing".to_owned()],
                );
            }
        }
    }
    let controllers = meta
        .owner_references
        .iter()
        .filter(|o| o.controller == Some(true))
        .count();
    if controllers > 1 {
        push_all(
            "metadata.ownerReferences",
            "controller",
            vec![format!(
                "only one reference can have controller set to true, found {controllers}"
            )],
        );
    }
    if meta.generation < 0 {
        push_all(
            "metadata.generation",
            "minimum",
            vec!["must be greater than or equal to 0".to_owned()],
        );
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(meta: Value, scope: Scope) -> Vec<(String, String)> {
        validate_metadata(Some(&meta), scope, NameRule::Dns1123Subdomain)
            .into_iter()
            .map(|i| (i.path, i.rule))
            .collect()
    }

    /// (path, rule) pairs a case expects.
    type Expected<'a> = Vec<(&'a str, &'a str)>;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, r)| ((*p).to_owned(), (*r).to_owned()))
            .collect()
    }

    #[test]
    fn metadata_rules_are_checked_field_by_field() {
        use Scope::{Cluster, Namespaced};
        let cases: Vec<(Value, Scope, Expected<'_>)> = vec![
            (
                json!({"name": "web", "namespace": "default"}),
                Namespaced,
                vec![],
            ),
            (json!({"name": "web"}), Cluster, vec![]),
            (
                json!({"namespace": "default"}),
                Namespaced,
                vec![("metadata.name", "required")],
            ),
            (
                json!({"name": "Web", "namespace": "d"}),
                Namespaced,
                vec![("metadata.name", "dns1123Subdomain")],
            ),
            (
                json!({"name": "web"}),
                Namespaced,
                vec![("metadata.namespace", "required")],
            ),
            (
                json!({"name": "web", "namespace": "a.b"}),
                Namespaced,
                vec![("metadata.namespace", "dns1123Label")],
            ),
            (
                json!({"name": "web", "namespace": "default"}),
                Cluster,
                vec![("metadata.namespace", "forbidden")],
            ),
            (
                json!({"name": "w", "labels": {"bad key!": "x", "ok": "bad value!"}}),
                Cluster,
                vec![
                    ("metadata.labels[bad key!]", "qualifiedName"),
                    ("metadata.labels.ok", "labelValue"),
                ],
            ),
            (
                json!({"name": "w", "annotations": {"/x": "anything goes"}}),
                Cluster,
                vec![("metadata.annotations[/x]", "qualifiedName")],
            ),
            (
                json!({"name": "w", "finalizers": ["ok/fin", "no good"]}),
                Cluster,
                vec![("metadata.finalizers[1]", "qualifiedName")],
            ),
            (
                json!({"name": "w", "ownerReferences": [
                {"apiVersion": "v1", "kind": "K", "name": "a", "uid": "", "controller": true},
                {"apiVersion": "v1", "kind": "K", "name": "b", "uid": "2", "controller": true}]}),
                Cluster,
                vec![
                    ("metadata.ownerReferences[0].uid", "required"),
                    ("metadata.ownerReferences", "controller"),
                ],
            ),
            (
                json!({"name": "w", "labels": ["not", "a", "map"]}),
                Cluster,
                vec![("metadata.labels", "type")],
            ),
            (
                json!({"name": "w", "creationTimestamp": "yesterday"}),
                Cluster,
                vec![("metadata.creationTimestamp", "format")],
            ),
            (json!({"name": "w", "generateName": "w-"}), Cluster, vec![]),
            (
                json!({"name": "w", "generateName": "W-"}),
                Cluster,
                vec![("metadata.generateName", "dns1123Subdomain")],
            ),
        ];
        for (meta, scope, want) in cases {
            assert_eq!(check(meta.clone(), scope), pairs(&want), "{meta}");
        }
    }

    #[test]
    fn namespace_names_use_the_label_rule() {
        let meta = json!({"name": "a.b"});
        assert!(
            validate_metadata(Some(&meta), Scope::Cluster, NameRule::Dns1123Subdomain).is_empty()
        );
        let issues = validate_metadata(Some(&meta), Scope::Cluster, NameRule::Dns1123Label);
        assert_eq!(issues.len(), 1);
        assert!(
            issues[0].message.contains("RFC 1123 label"),
            "{}",
            issues[0]
        );
    }

    #[test]
    fn oversized_annotations_are_rejected() {
        let meta = json!({"name": "w", "annotations": {"big": "x".repeat(MAX_ANNOTATIONS_BYTES)}});
        let issues = check(meta, Scope::Cluster);
        assert_eq!(issues, pairs(&[("metadata.annotations", "maxLength")]));
    }

    #[test]
    fn missing_metadata_only_lacks_a_name() {
        let issues = validate_metadata(None, Scope::Cluster, NameRule::default());
        assert_eq!(issues.len(), 1);
        assert_eq!(
            issues[0].to_string(),
            "metadata.name: name or generateName is required"
        );
    }
}
