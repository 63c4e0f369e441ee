//! The etcd v3 workloads: put, range, txn-put, txn-mixed, watch and lease-keepalive. They
//! speak only the etcd API, so the same run measures stead and etcd.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde_json::json;
use stead_server::pb;
use stead_server::pb::kv_client::KvClient;
use stead_server::pb::lease_client::LeaseClient;
use stead_server::pb::watch_client::WatchClient;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::driver::{Outcome, collect, gather};
use super::{BenchArgs, Report, Workload};

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

/// One client's connection and random state.
struct Client {
    kv: KvClient<Channel>,
    rng: u64,
}

impl Client {
    fn key(&mut self, seq: u64, args: &Settings) -> Vec<u8> {
        let i = if args.sequential {
            seq % args.key_space
        } else {
            next_rand(&mut self.rng) % args.key_space
        };
        key(i, args.key_size)
    }

    fn chance(&mut self) -> f64 {
        (next_rand(&mut self.rng) % 1_000_000) as f64 / 1_000_000.0
    }
}

/// The settings an operation needs, copied out of the arguments.
#[derive(Clone)]
struct Settings {
    workload: Workload,
    key_size: usize,
    key_space: u64,
    sequential: bool,
    prefix: bool,
    limit: i64,
    read_ratio: f64,
    value: Vec<u8>,
}

fn put(key: Vec<u8>, value: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key,
            value: value.to_vec(),
            ..Default::default()
        })),
    }
}

async fn one(client: &mut Client, seq: u64, s: &Settings) -> Result<(), tonic::Status> {
    let key = client.key(seq, s);
    match s.workload {
        Workload::Range | Workload::RangeSerializable => {
            let (key, range_end, limit) = if s.prefix {
                (b"bench/".to_vec(), b"bench0".to_vec(), s.limit)
            } else {
                (key, Vec::new(), 0)
            };
            client
                .kv
                .range(pb::RangeRequest {
                    key,
                    range_end,
                    limit,
                    serializable: s.workload == Workload::RangeSerializable,
                    ..Default::default()
                })
                .await?;
        }
        Workload::TxnPut => {
            client
                .kv
                .txn(pb::TxnRequest {
                    compare: vec![pb::Compare {
                        result: pb::compare::CompareResult::Greater as i32,
                        target: pb::compare::CompareTarget::Mod as i32,
                        key: key.clone(),
                        target_union: Some(pb::compare::TargetUnion::ModRevision(-1)),
                        range_end: Vec::new(),
                    }],
                    success: vec![put(key, &s.value)],
                    failure: Vec::new(),
                })
                .await?;
        }
        Workload::TxnMixed => {
            let op = if client.chance() < s.read_ratio {
                pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                        key,
                        ..Default::default()
                    })),
                }
            } else {
                put(key, &s.value)
            };
            client
                .kv
                .txn(pb::TxnRequest {
                    success: vec![op],
                    ..Default::default()
                })
                .await?;
        }
        _ => {
            client
                .kv
                .put(pb::PutRequest {
                    key,
                    value: s.value.clone(),
                    ..Default::default()
                })
                .await?;
        }
    }
    Ok(())
}

/// Connections to the endpoints, `conns` of them, round-robin.
pub(crate) async fn connect(args: &BenchArgs) -> anyhow::Result<Vec<Channel>> {
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
    Ok(channels)
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let channels = connect(args).await?;
    match args.workload {
        Workload::Watch => return run_watch(args, &channels).await,
        Workload::LeaseKeepalive => return run_keepalive(args, &channels).await,
        _ => {}
    }
    let settings = Settings {
        workload: args.workload,
        key_size: args.key_size,
        key_space: args.key_space.max(1),
        sequential: args.sequential,
        prefix: args.prefix,
        limit: args.limit,
        read_ratio: args.read_ratio,
        value: vec![b'v'; args.val_size],
    };
    if matches!(
        args.workload,
        Workload::Range | Workload::RangeSerializable | Workload::TxnMixed
    ) {
        // Reads need keys to exist: write the key space once.
        let mut kv = KvClient::new(channels[0].clone());
        for i in 0..settings.key_space.min(100_000) {
            kv.put(pb::PutRequest {
                key: key(i, args.key_size),
                value: settings.value.clone(),
                ..Default::default()
            })
            .await
            .context("loading the key space")?;
        }
    }
    let driver = args.driver();
    let clients: Vec<(Client, Settings)> = (0..driver.clients)
        .map(|c| {
            let client = Client {
                kv: KvClient::new(channels[c % channels.len()].clone()),
                rng: 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0x2545_f491),
            };
            (client, settings.clone())
        })
        .collect();
    let outcome = driver
        .run(
            clients,
            |(mut client, settings): (Client, Settings), seq| async move {
                let result = one(&mut client, seq, &settings).await;
                ((client, settings), result)
            },
        )
        .await;
    Ok(Report {
        workload: args.workload,
        clients: driver.clients,
        outcome,
        extra: Vec::new(),
    })
}

/// One client's keep-alive stream on its own lease.
struct KeepAlive {
    id: i64,
    requests: mpsc::Sender<pb::LeaseKeepAliveRequest>,
    responses: tonic::Streaming<pb::LeaseKeepAliveResponse>,
}

