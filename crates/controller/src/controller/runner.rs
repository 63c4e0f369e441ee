//! The controller's event loop: the only place where watchers, the scheduler, the clock and
//! reconcile tasks meet.
//!
//! ```text
//!  watchers ─► caches ─Trigger─► mpsc ─┐
//!  resync interval ────────────────────┤
//!  reconcile tasks ──Finished──► JoinSet ─┼─► loop: update Scheduler, then start every key
//!  sleep until the next due key ───────┤         it hands out (latest object from the Store)
//!  shutdown signal ────────────────────┘         shutdown: stop starting, drain the JoinSet
//! ```

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use stead_api::DynamicObject;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::Controller;
use super::triggers::{Fingerprint, controller_owners};
use crate::client::{ApiResource, Client};
use crate::reflector::{Store, reflector};
use crate::scheduler::{Outcome, Pop, Scheduler};
use crate::watcher::{self, Event};
use crate::{Action, ObjectRef};

/// Why a key should be looked at.
#[derive(Debug)]
enum Trigger {
    /// A primary object changed; `None` when the predicate must not apply (a re-list).
    Primary(ObjectRef, Option<Fingerprint>),
    /// A primary object is gone.
    PrimaryDeleted(ObjectRef),
    /// A re-list of the primary kind completed.
    Relisted,
    /// Something the object owns changed.
    Owner(ObjectRef),
}

/// A reconcile that ended: the key, the object it saw, its result and how long it took.
type Finished<E> = (
    ObjectRef,
    Arc<DynamicObject>,
    Option<Result<Action, E>>,
    Duration,
);

/// Aborts the watcher tasks when the run ends or is dropped.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

fn primary_trigger(event: &Event) -> Option<Trigger> {
    match event {
        Event::Init => None,
        Event::InitApply(object) => Some(Trigger::Primary(ObjectRef::from_obj(object), None)),
        Event::InitDone => Some(Trigger::Relisted),
        Event::Apply(object) => Some(Trigger::Primary(
            ObjectRef::from_obj(object),
            Some(Fingerprint::of(object)),
        )),
        Event::Delete(object) => Some(Trigger::PrimaryDeleted(ObjectRef::from_obj(object))),
    }
}

fn owner_triggers(event: &Event, owner: &ApiResource) -> Vec<Trigger> {
    match event {
        Event::InitApply(child) | Event::Apply(child) | Event::Delete(child) => {
            controller_owners(child, owner)
                .into_iter()
                .map(Trigger::Owner)
                .collect()
        }
        Event::Init | Event::InitDone => Vec::new(),
    }
}

fn forward<S, F>(stream: S, tx: mpsc::UnboundedSender<Trigger>, map: F) -> JoinHandle<()>
where
    S: Stream<Item = Event> + Send + 'static,
    F: Fn(&Event) -> Vec<Trigger> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            for trigger in map(&event) {
                if tx.send(trigger).is_err() {
                    return;
                }
            }
        }
    })
}

