//! stead's controller runtime: watchers, caches, a work queue and reconcilers that heal drift
//! between desired state (spec) and actual state (status).
//!
//! ```text
//!  Client (HTTP, or testing::FakeClient)
//!     │ list + watch
//!     ▼
//!  watcher ─► reflector ─► Store ──────────────┐
//!     │ events (own kind, owned kinds)         │ latest object
//!     ▼                                        ▼
//!  Controller: triggers ─► scheduler ─► reconcile(obj, ctx) ─► Action
//!                                            └─ finalizer(...) for clean-up before deletion
//!  leader_election: run the controller on one replica at a time
//!  metrics: reconcile counts, errors, queue depth, durations (Prometheus text)
//! ```

pub mod backoff;
pub mod client;
pub mod controller;
pub mod demo;
pub mod finalizer;
pub mod leader_election;
pub mod metrics;
mod object_ref;
pub mod reflector;
pub mod scheduler;
pub mod testing;
pub mod watcher;

pub use backoff::BackoffConfig;
pub use client::{ApiResource, Client, ClientError, HttpClient};
pub use controller::{Controller, default_error_policy};
pub use finalizer::{FinalizerError, finalizer};
pub use leader_election::{LeaderElectionConfig, LeaderElector, LeaderHandle};
pub use metrics::Metrics;
pub use object_ref::ObjectRef;
pub use reflector::{Store, reflector};
pub use scheduler::{RateLimit, SchedulerConfig};
pub use watcher::watcher;

use std::time::Duration;

/// What a reconciler asks the runtime to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile the object again after this long, even if nothing changes.
    RequeueAfter(Duration),
    /// Reconcile again only when the object or something it owns changes.
    AwaitChange,
}

impl Action {
    /// Reconcile again after `after`.
    pub fn requeue_after(after: Duration) -> Self {
        Action::RequeueAfter(after)
    }

    /// Reconcile again on the next change.
    pub fn await_change() -> Self {
        Action::AwaitChange
    }
}