async fn keep_alive_once(k: &mut KeepAlive) -> Result<(), tonic::Status> {
    k.requests
        .send(pb::LeaseKeepAliveRequest { id: k.id })
        .await
        .map_err(|_| tonic::Status::cancelled("the keep-alive stream closed"))?;
    match k.responses.next().await {
        Some(Ok(resp)) if resp.ttl > 0 => Ok(()),
        Some(Ok(_)) => Err(tonic::Status::not_found("the lease expired")),
        Some(Err(status)) => Err(status),
        None => Err(tonic::Status::cancelled("the keep-alive stream ended")),
    }
}

/// `lease-keepalive`: one lease per client, renewed over keep-alive streams.
async fn run_keepalive(args: &BenchArgs, channels: &[Channel]) -> anyhow::Result<Report> {
    let driver = args.driver();
    let mut clients = Vec::new();
    for c in 0..driver.clients {
        let mut lease = LeaseClient::new(channels[c % channels.len()].clone());
        let id = lease
            .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 })
            .await
            .context("granting a lease")?
            .into_inner()
            .id;
        // A first keep-alive goes in before the call: a Go gRPC server (etcd) sends the
        // response headers only with its first message, which the call waits for.
        let (requests, rx) = mpsc::channel(1);
        requests
            .send(pb::LeaseKeepAliveRequest { id })
            .await
            .context("queueing the first keep-alive")?;
        let responses = lease
            .lease_keep_alive(ReceiverStream::new(rx))
            .await
            .context("opening a keep-alive stream")?
            .into_inner();
        let mut stream = KeepAlive {
            id,
            requests,
            responses,
        };
        match stream.responses.next().await {
            Some(Ok(_)) => {}
            other => anyhow::bail!("the first keep-alive got no answer: {other:?}"),
        }
        clients.push(stream);
    }
    let ids: Vec<i64> = clients.iter().map(|k| k.id).collect();
    let outcome = driver
        .run(clients, |mut k: KeepAlive, _| async move {
            let result = keep_alive_once(&mut k).await;
            (k, result)
        })
        .await;
    let mut lease = LeaseClient::new(channels[0].clone());
    for id in ids {
        let _ = lease.lease_revoke(pb::LeaseRevokeRequest { id }).await;
    }
    Ok(Report {
        workload: args.workload,
        clients: driver.clients,
        outcome,
        extra: Vec::new(),
    })
}

/// `watch`: watchers on the key space, clients putting values stamped with their send time;
/// every delivery's latency is measured, and every watcher must see every put.
async fn run_watch(args: &BenchArgs, channels: &[Channel]) -> anyhow::Result<Report> {
    let start = Instant::now();
    let (expect, expected) = tokio::sync::watch::channel(None);
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
        let expected = expected.clone();
        watchers.push(tokio::spawn(async move {
            collect(stream, expected, Duration::from_secs(5), |resp| {
                let now = start.elapsed();
                let Ok(resp) = resp else { return Vec::new() };
                resp.events
                    .iter()
                    .filter_map(|ev| ev.kv.as_ref().and_then(|kv| kv.value.get(..8)))
                    .map(|sent| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(sent);
                        now.saturating_sub(Duration::from_nanos(u64::from_le_bytes(b)))
                    })
                    .collect()
            })
            .await
        }));
    }

    let driver = args.driver();
    let (key_space, key_size, val_size) =
        (args.key_space.max(1), args.key_size, args.val_size.max(8));
    let writers: Vec<(KvClient<Channel>, u64)> = (0..driver.clients)
        .map(|c| {
            (
                KvClient::new(channels[c % channels.len()].clone()),
                0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0x2545_f491),
            )
        })
        .collect();
    let puts = driver
        .run(
            writers,
            move |(mut kv, mut rng): (KvClient<Channel>, u64), _| async move {
                let k = key(next_rand(&mut rng) % key_space, key_size);
                let mut value = vec![b'v'; val_size];
                value[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_le_bytes());
                let result = kv
                    .put(pb::PutRequest {
                        key: k,
                        value,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ());
                ((kv, rng), result)
            },
        )
        .await;
    let put_secs = puts.elapsed.as_secs_f64();
    let _ = expect.send(Some(puts.latencies.len()));
    let (latencies, window) = gather(watchers, start).await?;
    let secs = window.as_secs_f64().max(f64::EPSILON);
    let delivered = latencies.len();
    let expected = puts.latencies.len() * args.watchers.max(1);
    let outcome = Outcome {
        latencies,
        errors: puts.errors,
        elapsed: window,
    };
    let report = Report {
        workload: Workload::Watch,
        clients: driver.clients,
        outcome,
        extra: vec![
            ("watchers", json!(args.watchers)),
            ("puts_per_s", json!(puts.latencies.len() as f64 / put_secs)),
            ("delivered", json!(delivered)),
            ("expected", json!(expected)),
            ("events_per_s", json!(delivered as f64 / secs)),
        ],
    };
    if delivered < expected {
        anyhow::bail!("watchers missed {} events", expected - delivered);
    }
    Ok(report)
}
