//! Schemas and validation: OpenAPI v3 schemas (from schemars or CRDs), their translation to
//! JSON Schema, the compiled [`SchemaValidator`], Kubernetes' metadata rules, and the
//! [`FieldIssue`] shape every check reports in.

mod issues;
mod metadata;
mod openapi;
mod validator;

pub use issues::{FieldIssue, ValidationErrors};
pub use metadata::{MAX_ANNOTATIONS_BYTES, NameRule, validate_metadata};
pub use openapi::{apply_defaults, openapi_schema_for, prune_unknown_fields, to_json_schema};
pub use validator::{SchemaError, SchemaValidator};
