//! Every REST error as a Kubernetes `Status` body, in one place:
//!
//! ```text
//! {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
//!  "message":"...","reason":"NotFound","details":{"name":"a","group":"g","kind":"widgets"},
//!  "code":404}
//! ```
//!
//! Store errors, registry errors and validation errors are mapped here and nowhere else.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use stead_api::{FieldIssue, RegistryError, ValidationErrors};

/// The resource an error is about, for `details`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subject {
    pub(crate) group: String,
    /// The resource (plural), as Kubernetes puts it in `details.kind`.
    pub(crate) resource: String,
    pub(crate) name: String,
}

/// An error answered with a Kubernetes `Status` body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// Boxed: errors travel in every `Result` of a request path.
    pub(crate) details: Option<Box<Details>>,
}

/// `details` of a `Status`, fields in Kubernetes' order.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Details {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause>,
}

/// One field-level cause of an `Invalid` status.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cause {
    reason: &'static str,
    message: String,
    field: String,
}

/// The `Status` body, fields in Kubernetes' order.
#[derive(Debug, Serialize)]
pub(crate) struct StatusBody<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Map<String, Value>,
    status: &'static str,
    message: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Details>,
    code: u16,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_subject(mut self, subject: &Subject) -> Self {
        self.details = Some(Box::new(Details {
            name: subject.name.clone(),
            group: subject.group.clone(),
            kind: subject.resource.clone(),
            causes: Vec::new(),
        }));
        self
    }

    fn qualified(subject: &Subject) -> String {
        if subject.group.is_empty() {
            subject.resource.clone()
        } else {
            format!("{}.{}", subject.resource, subject.group)
        }
    }

    pub(crate) fn not_found(subject: &Subject) -> Self {
        let message = format!("{} {:?} not found", Self::qualified(subject), subject.name);
        Self::new(404, "NotFound", message).with_subject(subject)
    }

    pub(crate) fn already_exists(subject: &Subject) -> Self {
        let message = format!(
            "{} {:?} already exists",
            Self::qualified(subject),
            subject.name
        );
        Self::new(409, "AlreadyExists", message).with_subject(subject)
    }

    /// A stale resourceVersion (optimistic concurrency failed).
    pub(crate) fn conflict(subject: &Subject) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} {:?}: the object has been modified; \
             please apply your changes to the latest version and try again",
            Self::qualified(subject),
            subject.name
        );
        Self::new(409, "Conflict", message).with_subject(subject)
    }

    /// A server-side apply conflict with other field managers.
    pub(crate) fn apply_conflict(subject: &Subject, message: String) -> Self {
        Self::new(409, "Conflict", message).with_subject(subject)
    }

    /// Schema or lifecycle violations; each issue becomes a `details.causes` entry.
    pub(crate) fn invalid(subject: &Subject, kind: &str, issues: &[FieldIssue]) -> Self {
        let rendered = ValidationErrors {
            issues: issues.to_vec(),
        }
        .to_string();
        let message = format!(
            "{kind}.{} {:?} is invalid: {rendered}",
            subject.group, subject.name
        );
        let mut err = Self::new(422, "Invalid", message).with_subject(&Subject {
            resource: kind.to_owned(),
            ..subject.clone()
        });
        if let Some(details) = err.details.as_mut() {
            details.causes = issues
                .iter()
                .map(|i| Cause {
                    reason: cause_reason(&i.rule),
                    message: i.message.clone(),
                    field: i.path.clone(),
                })
                .collect();
        }
        err
    }

    /// A path that names nothing the API serves.
    pub(crate) fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource (path {path:?})"),
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/json-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    pub(crate) fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// The requested revision was compacted.
    pub(crate) fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// A request body over the API's limit.
    pub(crate) fn body_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// A DELETE precondition that the stored object does not meet.
    pub(crate) fn precondition_failed(subject: &Subject, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} {:?}: Precondition failed: {why}",
            Self::qualified(subject),
            subject.name
        );
        Self::new(409, "Conflict", message).with_subject(subject)
    }

    /// An object too large to store.
    pub(crate) fn object_too_large(size: usize, limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the object is {size} bytes; objects are limited to {limit} bytes"),
        )
    }

    /// A write the API refuses to make (`<resource> "<name>" is forbidden: <why>`).
    pub(crate) fn forbidden(subject: &Subject, why: &str) -> Self {
        let message = format!(
            "{} {:?} is forbidden: {why}",
            Self::qualified(subject),
            subject.name
        );
        Self::new(403, "Forbidden", message).with_subject(subject)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The Kubernetes `Status` object.
    pub(crate) fn to_status(&self) -> StatusBody<'_> {
        StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: Map::new(),
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            details: self.details.as_deref(),
            code: self.code,
        }
    }

    /// The `Status` as JSON text.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&self.to_status()).unwrap_or_default()
    }
}

/// Kubernetes' cause types for the rules crates/api reports.
fn cause_reason(rule: &str) -> &'static str {
    match rule {
        "required" => "FieldValueRequired",
        "immutable" | "forbidden" => "FieldValueForbidden",
        "enum" | "const" => "FieldValueNotSupported",
        "duplicate" => "FieldValueDuplicate",
        _ => "FieldValueInvalid",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_json();
        (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

impl From<stead_store::Error> for ApiError {
    fn from(e: stead_store::Error) -> Self {
        use stead_store::Error as E;
        match e {
            E::Compacted {
                requested,
                compacted,
            } => Self::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            E::FutureRevision { requested, current } => Self::new(
                504,
                "Timeout",
                format!("Too large resource version: {requested}, current: {current}"),
            ),
            E::NoLeader => Self::new(503, "ServiceUnavailable", e.to_string()),
            // Unknown outcome or an unreachable leader: the client may retry (a write with a
            // resourceVersion precondition is safe to retry).
            E::Replication { .. } => Self::new(503, "ServiceUnavailable", e.to_string()),
            E::NoSpace => Self::new(507, "InternalError", e.to_string()),
            E::RequestTooLarge { .. } => Self::new(413, "RequestEntityTooLarge", e.to_string()),
            other => Self::internal(other.to_string()),
        }
    }
}

/// Registry lookups failing for a URL's group/version/resource.
pub(crate) fn unknown_resource(err: &RegistryError, subject: &Subject) -> ApiError {
    ApiError::new(404, "NotFound", err.to_string()).with_subject(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            group: "stead.dev".into(),
            resource: "leases".into(),
            name: "a".into(),
        }
    }

    #[test]
    fn status_bodies_carry_reason_code_and_details_in_kubernetes_order() {
        let body = ApiError::not_found(&subject()).to_json();
        assert_eq!(
            body,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"leases.stead.dev \"a\" not found","reason":"NotFound","details":{"name":"a","group":"stead.dev","kind":"leases"},"code":404}"#
        );
    }

    #[test]
    fn invalid_lists_each_field_issue_as_a_cause() {
        let issues = [FieldIssue::new("spec.replicas", "minimum", "must be >= 0")];
        let status: Value =
            serde_json::from_str(&ApiError::invalid(&subject(), "Lease", &issues).to_json())
                .unwrap_or_default();
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["details"]["kind"], "Lease");
        assert_eq!(status["details"]["causes"][0]["field"], "spec.replicas");
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueInvalid"
        );
    }

    #[test]
    fn compacted_store_reads_are_410_expired() {
        let err = ApiError::from(stead_store::Error::Compacted {
            requested: 3,
            compacted: 9,
        });
        assert_eq!((err.code, err.reason), (410, "Expired"));
    }
}
