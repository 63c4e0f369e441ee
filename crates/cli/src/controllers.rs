//! `stead controller`: the demo controllers against any member's REST API, with leader
//! election so that several replicas can run and one is active.

use clap::Args;
use futures::FutureExt;
use stead_controller::{HttpClient, LeaderElectionConfig, LeaderElector, demo};

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
    run_elected(
        client,
        identity,
        args.lease_namespace,
        LEASE_NAME.into(),
        crate::serve::shutdown_signal(),
    )
    .await;
    Ok(())
}

/// Runs the demo controllers whenever this replica holds the Lease, until `shutdown`.
pub(crate) async fn run_elected(
    client: HttpClient,
    identity: String,
    namespace: String,
    lease: String,
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
        let (_controllers, work) = demo::run(client.clone(), shutdown.clone());
        match handle.run_while_leader(work).await {
            Some(()) => return,
            None => tracing::warn!(%identity, "lost the lease: the demo controllers stopped"),
        }
    }
}
