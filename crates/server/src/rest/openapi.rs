//! OpenAPI v3 documents built from the kinds' schemas, in the shape kubectl reads:
//!
//! ```text
//!  GET /openapi/v3                      ─► {"paths": {"apis/example.com/v1":
//!                                              {"serverRelativeURL": "/openapi/v3/apis/example.com/v1?hash=..."}}}
//!  GET /openapi/v3/apis/<group>/<ver>   ─► {"openapi": "3.0.0", "paths": {...},
//!  GET /openapi/v3/api/v1                   "components": {"schemas": {"com.example.v1.Widget": ...}}}
//! ```
//!
//! kubectl needs two things from them: every PATCH operation tagged with
//! `x-kubernetes-group-version-kind` and listing the `fieldValidation` query parameter (else
//! `apply --validate=strict` refuses to run), and every kind's schema tagged the same way (for
//! `kubectl explain`). The PATCH request bodies list no strategic merge patch, so kubectl's
//! client-side apply sends JSON merge patches. `/openapi/v2` is not served (404), and kubectl
//! falls back to v3.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use stead_api::{Kind, KindVersion};

use super::RestApi;
use super::handlers::json_response;
use super::status::ApiError;

/// Answers `/openapi/v3` and `/openapi/v3/{api/v1,apis/<g>/<v>}`; `None` for other paths.
pub(crate) fn serve(api: &RestApi, path: &str) -> Option<Result<Response, ApiError>> {
    let path = path.trim_end_matches('/');
    if path == "/openapi/v3" {
        return Some(Ok(json_response(StatusCode::OK, &root(api))));
    }
    let gv = path.strip_prefix("/openapi/v3/")?;
    let (group, version) = match gv.split('/').collect::<Vec<_>>().as_slice() {
        ["api", version] => (String::new(), (*version).to_owned()),
        ["apis", group, version] => ((*group).to_owned(), (*version).to_owned()),
        _ => return Some(Err(ApiError::path_not_found(path))),
    };
    Some(
        document(api, &group, &version)
            .map(|doc| json_response(StatusCode::OK, &doc))
            .ok_or_else(|| ApiError::path_not_found(path)),
    )
}

/// `api/v1` or `apis/<group>/<version>`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every served group/version, each with the URL of its document.
fn root(api: &RestApi) -> Value {
    let mut versions: BTreeMap<String, (String, String)> = BTreeMap::new();
    for kind in api.registry().kinds() {
        for v in kind.served_versions() {
            versions.insert(
                gv_path(&kind.group, &v.name),
                (kind.group.clone(), v.name.clone()),
            );
        }
    }
    let mut paths = Map::new();
    for (path, (group, version)) in versions {
        // The hash changes with the document, so clients that cache by URL see new kinds.
        let hash = document(api, &group, &version)
            .map(|doc| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                doc.to_string().hash(&mut hasher);
                format!("{:016X}", hasher.finish())
            })
            .unwrap_or_default();
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// The document of one group/version, or `None` when nothing is served there.
fn document(api: &RestApi, group: &str, version: &str) -> Option<Value> {
    let registry = api.registry();
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let mut found = false;
    for kind in registry.kinds().filter(|k| k.group == group) {
        let Some(v) = kind.served_versions().find(|v| v.name == version) else {
            continue;
        };
        found = true;
        schemas.insert(schema_name(kind, version), kind_schema(kind, v));
        add_paths(&mut paths, kind, v);
    }
    found.then(|| {
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths,
            "components": {"schemas": schemas},
        })
    })
}

/// Kubernetes' schema names: the group reversed, then version and kind
/// (`com.example.v1.Widget`; the core group is `io.k8s.api.core`).
fn schema_name(kind: &Kind, version: &str) -> String {
    let group = if kind.group.is_empty() {
        "io.k8s.api.core".to_owned()
    } else {
        kind.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{group}.{version}.{}", kind.names.kind)
}

fn gvk(kind: &Kind, version: &str) -> Value {
    json!({"group": kind.group, "version": version, "kind": kind.names.kind})
}

/// The kind's schema with `apiVersion`, `kind` and `metadata` declared (as Kubernetes
/// publishes CRD schemas) and tagged with its group/version/kind.
fn kind_schema(kind: &Kind, version: &KindVersion) -> Value {
    let mut schema = version.schema().openapi_schema().clone();
    if let Value::Object(map) = &mut schema {
        map.entry("type").or_insert_with(|| json!("object"));
        let properties = map
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(properties) = properties {
            properties.entry("apiVersion").or_insert_with(|| {
                json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."})
            });
            properties.entry("kind").or_insert_with(|| {
                json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."})
            });
            properties.entry("metadata").or_insert_with(
                || json!({"type": "object", "description": "Standard object's metadata."}),
            );
        }
        map.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([gvk(kind, &version.name)]),
        );
    }
    schema
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
           "schema": {"type": "string", "uniqueItems": true}})
}