pub(super) async fn run<C, Ctx, E, R, Fut, P>(
    controller: Controller<C>,
    reconcile: R,
    error_policy: P,
    ctx: Arc<Ctx>,
) where
    C: Client,
    Ctx: Send + Sync + 'static,
    E: std::fmt::Display + Send + 'static,
    R: Fn(Arc<DynamicObject>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
    P: Fn(Arc<DynamicObject>, &E, Arc<Ctx>) -> Option<Action> + Send + Sync + 'static,
{
    let Controller {
        client,
        resource,
        watcher_config,
        owned,
        config,
        metrics,
        writer,
        shutdown,
        external,
    } = controller;
    let name = config
        .name
        .clone()
        .unwrap_or_else(|| resource.plural.clone());
    let store = writer.as_reader();
    let mut shutdown = shutdown.unwrap_or_else(|| Box::pin(futures::future::pending()));

    let (tx, mut triggers) = mpsc::unbounded_channel();
    let primary = reflector(
        writer,
        watcher::watcher(client.clone(), resource.clone(), watcher_config),
    );
    let mut tasks = vec![forward(primary, tx.clone(), |e| {
        primary_trigger(e).into_iter().collect()
    })];
    let mut caches = vec![store.clone()];
    for owned in owned {
        let owner = resource.clone();
        caches.push(owned.writer.as_reader());
        // The reflector applies each event before `forward` wakes the owner, so the owner's
        // reconcile reads a cache that already has the change.
        let stream = reflector(
            owned.writer,
            watcher::watcher(client.clone(), owned.resource, owned.watcher_config),
        );
        tasks.push(forward(stream, tx.clone(), move |e| {
            owner_triggers(e, &owner)
        }));
    }
    for mut stream in external {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = stream.next().await {
                if tx.send(Trigger::Owner(key)).is_err() {
                    return;
                }
            }
        }));
    }
    let _tasks = Tasks(tasks);
    drop(tx);

    let ready = futures::future::try_join_all(caches.iter().map(Store::wait_until_ready));
    tokio::select! {
        ready = ready => if ready.is_err() { return },
        () = &mut shutdown => return,
    }

    let reconcile = Arc::new(reconcile);
    let mut scheduler = Scheduler::new(config.scheduler.clone(), Instant::now());
    let mut running: JoinSet<Finished<E>> = JoinSet::new();
    // The fingerprint of the object each key was last reconciled with.
    let mut dispatched: HashMap<ObjectRef, Fingerprint> = HashMap::new();
    let resync_every = config.resync.filter(|d| !d.is_zero());
    let mut resync =
        resync_every.map(|every| tokio::time::interval_at(Instant::now() + every, every));

    loop {
        let wake = loop {
            match scheduler.pop(Instant::now()) {
                Pop::Ready(key) => {
                    let Some(object) = store.get(&key) else {
                        scheduler.finish(&key, Outcome::Skipped, Instant::now());
                        continue;
                    };
                    dispatched.insert(key.clone(), Fingerprint::of(&object));
                    let span = tracing::info_span!("reconcile", controller = %name, object = %key);
                    let run = AssertUnwindSafe(reconcile(Arc::clone(&object), Arc::clone(&ctx)));
                    running.spawn(
                        async move {
                            let started = Instant::now();
                            let result = run.catch_unwind().await.ok();
                            (key, object, result, started.elapsed())
                        }
                        .instrument(span),
                    );
                }
                Pop::Wait(wake) => break wake,
            }
        };
        metrics.set_queue_depth(&name, scheduler.depth());

        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = running.join_next(), if !running.is_empty() => {
                // Tasks catch their panics, so a join error means the task was aborted.
                let Ok((key, object, result, took)) = joined else { continue };
                let outcome = match result {
                    Some(Ok(action)) => {
                        metrics.reconcile_finished(&name, true, took);
                        Outcome::Success(action)
                    }
                    Some(Err(error)) => {
                        tracing::warn!(controller = %name, object = %key, %error, "reconcile failed");
                        metrics.reconcile_finished(&name, false, took);
                        Outcome::Failure(error_policy(object, &error, Arc::clone(&ctx)))
                    }
                    None => {
                        tracing::error!(controller = %name, object = %key, "reconcile panicked");
                        metrics.reconcile_finished(&name, false, took);
                        Outcome::Failure(None)
                    }
                };
                scheduler.finish(&key, outcome, Instant::now());
            }
            trigger = triggers.recv() => match trigger {
                Some(Trigger::Primary(key, fingerprint)) => {
                    let unchanged = config.generation_predicate
                        && fingerprint.is_some()
                        && dispatched.get(&key) == fingerprint.as_ref();
                    if !unchanged {
                        scheduler.schedule(key, Instant::now());
                    }
                }
                Some(Trigger::PrimaryDeleted(key)) => {
                    dispatched.remove(&key);
                    scheduler.forget(&key);
                }
                Some(Trigger::Relisted) => dispatched.retain(|key, _| store.get(key).is_some()),
                Some(Trigger::Owner(key)) => scheduler.schedule(key, Instant::now()),
                // Every watcher task ended: they never do unless aborted.
                None => break,
            },
            () = sleep_until(wake), if wake.is_some() => {}
            _ = tick(&mut resync), if resync.is_some() => {
                let now = Instant::now();
                for key in store.keys() {
                    scheduler.schedule(key, now);
                }
            }
        }
    }

    // Graceful shutdown: start nothing new, let running reconciles finish.
    while let Some(joined) = running.join_next().await {
        if let Ok((key, _, Some(Err(error)), _)) = joined {
            tracing::warn!(controller = %name, object = %key, %error, "reconcile failed during shutdown");
        }
    }
    metrics.set_queue_depth(&name, scheduler.depth());
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => futures::future::pending().await,
    }
}
