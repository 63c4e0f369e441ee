//! Test support for controllers, usable from other crates' tests: an in-memory API server
//! ([`FakeClient`]) and small builders for objects.
//!
//! ```
//! use stead_controller::client::Client;
//! use stead_controller::testing::{FakeClient, object, widgets};
//! # tokio_test_block(async {
//! let client = FakeClient::new();
//! let created = client.create(&widgets(), &object(&widgets(), Some("ns"), "w", serde_json::json!({"size": 1})))
//!     .await.unwrap();
//! assert_eq!(created.generation(), 1);
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

mod fake_client;
#[cfg(test)]
mod tests;

use serde_json::{Value, json};
use stead_api::DynamicObject;

use crate::client::ApiResource;

pub use fake_client::FakeClient;

/// A namespaced example kind with a status subresource: `example.com/v1` `Widget`.
pub fn widgets() -> ApiResource {
    ApiResource::new("example.com", "v1", "Widget", "widgets", true)
}

/// A namespaced example kind owned by widgets: `example.com/v1` `Gadget`.
pub fn gadgets() -> ApiResource {
    ApiResource::new("example.com", "v1", "Gadget", "gadgets", true)
}

/// An object of `resource` with a spec (namespace ignored for cluster-scoped kinds).
pub fn object(
    resource: &ApiResource,
    namespace: Option<&str>,
    name: &str,
    spec: Value,
) -> DynamicObject {
    let mut metadata = json!({ "name": name });
    if let Some(ns) = namespace.filter(|_| resource.namespaced) {
        metadata["namespace"] = json!(ns);
    }
    let value = json!({
        "apiVersion": resource.api_version(),
        "kind": resource.kind,
        "metadata": metadata,
        "spec": spec,
    });
    DynamicObject::from_value(value).unwrap_or_default()
}

/// `child` with a controller owner reference to `owner`.
pub fn owned_by(mut child: DynamicObject, owner: &DynamicObject) -> DynamicObject {
    let reference = json!({
        "apiVersion": owner.api_version(),
        "kind": owner.kind(),
        "name": owner.name(),
        "uid": owner.uid(),
        "controller": true,
    });
    child
        .metadata_map_mut()
        .insert("ownerReferences".into(), json!([reference]));
    child
}
