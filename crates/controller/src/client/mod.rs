//! The resource API as the runtime sees it: a [`Client`] trait with an HTTP implementation
//! ([`HttpClient`], stead's REST API) and an in-memory one for tests.
//!
//! Every call names the kind by [`ApiResource`] (where it lives on the API) and answers
//! [`DynamicObject`]s; typed kinds convert with `DynamicObject::to_resource`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use futures::Stream;
use serde_json::Value;
use stead_api::{DynamicObject, GroupVersionKind};

mod http;

pub use http::{ACCEPT_JSON, ACCEPT_TABLE, HttpClient, query};
pub use hyper::Method;

/// Where a kind lives on the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiResource {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name, as in URLs.
    pub plural: String,
    pub namespaced: bool,
}

impl ApiResource {
    /// A kind at `group/version` with its plural and scope.
    pub fn new(
        group: impl Into<String>,
        version: impl Into<String>,
        kind: impl Into<String>,
        plural: impl Into<String>,
        namespaced: bool,
    ) -> Self {
        ApiResource {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        }
    }

    /// `group/version` (or `version` for the core group).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind's group, version and kind.
    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::new(&self.group, &self.version, &self.kind)
    }

    /// The collection path: `/apis/<g>/<v>/[namespaces/<ns>/]<plural>`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{root}/namespaces/{ns}/{}", self.plural),
            None => format!("{root}/{}", self.plural),
        }
    }

    /// One object's path.
    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }
}

/// Options of a LIST.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<u64>,
    pub continue_token: Option<String>,
}

/// Options of a WATCH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchParams {
    /// Events after this resourceVersion; `None` starts with ADDED for every current object.
    pub resource_version: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub allow_bookmarks: bool,
    /// The server ends the stream after this many seconds.
    pub timeout_seconds: Option<u64>,
}

/// One page of a LIST.
#[derive(Debug, Clone, Default)]
pub struct ObjectList {
    pub items: Vec<DynamicObject>,
    /// The revision the list was read at.
    pub resource_version: String,
    /// Set when more pages follow.
    pub continue_token: Option<String>,
}

/// One event of a WATCH stream.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Added(DynamicObject),
    Modified(DynamicObject),
    Deleted(DynamicObject),
    /// Progress: everything up to this resourceVersion has been sent.
    Bookmark {
        resource_version: String,
    },
    /// The server ended the watch with a Status (410 Expired when the start was compacted).
    Error(Status),
}

/// A Kubernetes `Status` failure from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl Status {
    /// Reads a `Status` body; `None` when `value` is not one.
    pub fn from_value(value: &Value) -> Option<Status> {
        if value.get("kind").and_then(Value::as_str) != Some("Status") {
            return None;
        }
        Some(Status {
            code: value.get("code").and_then(Value::as_u64).unwrap_or(0) as u16,
            reason: value
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            message: value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.message, self.code, self.reason)
    }
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a `Status`.
    #[error("{0}")]
    Api(Status),
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach the API server: {0}")]
    Transport(String),
    /// The server answered something that is not the expected JSON.
    #[error("unexpected response from the API server: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP code of a `Status` answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api(status) => Some(status.code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// 410 Gone: the requested resourceVersion was compacted.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
}

/// A patch body and its content type.
#[derive(Debug, Clone)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// RFC 6902 JSON patch (an array of operations).
    Json(Value),
    /// Server-side apply of a full or partial object.
    Apply(Value),
}

impl Patch {
    /// The `Content-Type` of this patch.
    pub fn content_type(&self) -> &'static str {
        match self {
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Json(_) => "application/json-patch+json",
            Patch::Apply(_) => "application/apply-patch+yaml",
        }
    }

    /// The body.
    pub fn body(&self) -> &Value {
        match self {
            Patch::Merge(v) | Patch::Json(v) | Patch::Apply(v) => v,
        }
    }
}

/// Options of a PATCH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchParams {
    /// Required for apply patches.
    pub field_manager: Option<String>,
    /// Take ownership of conflicting fields (apply only).
    pub force: bool,
}

/// What a DELETE did.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// The object is gone; its last state.
    Gone(DynamicObject),
    /// The object has finalizers: it is marked (deletionTimestamp set) and stays until they
    /// are removed.
    Pending(DynamicObject),
}

/// A stream of watch events; it ends when the server ends the watch.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, ClientError>> + Send>>;

/// The REST API, as the runtime uses it.
pub trait Client: Clone + Send + Sync + 'static {
    /// GET one object.
    fn get(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> impl Future<Output = Result<DynamicObject, ClientError>> + Send;

    /// LIST one page (all namespaces when `namespace` is `None`).
    fn list(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> impl Future<Output = Result<ObjectList, ClientError>> + Send;

    /// WATCH; the future resolves once the server has accepted the watch.
    fn watch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &WatchParams,
    ) -> impl Future<Output = Result<WatchStream, ClientError>> + Send;

    /// POST a new object (namespace and name from its metadata).
    fn create(
        &self,
        resource: &ApiResource,
        object: &DynamicObject,
    ) -> impl Future<Output = Result<DynamicObject, ClientError>> + Send;

    /// PUT an object; 409 Conflict when its resourceVersion is stale.
    fn replace(
        &self,
        resource: &ApiResource,
        object: &DynamicObject,
    ) -> impl Future<Output = Result<DynamicObject, ClientError>> + Send;

    /// PUT the object's status to the `/status` subresource.
    fn replace_status(
        &self,
        resource: &ApiResource,
        object: &DynamicObject,
    ) -> impl Future<Output = Result<DynamicObject, ClientError>> + Send;

    /// PATCH an object, or its `/status` when `status` is set.
    fn patch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        patch: &Patch,
        params: &PatchParams,
        status: bool,
    ) -> impl Future<Output = Result<DynamicObject, ClientError>> + Send;

    /// DELETE an object.
    fn delete(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> impl Future<Output = Result<Deleted, ClientError>> + Send;
}
