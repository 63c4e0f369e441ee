//! The `/scale` subresource: an `autoscaling/v1` Scale view of a kind that declares
//! `subresources.scale`, read from and written to the paths the kind names.
//!
//! ```text
//!  GET   .../widgets/w1/scale  ─► {"kind":"Scale","apiVersion":"autoscaling/v1",
//!                                  "metadata":{name, namespace, uid, resourceVersion, ...},
//!                                  "spec":{"replicas": <specReplicasPath>},
//!                                  "status":{"replicas": <statusReplicasPath>,
//!                                            "selector": <labelSelectorPath>}}
//!  PUT   Scale                 ─► <specReplicasPath> = spec.replicas, an update of the object
//!  PATCH merge / JSON patch    ─► applied to the Scale, then as PUT
//! ```
//!
//! A resourceVersion in the written Scale is checked against the object's, as for any update.

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use stead_api::DynamicObject;
use stead_api::patch::{apply_json_patch, apply_merge_patch, parse_json_patch};
use stead_api::registry::{JsonPath, ScaleSubresource};

use super::handlers::{json_response, manager, plan_update, write_loop};
use super::status::ApiError;
use super::storage::{self, Stored};
use super::target::Target;
use super::{Query, RestApi};

/// GET, PUT or PATCH on `.../<name>/scale`.
pub(crate) async fn scale(
    api: &RestApi,
    target: &Target,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let Some(spec) = target.version.subresources.scale.clone() else {
        return Err(ApiError::not_found(&target.subject()));
    };
    let name = target.name.clone().unwrap_or_default();
    if method == Method::GET {
        let Some(stored) = storage::get(&api.store, &target.key(&name)).await? else {
            return Err(ApiError::not_found(&target.subject()));
        };
        return Ok(json_response(
            StatusCode::OK,
            &to_scale(&spec, &stored.object),
        ));
    }
    let change = match *method {
        Method::PUT => Change::Replace(json_body(body)?),
        Method::PATCH => patch_change(headers, body)?,
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "{method} is not supported on /scale"
            )));
        }
    };
    let manager = manager(query, headers);
    // The update is of the main resource: spec changes, generation follows.
    let main = Target {
        scale: false,
        ..target.clone()
    };
    write_loop(api, &main, &name, |stored| {
        let stored = stored.ok_or_else(|| ApiError::not_found(&target.subject()))?;
        let new = apply_scale(&spec, stored, &change)?;
        plan_update(&main, stored, new, &manager, false)
    })
    .await?;
    // Answer with the Scale of what was written.
    let object = storage::get(&api.store, &target.key(&name))
        .await?
        .ok_or_else(|| ApiError::not_found(&target.subject()))?;
    Ok(json_response(
        StatusCode::OK,
        &to_scale(&spec, &object.object),
    ))
}

/// What a write does to the Scale.
enum Change {
    Replace(Value),
    Merge(Value),
    Json(Vec<stead_api::patch::PatchOperation>),
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))
}

fn patch_change(headers: &HeaderMap, body: &[u8]) -> Result<Change, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match content_type.split(';').next().unwrap_or("").trim() {
        // A Scale has no lists, so a strategic merge patch is a merge patch.
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok(Change::Merge(json_body(body)?))
        }
        "application/json-patch+json" => parse_json_patch(&json_body(body)?)
            .map(Change::Json)
            .map_err(|e| ApiError::bad_request(e.to_string())),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// The object with the replicas of the changed Scale.
fn apply_scale(
    spec: &ScaleSubresource,
    stored: &Stored,
    change: &Change,
) -> Result<DynamicObject, ApiError> {
    let current = to_scale(spec, &stored.object);
    let scale = match change {
        Change::Replace(value) => value.clone(),
        Change::Merge(patch) => apply_merge_patch(&current, patch),
        Change::Json(ops) => {
            apply_json_patch(&current, ops).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
    };
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("spec.replicas of the Scale must be an integer"))?;
    if replicas < 0 {
        return Err(ApiError::bad_request(
            "spec.replicas of the Scale must be greater than or equal to 0",
        ));
    }
    let mut value = stored.object.to_value();
    set_path(&mut value, &spec.spec_replicas_path, Value::from(replicas))?;
    let mut object =
        DynamicObject::from_value(value).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let sent = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    object.set_resource_version(sent);
    Ok(object)
}

/// The `autoscaling/v1` Scale of an object.
fn to_scale(spec: &ScaleSubresource, object: &DynamicObject) -> Value {
    let value = object.to_value();
    let read = |path: &str| {
        JsonPath::parse(path)
            .ok()
            .and_then(|p| p.find(&value).cloned())
    };
    let mut metadata = Map::new();
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = object.metadata_map().and_then(|m| m.get(key)) {
            metadata.insert(key.to_owned(), v.clone());
        }
    }
    let mut status = json!({
        "replicas": read(&spec.status_replicas_path).and_then(|v| v.as_i64()).unwrap_or(0),
    });
    if let Some(selector) = spec
        .label_selector_path
        .as_deref()
        .and_then(read)
        .filter(Value::is_string)
    {
        status["selector"] = selector;
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": read(&spec.spec_replicas_path).and_then(|v| v.as_i64()).unwrap_or(0)},
        "status": status,
    })
}

/// Sets a simple dotted path (`.spec.replicas`), creating objects on the way.
fn set_path(root: &mut Value, path: &str, new: Value) -> Result<(), ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(ApiError::internal(format!(
            "scale path {path:?} is not a field path"
        )));
    }
    let mut node = root;
    for segment in segments {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else {
            return Err(ApiError::internal(format!("scale path {path:?}")));
        };
        node = map.entry(segment.to_owned()).or_insert(Value::Null);
    }
    *node = new;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ScaleSubresource {
        ScaleSubresource {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: Some(".status.selector".into()),
        }
    }

    #[test]
    fn a_scale_reads_replicas_and_selector_from_the_declared_paths() {
        let object = DynamicObject::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default", "resourceVersion": "7",
                         "labels": {"a": "b"}},
            "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=w"}
        }))
        .unwrap_or_default();
        assert_eq!(
            to_scale(&spec(), &object),
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                   "metadata": {"name": "w", "namespace": "default", "resourceVersion": "7"},
                   "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=w"}})
        );
    }

    #[test]
    fn a_written_scale_sets_the_spec_path_and_keeps_the_rest() {
        let object = DynamicObject::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "resourceVersion": "7"}, "spec": {"image": "x"}
        }))
        .unwrap_or_default();
        let stored = Stored {
            object,
            mod_revision: 7,
        };
        let change = Change::Merge(json!({"spec": {"replicas": 5}}));
        let new = apply_scale(&spec(), &stored, &change).map(DynamicObject::into_value);
        assert_eq!(
            new.ok().map(|v| v["spec"].clone()),
            Some(json!({"image": "x", "replicas": 5}))
        );
        let negative = Change::Merge(json!({"spec": {"replicas": -1}}));
        assert!(apply_scale(&spec(), &stored, &negative).is_err());
    }
}