/// The parameters of writes: what kubectl looks for before sending them.
fn write_params() -> Vec<Value> {
    vec![
        query_param(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ),
        query_param(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query_param(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict.",
        ),
    ]
}

fn operation(kind: &Kind, version: &str, action: &str, params: Vec<Value>) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{}", schema_name(kind, version))});
    let mut op = json!({
        "operationId": format!("{action}{}", kind.names.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind, version),
    });
    match action {
        "patch" => {
            let body = json!({"schema": {"type": "object"}});
            op["requestBody"] = json!({"content": {
                "application/json-patch+json": body,
                "application/merge-patch+json": body,
                "application/apply-patch+yaml": body,
            }, "required": true});
        }
        "post" | "put" => {
            op["requestBody"] =
                json!({"content": {"application/json": {"schema": reference}}, "required": true});
        }
        _ => {}
    }
    op
}

fn add_paths(paths: &mut Map<String, Value>, kind: &Kind, version: &KindVersion) {
    let v = version.name.as_str();
    let base = format!("/{}", gv_path(&kind.group, v));
    let plural = &kind.names.plural;
    let collection = if kind.scope.is_namespaced() {
        paths.insert(
            format!("{base}/{plural}"),
            json!({"get": operation(kind, v, "list", Vec::new())}),
        );
        format!("{base}/namespaces/{{namespace}}/{plural}")
    } else {
        format!("{base}/{plural}")
    };
    paths.insert(
        collection.clone(),
        json!({
            "get": operation(kind, v, "list", Vec::new()),
            "post": operation(kind, v, "post", write_params()),
        }),
    );
    let mut patch_params = write_params();
    patch_params.push(query_param(
        "force",
        "Force is going to \"force\" Apply requests.",
    ));
    let item = json!({
        "get": operation(kind, v, "get", Vec::new()),
        "put": operation(kind, v, "put", write_params()),
        "patch": operation(kind, v, "patch", patch_params.clone()),
        "delete": operation(kind, v, "delete", Vec::new()),
    });
    paths.insert(format!("{collection}/{{name}}"), item);
    if version.subresources.status {
        paths.insert(
            format!("{collection}/{{name}}/status"),
            json!({
                "get": operation(kind, v, "get", Vec::new()),
                "put": operation(kind, v, "put", write_params()),
                "patch": operation(kind, v, "patch", patch_params),
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stead_api::KindRegistry;

    #[test]
    fn schema_names_reverse_the_group_like_kubernetes() {
        let registry = KindRegistry::with_builtins().unwrap_or_default();
        let names: Vec<String> = registry
            .kinds()
            .map(|k| schema_name(k, &k.versions[0].name))
            .collect();
        assert!(
            names.contains(&"io.k8s.api.core.v1.Namespace".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"dev.stead.v1.Lease".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"io.k8s.apiextensions.v1.CustomResourceDefinition".to_owned()),
            "{names:?}"
        );
    }

    #[test]
    fn patch_operations_carry_the_kind_and_the_field_validation_parameter() {
        let registry = KindRegistry::with_builtins().unwrap_or_default();
        let lease = registry.kind("stead.dev", "Lease").cloned();
        let Some(lease) = lease else {
            panic!("no Lease kind");
        };
        let mut paths = Map::new();
        add_paths(&mut paths, &lease, &lease.versions[0]);
        let patch = &paths["/apis/stead.dev/v1/namespaces/{namespace}/leases/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "stead.dev", "version": "v1", "kind": "Lease"})
        );
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(params.contains(&"fieldValidation"), "{params:?}");
        let content = &patch["requestBody"]["content"];
        assert!(
            content
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
        let schema = kind_schema(&lease, &lease.versions[0]);
        assert_eq!(schema["properties"]["kind"]["type"], "string");
        assert_eq!(
            schema["x-kubernetes-group-version-kind"][0]["kind"],
            "Lease"
        );
    }
}
