//! stead's controller runtime: watchers, caches, a work queue and reconcilers that heal drift
//! between desired state (spec) and actual state (status).

pub mod backoff;
pub mod client;
pub mod controller;
pub mod finalizer;
pub mod metrics;
mod object_ref;
pub mod reflector;
pub mod scheduler;
pub mod testing;
pub mod watcher;

pub use controller::{Controller, default_error_policy};
pub use finalizer::finalizer;
pub use object_ref::ObjectRef;

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
