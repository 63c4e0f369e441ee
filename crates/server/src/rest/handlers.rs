//! Dispatch of `/apis/...` requests and the write paths (create, update, delete, `/status`;
//! PATCH is in [`super::patch`]).
//!
//! Every write reads the object, computes the new state with [`stead_api::lifecycle`] and
//! writes it with a Txn on the `mod_revision` it read; when another write got in between,
//! the whole step is retried (an explicit `resourceVersion` then yields 409 Conflict).

use std::time::SystemTime;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use stead_api::apply::{ApplyError, FieldScope, UpdateOptions};
use stead_api::lifecycle::{
    IdGenerator, LifecycleError, WriteOutcome, prepare_create, prepare_status_update,
    prepare_update,
};
use stead_api::{CustomResourceDefinition, DynamicObject, FieldIssue, Timestamp};

use super::status::{ApiError, Subject};
use super::storage::{self, Stored};
use super::target::{Target, resolve};
use super::{Query, RestApi, delete, discovery, list, patch, protobuf, scale, table, watch};

/// The namespace that always exists.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

/// Attempts of a read-compute-write step before giving up on a hot key.
const WRITE_ATTEMPTS: usize = 16;

/// Every request under `/apis/`.
pub(crate) async fn handle(
    State(api): State<RestApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let query = Query::parse(uri.query());
    match dispatch(&api, &method, uri.path(), &query, &headers, &body).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// Reads a request body of at most [`super::MAX_BODY`] bytes. A larger one is read on (and
/// dropped) up to [`super::DRAIN_LIMIT`] before the 413 answer, so that the client, still
/// sending, gets the answer rather than a reset connection.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let mut body = std::pin::pin!(body);
    let mut buffer = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total <= super::MAX_BODY {
            buffer.extend_from_slice(&data);
        } else if total > super::DRAIN_LIMIT {
            break;
        }
    }
    if total > super::MAX_BODY {
        return Err(ApiError::body_too_large(super::MAX_BODY));
    }
    Ok(Bytes::from(buffer))
}

async fn dispatch(
    api: &RestApi,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    if method == Method::GET
        && let Some(answer) = discovery::discover(api, path, headers)
    {
        return answer;
    }
    let target = resolve(api, path).await?;
    let named = target.name.is_some();
    // The default namespace appears on first use: a create anywhere, or a look at namespaces.
    if method == Method::POST || method == Method::PATCH || target.is_namespace_kind() {
        api.ensure_default_namespace().await?;
    }
    if target.scale {
        return scale::scale(api, &target, method, query, headers, body).await;
    }
    match (method.as_str(), named) {
        ("GET", false) if query.flag("watch") => {
            watch::watch(api, &target, query, table::wanted(headers)).await
        }
        ("GET", false) => list::list(api, &target, query, table::wanted(headers)).await,
        ("GET", true) => get(api, &target, table::wanted(headers)).await,
        ("POST", false) => create(api, &target, query, headers, body).await,
        ("PUT", true) => update(api, &target, query, headers, body).await,
        ("PATCH", true) => patch::patch(api, &target, query, headers, body).await,
        ("DELETE", true) => delete::delete(api, &target, query, body).await,
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {path}"
        ))),
    }
}

pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

pub(crate) fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Random uids (UUID v4 form) and generateName suffixes.
pub(crate) struct RandomIds;

impl IdGenerator for RandomIds {
    fn uid(&mut self) -> String {
        let b: [u8; 16] = rand::random();
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-4{}-{:x}{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[13..16],
            8 | (b[8] & 3),
            &hex[17..20],
            &hex[20..]
        )
    }

    fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5)
            .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
            .collect()
    }
}

/// The field manager of a non-apply write: `fieldManager`, else the user agent's product.
pub(crate) fn manager(query: &Query, headers: &HeaderMap) -> String {
    let given = query.get("fieldManager");
    if !given.is_empty() {
        return given.to_owned();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<DynamicObject, ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim();
    let value: Value = if media == protobuf::MEDIA_TYPE {
        protobuf::decode(body)?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))?
    };
    DynamicObject::from_value(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Defaults `apiVersion`, `kind` and `namespace` from the URL; a different namespace or name
/// than the URL's is a bad request.
pub(crate) fn fill_from_url(target: &Target, object: &mut DynamicObject) -> Result<(), ApiError> {
    if object.api_version().is_empty() {
        object
            .as_map_mut()
            .insert("apiVersion".into(), Value::from(target.api_version()));
    }
    if object.kind().is_empty() {
        object
            .as_map_mut()
            .insert("kind".into(), Value::from(target.kind.names.kind.clone()));
    }
    if let Some(ns) = &target.namespace {
        match object.namespace() {
            None | Some("") => object.set_meta_str("namespace", ns),
            Some(sent) if sent != ns => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({sent}) does not match the namespace sent on the request ({ns})"
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(name) = &target.name {
        if object.name().is_empty() {
            object.set_meta_str("name", name);
        } else if object.name() != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object.name()
            )));
        }
    }
    Ok(())
}

