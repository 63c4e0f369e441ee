//! The process controller: each `Process` object is one real process on this machine.
//!
//! ```text
//!  status.pid + startTicks alive? ── yes ─► phase Running (check again in POLL)
//!        │ no (never started, killed, exited)
//!        ▼
//!  restartPolicy says stop? ── yes ─► phase Succeeded / Failed
//!        │ no
//!        ▼
//!  ran long enough? ── no ─► phase BackOff until nextStartAt (1 s, 2 s, 4 s ... 60 s)
//!        │ yes, or back-off over
//!        ▼
//!  start it, write pid, startTicks, restarts + 1
//! ```
//!
//! A finalizer stops the process before its object goes away. Exits of processes this
//! controller started trigger a reconcile at once; processes adopted from a previous
//! controller are polled.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use stead_api::kinds::{Process, ProcessPhase, ProcessStatus, RestartPolicy};
use stead_api::{DynamicObject, Resource, Timestamp};

use super::supervisor::{Liveness, Started, Supervisor};
use super::{DemoError, events};
use crate::client::{ApiResource, Client};
use crate::finalizer::{Event, finalizer};
use crate::{Action, ObjectRef};

/// The finalizer that stops the process.
pub const FINALIZER: &str = "stead.dev/stop-process";
/// How often a running process is checked (the safety net behind exit notifications).
const POLL: Duration = Duration::from_secs(2);
/// A process that ran at least this long restarts without back-off.
const STABLE_AFTER: i64 = 10;
/// The longest back-off.
const MAX_BACKOFF: i64 = 60;
const CONTROLLER: &str = "process-controller";

/// Where `Process` objects live.
pub fn resource() -> ApiResource {
    ApiResource::new(
        Process::GROUP,
        Process::VERSION,
        Process::KIND,
        Process::PLURAL,
        true,
    )
}

