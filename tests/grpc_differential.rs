//! Differential test at the gRPC level: the same sequence of raw etcd v3 calls (a
//! programmatic client, like clientv3 or the etcd-client crate) against etcd 3.4 and
//! against stead must return equal responses, field by field. Only ids, terms and hashes
//! are normalised.

mod common;

use std::time::Duration;

use common::{start_etcd, start_stead};
use futures::StreamExt;
use stead_server::pb;
use stead_server::pb::kv_client::KvClient;
use stead_server::pb::lease_client::LeaseClient;
use stead_server::pb::maintenance_client::MaintenanceClient;
use stead_server::pb::watch_client::WatchClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

fn clean(h: &mut Option<pb::ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn clean_txn(r: &mut pb::TxnResponse) {
    use pb::response_op::Response;
    clean(&mut r.header);
    for op in &mut r.responses {
        match &mut op.response {
            Some(Response::ResponseRange(x)) => clean(&mut x.header),
            Some(Response::ResponsePut(x)) => clean(&mut x.header),
            Some(Response::ResponseDeleteRange(x)) => clean(&mut x.header),
            Some(Response::ResponseTxn(x)) => clean_txn(x),
            None => {}
        }
    }
}

/// Renders a call's outcome; errors as code and message.
fn show<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(s) => format!("ERR {:?} {}", s.code(), s.message()),
    }
}

fn range(key: &str, end: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn op_put(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(put(key, value))),
    }
}

fn op_range(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(range(key, ""))),
    }
}

fn op_del(key: &str, end: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                range_end: end.as_bytes().to_vec(),
                prev_kv: true,
            },
        )),
    }
}

fn cmp_mod(key: &str, result: pb::compare::CompareResult, rev: i64) -> pb::Compare {
    pb::Compare {
        result: result as i32,
        target: pb::compare::CompareTarget::Mod as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(pb::compare::TargetUnion::ModRevision(rev)),
        range_end: Vec::new(),
    }
}

fn create(key: &str, start: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: key.as_bytes().to_vec(),
                range_end: b"\0".to_vec(),
                start_revision: start,
                prev_kv: true,
                ..Default::default()
            },
        )),
    }
}

