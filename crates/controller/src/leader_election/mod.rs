//! Leader election on a [`Lease`] (`stead.dev/v1`): several replicas of a controller run, one
//! acts.
//!
//! ```text
//!  every retry period, each candidate:
//!    GET lease ── 404 ──► CREATE {holder: me, acquire = renew = now}    409: someone won
//!       │
//!       ├─ holder == me ─────────────► REPLACE (resourceVersion) renew = now
//!       ├─ renewTime + duration <= now ► REPLACE (resourceVersion) holder: me, transitions + 1
//!       └─ held by another, not expired ─► follower
//!
//!  a REPLACE racing another candidate gets 409 Conflict: optimistic concurrency picks one
//!  a failed request (transport error) keeps leadership until the renew deadline (by default
//!  the lease duration) after the last successful renew: a leader drops out before anyone
//!  else may take over, so there is never more than one
//! ```
//!
//! Timestamps in the lease come from a [`Clock`]; the default [`TokioClock`] is wall time that
//! advances with tokio's clock, so tests under `tokio::time::pause()` see leases expire.

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use stead_api::kinds::{Lease, LeaseSpec};
use stead_api::{DynamicObject, Resource, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{ApiResource, Client, ClientError};

/// Where lease timestamps come from.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;
}

/// Wall time at creation, advanced by tokio's monotonic clock (and so by `advance()` in tests).
#[derive(Debug, Clone)]
pub struct TokioClock {
    wall: SystemTime,
    start: Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        TokioClock {
            wall: SystemTime::now(),
            start: Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(self.wall + self.start.elapsed())
    }
}

/// Which lease, who we are, and the timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    /// The lease's name; every replica of one controller uses the same.
    pub name: String,
    /// This candidate's identity (unique per replica, e.g. host name and process id).
    pub identity: String,
    /// How long a lease is valid after its last renewal (whole seconds are written).
    pub lease_duration: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
    /// How long a leader keeps leading without a successful renew.
    pub renew_deadline: Duration,
}

impl LeaderElectionConfig {
    /// A 15 s lease, renewed every 5 s, given up 15 s after the last successful renew.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderElectionConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(15),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// Where leases live on the API.
pub fn lease_resource() -> ApiResource {
    ApiResource::new(
        Lease::GROUP,
        Lease::VERSION,
        Lease::KIND,
        Lease::PLURAL,
        true,
    )
}

/// One candidate; [`LeaderElector::spawn`] runs it.
pub struct LeaderElector<C> {
    client: C,
    config: LeaderElectionConfig,
    clock: Arc<dyn Clock>,
    resource: ApiResource,
}

fn decode(error: impl std::fmt::Display) -> ClientError {
    ClientError::Decode(error.to_string())
}

impl<C: Client> LeaderElector<C> {
    pub fn new(client: C, config: LeaderElectionConfig) -> Self {
        LeaderElector {
            client,
            config,
            clock: Arc::new(TokioClock::new()),
            resource: lease_resource(),
        }
    }

