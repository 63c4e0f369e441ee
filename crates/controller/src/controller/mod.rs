//! [`Controller`]: watches a kind (and the kinds it owns), and runs a level-triggered
//! reconciler for each changed object, one run per object at a time.
//!
//! ```text
//!  watcher(primary) ─► reflector ─► Store ───────────────────────┐ latest object
//!        │ Apply (generation predicate) / InitApply              │
//!        ▼                                                       ▼
//!  triggers ──────────────────────────────► Scheduler ──► reconcile(obj, ctx) ─► Action
//!        ▲  owner key (controller ownerRef)   ▲  dedup, one run per key,          │
//!  watcher(owned kinds)                       │  backoff, rate limit, concurrency │
//!                                             └── requeue / backoff / rerun ◄─────┘
//!  resync timer ─► every cached key
//! ```
//!
//! A key whose object is no longer cached is not reconciled: deletion that needs clean-up is
//! done with a finalizer (see [`crate::finalizer()`]), which keeps the object — with
//! `deletionTimestamp` set — until the reconciler removes it.

mod runner;
#[cfg(test)]
mod tests;
mod triggers;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use stead_api::DynamicObject;

use crate::client::{ApiResource, Client};
use crate::metrics::Metrics;
use crate::reflector::{Store, Writer};
use crate::scheduler::SchedulerConfig;
use crate::watcher;
use crate::{Action, ObjectRef};

/// How a controller runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The `controller` label of metrics and spans; the primary kind's plural by default.
    pub name: Option<String>,
    /// Queue settings: concurrency, per-key backoff, global rate limit.
    pub scheduler: SchedulerConfig,
    /// Reconcile every cached object this often, even without changes; `None`: never.
    pub resync: Option<Duration>,
    /// Skip primary events that changed neither generation nor deletion, finalizers, labels
    /// or annotations (status writes). On by default; stead bumps generation on every
    /// change outside `metadata` and `status`, so nothing a reconciler reads is missed.
    pub generation_predicate: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: None,
            scheduler: SchedulerConfig::default(),
            resync: Some(Duration::from_secs(600)),
            generation_predicate: true,
        }
    }
}

/// The error policy that leaves failures to the per-key exponential backoff.
pub fn default_error_policy<E, Ctx>(_: Arc<DynamicObject>, _: &E, _: Arc<Ctx>) -> Option<Action> {
    None
}

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A controller for one kind, built up then [`run`](Controller::run).
///
/// ```no_run
/// # use std::sync::Arc;
/// # use stead_controller::{Action, Controller, default_error_policy};
/// # use stead_controller::client::{ApiResource, HttpClient};
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let client = HttpClient::new("http://127.0.0.1:6443")?;
/// let sets = ApiResource::new("stead.dev", "v1", "ProcessSet", "processsets", true);
/// let processes = ApiResource::new("stead.dev", "v1", "Process", "processes", true);
/// Controller::new(client, sets)
///     .owns(processes)
///     .graceful_shutdown_on(async { let _ = tokio::signal::ctrl_c().await; })
///     .run(
///         |set, _ctx: Arc<()>| async move {
///             println!("reconciling {}", set.name());
///             Ok::<_, std::io::Error>(Action::await_change())
///         },
///         default_error_policy,
///         Arc::new(()),
///     )
///     .await;
/// # Ok(()) }
/// ```
pub struct Controller<C: Client> {
    client: C,
    resource: ApiResource,
    watcher_config: watcher::Config,
    owned: Vec<Owned>,
    config: Config,
    metrics: Metrics,
    writer: Writer,
    shutdown: Option<Shutdown>,
    /// Keys to look at from outside the API (e.g. a file changed on disk).
    external: Vec<ExternalTriggers>,
}

/// A kind the controller's objects own: what to watch, and the cache its events fill before
/// they wake an owner.
struct Owned {
    resource: ApiResource,
    watcher_config: watcher::Config,
    writer: Writer,
}

/// A stream of keys that need a reconcile, from a source the API does not see.
pub(crate) type ExternalTriggers = Pin<Box<dyn futures::Stream<Item = ObjectRef> + Send>>;

impl<C: Client> Controller<C> {
    /// A controller of `resource` objects in every namespace.
    pub fn new(client: C, resource: ApiResource) -> Self {
        Controller::new_with(client, resource, watcher::Config::default())
    }

    /// A controller of the `resource` objects that `watcher_config` selects.
    pub fn new_with(client: C, resource: ApiResource, watcher_config: watcher::Config) -> Self {
        Controller {
            client,
            resource,
            watcher_config,
            owned: Vec::new(),
            config: Config::default(),
            metrics: Metrics::new(),
            writer: Writer::new(),
            shutdown: None,
            external: Vec::new(),
        }
    }

    /// Reconciles the owner when a `child` it controls (ownerReference with
    /// `controller: true`) changes or goes away. [`Controller::owned_store`] is the cache of
    /// those children; an owner is woken only after the change is in it.
    #[must_use]
    pub fn owns(self, child: ApiResource) -> Self {
        self.owns_with(child, watcher::Config::default())
    }

    /// [`Controller::owns`], watching only what `watcher_config` selects.
    #[must_use]
    pub fn owns_with(mut self, child: ApiResource, watcher_config: watcher::Config) -> Self {
        self.owned.push(Owned {
            resource: child,
            watcher_config,
            writer: Writer::new(),
        });
        self
    }

    /// Also reconciles every key `triggers` yields: drift noticed outside the API (a file
    /// edited on disk, a process that died).
    #[must_use]
    pub fn reconcile_on(
        mut self,
        triggers: impl futures::Stream<Item = ObjectRef> + Send + 'static,
    ) -> Self {
        self.external.push(Box::pin(triggers));
        self
    }

    /// Replaces the run settings.
    #[must_use]
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Records metrics into `metrics` (shared with other controllers or a `/metrics` handler).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Stops taking work when `signal` completes; running reconciles finish first.
    #[must_use]
    pub fn graceful_shutdown_on(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// The cache of primary objects (filled once `run` starts).
    pub fn store(&self) -> Store {
        self.writer.as_reader()
    }

    /// The cache of owned `child` objects (filled once `run` starts), if the controller
    /// [owns](Controller::owns) that kind. A reconciler that reads its children should read
    /// them here: any other cache may not have the change that woke it yet.
    pub fn owned_store(&self, child: &ApiResource) -> Option<Store> {
        self.owned
            .iter()
            .find(|owned| &owned.resource == child)
            .map(|owned| owned.writer.as_reader())
    }

    /// The metrics registry.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Runs until the shutdown signal (forever without one).
    ///
    /// Reconciles start once the primary and every owned cache hold a first complete list.
    /// `reconcile` gets the latest cached object; its `Action` schedules the next run.
    /// On `Err`, `error_policy` may pick the next run (`Some(action)`), or leave it to the
    /// per-key exponential backoff (`None`, see [`default_error_policy`]).
    pub async fn run<Ctx, E, R, Fut, P>(self, reconcile: R, error_policy: P, ctx: Arc<Ctx>)
    where
        Ctx: Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
        R: Fn(Arc<DynamicObject>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<DynamicObject>, &E, Arc<Ctx>) -> Option<Action> + Send + Sync + 'static,
    {
        runner::run(self, reconcile, error_policy, ctx).await;
    }
}
