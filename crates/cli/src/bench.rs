//! `stead bench`: a closed-loop load generator speaking the etcd v3 API, so the same run
//! can be pointed at stead and at etcd.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use stead_server::pb;
use stead_server::pb::kv_client::KvClient;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Workload {
    /// Put random keys from the key space.
    Put,
    /// Linearizable get of one random key.
    Range,
    /// Serializable get of one random key.
    RangeSerializable,
    /// Txn: compare-and-swap on one random key.
    TxnPut,
    /// `--watchers` watch the key space while the clients put: delivery latency and
    /// events/s delivered.
    Watch,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    #[arg(value_enum)]
    workload: Workload,
    /// Comma-separated endpoints (clients are spread over them).
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    endpoints: String,
    /// gRPC connections (clients share them round-robin).
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Requests in total.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    key_space: u64,
    /// Watch streams for the `watch` workload.
    #[arg(long, default_value_t = 1)]
    watchers: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn key(i: u64, size: usize) -> Vec<u8> {
    let mut k = format!("bench/{i:010}").into_bytes();
    k.resize(size.max(k.len()), b'k');
    k
}

/// xorshift: cheap, good enough to spread keys.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn one(
    kv: &mut KvClient<Channel>,
    workload: Workload,
    key: Vec<u8>,
    value: &[u8],
) -> Result<(), tonic::Status> {
    match workload {
        Workload::Put | Workload::Watch => {
            kv.put(pb::PutRequest {
                key,
                value: value.to_vec(),
                ..Default::default()
            })
            .await?;
        }
        Workload::Range | Workload::RangeSerializable => {
            kv.range(pb::RangeRequest {
                key,
                serializable: matches!(workload, Workload::RangeSerializable),
                ..Default::default()
            })
            .await?;
        }
        Workload::TxnPut => {
            kv.txn(pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: pb::compare::CompareResult::Greater as i32,
                    target: pb::compare::CompareTarget::Mod as i32,
                    key: key.clone(),
                    target_union: Some(pb::compare::TargetUnion::ModRevision(-1)),
                    range_end: Vec::new(),
                }],
                success: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key,
                        value: value.to_vec(),
                        ..Default::default()
                    })),
                }],
                failure: Vec::new(),
            })
            .await?;
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let endpoints: Vec<String> = args
        .endpoints
        .split(',')
        .map(|e| {
            if e.contains("://") {
                e.to_string()
            } else {
                format!("http://{e}")
            }
        })
        .collect();
    let mut channels = Vec::new();
    for i in 0..args.conns.max(1) {
        let url = &endpoints[i % endpoints.len()];
        let channel = Channel::from_shared(url.clone())
            .with_context(|| format!("bad endpoint {url}"))?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        channels.push(channel);
    }
    let value = vec![b'v'; args.val_size];
    if matches!(args.workload, Workload::Watch) {
        return run_watch(&args, &channels).await;
    }
    if matches!(args.workload, Workload::Range | Workload::RangeSerializable) {
        // Reads need keys to exist: write the whole key space once.
        let mut kv = KvClient::new(channels[0].clone());
        for i in 0..args.key_space.min(args.total) {
            one(&mut kv, Workload::Put, key(i, args.key_size), &value).await?;
        }
    }

    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients.max(1) {
        let mut kv = KvClient::new(channels[c % channels.len()].clone());
        let issued = issued.clone();
        let errors = errors.clone();
        let value = value.clone();
        let (workload, total, key_space, key_size) =
            (args.workload, args.total, args.key_space, args.key_size);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0x2545_f491);
            while issued.fetch_add(1, Ordering::Relaxed) < total {
                let k = key(next_rand(&mut rng) % key_space.min(total).max(1), key_size);
                let t = Instant::now();
                if one(&mut kv, workload, k, &value).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let n = latencies.len() as f64;
    let throughput = n / elapsed.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p90, p99, p999) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
    );
    let errors = errors.load(Ordering::Relaxed);
    if args.json {
        println!(
            "{{\"workload\":\"{:?}\",\"clients\":{},\"requests\":{},\"errors\":{},\"seconds\":{:.3},\"throughput\":{:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3}}}",
            args.workload,
            args.clients,
            latencies.len(),
            errors,
            elapsed.as_secs_f64(),
            throughput,
            ms(p50),
            ms(p90),
            ms(p99),
            ms(p999)
        );
    } else {
        println!(
            "{:?}: {} requests, {} clients, {:.2} s, {:.0} req/s, errors {}\nlatency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}",
            args.workload,
            latencies.len(),
            args.clients,
            elapsed.as_secs_f64(),
            throughput,
            errors,
            ms(p50),
            ms(p90),
            ms(p99),
            ms(p999)
        );
    }
    Ok(())
}

