//! PATCH: JSON merge patch, JSON patch and server-side apply (`application/apply-patch+yaml`
//! with `fieldManager`); strategic merge patch for the core kinds (kubectl sends it for the
//! Go types it knows), 415 Unsupported Media Type for every other kind.

use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::Value;
use stead_api::DynamicObject;
use stead_api::apply::ApplyOptions;
use stead_api::lifecycle::{prepare_create, prepare_status_update, prepare_update};
use stead_api::patch::{
    apply_json_patch, apply_merge_patch, apply_strategic_merge_patch, object_meta_lists,
    parse_json_patch,
};

use super::handlers::{
    Plan, RandomIds, apply_error, fill_from_url, lifecycle_error, manager, normalize, now,
    plan_update, scope, strict, write_loop,
};
use super::status::ApiError;
use super::storage::Stored;
use super::target::Target;
use super::{Query, RestApi};

/// The patch formats.
enum PatchKind {
    Merge(Value),
    Strategic(Value),
    Json(Vec<stead_api::patch::PatchOperation>),
    Apply(Value),
}

fn parse_patch(target: &Target, headers: &HeaderMap, body: &[u8]) -> Result<PatchKind, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let json = || -> Result<Value, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the patch is not JSON: {e}")))
    };
    match media {
        "application/merge-patch+json" => Ok(PatchKind::Merge(json()?)),
        "application/strategic-merge-patch+json" if target.kind.group.is_empty() => {
            Ok(PatchKind::Strategic(json()?))
        }
        "application/json-patch+json" => parse_json_patch(&json()?)
            .map(PatchKind::Json)
            .map_err(|e| ApiError::bad_request(e.to_string())),
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the applied configuration is not UTF-8"))?;
            let docs = stead_api::yaml::load_documents("request", text)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            match <[_; 1]>::try_from(docs) {
                Ok([doc]) => Ok(PatchKind::Apply(doc.value)),
                Err(_) => Err(ApiError::bad_request(
                    "an applied configuration must be exactly one YAML document",
                )),
            }
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

pub(crate) async fn patch(
    api: &RestApi,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let patch = parse_patch(target, headers, body)?;
    let name = target.name.clone().unwrap_or_default();
    let manager = manager(query, headers);
    let force = query.flag("force");
    write_loop(api, target, &name, |stored| {
        let patched = match (&patch, stored) {
            (PatchKind::Apply(applied), stored) => {
                let manager = query.get("fieldManager");
                return plan_apply(target, stored, applied, manager, force, strict(query));
            }
            (_, None) => return Err(ApiError::not_found(&target.subject())),
            (PatchKind::Merge(p), Some(s)) => apply_merge_patch(&s.object.to_value(), p),
            // The core kinds have no merge-keyed lists beyond ObjectMeta's.
            (PatchKind::Strategic(p), Some(s)) => {
                apply_strategic_merge_patch(&s.object.to_value(), p, &object_meta_lists)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            (PatchKind::Json(ops), Some(s)) => apply_json_patch(&s.object.to_value(), ops)
                .map_err(|e| {
                    let mut err = ApiError::bad_request(e.to_string());
                    err.code = 422;
                    err.reason = "Invalid";
                    err
                })?,
        };
        let Some(stored) = stored else {
            return Err(ApiError::not_found(&target.subject()));
        };
        let object =
            DynamicObject::from_value(patched).map_err(|e| ApiError::bad_request(e.to_string()))?;
        plan_update(target, stored, object, &manager, strict(query))
    })
    .await
}

/// Server-side apply: merges the configuration as `manager`; creates the object if needed.
fn plan_apply(
    target: &Target,
    stored: Option<&Stored>,
    applied: &Value,
    manager: &str,
    force: bool,
    strict: bool,
) -> Result<Plan, ApiError> {
    let mut config = DynamicObject::from_value(applied.clone())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    fill_from_url(target, &mut config)?;
    let opts = ApplyOptions {
        manager,
        force,
        scope: scope(target),
        now: now(),
    };
    let live = stored.map(|s| s.object.to_value());
    let merged = stead_api::apply::server_side_apply(live.as_ref(), &config.to_value(), &opts)
        .map_err(|e| apply_error(target, e))?;
    let mut merged =
        DynamicObject::from_value(merged).map_err(|e| ApiError::bad_request(e.to_string()))?;
    normalize(target, &mut merged, strict)?;
    let rules = target.rules();
    let name = config.name().to_owned();
    match stored {
        None if target.status => Err(ApiError::not_found(&target.subject())),
        None => prepare_create(merged, &rules, now(), &mut RandomIds)
            .map(Plan::Create)
            .map_err(|e| lifecycle_error(target, &name, &e)),
        Some(stored) if target.status => prepare_status_update(&stored.object, &merged, &rules)
            .map(Plan::Outcome)
            .map_err(|e| lifecycle_error(target, &name, &e)),
        Some(stored) => prepare_update(&stored.object, merged, &rules)
            .map(Plan::Outcome)
            .map_err(|e| lifecycle_error(target, &name, &e)),
    }
}
