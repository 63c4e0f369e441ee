//! [`SchemaValidator`]: one kind version's OpenAPI schema, compiled once, applied to every write.
//!
//! Validation uses the `jsonschema` crate (draft 2020-12) on the translated schema
//! ([`super::to_json_schema`]); each failure becomes a [`FieldIssue`] whose path is the dotted
//! field path (`spec.containers[0].image`) and whose rule is the failing keyword.

use std::fmt;

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use jsonschema::{Draft, Validator};
use serde_json::Value;

use super::issues::{FieldIssue, ValidationErrors, join_path, key_segment};
use super::openapi::{apply_defaults, prune_unknown_fields, to_json_schema};

/// Messages longer than this are cut (a type error on a large object would otherwise quote it
/// whole).
const MAX_MESSAGE_CHARS: usize = 300;

/// A schema that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema: {reason}")]
pub struct SchemaError {
    /// The compiler's explanation.
    pub reason: String,
}

/// A compiled schema for one kind version.
pub struct SchemaValidator {
    /// The schema as published (OpenAPI v3), used for pruning, defaulting and discovery.
    openapi: Value,
    compiled: Validator,
}

impl fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("openapi", &self.openapi)
            .finish_non_exhaustive()
    }
}

impl SchemaValidator {
    /// Compiles an OpenAPI v3 schema. Remote `$ref`s are never fetched (the crate is built
    /// without its HTTP resolver), so a schema that needs one fails here.
    pub fn compile(openapi: &Value) -> Result<Self, SchemaError> {
        let translated = to_json_schema(openapi);
        let compiled = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .build(&translated)
            .map_err(|e| SchemaError {
                reason: e.to_string(),
            })?;
        Ok(SchemaValidator {
            openapi: openapi.clone(),
            compiled,
        })
    }

    /// The OpenAPI v3 schema this validator was built from.
    pub fn openapi_schema(&self) -> &Value {
        &self.openapi
    }

    /// Checks an object; every violation is reported, in document order.
    ///
    /// ```
    /// use stead_api::SchemaValidator;
    /// let v = SchemaValidator::compile(&serde_json::json!({
    ///     "type": "object",
    ///     "properties": {"spec": {"type": "object",
    ///         "properties": {"replicas": {"type": "integer", "minimum": 0}}}}
    /// })).unwrap();
    /// let err = v.validate(&serde_json::json!({"spec": {"replicas": -1}})).unwrap_err();
    /// assert_eq!(err.to_string(), "spec.replicas: -1 is less than the minimum of 0");
    /// assert_eq!(err.issues[0].rule, "minimum");
    /// ```
    pub fn validate(&self, object: &Value) -> Result<(), ValidationErrors> {
        let mut issues: Vec<FieldIssue> = self
            .compiled
            .iter_errors(object)
            .map(|error| {
                let mut path = String::new();
                let mut node = Some(object);
                for segment in error.instance_path().iter() {
                    let (next_path, next_node) = match segment {
                        LocationSegment::Property(key) => (
                            key_segment(&path, &key),
                            node.and_then(|n| n.get(key.as_ref())),
                        ),
                        LocationSegment::Index(i) => (
                            join_path(&path, &format!("[{i}]")),
                            node.and_then(|n| n.get(i)),
                        ),
                    };
                    path = next_path;
                    node = next_node;
                }
                let kind = error.kind();
                let rule = kind.keyword().to_owned();
                if let ValidationErrorKind::Required { property } = kind {
                    let name = property
                        .as_str()
                        .map_or_else(|| property.to_string(), str::to_owned);
                    return FieldIssue::new(
                        key_segment(&path, &name),
                        rule,
                        "required field is missing",
                    );
                }
                let mut message = error.to_string();
                if message.chars().count() > MAX_MESSAGE_CHARS {
                    message = message.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "...";
                }
                FieldIssue::new(path, rule, message)
            })
            .collect();
        issues.dedup();
        ValidationErrors::check(issues)
    }

    /// Removes undeclared fields (see [`prune_unknown_fields`]) and returns their paths.
    pub fn prune(&self, object: &mut Value) -> Vec<String> {
        prune_unknown_fields(&self.openapi, object)
    }