/// What the process reconciler needs.
pub struct Context<C> {
    pub client: C,
    pub supervisor: Supervisor,
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Back-off before the next start after `restarts` quick failures: 1 s, 2 s, 4 s ... 60 s.
pub fn backoff_seconds(restarts: i64) -> i64 {
    1_i64
        .checked_shl(u32::try_from(restarts.clamp(0, 6)).unwrap_or(6))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// Reconciles one `Process`.
pub async fn reconcile<C: Client>(
    object: Arc<DynamicObject>,
    ctx: Arc<Context<C>>,
) -> Result<Action, DemoError> {
    let resource = resource();
    finalizer(&ctx.client, &resource, FINALIZER, object, |event| async {
        match event {
            Event::Apply(object) => apply(&ctx, &object).await,
            Event::Cleanup(object) => cleanup(&ctx, &object).await,
        }
    })
    .await
    .map_err(DemoError::from)
}

async fn cleanup<C: Client>(ctx: &Context<C>, object: &DynamicObject) -> Result<Action, DemoError> {
    let process: Process = object.to_resource()?;
    let status = process.status.unwrap_or_default();
    let recorded = status.pid.zip(status.start_ticks);
    let ours = ctx.supervisor.started_for(object.uid());
    for (pid, ticks) in recorded
        .into_iter()
        .chain(ours.map(|s| (s.pid, s.start_ticks)))
    {
        ctx.supervisor.stop(pid, ticks).await;
    }
    ctx.supervisor.forget(object.uid());
    tracing::info!(process = %ObjectRef::from_obj(object), "stopped");
    Ok(Action::await_change())
}

async fn apply<C: Client>(ctx: &Context<C>, object: &DynamicObject) -> Result<Action, DemoError> {
    let process: Process = object.to_resource()?;
    let mut status = process.status.clone().unwrap_or_default();
    // What runs for this object: the status says, or (if a status write was lost) what this
    // controller started for it.
    let known = status
        .pid
        .zip(status.start_ticks)
        .map(|(pid, start_ticks)| Started { pid, start_ticks })
        .or_else(|| ctx.supervisor.started_for(object.uid()));
    let liveness = known.map(|s| ctx.supervisor.liveness(s.pid, s.start_ticks));
    let now = now();
    match (known, liveness) {
        (Some(started), Some(Liveness::Running)) => {
            let adopted = status.pid != Some(started.pid) || status.phase != ProcessPhase::Running;
            if adopted {
                status.pid = Some(started.pid);
                status.start_ticks = Some(started.start_ticks);
                status.phase = ProcessPhase::Running;
                status.next_start_at = None;
                write_status(ctx, object, &status).await?;
            }
            return Ok(Action::requeue_after(POLL));
        }
        (Some(_), Some(Liveness::Ended(code))) if status.phase != ProcessPhase::BackOff => {
            // It ended since the last look: record how, and decide what comes next.
            ctx.supervisor.forget(object.uid());
            status.last_exit_code = code;
            status.pid = None;
            status.start_ticks = None;
            let policy = process.spec.restart_policy;
            let restart = match policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => code != Some(0),
                RestartPolicy::Never => false,
            };
            let how = code.map_or_else(|| "was killed".to_owned(), |c| format!("exited with {c}"));
            if !restart {
                status.phase = if code == Some(0) {
                    ProcessPhase::Succeeded
                } else {
                    ProcessPhase::Failed
                };
                status.message = format!("the process {how}");
                write_status(ctx, object, &status).await?;
                return Ok(Action::await_change());
            }
            let ran = status
                .started_at
                .map_or(0, |at| now.unix_seconds() - at.unix_seconds());
            let delay = if ran >= STABLE_AFTER {
                0
            } else {
                backoff_seconds(status.restarts)
            };
            status.phase = ProcessPhase::BackOff;
            status.next_start_at = Some(now.plus_seconds(delay));
            status.message = format!("the process {how}; starting again in {delay}s");
            events::record(
                &ctx.client,
                CONTROLLER,
                object,
                true,
                "Ended",
                status.message.clone(),
            )
            .await;
            write_status(ctx, object, &status).await?;
            return Ok(Action::requeue_after(Duration::from_secs(
                delay.unsigned_abs(),
            )));
        }
        _ => {}
    }
    // Not running: wait out a back-off, then start.
    if let Some(due) = status.next_start_at
        && due > now
    {
        let wait = (due.unix_seconds() - now.unix_seconds()).max(1);
        return Ok(Action::requeue_after(Duration::from_secs(
            wait.unsigned_abs(),
        )));
    }
    let first = status.started_at.is_none();
    let started = ctx
        .supervisor
        .start(ObjectRef::from_obj(object), object.uid(), &process.spec)
        .map_err(|e| DemoError::Start {
            command: process.spec.command.clone(),
            message: e.to_string(),
        })?;
    if !first {
        status.restarts += 1;
    }
    status.phase = ProcessPhase::Running;
    status.pid = Some(started.pid);
    status.start_ticks = Some(started.start_ticks);
    status.started_at = Some(now);
    status.next_start_at = None;
    status.message = String::new();
    let (reason, note) = if first {
        (
            "Started",
            format!("started {} as pid {}", process.spec.command, started.pid),
        )
    } else {
        (
            "Restarted",
            format!(
                "started {} again as pid {} (restart {})",
                process.spec.command, started.pid, status.restarts
            ),
        )
    };
    events::record(&ctx.client, CONTROLLER, object, false, reason, note).await;
    write_status(ctx, object, &status).await?;
    Ok(Action::requeue_after(POLL))
}

async fn write_status<C: Client>(
    ctx: &Context<C>,
    object: &DynamicObject,
    status: &ProcessStatus,
) -> Result<(), DemoError> {
    let mut updated = object.clone();
    updated.set_status(Some(serde_json::to_value(status)?));
    ctx.client.replace_status(&resource(), &updated).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_one_second_up_to_a_minute() {
        let delays: Vec<i64> = (0..9).map(backoff_seconds).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_seconds(-3), 1);
    }
}