pub(crate) fn lifecycle_error(target: &Target, name: &str, e: &LifecycleError) -> ApiError {
    let subject = Subject {
        name: name.to_owned(),
        ..target.subject()
    };
    ApiError::invalid(&subject, &target.kind.names.kind, &[e.to_issue()])
}

pub(crate) fn apply_error(target: &Target, e: ApplyError) -> ApiError {
    match e {
        ApplyError::Conflicts { .. } => ApiError::apply_conflict(&target.subject(), e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    }
}

pub(crate) fn scope(target: &Target) -> FieldScope {
    if target.status {
        FieldScope::Status
    } else {
        FieldScope::MainResource {
            status_subresource: target.version.subresources.status,
        }
    }
}

/// Records the writer's fields in `metadata.managedFields`.
fn track(
    target: &Target,
    live: Option<&DynamicObject>,
    object: DynamicObject,
    manager: &str,
) -> Result<DynamicObject, ApiError> {
    let mut value = object.into_value();
    let live = live.map(DynamicObject::to_value);
    let opts = UpdateOptions {
        manager,
        scope: scope(target),
        now: now(),
    };
    stead_api::apply::track_update(live.as_ref(), &mut value, &opts)
        .map_err(|e| apply_error(target, e))?;
    DynamicObject::from_value(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Prunes undeclared fields and fills schema defaults, as Kubernetes does for structural
/// schemas — before the no-op check, so that re-sending what was stored changes nothing.
/// With `fieldValidation=Strict`, an undeclared field is 422 Invalid instead.
pub(crate) fn normalize(
    target: &Target,
    object: &mut DynamicObject,
    strict: bool,
) -> Result<(), ApiError> {
    let pruned = target.version.normalize(object);
    if strict && !pruned.is_empty() {
        let issues: Vec<FieldIssue> = pruned
            .into_iter()
            .map(|path| FieldIssue::new(path, "unknown", "field not declared in schema"))
            .collect();
        let subject = Subject {
            name: object.name().to_owned(),
            ..target.subject()
        };
        return Err(ApiError::invalid(
            &subject,
            &target.kind.names.kind,
            &issues,
        ));
    }
    Ok(())
}

/// `fieldValidation=Strict`.
pub(crate) fn strict(query: &Query) -> bool {
    query.get("fieldValidation") == "Strict"
}

/// What a write step decided.
pub(crate) enum Plan {
    Create(DynamicObject),
    Outcome(WriteOutcome),
}

/// Validates and, for CRDs, checks that the kind can be served; a new CRD is marked
/// established.
fn check(
    api: &RestApi,
    target: &Target,
    object: &mut DynamicObject,
    creating: bool,
) -> Result<(), ApiError> {
    let subject = Subject {
        name: object.name().to_owned(),
        ..target.subject()
    };
    let kind = &target.kind.names.kind;
    if creating && target.is_namespace_kind() {
        // A new Namespace is Active, as Kubernetes' namespace strategy makes it.
        object.set_status(Some(serde_json::json!({"phase": "Active"})));
    }
    target
        .kind
        .validate(&target.version, object)
        .map_err(|e| ApiError::invalid(&subject, kind, &e.issues))?;
    if target.is_crd() {
        let invalid = |message: String| {
            ApiError::invalid(
                &subject,
                kind,
                &[FieldIssue::new("spec", "invalid", message)],
            )
        };
        let crd = CustomResourceDefinition::from_value(&object.to_value())
            .map_err(|e| invalid(e.to_string()))?;
        let issues = crd.validate();
        if !issues.is_empty() {
            return Err(ApiError::invalid(&subject, kind, &issues));
        }
        // Registering on a copy finds conversion errors and clashes with served kinds
        // before anything is written.
        let mut trial = api.registry().clone();
        trial
            .register_crd(&crd)
            .map_err(|e| invalid(e.to_string()))?;
        if creating {
            let status = serde_json::to_value(crd.established_status(now()))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            object.set_status(Some(status));
        }
    }
    Ok(())
}

/// Serves (or stops serving) the kind of a CRD that was just written or deleted.
fn after_crd_write(api: &RestApi, object: &DynamicObject, deleted: bool) {
    if deleted {
        api.registry_mut().unregister_crd(object.name());
    } else {
        api.register_crd_object(&object.to_value(), object.name());
    }
}

/// Reads, plans and writes `name` until the guarded write lands.
pub(crate) async fn write_loop(
    api: &RestApi,
    target: &Target,
    name: &str,
    mut plan: impl FnMut(Option<&Stored>) -> Result<Plan, ApiError>,
) -> Result<Response, ApiError> {
    let key = target.key(name);
    for _ in 0..WRITE_ATTEMPTS {
        let stored = storage::get(&api.store, &key).await?;
        let (code, object, expected) = match plan(stored.as_ref())? {
            Plan::Create(mut object) => {
                check(api, target, &mut object, true)?;
                check_namespace(api, target, object.name()).await?;
                (StatusCode::CREATED, object, 0)
            }
            Plan::Outcome(WriteOutcome::Unchanged) => {
                let Some(stored) = stored else {
                    return Err(ApiError::not_found(&target.subject()));
                };
                return Ok(json_response(StatusCode::OK, &stored.object.to_value()));
            }
            Plan::Outcome(WriteOutcome::Write(mut object)) => {
                check(api, target, &mut object, false)?;
                (StatusCode::OK, object, stored.map_or(0, |s| s.mod_revision))
            }
            Plan::Outcome(WriteOutcome::Delete(object)) => {
                let expected = stored.map_or(0, |s| s.mod_revision);
                if storage::delete_if(&api.store, &key, expected).await? {
                    if target.is_crd() {
                        after_crd_write(api, &object, true);
                    }
                    return Ok(json_response(StatusCode::OK, &object.to_value()));
                }
                continue;
            }
        };
        if let Some(written) = storage::put_if(&api.store, &key, expected, object).await? {
            if target.is_crd() {
                after_crd_write(api, &written, false);
            }
            return Ok(json_response(code, &written.to_value()));
        }
        // The key changed since it was read (for a create: someone created it). Plan again
        // from the new state: a POST then answers AlreadyExists, an apply updates.
    }
    Err(ApiError::conflict(&target.subject()))
}

async fn get(api: &RestApi, target: &Target, as_table: bool) -> Result<Response, ApiError> {
    let name = target.name.as_deref().unwrap_or_default();
    let Some(stored) = storage::get(&api.store, &target.key(name)).await? else {
        return Err(ApiError::not_found(&target.subject()));
    };
    if as_table {
        let rv = stored.object.resource_version().to_owned();
        let body = table::table(target, &[stored.object], &rv, true, now());
        return Ok(json_response(StatusCode::OK, &body));
    }
    Ok(json_response(StatusCode::OK, &stored.object.to_value()))
}

async fn create(
    api: &RestApi,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let mut object = decode_body(headers, body)?;
    fill_from_url(target, &mut object)?;
    normalize(target, &mut object, strict(query))?;
    let created = prepare_create(object, &target.rules(), now(), &mut RandomIds)
        .map_err(|e| lifecycle_error(target, "", &e))?;
    let created = track(target, None, created, &manager(query, headers))?;
    let name = created.name().to_owned();
    write_loop(api, target, &name, |stored| match stored {
        Some(_) => Err(ApiError::already_exists(&Subject {
            name: name.clone(),
            ..target.subject()
        })),
        None => Ok(Plan::Create(created.clone())),
    })
    .await
}

/// The update of `stored` to `new` (main resource or `/status`), after the optimistic
/// concurrency check on a resourceVersion the client sent.
pub(crate) fn plan_update(
    target: &Target,
    stored: &Stored,
    mut new: DynamicObject,
    manager: &str,
    strict: bool,
) -> Result<Plan, ApiError> {
    normalize(target, &mut new, strict)?;
    let sent = new.resource_version();
    if !sent.is_empty() && sent != stored.mod_revision.to_string() {
        return Err(ApiError::conflict(&target.subject()));
    }
    let new = track(target, Some(&stored.object), new, manager)?;
    let rules = target.rules();
    let outcome = if target.status {
        prepare_status_update(&stored.object, &new, &rules)
    } else {
        prepare_update(&stored.object, new, &rules)
    };
    outcome
        .map(Plan::Outcome)
        .map_err(|e| lifecycle_error(target, stored.object.name(), &e))
}

async fn update(
    api: &RestApi,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let mut object = decode_body(headers, body)?;
    fill_from_url(target, &mut object)?;
    let manager = manager(query, headers);
    let name = target.name.clone().unwrap_or_default();
    write_loop(api, target, &name, |stored| {
        let stored = stored.ok_or_else(|| ApiError::not_found(&target.subject()))?;
        plan_update(target, stored, object.clone(), &manager, strict(query))
    })
    .await
}

/// New namespaced objects need their Namespace, and not a terminating one.
async fn check_namespace(api: &RestApi, target: &Target, name: &str) -> Result<(), ApiError> {
    let Some(namespace) = target.namespace.as_deref() else {
        return Ok(());
    };
    if namespace == DEFAULT_NAMESPACE {
        // Always there: created at start-up and never deleted.
        return Ok(());
    }
    let key = format!("{}{namespace}", super::gc::namespaces_prefix());
    match storage::get(&api.store, &key).await? {
        None => Err(ApiError::not_found(&Subject {
            group: String::new(),
            resource: "namespaces".into(),
            name: namespace.to_owned(),
        })),
        Some(ns) if ns.object.deletion_timestamp().is_some() => Err(ApiError::forbidden(
            &Subject {
                name: name.to_owned(),
                ..target.subject()
            },
            &format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_uids_look_like_uuid_v4() {
        let uid = RandomIds.uid();
        let parts: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{uid}");
        assert_eq!(uid.as_bytes()[14], b'4');
        assert_eq!(RandomIds.name_suffix().len(), 5);
    }
}
