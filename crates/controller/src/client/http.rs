//! [`Client`] over HTTP/1.1: stead's REST API (or any server with Kubernetes' paths and JSON).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, BodyStream, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use stead_api::DynamicObject;

use super::{
    ApiResource, Client, ClientError, Deleted, ListParams, ObjectList, Patch, PatchParams, Status,
    WatchEvent, WatchParams, WatchStream,
};

/// `Accept` for plain JSON.
pub const ACCEPT_JSON: &str = "application/json";

/// `Accept` for Table responses (server-side printer columns).
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// How long a non-watch request may take before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The REST API at one base URL (`http://host:port`).
#[derive(Clone)]
pub struct HttpClient {
    base: String,
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("base", &self.base)
            .finish()
    }
}

impl HttpClient {
    /// A client for the API server at `base` (`http://host:port`, no path).
    pub fn new(base: &str) -> Result<HttpClient, ClientError> {
        let base = base.trim_end_matches('/');
        let Some(rest) = base.strip_prefix("http://") else {
            let message = if base.starts_with("https://") {
                format!("{base}: https API URLs are not supported by this client; use http://")
            } else {
                format!("{base}: the API server URL must look like http://host:port")
            };
            return Err(ClientError::Transport(message));
        };
        if rest.is_empty() || rest.contains('/') {
            return Err(ClientError::Transport(format!(
                "{base}: the API server URL must look like http://host:port"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HttpClient {
            base: base.to_owned(),
            inner,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; answers the status and the response (body not yet read).
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        accept: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base))
            .header(header::ACCEPT, accept)
            .header(
                header::USER_AGENT,
                concat!("stead/", env!("CARGO_PKG_VERSION")),
            );
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request
            .body(body)
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        self.inner
            .request(request)
            .await
            .map_err(|e| ClientError::Transport(transport_message(&e)))
    }

    /// A whole JSON request/response; a non-2xx answer becomes [`ClientError::Api`].
    pub async fn request_json(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Value, ClientError> {
        self.request_as(method, path_and_query, ACCEPT_JSON, body)
            .await
    }

    /// [`HttpClient::request_json`] with another `Accept` (e.g. [`ACCEPT_TABLE`]).
    pub async fn request_as(
        &self,
        method: Method,
        path_and_query: &str,
        accept: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Value, ClientError> {
        let call = async {
            let response = self.send(method, path_and_query, accept, body).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            decode_answer(status, &bytes)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, call)
            .await
            .map_err(|_| ClientError::Transport("the request timed out".into()))?
    }

    /// Watches a full path (with its query) and reads newline-delimited events; `accept`
    /// may ask for Tables.
    pub async fn watch_path(&self, path: &str, accept: &str) -> Result<WatchStream, ClientError> {
        let response =
            tokio::time::timeout(REQUEST_TIMEOUT, self.send(Method::GET, path, accept, None))
                .await
                .map_err(|_| ClientError::Transport("the watch request timed out".into()))??;
        let status = response.status();
        if !status.is_success() {
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            return Err(decode_answer(status, &bytes)
                .err()
                .unwrap_or_else(|| ClientError::Decode(format!("HTTP {status}"))));
        }
        let frames = BodyStream::new(response.into_body());
        let stream = futures::stream::unfold(
            (frames, Vec::<u8>::new(), false),
            |(mut frames, mut buffer, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=end).collect();
                        let line = &line[..line.len() - 1];
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        return Some((watch_event(line), (frames, buffer, false)));
                    }
                    match frames.next().await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                buffer.extend_from_slice(&data);
                            }
                        }
                        Some(Err(e)) => {
                            let error = ClientError::Transport(transport_message(&e));
                            return Some((Err(error), (frames, buffer, true)));
                        }
                        None => return None,
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }

    async fn object(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<DynamicObject, ClientError> {
        let value = self.request_json(method, path, body).await?;
        to_object(value)
    }
}

/// A hyper error with its causes, which carry the useful part ("Connection refused").
fn transport_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn decode_answer(status: StatusCode, bytes: &[u8]) -> Result<Value, ClientError> {
    let value: Option<Value> = serde_json::from_slice(bytes).ok();
    if status.is_success() {
        return value.ok_or_else(|| {
            ClientError::Decode(format!(
                "HTTP {status}: body is not JSON: {}",
                String::from_utf8_lossy(bytes)
            ))
        });
    }
    let status_body = value.as_ref().and_then(Status::from_value);
    Err(ClientError::Api(status_body.unwrap_or_else(|| Status {
        code: status.as_u16(),
        reason: status.canonical_reason().unwrap_or_default().to_owned(),
        message: String::from_utf8_lossy(bytes).trim().to_owned(),
    })))
}

fn to_object(value: Value) -> Result<DynamicObject, ClientError> {
    DynamicObject::from_value(value).map_err(|e| ClientError::Decode(e.to_string()))
}

/// `?a=b&c=d` from the pairs that are set (values percent-encoded); empty when none is.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        let Some(value) = value else { continue };
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn json_body(object: &DynamicObject) -> Option<(&'static str, Vec<u8>)> {
    Some((
        "application/json",
        serde_json::to_vec(object.as_map()).unwrap_or_default(),
    ))
}

/// One line of a watch stream as an event.
fn watch_event(line: &[u8]) -> Result<WatchEvent, ClientError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        ClientError::Decode(format!(
            "watch event is not JSON ({e}): {}",
            String::from_utf8_lossy(line)
        ))
    })?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let object = value.get("object").cloned().unwrap_or(Value::Null);
    Ok(match kind {
        "ADDED" => WatchEvent::Added(to_object(object)?),
        "MODIFIED" => WatchEvent::Modified(to_object(object)?),
        "DELETED" => WatchEvent::Deleted(to_object(object)?),
        "BOOKMARK" => WatchEvent::Bookmark {
            resource_version: object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        "ERROR" => WatchEvent::Error(Status::from_value(&object).unwrap_or(Status {
            code: 500,
            reason: "InternalError".into(),
            message: object.to_string(),
        })),
        other => {
            return Err(ClientError::Decode(format!(
                "unknown watch event type {other:?}"
            )));
        }
    })
}

impl Client for HttpClient {
    async fn get(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<DynamicObject, ClientError> {
        let path = resource.object_path(namespace, name);
        self.object(Method::GET, &path, None).await
    }

    async fn list(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList, ClientError> {
        let path = format!(
            "{}{}",
            resource.collection_path(namespace),
            query(&[
                ("labelSelector", params.label_selector.clone()),
                ("fieldSelector", params.field_selector.clone()),
                ("limit", params.limit.map(|l| l.to_string())),
                ("continue", params.continue_token.clone()),
            ])
        );
        let value = self.request_json(Method::GET, &path, None).await?;
        let meta = value.get("metadata");
        let resource_version = meta
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let continue_token = meta
            .and_then(|m| m.get("continue"))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        let items = match value.get("items") {
            Some(Value::Array(items)) => items
                .iter()
                .cloned()
                .map(|mut item| {
                    // Items of a list may omit apiVersion/kind; fill them in.
                    if let Value::Object(map) = &mut item {
                        map.entry("apiVersion")
                            .or_insert_with(|| Value::String(resource.api_version()));
                        map.entry("kind")
                            .or_insert_with(|| Value::String(resource.kind.clone()));
                    }
                    to_object(item)
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::Null) | None => Vec::new(),
            Some(other) => {
                return Err(ClientError::Decode(format!(
                    "list items are not an array: {other}"
                )));
            }
        };
        Ok(ObjectList {
            items,
            resource_version,
            continue_token,
        })
    }

    async fn watch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &WatchParams,
    ) -> Result<WatchStream, ClientError> {
        let path = format!(
            "{}{}",
            resource.collection_path(namespace),
            query(&[
                ("watch", Some("true".into())),
                ("resourceVersion", params.resource_version.clone()),
                ("labelSelector", params.label_selector.clone()),
                ("fieldSelector", params.field_selector.clone()),
                (
                    "allowWatchBookmarks",
                    params.allow_bookmarks.then(|| "true".into())
                ),
                (
                    "timeoutSeconds",
                    params.timeout_seconds.map(|t| t.to_string())
                ),
            ])
        );
        self.watch_path(&path, ACCEPT_JSON).await
    }

    async fn create(
        &self,
        resource: &ApiResource,
        object: &DynamicObject,
    ) -> Result<DynamicObject, ClientError> {
        let path = resource.collection_path(object.namespace());
        self.object(Method::POST, &path, json_body(object)).await
    }
    async fn replace(
        &self,
        resource: &ApiResource,
        object: &DynamicObject,
    ) -> Result<DynamicObject, ClientError> {
        let path = resource.object_path(object.namespace(), object.name());
        self.object(Method::PUT, &path, json_body(object)).await
    }

    async fn replace_status(
        &self,
        resource: &ApiResource,
        object: &DynamicObject,
    ) -> Result<DynamicObject, ClientError> {
        let path = format!(
            "{}/status",
            resource.object_path(object.namespace(), object.name())
        );
        self.object(Method::PUT, &path, json_body(object)).await
    }

    async fn patch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        patch: &Patch,
        params: &PatchParams,
        status: bool,
    ) -> Result<DynamicObject, ClientError> {
        let mut path = resource.object_path(namespace, name);
        if status {
            path.push_str("/status");
        }
        path.push_str(&query(&[
            ("fieldManager", params.field_manager.clone()),
            ("force", params.force.then(|| "true".into())),
        ]));
        let body = serde_json::to_vec(patch.body()).unwrap_or_default();
        self.object(Method::PATCH, &path, Some((patch.content_type(), body)))
            .await
    }

    async fn delete(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Deleted, ClientError> {
        let path = resource.object_path(namespace, name);
        let value = self.request_json(Method::DELETE, &path, None).await?;
        // A Status answer (some servers send one for a finished delete) means gone.
        if Status::from_value(&value).is_some() {
            let mut object = DynamicObject::new(&resource.gvk(), &Default::default());
            object.set_meta_str("name", name);
            if let Some(ns) = namespace {
                object.set_meta_str("namespace", ns);
            }
            return Ok(Deleted::Gone(object));
        }
        let object = to_object(value)?;
        if object.deletion_timestamp().is_some() && !object.finalizers().is_empty() {
            Ok(Deleted::Pending(object))
        } else {
            Ok(Deleted::Gone(object))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encodes_selectors() {
        let q = query(&[
            ("labelSelector", Some("app in (a,b),tier!=x".into())),
            ("limit", None),
            ("continue", Some("abc=".into())),
        ]);
        assert_eq!(
            q,
            "?labelSelector=app%20in%20%28a%2Cb%29%2Ctier%21%3Dx&continue=abc%3D"
        );
    }

    #[test]
    fn watch_lines_decode() {
        let added = br#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a","resourceVersion":"5"}}}"#;
        match watch_event(added) {
            Ok(WatchEvent::Added(object)) => assert_eq!(object.resource_version(), "5"),
            other => panic!("{other:?}"),
        }
        let bookmark = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#;
        match watch_event(bookmark) {
            Ok(WatchEvent::Bookmark { resource_version }) => assert_eq!(resource_version, "9"),
            other => panic!("{other:?}"),
        }
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#;
        match watch_event(gone) {
            Ok(WatchEvent::Error(status)) => assert_eq!(status.code, 410),
            other => panic!("{other:?}"),
        }
        assert!(watch_event(b"{nope").is_err());
        assert!(watch_event(br#"{"type":"WHAT","object":{}}"#).is_err());
    }

    #[test]
    fn non_http_urls_are_refused_clearly() {
        let error = HttpClient::new("ftp://x").err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("http://host:port")));
        assert!(HttpClient::new("http://127.0.0.1:6443/").is_ok());
    }
}