    /// Fills absent fields that have a `default` (see [`apply_defaults`]).
    pub fn default_fields(&self, object: &mut Value) {
        apply_defaults(&self.openapi, object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validator() -> SchemaValidator {
        let schema = json!({"type": "object", "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "port": {"x-kubernetes-int-or-string": true},
                "note": {"type": "string", "nullable": true},
                "env": {"type": "array", "items": {"type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string", "pattern": "^[A-Z_]+$"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            }}
        }});
        SchemaValidator::compile(&schema).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn violations_name_the_field_path_and_rule() {
        let cases = [
            (
                json!({"spec": {"image": "x", "replicas": -1}}),
                "spec.replicas",
                "minimum",
                "-1 is less than the minimum of 0",
            ),
            (
                json!({"spec": {"image": "x", "replicas": 11}}),
                "spec.replicas",
                "maximum",
                "11 is greater than the maximum of 10",
            ),
            (
                json!({"spec": {"image": "x", "replicas": "3"}}),
                "spec.replicas",
                "type",
                "\"3\" is not of type \"integer\"",
            ),
            (
                json!({"spec": {}}),
                "spec.image",
                "required",
                "required field is missing",
            ),
            (
                json!({"spec": {"image": ""}}),
                "spec.image",
                "minLength",
                "\"\" is shorter than 1 character",
            ),
            (
                json!({"spec": {"image": "x", "mode": "medium"}}),
                "spec.mode",
                "enum",
                "\"medium\" is not one of \"fast\" or \"slow\"",
            ),
            (
                json!({"spec": {"image": "x", "env": [{"name": "OK"}, {}]}}),
                "spec.env[1].name",
                "required",
                "required field is missing",
            ),
            (
                json!({"spec": {"image": "x", "env": [{"name": "bad"}]}}),
                "spec.env[0].name",
                "pattern",
                "\"bad\" does not match \"^[A-Z_]+$\"",
            ),
            (
                json!({"spec": {"image": "x", "labels": {"app.kubernetes.io/name": 1}}}),
                "spec.labels[app.kubernetes.io/name]",
                "type",
                "1 is not of type \"string\"",
            ),
            (
                json!({"spec": 5}),
                "spec",
                "type",
                "5 is not of type \"object\"",
            ),
        ];
        for (object, path, rule, message) in cases {
            let err = validator()
                .validate(&object)
                .expect_err(&object.to_string());
            assert_eq!(err.issues.len(), 1, "{object}: {err}");
            let issue = &err.issues[0];
            assert_eq!(
                (issue.path.as_str(), issue.rule.as_str()),
                (path, rule),
                "{object}"
            );
            assert_eq!(issue.message, message, "{object}");
        }
    }

    #[test]
    fn valid_objects_pass_including_nullable_int_or_string_and_unknown_fields() {
        let ok = [
            json!({"spec": {"image": "x"}}),
            json!({"spec": {"image": "x", "port": 8080, "note": null}}),
            json!({"spec": {"image": "x", "port": "http", "unknown": {"a": 1}}}),
            json!({"metadata": {"name": 5}, "spec": {"image": "x"}}),
        ];
        for object in ok {
            assert_eq!(validator().validate(&object), Ok(()), "{object}");
        }
        let err = validator().validate(&json!({"spec": {"image": "x", "port": true}}));
        assert_eq!(
            err.map_err(|e| e.issues[0].rule.clone()),
            Err("anyOf".to_owned())
        );
    }

    #[test]
    fn every_violation_is_reported() {
        let err = validator()
            .validate(&json!({"spec": {"replicas": -1, "mode": "x"}}))
            .expect_err("three problems");
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths.len(), 3, "{err}");
        for want in ["spec.image", "spec.replicas", "spec.mode"] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
    }

    #[test]
    fn long_messages_are_truncated() {
        let big: Vec<u32> = (0..500).collect();
        let err = validator()
            .validate(&json!({"spec": {"image": big}}))
            .expect_err("type");
        assert!(err.issues[0].message.ends_with("..."));
        assert!(err.issues[0].message.len() < 400);
    }

    #[test]
    fn uncompilable_schemas_are_rejected() {
        let err = SchemaValidator::compile(&json!({"type": "nonsense"})).map(|_| ());
        assert!(err.is_err());
        let err = SchemaValidator::compile(&json!({"$ref": "https://example.com/s.json"}));
        assert!(err.is_err(), "remote references are never fetched");
    }
}
