//! The demo controllers: drift between desired and actual state on this machine, healed.
//!
//! ```text
//!  ProcessSet ──owns──► Process ──supervisor──► real processes (pid in status)
//!  ManagedFile ─────────────────────────────────► a real file (content, mode)
//! ```
//!
//! [`run`] starts all three controllers against one API server until `shutdown` completes.
//! Processes keep running when the controllers stop (a restarted controller adopts them);
//! [`Controllers::stop_processes`] stops them for a clean exit (`stead demo`).

pub mod events;
pub mod managed_file;
pub mod process;
pub mod process_set;
pub mod supervisor;

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use stead_api::ObjectError;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::client::{Client, ClientError};
use crate::controller::{Config, Controller};
use crate::default_error_policy;
use crate::finalizer::FinalizerError;
use crate::metrics::Metrics;
use supervisor::Supervisor;

/// Why a demo reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("object does not fit its kind: {0}")]
    Object(#[from] ObjectError),
    #[error("cannot encode status: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot start {command:?}: {message}")]
    Start { command: String, message: String },
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// Not an error as such: the reconcile is waiting for something to finish.
    #[error("waiting: {0}")]
    Waiting(String),
    #[error("{0}")]
    Finalizer(String),
}

impl<E: std::fmt::Display> From<FinalizerError<E>> for DemoError {
    fn from(e: FinalizerError<E>) -> Self {
        DemoError::Finalizer(e.to_string())
    }
}

/// Handles on running demo controllers.
#[derive(Clone)]
pub struct Controllers {
    supervisor: Supervisor,
    metrics: Metrics,
}

impl Controllers {
    /// Stops every process the controllers started.
    pub async fn stop_processes(&self) {
        self.supervisor.stop_all().await;
    }

    /// The controllers' metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

fn config(name: &str) -> Config {
    Config {
        name: Some(name.to_owned()),
        ..Config::default()
    }
}

/// Starts the ProcessSet, Process and ManagedFile controllers, recording into `metrics`;
/// the returned future runs them until `shutdown` completes.
pub fn run<C: Client>(
    client: C,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Controllers, impl Future<Output = ()> + Send) {
    let shutdown = shutdown.shared();
    let (supervisor, exits) = Supervisor::new();

    let processes = Controller::new(client.clone(), process::resource())
        .with_config(config("process"))
        .with_metrics(metrics.clone())
        .reconcile_on(UnboundedReceiverStream::new(exits))
        .graceful_shutdown_on(shutdown.clone());
    let sets = Controller::new(client.clone(), process_set::resource())
        .owns(process::resource())
        .with_config(config("processset"))
        .with_metrics(metrics.clone())
        .graceful_shutdown_on(shutdown.clone());
    let files = Controller::new(client.clone(), managed_file::resource())
        .with_config(config("managedfile"))
        .with_metrics(metrics.clone())
        .graceful_shutdown_on(shutdown);
    let file_store = files.store();
    let files = files.reconcile_on(UnboundedReceiverStream::new(managed_file::watch_files(
        file_store,
    )));

    let process_ctx = Arc::new(process::Context {
        client: client.clone(),
        supervisor: supervisor.clone(),
    });
    let set_ctx = Arc::new(process_set::Context {
        client: client.clone(),
        // The set controller's own cache of its children: a change that wakes a set is in
        // it before the set's reconcile reads it (the process controller's cache may lag).
        processes: sets
            .owned_store(&process::resource())
            .expect("the set controller owns processes"),
    });
    let file_ctx = Arc::new(managed_file::Context { client });
    let work = async move {
        tokio::join!(
            processes.run(process::reconcile, default_error_policy, process_ctx),
            sets.run(process_set::reconcile, default_error_policy, set_ctx),
            files.run(managed_file::reconcile, default_error_policy, file_ctx),
        );
    };
    (
        Controllers {
            supervisor,
            metrics,
        },
        work,
    )
}
