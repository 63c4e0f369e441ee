//! `stead controller`: the demo controllers against any member's REST API, with leader
//! election so that several replicas can run and one is active.

use anyhow::Context;
use clap::Args;
use futures::FutureExt;
use stead_controller::{HttpClient, LeaderElectionConfig, LeaderElector, Metrics, demo};

use crate::resources::ServerArg;

/// The Lease the demo controllers elect their leader with.
pub(crate) const LEASE_NAME: &str = "stead-demo-controllers";

#[derive(Args, Debug)]
pub(crate) struct ControllerArgs {
    #[command(flatten)]
    server: ServerArg,
    /// This replica's name in the Lease (default: host name and process id).
    #[arg(long)]
    identity: Option<String>,
    /// Namespace of the Lease.
    #[arg(long, default_value = "default")]
    lease_namespace: String,
    /// Serve Prometheus metrics (reconciles, errors, queue depth, reconcile latency) at
    /// `http://ADDR/metrics`.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
}

/// `<hostname>-<pid>`.
pub(crate) fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "stead".into());
    format!("{host}-{}", std::process::id())
}

pub(crate) async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let identity = args.identity.unwrap_or_else(default_identity);
    let metrics = Metrics::new();
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-addr {addr}"))?;
        tracing::info!(%addr, "serving controller metrics at /metrics");
        tokio::spawn(serve_metrics(listener, metrics.clone()));
    }
    run_elected(
        client,
        identity,
        args.lease_namespace,
        LEASE_NAME.into(),
        metrics,
        crate::serve::shutdown_signal(),
    )
    .await;
    Ok(())
}

/// `GET /metrics`: the controllers' metrics in Prometheus' text format.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Metrics) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "the metrics endpoint stopped");
    }
}

/// Runs the demo controllers whenever this replica holds the Lease, until `shutdown`.
pub(crate) async fn run_elected(
    client: HttpClient,
    identity: String,
    namespace: String,
    lease: String,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.shared();
    let config = LeaderElectionConfig::new(namespace, lease, identity.clone());
    let handle = LeaderElector::new(client.clone(), config).spawn();
    loop {
        tokio::select! {
            () = handle.wait_for_leadership() => {}
            () = shutdown.clone() => return,
        }
        tracing::info!(%identity, "leading: the demo controllers run here");
        let (_controllers, work) = demo::run(client.clone(), metrics.clone(), shutdown.clone());
        match handle.run_while_leader(work).await {
            Some(()) => return,
            None => tracing::warn!(%identity, "lost the lease: the demo controllers stopped"),
        }
    }
}
