//! The backend quota (`--quota-backend-bytes`): writes past it fail with etcd's
//! `ResourceExhausted "etcdserver: mvcc: database space exceeded"` and raise the NOSPACE
//! alarm; while it is raised reads, deletes, compaction and defragmentation work and every
//! write that could grow the database fails; after compact + defrag + `alarm disarm`
//! writes work again. The same scenario runs against real etcd 3.4 with the same quota.

mod common;
#[path = "common/http.rs"]
mod http;

use common::{Proc, etcdctl, start_etcd_with, start_stead};
use stead_server::pb;
use stead_server::pb::kv_client::KvClient;
use tonic::Code;
use tonic::transport::Channel;

/// Small enough to fill in a few dozen writes, on both backends.
const QUOTA: &str = "2000000";
const VALUE_BYTES: usize = 100_000;
/// Writes rotate over this many keys, so that compaction frees most of the space.
const KEYS: usize = 4;
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

fn put_req(key: &str, value: Vec<u8>) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        ..Default::default()
    }
}

fn assert_no_space<T: std::fmt::Debug>(r: Result<T, tonic::Status>, what: &str, name: &str) {
    let status = r.expect_err(&format!("{name}: {what} succeeded past the quota"));
    assert_eq!(
        (status.code(), status.message()),
        (Code::ResourceExhausted, NO_SPACE),
        "{name}: {what}"
    );
}

fn ctl(server: &Proc, args: &[&str]) -> String {
    let out = etcdctl(&server.endpoint, args, None);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `/health` status and body (etcd ends its 503 body with a newline: `http.Error`).
fn health(server: &Proc) -> (u16, String) {
    let r = http::get(&server.endpoint, "/health");
    (r.status, r.text().trim_end().to_string())
}

/// The whole scenario against one server; `name` labels failures.
async fn fill_alarm_and_recover(server: &Proc, name: &str) {
    let channel = Channel::from_shared(format!("http://{}", server.endpoint))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut kv = KvClient::new(channel.clone());
    let mut lease = pb::lease_client::LeaseClient::new(channel.clone());
    let mut maint = pb::maintenance_client::MaintenanceClient::new(channel);

    // Fill until the quota refuses a put.
    let mut written = 0;
    let refused = loop {
        assert!(
            written < 200,
            "{name}: 200 puts of 100 kB fit in a 2 MB quota"
        );
        let value = vec![b'a' + (written % 26) as u8; VALUE_BYTES];
        match kv
            .put(put_req(&format!("q{}", written % KEYS), value))
            .await
        {
            Ok(_) => written += 1,
            Err(status) => break status,
        }
    };
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::ResourceExhausted, NO_SPACE),
        "{name}"
    );
    assert!(
        written >= 3,
        "{name}: only {written} puts fit under the quota"
    );

    // The alarm is raised on behalf of this member.
    let status = maint
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let member = status.header.expect("header").member_id;
    let alarm_line = format!("memberID:{member} alarm:NOSPACE \n");
    assert_eq!(ctl(server, &["alarm", "list"]), alarm_line, "{name}");
    assert_eq!(
        status.errors,
        vec![alarm_line.trim_end_matches('\n').to_string()],
        "{name}"
    );
    assert_eq!(
        health(server),
        (503, r#"{"health":"false"}"#.to_string()),
        "{name}"
    );

    // Everything that could grow the database fails, even a tiny put.
    assert_no_space(
        kv.put(put_req("tiny", b"x".to_vec())).await,
        "a tiny put",
        name,
    );
    assert_no_space(
        kv.txn(pb::TxnRequest {
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(put_req(
                    "t",
                    b"x".to_vec(),
                ))),
            }],
            ..Default::default()
        })
        .await,
        "a txn with a put",
        name,
    );
    assert_no_space(
        lease
            .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 })
            .await,
        "a lease grant",
        name,
    );

    // Reads, read-only txns and deletes still work.
    let got = kv
        .range(pb::RangeRequest {
            key: b"q0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: a read under NOSPACE failed: {e}"))
        .into_inner();
    assert_eq!(got.kvs.len(), 1, "{name}");
    assert_eq!(got.kvs[0].value.len(), VALUE_BYTES, "{name}");
    kv.txn(pb::TxnRequest {
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                key: b"q1".to_vec(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{name}: a read-only txn under NOSPACE failed: {e}"));
    let deleted = kv
        .delete_range(pb::DeleteRangeRequest {
            key: format!("q{}", KEYS - 1).into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: a delete under NOSPACE failed: {e}"))
        .into_inner();
    assert_eq!(deleted.deleted, 1, "{name}");
    assert_no_space(
        kv.put(put_req("tiny", b"x".to_vec())).await,
        "a put after a delete",
        name,
    );

    // Compact and defragment: space is back, but the alarm stays until disarmed.
    let revision = deleted.header.expect("header").revision;
    assert_eq!(
        ctl(server, &["compact", &revision.to_string()]),
        format!("compacted revision {revision}\n"),
        "{name}"
    );
    assert!(
        ctl(server, &["defrag"]).starts_with("Finished defragmenting etcd member["),
        "{name}"
    );
    let size = maint
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .db_size;
    assert!(
        size < QUOTA.parse::<i64>().expect("quota"),
        "{name}: {size} bytes after compact + defrag"
    );
    assert_no_space(
        kv.put(put_req("tiny", b"x".to_vec())).await,
        "a put before disarm",
        name,
    );
    assert_eq!(ctl(server, &["alarm", "disarm"]), alarm_line, "{name}");
    assert_eq!(ctl(server, &["alarm", "list"]), "", "{name}");
    assert_eq!(
        health(server),
        (200, r#"{"health":"true"}"#.to_string()),
        "{name}"
    );
    kv.put(put_req("tiny", b"x".to_vec()))
        .await
        .unwrap_or_else(|e| panic!("{name}: a put after disarm failed: {e}"));
    assert_eq!(ctl(server, &["get", "tiny", "--print-value-only"]), "x\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_quota_raise_nospace_until_compact_defrag_and_disarm_like_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let quota = ["--quota-backend-bytes", QUOTA];
    let etcd = start_etcd_with(&dir.path().join("etcd"), &quota);
    fill_alarm_and_recover(&etcd, "etcd").await;
    let stead = start_stead(&dir.path().join("stead"), &quota);
    fill_alarm_and_recover(&stead, "stead").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nospace_alarm_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("stead");
    let quota = ["--quota-backend-bytes", QUOTA];
    let mut stead = start_stead(&data, &quota);
    let channel = Channel::from_shared(format!("http://{}", stead.endpoint))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut kv = KvClient::new(channel);
    let mut refused = None;
    for i in 0..200 {
        if let Err(status) = kv
            .put(put_req(&format!("q{}", i % KEYS), vec![b'v'; VALUE_BYTES]))
            .await
        {
            refused = Some(status);
            break;
        }
    }
    assert_eq!(
        refused.map(|s| s.code()),
        Some(Code::ResourceExhausted),
        "the quota never refused a put"
    );
    stead.kill();
    let stead = start_stead(&data, &quota);
    let alarms = ctl(&stead, &["alarm", "list"]);
    assert!(alarms.ends_with("alarm:NOSPACE \n"), "{alarms:?}");
    let out = etcdctl(&stead.endpoint, &["put", "tiny", "x"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(NO_SPACE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
