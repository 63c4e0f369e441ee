//! The resource workloads, over stead's REST API: `apply` (server-side apply of Lease
//! objects) and `resource-watch` (many REST watches on Leases while clients apply them: the
//! fan-out of resource events and its delivery latency).

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use stead_controller::client::{
    ApiResource, Client, HttpClient, Patch, PatchParams, WatchEvent, WatchParams,
};
use tokio::time::Instant;

use super::driver::{Outcome, collect, gather};
use super::{BenchArgs, Report, Workload};

/// Where the objects live: built-in Leases in `default`.
fn leases() -> ApiResource {
    ApiResource::new("stead.dev", "v1", "Lease", "leases", true)
}

/// The object client `c` applies for request `seq`: one of `key_space` Leases, its holder
/// stamped with the send time (nanoseconds since `start`) so watchers can time delivery.
fn lease(seq: u64, key_space: u64, sent_nanos: u128) -> (String, Value) {
    let name = format!("bench-{}", seq % key_space);
    let object = json!({
        "apiVersion": "stead.dev/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"holderIdentity": format!("{sent_nanos}"), "leaseDurationSeconds": 15},
    });
    (name, object)
}

async fn apply_one(
    client: &HttpClient,
    seq: u64,
    key_space: u64,
    start: Instant,
) -> Result<(), stead_controller::ClientError> {
    let (name, object) = lease(seq, key_space, start.elapsed().as_nanos());
    let params = PatchParams {
        field_manager: Some("stead-bench".into()),
        force: true,
    };
    client
        .patch(
            &leases(),
            Some("default"),
            &name,
            &Patch::Apply(object),
            &params,
            false,
        )
        .await
        .map(|_| ())
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let client = HttpClient::new(&args.api_server)
        .with_context(|| format!("--api-server {}", args.api_server))?;
    let start = Instant::now();
    let key_space = args.key_space.max(1);
    let (expect, expected) = tokio::sync::watch::channel(None);
    let watchers = if args.workload == Workload::ResourceWatch {
        let mut tasks = Vec::new();
        for _ in 0..args.watchers.max(1) {
            let params = WatchParams {
                resource_version: Some(current_revision(&client).await?),
                ..WatchParams::default()
            };
            let stream = client
                .watch(&leases(), Some("default"), &params)
                .await
                .context("opening a REST watch")?;
            let expected = expected.clone();
            tasks.push(tokio::spawn(async move {
                collect(stream, expected, Duration::from_secs(5), |event| {
                    let now = start.elapsed().as_nanos();
                    let sent = match event {
                        Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => o
                            .pointer("/spec/holderIdentity")
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse::<u128>().ok()),
                        _ => None,
                    };
                    sent.map(|sent| {
                        let nanos = u64::try_from(now.saturating_sub(sent)).unwrap_or(u64::MAX);
                        Duration::from_nanos(nanos)
                    })
                    .into_iter()
                    .collect()
                })
                .await
            }));
        }
        tasks
    } else {
        Vec::new()
    };
    let driver = args.driver();
    let clients: Vec<HttpClient> = (0..driver.clients).map(|_| client.clone()).collect();
    let applies = driver
        .run(clients, move |client: HttpClient, seq| async move {
            let result = apply_one(&client, seq, key_space, start).await;
            (client, result)
        })
        .await;
    if watchers.is_empty() {
        return Ok(Report {
            workload: args.workload,
            clients: driver.clients,
            outcome: applies,
            extra: Vec::new(),
        });
    }
    let apply_secs = applies.elapsed.as_secs_f64();
    let _ = expect.send(Some(applies.latencies.len()));
    let (latencies, window) = gather(watchers, start).await?;
    let secs = window.as_secs_f64().max(f64::EPSILON);
    let delivered = latencies.len();
    // Every successful apply changed its Lease (a new holder), so every watcher sees it.
    let expected = applies.latencies.len() * args.watchers.max(1);
    let report = Report {
        workload: args.workload,
        clients: driver.clients,
        extra: vec![
            ("watchers", json!(args.watchers)),
            (
                "applies_per_s",
                json!(applies.latencies.len() as f64 / apply_secs),
            ),
            ("delivered", json!(delivered)),
            ("expected", json!(expected)),
            ("events_per_s", json!(delivered as f64 / secs)),
        ],
        outcome: Outcome {
            latencies,
            errors: applies.errors,
            elapsed: window,
        },
    };
    if delivered < expected {
        anyhow::bail!("watchers missed {} events", expected - delivered);
    }
    Ok(report)
}

/// The store's revision now (a LIST's resourceVersion), so watches start after it.
async fn current_revision(client: &HttpClient) -> anyhow::Result<String> {
    let params = stead_controller::client::ListParams {
        limit: Some(1),
        ..Default::default()
    };
    Ok(client
        .list(&leases(), Some("default"), &params)
        .await
        .context("listing Leases")?
        .resource_version)
}
