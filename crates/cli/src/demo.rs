//! `stead demo`: a single node with the demo controllers, the manifests of `examples/demo`
//! applied, and every drift and its repair printed live until Ctrl-C.
//!
//! Ctrl-C stops the controllers, then every process they started, then the node; the data
//! lives in a temporary directory that goes with it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use futures::{FutureExt, StreamExt};
use stead_controller::client::{Client, ListParams, WatchEvent, WatchParams};
use stead_controller::demo::{self, events::event_resource};
use stead_controller::{HttpClient, Metrics};
use stead_server::{Server, ServerConfig};
use url::Url;

use crate::resources::{ApplyArgs, ServerArg, apply_manifests};

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Manifests to apply (a directory or files).
    #[arg(long, default_value = "examples/demo")]
    manifests: Vec<String>,
    /// Where the REST API listens (point `stead get` or kubectl here).
    #[arg(long, default_value = "http://127.0.0.1:6443")]
    api_url: Url,
}

fn config(dir: &std::path::Path, api_url: Url) -> anyhow::Result<ServerConfig> {
    let client = Url::parse("http://127.0.0.1:0")?;
    let peer = Url::parse("http://127.0.0.1:0")?;
    Ok(ServerConfig {
        name: "demo".into(),
        data_dir: dir.join("data"),
        listen_client_urls: vec![client.clone()],
        advertise_client_urls: vec![client],
        listen_peer_urls: vec![peer.clone()],
        initial_advertise_peer_urls: vec![peer.clone()],
        initial_cluster: vec![("demo".into(), peer)],
        initial_cluster_state_new: true,
        initial_cluster_token: "stead-demo".into(),
        client_tls: None,
        peer_tls: None,
        quota_backend_bytes: 2 << 30,
        backend_cache_bytes: 16 << 20,
        snapshot_count: crate::serve::SNAPSHOT_COUNT,
        snapshot_catchup_entries: 1_000,
        progress_notify_interval: Duration::from_secs(10),
        listen_api_url: Some(api_url),
    })
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    for path in &args.manifests {
        if !PathBuf::from(path).exists() {
            bail!(
                "{path}: no such manifest (run `stead demo` from the repository root, or pass --manifests)"
            );
        }
    }
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let server = Server::start(config(dir.path(), args.api_url.clone())?)
        .await
        .with_context(|| format!("cannot start the demo node (is {} free?)", args.api_url))?;
    let api = match server.api_addr {
        Some(addr) => format!("http://{addr}"),
        None => bail!("the demo node has no REST API"),
    };
    let client = HttpClient::new(&api)?;
    let shutdown = crate::serve::shutdown_signal().shared();

    let (controllers, work) = demo::run(client.clone(), Metrics::new(), shutdown.clone());
    let work = tokio::spawn(work);
    println!("stead demo: node and controllers running; REST API on {api}");
    let apply = ApplyArgs::for_files(args.manifests.clone(), ServerArg::at(api.clone()));
    apply_manifests(&client, &apply).await?;
    println!(
        "\nTry, in another terminal:\n  \
         stead get processes --server {api}          (pids)\n  \
         kill -9 <pid>                               (a process dies: it comes back)\n  \
         echo tampered > /tmp/stead-demo/motd        (a file drifts: it is restored)\n  \
         stead describe processset sleepers --server {api}\n\
         Ctrl-C stops everything.\n"
    );
    tokio::select! {
        result = follow(&client) => {
            if let Err(e) = result {
                eprintln!("stead demo: following events failed: {e:#}");
            }
        }
        () = shutdown.clone() => {}
    }
    println!("\nstopping: controllers, then every process they started, then the node");
    let _ = work.await;
    controllers.stop_processes().await;
    server.run_until(std::future::ready(())).await;
    drop(dir);
    Ok(())
}

/// Prints every Event as it is recorded, with its revision.
async fn follow(client: &HttpClient) -> anyhow::Result<()> {
    let events = event_resource();
    let start = client
        .list(&events, None, &ListParams::default())
        .await?
        .resource_version;
    let params = WatchParams {
        resource_version: Some(start),
        ..WatchParams::default()
    };
    let mut stream = client.watch(&events, None, &params).await?;
    while let Some(event) = stream.next().await {
        let WatchEvent::Added(event) = event? else {
            continue;
        };
        let text = |p: &str| {
            event
                .pointer(p)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let object = match text("/involvedObject/namespace").as_str() {
            "" => format!(
                "{}/{}",
                text("/involvedObject/kind"),
                text("/involvedObject/name")
            ),
            ns => format!(
                "{}/{ns}/{}",
                text("/involvedObject/kind"),
                text("/involvedObject/name")
            ),
        };
        println!(
            "rev {:>5}  {:<7} {:<10} {object}: {}",
            event.resource_version(),
            text("/type"),
            text("/reason"),
            text("/message")
        );
    }
    Ok(())
}