/// Runs the whole call sequence against one server and returns one line per call.
async fn session(endpoint: &str) -> Vec<String> {
    let channel = Channel::from_shared(format!("http://{endpoint}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut kv = KvClient::new(channel.clone());
    let mut lease = LeaseClient::new(channel.clone());
    let mut maint = MaintenanceClient::new(channel.clone());
    let mut out = Vec::new();
    macro_rules! rec {
        ($call:expr, |$r:ident| $fix:expr) => {{
            let res = $call.await.map(|r| {
                let mut $r = r.into_inner();
                $fix;
                $r
            });
            out.push(show(res));
        }};
    }
    use pb::compare::CompareResult::*;

    for (k, v) in [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("a", "4"),
        ("d", "5"),
        ("b", "6"),
    ] {
        rec!(kv.put(put(k, v)), |r| clean(&mut r.header));
    }
    rec!(
        kv.put(pb::PutRequest {
            prev_kv: true,
            ..put("a", "7")
        }),
        |r| clean(&mut r.header)
    );
    rec!(
        kv.put(pb::PutRequest {
            ignore_value: true,
            key: b"a".to_vec(),
            ..Default::default()
        }),
        |r| clean(&mut r.header)
    );
    rec!(
        kv.put(pb::PutRequest {
            ignore_value: true,
            key: b"zz".to_vec(),
            ..Default::default()
        }),
        |r| clean(&mut r.header)
    );
    rec!(
        kv.put(pb::PutRequest {
            ignore_lease: true,
            ..put("b", "8")
        }),
        |r| clean(&mut r.header)
    );
    rec!(
        kv.put(pb::PutRequest {
            ignore_value: true,
            ..put("b", "9")
        }),
        |r| clean(&mut r.header)
    );
    let filters = [
        pb::RangeRequest {
            min_mod_revision: 4,
            ..range("a", "\0")
        },
        pb::RangeRequest {
            max_mod_revision: 5,
            ..range("a", "\0")
        },
        pb::RangeRequest {
            min_create_revision: 3,
            max_create_revision: 4,
            ..range("a", "\0")
        },
        pb::RangeRequest {
            limit: 2,
            ..range("a", "\0")
        },
        pb::RangeRequest {
            limit: 2,
            sort_order: 2,
            sort_target: 3,
            ..range("a", "\0")
        },
        pb::RangeRequest {
            limit: 1,
            min_mod_revision: 3,
            ..range("a", "\0")
        },
        pb::RangeRequest {
            keys_only: true,
            revision: 4,
            ..range("a", "\0")
        },
        pb::RangeRequest {
            count_only: true,
            revision: 3,
            ..range("a", "\0")
        },
        pb::RangeRequest {
            sort_order: 1,
            sort_target: 4,
            ..range("\0", "\0")
        },
        pb::RangeRequest {
            sort_order: 0,
            sort_target: 1,
            ..range("a", "\0")
        },
        pb::RangeRequest {
            sort_order: 2,
            sort_target: 0,
            limit: 3,
            ..range("a", "\0")
        },
        range("b", "a"),
        range("\0", "\0"),
    ];
    for req in filters {
        rec!(kv.range(req), |r| clean(&mut r.header));
    }
    rec!(
        kv.delete_range(pb::DeleteRangeRequest {
            key: b"c".to_vec(),
            range_end: b"e".to_vec(),
            prev_kv: true
        }),
        |r| clean(&mut r.header)
    );
    // Txns: inner responses, nested txns, compares on absent keys.
    rec!(
        kv.txn(pb::TxnRequest {
            compare: vec![cmp_mod("a", Greater, 0), cmp_mod("c", Equal, 0)],
            success: vec![
                op_put("c", "10"),
                op_range("c"),
                pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestTxn(pb::TxnRequest {
                        compare: vec![cmp_mod("b", Less, 3)],
                        success: vec![op_put("n", "yes")],
                        failure: vec![op_put("n", "no"), op_range("n")],
                    })),
                },
                op_del("x", "z"),
            ],
            failure: vec![op_range("a")],
        }),
        |r| clean_txn(&mut r)
    );
    rec!(
        kv.txn(pb::TxnRequest {
            compare: vec![pb::Compare {
                result: Equal as i32,
                target: pb::compare::CompareTarget::Value as i32,
                key: b"a".to_vec(),
                range_end: b"c".to_vec(),
                target_union: Some(pb::compare::TargetUnion::Value(b"7".to_vec())),
            }],
            success: vec![op_range("a")],
            failure: vec![op_del("a", "b")],
        }),
        |r| clean_txn(&mut r)
    );
    rec!(
        kv.txn(pb::TxnRequest {
            success: vec![op_del("a", "z"), op_put("q", "1")],
            ..Default::default()
        }),
        |r| clean_txn(&mut r)
    );
    rec!(kv.txn(pb::TxnRequest::default()), |r| clean_txn(&mut r));

    // Leases with chosen ids.
    rec!(
        lease.lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 77 }),
        |r| clean(&mut r.header)
    );
    rec!(
        lease.lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 77 }),
        |r| clean(&mut r.header)
    );
    rec!(
        lease.lease_grant(pb::LeaseGrantRequest {
            ttl: 9_000_000_001,
            id: 78
        }),
        |r| clean(&mut r.header)
    );
    rec!(
        kv.put(pb::PutRequest {
            lease: 77,
            ..put("l1", "x")
        }),
        |r| clean(&mut r.header)
    );
    rec!(
        kv.put(pb::PutRequest {
            ignore_lease: true,
            ..put("l1", "y")
        }),
        |r| clean(&mut r.header)
    );
    rec!(kv.range(range("l1", "")), |r| clean(&mut r.header));
    rec!(
        lease.lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: 4242,
            keys: true
        }),
        |r| clean(&mut r.header)
    );
    rec!(lease.lease_revoke(pb::LeaseRevokeRequest { id: 77 }), |r| {
        clean(&mut r.header)
    });
    rec!(kv.range(range("l1", "")), |r| clean(&mut r.header));
    rec!(lease.lease_leases(pb::LeaseLeasesRequest {}), |r| clean(
        &mut r.header
    ));

    // Watches: history with prev_kv, progress, a chosen id, a duplicate id, cancel, and a
    // compacted start revision.
    rec!(
        kv.compact(pb::CompactionRequest {
            revision: 6,
            physical: true
        }),
        |r| clean(&mut r.header)
    );
    rec!(maint.hash_kv(pb::HashKvRequest { revision: 0 }), |r| {
        clean(&mut r.header);
        r.hash = 0;
    });
    let (tx, rx) = mpsc::channel(16);
    // etcd sends response headers with its first message: queue a request before the call
    // so that the call can return.
    tx.send(create("a", 7)).await.expect("send");
    let mut watch = WatchClient::new(channel.clone())
        .watch(ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    let mut next = async || {
        let mut r = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("watch response in time")
            .expect("stream open")
            .expect("no error");
        clean(&mut r.header);
        format!("{r:?}")
    };
    out.push(next().await);
    out.push(next().await);
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    })
    .await
    .expect("send");
    out.push(next().await);
    let mut with_id = create("q", 0);
    if let Some(pb::watch_request::RequestUnion::CreateRequest(c)) = &mut with_id.request_union {
        c.watch_id = 9;
        c.filters = vec![pb::watch_create_request::FilterType::Nodelete as i32];
    }
    tx.send(with_id.clone()).await.expect("send");
    out.push(next().await);
    kv.put(put("q", "live")).await.expect("put");
    kv.delete_range(pb::DeleteRangeRequest {
        key: b"q".to_vec(),
        ..Default::default()
    })
    .await
    .expect("delete");
    kv.put(put("q", "again")).await.expect("put");
    // Watcher 0 (every key from "a") sees all three changes; watcher 9 filters the delete:
    // five responses.
    // Responses of different watchers for one revision may come in either order (etcd's
    // order varies from run to run): compare them sorted.
    let mut block = Vec::new();
    for _ in 0..5 {
        block.push(next().await);
    }
    block.sort();
    out.extend(block);
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest { watch_id: 9 },
        )),
    })
    .await
    .expect("send");
    out.push(next().await);
    tx.send(create("a", 3)).await.expect("send");
    out.push(next().await);
    out.push(next().await);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_return_the_same_responses_from_stead_and_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_etcd(&dir.path().join("etcd"));
    let stead = start_stead(&dir.path().join("stead"), &[]);
    let want = session(&etcd.endpoint).await;
    let got = session(&stead.endpoint).await;
    assert_eq!(want.len(), got.len());
    let diffs: Vec<String> = want
        .iter()
        .zip(&got)
        .enumerate()
        .filter(|(_, (w, g))| w != g)
        .map(|(i, (w, g))| format!("call {i}:\n  etcd:  {w}\n  stead: {g}"))
        .collect();
    println!("compared {} gRPC calls", want.len());
    assert!(
        diffs.is_empty(),
        "{} of {} calls differ:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}
