//! Helpers for the REST API tests: a `stead serve` with `--listen-api-url` on a free port,
//! requests with any method and content type, and the objects the tests use (a
//! `widgets.example.com` CRD, Widgets, Leases).
//!
//! Include it with `#[path = "common/rest.rs"] mod rest;` next to `common` and `http`.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Proc, free_port, start_stead};
use crate::http::{HttpResponse, send};

pub(crate) const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";
pub(crate) const LEASES: &str = "/apis/stead.dev/v1/namespaces/default/leases";
pub(crate) const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/// A running server and its REST endpoint.
pub(crate) struct Api {
    pub(crate) endpoint: String,
    pub(crate) server: Proc,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) fn start() -> Api {
    start_with(&[])
}

/// [`start`] with more `stead serve` flags.
pub(crate) fn start_with(extra: &[&str]) -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut args = vec!["--listen-api-url", url.as_str()];
    args.extend_from_slice(extra);
    let server = start_stead(&dir.path().join("data"), &args);
    let endpoint = format!("127.0.0.1:{port}");
    wait_for(&endpoint);
    Api {
        endpoint,
        server,
        _dir: dir,
    }
}

pub(crate) fn wait_for(endpoint: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(endpoint).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no REST API on {endpoint}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Api {
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> HttpResponse {
        let text = body.map(Value::to_string);
        send(&self.endpoint, method, path, content_type, text.as_deref())
    }

    pub(crate) fn get(&self, path: &str) -> HttpResponse {
        self.call("GET", path, "application/json", None)
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> HttpResponse {
        self.call("POST", path, "application/json", Some(body))
    }

    pub(crate) fn put(&self, path: &str, body: &Value) -> HttpResponse {
        self.call("PUT", path, "application/json", Some(body))
    }

    pub(crate) fn patch(&self, path: &str, content_type: &str, body: &Value) -> HttpResponse {
        self.call("PATCH", path, content_type, Some(body))
    }

    pub(crate) fn delete(&self, path: &str) -> HttpResponse {
        self.call("DELETE", path, "application/json", None)
    }

    /// Registers the `widgets.example.com` CRD (namespaced, status subresource,
    /// `spec.replicas >= 0`).
    pub(crate) fn register_widgets(&self) {
        let resp = self.post(CRDS, &widget_crd());
        assert_eq!(resp.status, 201, "{}", resp.text());
    }

    pub(crate) fn create_widget(&self, name: &str, replicas: i64) -> Value {
        let resp = self.post(WIDGETS, &widget(name, replicas));
        assert_eq!(resp.status, 201, "{}", resp.text());
        resp.json()
    }

    /// The store's current revision (a LIST's resourceVersion).
    pub(crate) fn revision(&self) -> i64 {
        rv(&self.get(LEASES).json()["metadata"])
    }
}

pub(crate) fn rv(metadata: &Value) -> i64 {
    metadata["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {metadata}"))
}

pub(crate) fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                      "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "replicas": {"type": "integer", "minimum": 0},
                        "image": {"type": "string"}}},
                    "status": {"type": "object", "properties": {
                        "ready": {"type": "integer"}}}}}}
            }]
        }
    })
}

pub(crate) fn widget(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": name, "labels": {"app": name}},
           "spec": {"replicas": replicas}})
}

pub(crate) fn lease(name: &str, holder: &str) -> Value {
    json!({"apiVersion": "stead.dev/v1", "kind": "Lease",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"holderIdentity": holder}})
}

/// Retries `call` until it answers `status` (a cluster elects a leader; members catch up).
pub(crate) fn eventually(what: &str, status: u16, call: impl Fn() -> HttpResponse) -> HttpResponse {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = call();
        if resp.status == status {
            return resp;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still {} {}",
            resp.status,
            resp.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