/// Latency percentiles in milliseconds: p50, p90, p99, p99.9.
fn percentiles_ms(sorted: &[Duration]) -> [f64; 4] {
    [0.5, 0.9, 0.99, 0.999].map(|p| percentile(sorted, p).as_secs_f64() * 1000.0)
}

/// The `watch` workload: watchers on the key space, clients putting values stamped with
/// their send time; every delivery's latency is measured.
async fn run_watch(args: &BenchArgs, channels: &[Channel]) -> anyhow::Result<()> {
    use futures::StreamExt;
    use stead_server::pb::watch_client::WatchClient;

    let start = Instant::now();
    let mut watchers = Vec::new();
    for w in 0..args.watchers.max(1) {
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: b"bench/".to_vec(),
                    range_end: b"bench0".to_vec(),
                    ..Default::default()
                },
            )),
        };
        // The request side stays open for the life of the watch.
        let requests = futures::stream::iter([create]).chain(futures::stream::pending());
        let mut stream = WatchClient::new(channels[w % channels.len()].clone())
            .watch(requests)
            .await
            .context("opening a watch stream")?
            .into_inner();
        // Wait for `created` so no put is issued before the watch exists.
        stream
            .next()
            .await
            .context("watch stream ended")?
            .context("watch failed")?;
        let total = args.total;
        watchers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total as usize);
            while (lat.len() as u64) < total {
                let Ok(Some(Ok(resp))) =
                    tokio::time::timeout(Duration::from_secs(30), stream.next()).await
                else {
                    break;
                };
                let now = start.elapsed();
                for ev in resp.events {
                    if let Some(sent) = ev.kv.as_ref().and_then(|kv| kv.value.get(..8)) {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(sent);
                        lat.push(now.saturating_sub(Duration::from_nanos(u64::from_le_bytes(b))));
                    }
                }
            }
            lat
        }));
    }

    let issued = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for c in 0..args.clients.max(1) {
        let mut kv = KvClient::new(channels[c % channels.len()].clone());
        let issued = issued.clone();
        let (total, key_space, key_size, val_size) = (
            args.total,
            args.key_space,
            args.key_size,
            args.val_size.max(8),
        );
        writers.push(tokio::spawn(async move {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0x2545_f491);
            while issued.fetch_add(1, Ordering::Relaxed) < total {
                let k = key(next_rand(&mut rng) % key_space.max(1), key_size);
                let mut value = vec![b'v'; val_size];
                value[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_le_bytes());
                let _ = one(&mut kv, Workload::Put, k, &value).await;
            }
        }));
    }
    for w in writers {
        w.await?;
    }
    let put_secs = start.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for w in watchers {
        latencies.extend(w.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let [p50, p90, p99, p999] = percentiles_ms(&latencies);
    let delivered = latencies.len();
    let expected = args.total as usize * args.watchers.max(1);
    if args.json {
        println!(
            "{{\"workload\":\"Watch\",\"clients\":{},\"watchers\":{},\"puts_per_s\":{:.1},\"delivered\":{},\"expected\":{},\"events_per_s\":{:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3}}}",
            args.clients,
            args.watchers,
            args.total as f64 / put_secs,
            delivered,
            expected,
            delivered as f64 / secs,
            p50,
            p90,
            p99,
            p999
        );
    } else {
        println!(
            "Watch: {} watchers, {} clients: {:.0} puts/s; {delivered} of {expected} events delivered, {:.0} events/s\ndelivery latency ms: p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  p99.9 {p999:.3}",
            args.watchers,
            args.clients,
            args.total as f64 / put_secs,
            delivered as f64 / secs,
        );
    }
    if delivered < expected {
        anyhow::bail!("watchers missed {} events", expected - delivered);
    }
    Ok(())
}