    /// Uses `clock` for lease timestamps.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// One round: acquire or renew the lease. `Ok(true)`: we hold it now; `Ok(false)`: someone
    /// else does; `Err`: we could not tell.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, ClientError> {
        let now = self.clock.now();
        let me = self.config.identity.as_str();
        let (ns, name) = (self.config.namespace.as_str(), self.config.name.as_str());
        let stored = match self.client.get(&self.resource, Some(ns), name).await {
            Ok(stored) => stored,
            Err(error) if error.is_not_found() => {
                let mut lease = Lease::new(ns, name);
                lease.spec = LeaseSpec {
                    holder_identity: Some(me.to_owned()),
                    lease_duration_seconds: Some(self.config.duration_seconds()),
                    acquire_time: Some(now),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                };
                let object = DynamicObject::from_resource(&lease).map_err(decode)?;
                return match self.client.create(&self.resource, &object).await {
                    Ok(_) => Ok(true),
                    Err(error) if error.is_conflict() => Ok(false),
                    Err(error) => Err(error),
                };
            }
            Err(error) => return Err(error),
        };
        let mut lease: Lease = stored.to_resource().map_err(decode)?;
        let spec = &mut lease.spec;
        if spec.holder_identity.as_deref() == Some(me) {
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(self.config.duration_seconds());
        } else if lease.is_expired(now) {
            let spec = &mut lease.spec;
            let had_holder = spec
                .holder_identity
                .as_deref()
                .is_some_and(|h| !h.is_empty());
            spec.holder_identity = Some(me.to_owned());
            spec.lease_duration_seconds = Some(self.config.duration_seconds());
            spec.acquire_time = Some(now);
            spec.renew_time = Some(now);
            let transitions = spec.lease_transitions.unwrap_or(0);
            spec.lease_transitions = Some(transitions + i32::from(had_holder));
        } else {
            return Ok(false);
        }
        let object = DynamicObject::from_resource(&lease).map_err(decode)?;
        match self.client.replace(&self.resource, &object).await {
            Ok(_) => Ok(true),
            // Someone else wrote the lease since our read: their write wins.
            Err(error) if error.is_conflict() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Runs the election in a task until the handle is dropped.
    pub fn spawn(self) -> LeaderHandle {
        let (sender, leader) = watch::channel(false);
        let task = tokio::spawn(self.run(sender));
        LeaderHandle { leader, task }
    }

    async fn run(self, leader: watch::Sender<bool>) {
        let set = |value: bool| {
            leader.send_if_modified(|current| {
                let changed = *current != value;
                *current = value;
                changed
            })
        };
        let identity = self.config.identity.clone();
        // When the last successful round started: the lease we wrote expires after that.
        let mut renewed: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let round = tokio::time::timeout(self.config.retry_period, self.try_acquire_or_renew())
                .await
                .unwrap_or_else(|_| Err(ClientError::Transport("lease request timed out".into())));
            match round {
                Ok(true) => {
                    renewed = Some(started);
                    if set(true) {
                        tracing::info!(%identity, lease = %self.config.name, "became leader");
                    }
                }
                Ok(false) => {
                    renewed = None;
                    if set(false) {
                        tracing::info!(%identity, lease = %self.config.name, "lost leadership");
                    }
                }
                Err(error) => {
                    tracing::warn!(%identity, lease = %self.config.name, %error, "lease round failed");
                }
            }
            let next = started + self.config.retry_period;
            match renewed.map(|at| at + self.config.renew_deadline) {
                Some(deadline) if deadline <= next => {
                    tokio::time::sleep_until(deadline).await;
                    if Instant::now() >= deadline {
                        renewed = None;
                        if set(false) {
                            tracing::warn!(%identity, lease = %self.config.name, "renew deadline passed, stepping down");
                        }
                    }
                    tokio::time::sleep_until(next).await;
                }
                _ => tokio::time::sleep_until(next).await,
            }
        }
    }
}

/// A running candidate. Dropping it stops renewing (the lease then expires for others).
#[derive(Debug)]
pub struct LeaderHandle {
    leader: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Drop for LeaderHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LeaderHandle {
    /// Whether this candidate leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Leadership changes, as a watch channel.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Waits until this candidate leads.
    pub async fn wait_for_leadership(&self) {
        let mut leader = self.leader.clone();
        let _ = leader.wait_for(|leading| *leading).await;
    }

    /// Waits for leadership, then runs `work` until it completes (`Some`) or leadership is
    /// lost (`None`; `work` is dropped, i.e. cancelled).
    pub async fn run_while_leader<F: Future>(&self, work: F) -> Option<F::Output> {
        let mut leader = self.leader.clone();
        if leader.wait_for(|leading| *leading).await.is_err() {
            return None;
        }
        let lost = async move {
            let _ = leader.wait_for(|leading| !*leading).await;
        };
        tokio::select! {
            output = work => Some(output),
            () = lost => None,
        }
    }
}
