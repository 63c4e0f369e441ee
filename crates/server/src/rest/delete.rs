//! DELETE with Kubernetes' `DeleteOptions` (body or query): preconditions and how the
//! object's dependents are treated.
//!
//! ```text
//!  preconditions {uid, resourceVersion} ─► 409 Conflict when the stored object differs
//!  propagationPolicy
//!    Background (default) ─► delete now; the garbage collector removes dependents after
//!    Foreground           ─► mark with the `foregroundDeletion` finalizer; the collector
//!                            deletes the dependents, then the object
//!    Orphan               ─► mark with the `orphan` finalizer; the collector removes the
//!                            owner reference from the dependents, then deletes the object
//! ```
//!
//! A Namespace is marked `Terminating` instead; the collector empties it, then deletes it.

use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use stead_api::DynamicObject;
use stead_api::lifecycle::{WriteOutcome, prepare_delete};

use super::handlers::{DEFAULT_NAMESPACE, Plan, now, write_loop};
use super::status::ApiError;
use super::target::Target;
use super::{Query, RestApi};

/// The finalizer that deletes an object's dependents before it (`Foreground`).
pub(crate) const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that releases an object's dependents before it goes (`Orphan`).
pub(crate) const ORPHAN: &str = "orphan";

/// How dependents are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub(crate) enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

/// The parts of `DeleteOptions` that stead acts on.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    propagation_policy: Option<Propagation>,
    /// The older form of `propagationPolicy: Orphan`.
    orphan_dependents: Option<bool>,
    preconditions: Option<Preconditions>,
}

fn options(query: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut options: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the DeleteOptions are not valid: {e}")))?
    };
    match query.get("propagationPolicy") {
        "" => {}
        text => {
            options.propagation_policy = Some(
                serde_json::from_value(Value::String(text.to_owned())).map_err(|_| {
                    ApiError::bad_request(format!(
                        "propagationPolicy {text:?} is not one of Background, Foreground, Orphan"
                    ))
                })?,
            );
        }
    }
    if query.flag("orphanDependents") {
        options.orphan_dependents = Some(true);
    }
    if options.orphan_dependents == Some(true) && options.propagation_policy.is_none() {
        options.propagation_policy = Some(Propagation::Orphan);
    }
    Ok(options)
}

fn check_preconditions(
    target: &Target,
    stored: &DynamicObject,
    preconditions: Option<&Preconditions>,
) -> Result<(), ApiError> {
    let Some(pre) = preconditions else {
        return Ok(());
    };
    let failed = |what: &str, wanted: &str, found: &str| {
        ApiError::precondition_failed(
            &target.subject(),
            &format!("{what} in precondition: {wanted}, {what} in object meta: {found}"),
        )
    };
    if let Some(uid) = pre.uid.as_deref()
        && uid != stored.uid()
    {
        return Err(failed("UID", uid, stored.uid()));
    }
    if let Some(rv) = pre.resource_version.as_deref()
        && rv != stored.resource_version()
    {
        return Err(failed("ResourceVersion", rv, stored.resource_version()));
    }
    Ok(())
}

/// Marks an object for deletion behind `finalizer` (added first, so the collector runs it).
fn mark_with(stored: &DynamicObject, finalizer: &str) -> WriteOutcome {
    let mut marked = stored.clone();
    let mut finalizers: Vec<Value> = stored
        .finalizers()
        .iter()
        .map(|f| Value::from(*f))
        .collect();
    if !stored.finalizers().contains(&finalizer) {
        finalizers.push(Value::from(finalizer));
    }
    marked
        .metadata_map_mut()
        .insert("finalizers".into(), Value::Array(finalizers));
    match prepare_delete(&marked, now()) {
        // Already being deleted: the new finalizer still takes effect.
        WriteOutcome::Unchanged if !stored.finalizers().contains(&finalizer) => {
            WriteOutcome::Write(marked)
        }
        outcome => outcome,
    }
}

/// A deleted Namespace is marked `Terminating`; the garbage collector deletes what it holds
/// and then the Namespace itself.
fn terminate_namespace(stored: &DynamicObject) -> WriteOutcome {
    if stored.deletion_timestamp().is_some() {
        return WriteOutcome::Unchanged;
    }
    let mut marked = stored.clone();
    marked.set_meta_str(
        "deletionTimestamp",
        &now().truncated_to_seconds().to_string(),
    );
    marked.set_status(Some(serde_json::json!({"phase": "Terminating"})));
    WriteOutcome::Write(marked)
}

/// `DELETE` on an object.
pub(crate) async fn delete(
    api: &RestApi,
    target: &Target,
    query: &Query,
    body: &[u8],
) -> Result<Response, ApiError> {
    if target.status {
        return Err(ApiError::method_not_allowed(
            "DELETE is not supported on /status",
        ));
    }
    let options = options(query, body)?;
    let name = target.name.clone().unwrap_or_default();
    let namespace = target.is_namespace_kind();
    write_loop(api, target, &name, |stored| {
        let stored = stored.ok_or_else(|| ApiError::not_found(&target.subject()))?;
        check_preconditions(target, &stored.object, options.preconditions.as_ref())?;
        if namespace && name == DEFAULT_NAMESPACE {
            return Err(ApiError::forbidden(
                &target.subject(),
                "this namespace may not be deleted",
            ));
        }
        if namespace {
            return Ok(Plan::Outcome(terminate_namespace(&stored.object)));
        }
        Ok(Plan::Outcome(
            match options.propagation_policy.unwrap_or_default() {
                Propagation::Background => prepare_delete(&stored.object, now()),
                Propagation::Foreground => mark_with(&stored.object, FOREGROUND),
                Propagation::Orphan => mark_with(&stored.object, ORPHAN),
            },
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_the_body_or_the_query() {
        let q = Query::parse(Some("propagationPolicy=Orphan"));
        assert_eq!(
            options(&q, b"").map(|o| o.propagation_policy).ok(),
            Some(Some(Propagation::Orphan))
        );
        let body = br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground",
                        "preconditions":{"uid":"u1"}}"#;
        let o = options(&Query::parse(None), body).ok();
        assert_eq!(
            o.as_ref().and_then(|o| o.propagation_policy),
            Some(Propagation::Foreground)
        );
        assert_eq!(
            o.and_then(|o| o.preconditions)
                .and_then(|p| p.uid)
                .as_deref(),
            Some("u1")
        );
        let legacy = options(&Query::parse(Some("orphanDependents=true")), b"").ok();
        assert_eq!(
            legacy.and_then(|o| o.propagation_policy),
            Some(Propagation::Orphan)
        );
        assert!(options(&Query::parse(Some("propagationPolicy=Later")), b"").is_err());
        assert!(options(&Query::parse(None), b"{not json").is_err());
    }
}
