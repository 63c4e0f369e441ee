//! The `ProcessSet` controller: keeps one child `Process` per replica and reports how many
//! run.
//!
//! ```text
//!  children = Process objects controlled by this set (owner uid)
//!  missing <set>-<i> (i < replicas)        ─► create, owned by the set
//!  extra (i >= replicas) or outdated spec  ─► delete (its finalizer stops the process)
//!  status: replicas, readyReplicas, restarts, observedGeneration, Ready condition
//! ```
//!
//! Deleting a set waits (a finalizer) until every child and so every process is gone.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;
use stead_api::kinds::{
    Condition, Process, ProcessPhase, ProcessSet, ProcessSetStatus, ProcessStatus,
};
use stead_api::{DynamicObject, ObjectMeta, OwnerReference, Resource, Timestamp};

use super::{DemoError, events, process};
use crate::Action;
use crate::client::{ApiResource, Client, Deleted};
use crate::finalizer::{Event, finalizer};
use crate::reflector::Store;

/// The finalizer that removes the children first.
pub const FINALIZER: &str = "stead.dev/stop-processes";
const CONTROLLER: &str = "processset-controller";

/// Where `ProcessSet` objects live.
pub fn resource() -> ApiResource {
    ApiResource::new(
        ProcessSet::GROUP,
        ProcessSet::VERSION,
        ProcessSet::KIND,
        ProcessSet::PLURAL,
        true,
    )
}

/// What the set reconciler needs: the client and the cache of `Process` objects.
pub struct Context<C> {
    pub client: C,
    pub processes: Store,
}

/// The children a set controls, from the cache.
fn children(processes: &Store, set: &DynamicObject) -> Vec<Arc<DynamicObject>> {
    processes
        .state()
        .into_iter()
        .filter(|p| p.namespace() == set.namespace())
        .filter(|p| {
            p.metadata()
                .is_ok_and(|m| m.controller_owner().is_some_and(|o| o.uid == set.uid()))
        })
        .collect()
}

/// Reconciles one `ProcessSet`.
pub async fn reconcile<C: Client>(
    object: Arc<DynamicObject>,
    ctx: Arc<Context<C>>,
) -> Result<Action, DemoError> {
    finalizer(&ctx.client, &resource(), FINALIZER, object, |event| async {
        match event {
            Event::Apply(set) => apply(&ctx, &set).await,
            Event::Cleanup(set) => cleanup(&ctx, &set).await,
        }
    })
    .await
    .map_err(DemoError::from)
}

async fn cleanup<C: Client>(ctx: &Context<C>, set: &DynamicObject) -> Result<Action, DemoError> {
    let children = children(&ctx.processes, set);
    if children.is_empty() {
        return Ok(Action::await_change());
    }
    for child in &children {
        delete_child(ctx, child).await?;
    }
    // The finalizer stays until the cache shows no child left.
    Err(DemoError::Waiting(format!(
        "{} processes still stopping",
        children.len()
    )))
}

async fn delete_child<C: Client>(ctx: &Context<C>, child: &DynamicObject) -> Result<(), DemoError> {
    if child.deletion_timestamp().is_some() {
        return Ok(());
    }
    match ctx
        .client
        .delete(&process::resource(), child.namespace(), child.name())
        .await
    {
        Ok(Deleted::Gone(_) | Deleted::Pending(_)) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn child_object(
    set: &DynamicObject,
    spec: &ProcessSet,
    index: i32,
) -> Result<DynamicObject, DemoError> {
    let name = format!("{}-{index}", set.name());
    let mut meta = ObjectMeta::namespaced(set.namespace().unwrap_or("default"), name)
        .with_label("stead.dev/processset", set.name());
    meta.owner_references = vec![OwnerReference {
        api_version: set.api_version().to_owned(),
        kind: set.kind().to_owned(),
        name: set.name().to_owned(),
        uid: set.uid().to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }];
    let process = Process {
        types: Process::type_meta(),
        metadata: meta,
        spec: spec.spec.template.clone(),
        status: None,
    };
    Ok(DynamicObject::from_resource(&process)?)
}

async fn apply<C: Client>(ctx: &Context<C>, set: &DynamicObject) -> Result<Action, DemoError> {
    let spec: ProcessSet = set.to_resource()?;
    let replicas = spec.spec.replicas.max(0);
    let children = children(&ctx.processes, set);
    let wanted: Vec<String> = (0..replicas)
        .map(|i| format!("{}-{i}", set.name()))
        .collect();
    let mut live: Vec<(Arc<DynamicObject>, ProcessStatus)> = Vec::new();
    for child in &children {
        let process: Process = child.to_resource()?;
        let outdated = process.spec != spec.spec.template;
        if !wanted.iter().any(|w| w == child.name()) || outdated {
            if child.deletion_timestamp().is_none() {
                let why = if outdated {
                    "its spec changed"
                } else {
                    "scaled down"
                };
                events::record(
                    &ctx.client,
                    CONTROLLER,
                    set,
                    false,
                    "Deleting",
                    format!("deleting process {} ({why})", child.name()),
                )
                .await;
            }
            delete_child(ctx, child).await?;
            continue;
        }
        live.push((child.clone(), process.status.unwrap_or_default()));
    }
    for (index, name) in wanted.iter().enumerate() {
        if children.iter().any(|c| c.name() == name) {
            continue;
        }
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        match ctx
            .client
            .create(&process::resource(), &child_object(set, &spec, index)?)
            .await
        {
            Ok(_) => {
                events::record(
                    &ctx.client,
                    CONTROLLER,
                    set,
                    false,
                    "Created",
                    format!("created process {name}"),
                )
                .await;
            }
            // The cache is behind a create of a moment ago.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let ready = live
        .iter()
        .filter(|(_, s)| s.phase == ProcessPhase::Running)
        .count();
    let mut status = ProcessSetStatus {
        observed_generation: set.generation(),
        replicas: i32::try_from(live.len()).unwrap_or(i32::MAX),
        ready_replicas: i32::try_from(ready).unwrap_or(i32::MAX),
        restarts: live.iter().map(|(_, s)| s.restarts).sum(),
        conditions: Vec::new(),
    };
    let all_ready = status.ready_replicas == replicas && status.replicas == replicas;
    let previous: Option<ProcessSetStatus> = spec.status.clone();
    let old_condition = previous
        .as_ref()
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == "Ready").cloned());
    let state = if all_ready { "True" } else { "False" };
    let condition = match old_condition {
        Some(c) if c.status == state => c,
        _ => Condition {
            type_: "Ready".into(),
            status: state.into(),
            reason: if all_ready {
                "AllRunning"
            } else {
                "NotAllRunning"
            }
            .into(),
            message: format!("{} of {replicas} processes running", status.ready_replicas),
            last_transition_time: Some(Timestamp::from_system_time(SystemTime::now())),
        },
    };
    status.conditions = vec![Condition {
        message: format!("{} of {replicas} processes running", status.ready_replicas),
        ..condition
    }];
    if previous.as_ref() != Some(&status) {
        let patch = crate::client::Patch::Merge(json!({ "status": status }));
        ctx.client
            .patch(
                &resource(),
                set.namespace(),
                set.name(),
                &patch,
                &crate::client::PatchParams::default(),
                true,
            )
            .await?;
    }
    Ok(Action::await_change())
}
