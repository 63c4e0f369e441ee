//! Three-member clusters of real `stead serve` processes: any member serves any request,
//! and killing the leader under write load loses no acknowledged write.

mod common;
#[path = "common/http.rs"]
mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, etcdctl};
use stead_server::pb;
use stead_server::pb::kv_client::KvClient;
use stead_server::pb::maintenance_client::MaintenanceClient;
use tonic::transport::Channel;

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(format!("http://{endpoint}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

fn ctl_ok(endpoint: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoint, args, None);
    assert!(
        out.status.success(),
        "etcdctl {args:?} against {endpoint} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`ctl_ok`], but retries while the command fails (an election or a membership change
/// in flight can refuse it for a moment) until a deadline.
fn ctl_retry(endpoint: &str, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = etcdctl(endpoint, args, None);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "etcdctl {args:?} against {endpoint} kept failing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn status(endpoint: &str) -> Option<pb::StatusResponse> {
    let mut m = MaintenanceClient::new(channel(endpoint).await);
    m.status(pb::StatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Waits until the reachable members agree on a leader; returns the leader's member index.
async fn leader(cluster: &Cluster, deadline: Duration) -> usize {
    let until = Instant::now() + deadline;
    loop {
        let mut ids = HashMap::new();
        let mut leaders = Vec::new();
        for i in 0..cluster.members.len() {
            if cluster.members[i].is_none() {
                continue;
            }
            if let Some(s) = status(&cluster.endpoint(i)).await {
                ids.insert(s.header.map(|h| h.member_id).unwrap_or(0), i);
                leaders.push(s.leader);
            }
        }
        if let Some(first) = leaders.first()
            && *first != 0
            && leaders.iter().all(|l| l == first)
            && let Some(i) = ids.get(first)
        {
            return *i;
        }
        assert!(
            Instant::now() < until,
            "no agreed leader within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_serves_writes_and_linearizable_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), 3);
    leader(&cluster, Duration::from_secs(20)).await;
    for i in 0..3 {
        let key = format!("k{i}");
        ctl_ok(&cluster.endpoint(i), &["put", &key, &format!("v{i}")]);
        // Read the write back through every member, right away: follower reads must be
        // linearizable, not eventually consistent.
        for j in 0..3 {
            let got = ctl_ok(&cluster.endpoint(j), &["get", &key, "--print-value-only"]);
            assert_eq!(got.trim(), format!("v{i}"), "member {j} reading {key}");
        }
    }
    let list = ctl_ok(&cluster.endpoint(1), &["member", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    // One revision per write, the same everywhere.
    for j in 0..3 {
        let json = ctl_ok(&cluster.endpoint(j), &["get", "k2", "-w", "json"]);
        assert!(json.contains("\"mod_revision\":4"), "member {j}: {json}");
    }
}

/// The read indexes a member named as leader, vouched for by `vouch` (from `/metrics`).
fn read_indexes(endpoint: &str, vouch: &str) -> u64 {
    let text = http::get(endpoint, "/metrics").text();
    let line = format!("stead_read_index_total{{vouched_by=\"{vouch}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or_else(|| panic!("no {line:?} in /metrics:\n{text}"))
}

/// With three voters, a follower and the leader are a quorum: the follower's own saved vote
/// vouches for the leader's read index instead of a heartbeat round. Each read at the
/// follower must still see the write acknowledged just before it, and the rounds must have
/// gone that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_reads_vouched_for_by_the_follower_see_each_write_acknowledged_before_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), 3);
    let first = leader(&cluster, Duration::from_secs(20)).await;
    let follower = (first + 1) % 3;
    let mut at_leader = KvClient::new(channel(&cluster.endpoint(first)).await);
    let mut at_follower = KvClient::new(channel(&cluster.endpoint(follower)).await);
    let before = read_indexes(&cluster.endpoint(first), "asker");
    let reads = 20;
    for i in 0..reads {
        let value = format!("v{i}").into_bytes();
        at_leader
            .put(pb::PutRequest {
                key: b"k".to_vec(),
                value: value.clone(),
                ..Default::default()
            })
            .await
            .expect("put at the leader");
        let got = at_follower
            .range(pb::RangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await
            .expect("linearizable read at a follower")
            .into_inner();
        assert_eq!(
            got.kvs.first().map(|kv| kv.value.clone()),
            Some(value),
            "read {i} at the follower missed the write acknowledged before it"
        );
    }
    let vouched = read_indexes(&cluster.endpoint(first), "asker") - before;
    assert!(
        vouched >= reads,
        "{vouched} of {reads} follower reads were vouched for by the follower"
    );
}

/// A follower gathers the writes that wait for the leader into shared calls; each caller
/// must still get its own write's outcome: its revision, or its own error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_at_a_follower_each_get_their_own_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), 3);
    let follower = (leader(&cluster, Duration::from_secs(20)).await + 1) % 3;
    let kv = KvClient::new(channel(&cluster.endpoint(follower)).await);
    let writes = (0..200).map(|i| {
        let mut kv = kv.clone();
        async move {
            // Every fifth write keeps the value of a key that does not exist: etcd refuses it.
            let keep = i % 5 == 0;
            let req = pb::PutRequest {
                key: format!("f{i}").into_bytes(),
                value: if keep {
                    Vec::new()
                } else {
                    format!("v{i}").into_bytes()
                },
                ignore_value: keep,
                ..Default::default()
            };
            (i, kv.put(req).await)
        }
    });
    let outcomes = futures::future::join_all(writes).await;
    let mut revisions = std::collections::BTreeSet::new();
    let mut kv = KvClient::new(channel(&cluster.endpoint(follower)).await);
    for (i, outcome) in outcomes {
        let key = format!("f{i}");
        let got = kv
            .range(pb::RangeRequest {
                key: key.clone().into_bytes(),
                ..Default::default()
            })
            .await
            .expect("range")
            .into_inner();
        if i % 5 == 0 {
            let status = outcome.expect_err("keeping the value of a missing key must fail");
            assert_eq!(status.message(), "etcdserver: key not found", "{key}");
            assert!(got.kvs.is_empty(), "{key} was written: {:?}", got.kvs);
            continue;
        }
        let revision = outcome
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .into_inner()
            .header
            .expect("header")
            .revision;
        assert!(
            revisions.insert(revision),
            "{key}: revision {revision} answered twice"
        );
        let stored = got
            .kvs
            .first()
            .unwrap_or_else(|| panic!("{key} is missing"));
        assert_eq!(stored.value, format!("v{i}").into_bytes(), "{key}");
        assert_eq!(
            stored.mod_revision, revision,
            "{key} answered another write's revision"
        );
    }
    assert_eq!(revisions.len(), 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_write_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3);
    let old_leader = leader(&cluster, Duration::from_secs(20)).await;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();

    let acked: Arc<Mutex<Vec<(String, i64, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..12 {
        let (acked, stop, endpoints) = (acked.clone(), stop.clone(), endpoints.clone());
        writers.push(tokio::spawn(async move {
            let mut target = w % endpoints.len();
            let mut kv = KvClient::new(channel(&endpoints[target]).await);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w:02}/{i:05}");
                let put = pb::PutRequest {
                    key: key.clone().into_bytes(),
                    value: key.clone().into_bytes(),
                    ..Default::default()
                };
                match kv.put(put).await {
                    Ok(resp) => {
                        let rev = resp.into_inner().header.map(|h| h.revision).unwrap_or(0);
                        acked.lock().expect("lock").push((key, rev, Instant::now()));
                        i += 1;
                    }
                    Err(_) => {
                        // Unknown outcome: move on to a fresh key on another member.
                        i += 1;
                        target = (target + 1) % endpoints.len();
                        kv = KvClient::new(channel(&endpoints[target]).await);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    cluster.kill(old_leader);
    let new_leader = leader(&cluster, Duration::from_secs(15)).await;
    assert_ne!(new_leader, old_leader);
    let elected_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    let after_kill = acked.iter().filter(|(_, _, t)| *t > killed_at).count();
    assert!(
        after_kill > 0,
        "no write succeeded after the leader was killed"
    );

    cluster.restart(old_leader);
    // Every member, the restarted one included, must end up with every acknowledged write.
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..3 {
        let mut kv = KvClient::new(channel(&cluster.endpoint(i)).await);
        loop {
            let resp = kv
                .range(pb::RangeRequest {
                    key: b"w".to_vec(),
                    range_end: b"x".to_vec(),
                    serializable: true,
                    ..Default::default()
                })
                .await;
            let stored: HashMap<Vec<u8>, i64> = match resp {
                Ok(r) => r
                    .into_inner()
                    .kvs
                    .into_iter()
                    .map(|kv| (kv.key, kv.mod_revision))
                    .collect(),
                Err(_) => HashMap::new(),
            };
            let missing: Vec<&(String, i64, Instant)> = acked
                .iter()
                .filter(|(k, rev, _)| stored.get(k.as_bytes()) != Some(rev))
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} lacks {} acknowledged writes, e.g. {:?}",
                missing.len(),
                missing.first()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // And the members agree byte for byte.
    let mut hashes = Vec::new();
    for i in 0..3 {
        let mut m = MaintenanceClient::new(channel(&cluster.endpoint(i)).await);
        let rev = acked.iter().map(|(_, r, _)| *r).max().unwrap_or(0);
        let h = m
            .hash_kv(pb::HashKvRequest { revision: rev })
            .await
            .expect("hashkv")
            .into_inner();
        hashes.push(h.hash);
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "HashKV differs: {hashes:?}"
    );
    println!(
        "{} writes acknowledged ({} after the leader was killed); new leader agreed after {:?}; all members equal",
        acked.len(),
        after_kill,
        elected_after
    );
}

/// The member id `member list` prints for a member (hex), found by its peer URL.
fn member_id_hex(endpoint: &str, peer_url: &str) -> String {
    let list = ctl_ok(endpoint, &["member", "list"]);
    list.lines()
        .find(|l| l.contains(peer_url))
        .and_then(|l| l.split(',').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{peer_url} not in member list:\n{list}"))
}

/// Waits until member `i` serves `key` with `value` from its own state.
async fn wait_for_value(cluster: &Cluster, i: usize, key: &str, value: &str, within: Duration) {
    let until = Instant::now() + within;
    let mut kv = KvClient::new(channel(&cluster.endpoint(i)).await);
    loop {
        let got = kv
            .range(pb::RangeRequest {
                key: key.as_bytes().to_vec(),
                serializable: true,
                ..Default::default()
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().kvs.into_iter().next())
            .map(|kv| kv.value);
        if got.as_deref() == Some(value.as_bytes()) {
            return;
        }
        assert!(Instant::now() < until, "member {i} never got {key}={value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_is_added_promoted_and_another_member_removed_while_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3);
    leader(&cluster, Duration::from_secs(20)).await;
    ctl_retry(&cluster.endpoint(0), &["put", "before", "1"]);

    // Add a fourth member as a learner, then start it: it catches up and serves reads.
    let i = cluster.reserve(dir.path());
    // Not retried: a retry after an unseen success would be refused as a duplicate.
    let out = ctl_ok(
        &cluster.endpoint(0),
        &[
            "member",
            "add",
            &format!("m{i}"),
            "--learner",
            &format!("--peer-urls={}", cluster.peer_url(i)),
        ],
    );
    assert!(out.contains("added to cluster"), "{out}");
    cluster.start_joining(i);
    wait_for_value(&cluster, i, "before", "1", Duration::from_secs(20)).await;
    let status = ctl_retry(&cluster.endpoint(i), &["endpoint", "status", "-w", "json"]);
    assert!(status.contains("\"isLearner\":true"), "{status}");

    let new_id = member_id_hex(&cluster.endpoint(0), &cluster.peer_url(i));
    // A promote that timed out on a loaded machine may still have taken effect; its retry is
    // then refused as etcd refuses it ("can only promote a learner member"), and the member
    // list must show the member as a voter.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = etcdctl(&cluster.endpoint(1), &["member", "promote", &new_id], None);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            assert!(stdout.contains("promoted"), "{stdout}");
            break;
        }
        if stderr.contains("can only promote a learner member") {
            let list = ctl_ok(&cluster.endpoint(1), &["member", "list", "-w", "json"]);
            let members: serde_json::Value = serde_json::from_str(&list).expect("member list");
            let learner = members["members"].as_array().and_then(|ms| {
                ms.iter()
                    .find(|m| format!("{:x}", m["ID"].as_u64().unwrap_or(0)) == new_id)
                    .map(|m| m["isLearner"].as_bool().unwrap_or(false))
            });
            assert_eq!(learner, Some(false), "not promoted after all: {list}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member promote kept failing: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Remove member 2 (through member 1), then stop it.
    let gone = member_id_hex(&cluster.endpoint(0), &cluster.peer_url(2));
    let out = ctl_ok(&cluster.endpoint(1), &["member", "remove", &gone]);
    assert!(out.contains("removed"), "{out}");
    cluster.kill(2);
    // Member 0 applies the change a moment after the leader commits it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = ctl_retry(&cluster.endpoint(0), &["member", "list"]);
        if list.lines().count() == 3 && !list.contains(&cluster.peer_url(2)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member list never dropped the member: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Move leadership to the new member; the cluster keeps serving writes everywhere.
    let leader_i = leader(&cluster, Duration::from_secs(10)).await;
    let all = format!("{},{}", cluster.endpoint(leader_i), cluster.endpoint(i));
    let out = ctl_retry(&all, &["move-leader", &new_id]);
    assert!(out.contains("Leadership transferred"), "{out}");
    assert_eq!(leader(&cluster, Duration::from_secs(10)).await, i);
    for j in [0, 1, i] {
        ctl_retry(&cluster.endpoint(j), &["put", &format!("after{j}"), "ok"]);
        let got = ctl_retry(
            &cluster.endpoint(0),
            &["get", &format!("after{j}"), "--print-value-only"],
        );
        assert_eq!(got.trim(), "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_missed_purged_log_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start_with(
        dir.path(),
        3,
        &[
            "--snapshot-count",
            "50",
            "--experimental-snapshot-catchup-entries",
            "5",
        ],
    );
    leader(&cluster, Duration::from_secs(20)).await;
    let down = 2;
    cluster.kill(down);
    let leader_i = leader(&cluster, Duration::from_secs(10)).await;
    let mut kv = KvClient::new(channel(&cluster.endpoint(leader_i)).await);
    for i in 0..300 {
        kv.put(pb::PutRequest {
            key: format!("s{i:04}").into_bytes(),
            value: format!("v{i}").into_bytes(),
            ..Default::default()
        })
        .await
        .expect("put while a member is down");
    }
    // The log the stopped member needs is gone from the others by now.
    let snapshot = cluster.dirs[leader_i].join("snapshot.bin");
    let until = Instant::now() + Duration::from_secs(10);
    while !snapshot.exists() {
        assert!(Instant::now() < until, "no snapshot was taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.restart(down);
    wait_for_value(&cluster, down, "s0299", "v299", Duration::from_secs(30)).await;
    wait_for_value(&cluster, down, "s0000", "v0", Duration::from_secs(5)).await;
    assert!(
        cluster.dirs[down].join("snapshot.bin").exists(),
        "the member caught up without installing a snapshot"
    );
    let mut hashes = Vec::new();
    for i in 0..3 {
        let mut m = MaintenanceClient::new(channel(&cluster.endpoint(i)).await);
        let h = m
            .hash_kv(pb::HashKvRequest { revision: 301 })
            .await
            .expect("hashkv")
            .into_inner();
        hashes.push(h.hash);
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "HashKV differs: {hashes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_watch_and_lease_survive_a_leader_change_without_gaps() {
    use pb::watch_client::WatchClient;
    use tokio_stream::StreamExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3);
    let old_leader = leader(&cluster, Duration::from_secs(20)).await;
    let follower = (old_leader + 1) % 3;
    let other = (old_leader + 2) % 3;

    // A lease granted and kept alive through the follower.
    let mut lease = pb::lease_client::LeaseClient::new(channel(&cluster.endpoint(follower)).await);
    let granted = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 6, id: 0 })
        .await
        .expect("grant")
        .into_inner();
    let mut kv = KvClient::new(channel(&cluster.endpoint(follower)).await);
    kv.put(pb::PutRequest {
        key: b"leased".to_vec(),
        value: b"1".to_vec(),
        lease: granted.id,
        ..Default::default()
    })
    .await
    .expect("put with lease");

    // A watch on the follower from the next revision.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: b"w".to_vec(),
                range_end: b"x".to_vec(),
                ..Default::default()
            },
        )),
    })
    .await
    .expect("create");
    let mut events = WatchClient::new(channel(&cluster.endpoint(follower)).await)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();

    // Writes through the other follower while the leader is killed midway.
    let writer = {
        let endpoint = cluster.endpoint(other);
        tokio::spawn(async move {
            let mut kv = KvClient::new(channel(&endpoint).await);
            let mut written = Vec::new();
            for i in 0..60 {
                let put = pb::PutRequest {
                    key: format!("w{i:03}").into_bytes(),
                    value: b"v".to_vec(),
                    ..Default::default()
                };
                // Retry until the write is acknowledged (keys are distinct, so a retried
                // write that had landed only shows up as one more revision of the same key).
                loop {
                    if let Ok(r) = kv.put(put.clone()).await {
                        written.push(r.into_inner().header.map_or(0, |h| h.revision));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            written
        })
    };
    let keep_alive = {
        let endpoint = cluster.endpoint(follower);
        let id = granted.id;
        tokio::spawn(async move {
            let mut lease = pb::lease_client::LeaseClient::new(channel(&endpoint).await);
            for _ in 0..12 {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let _ = tx.send(pb::LeaseKeepAliveRequest { id }).await;
                drop(tx);
                if let Ok(resp) = lease
                    .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                {
                    let mut stream = resp.into_inner();
                    let _ = stream.next().await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    cluster.kill(old_leader);
    let written = writer.await.expect("writer");
    keep_alive.await.expect("keep-alive");

    // The watch saw every write exactly once, in order, with no gap.
    let mut seen: Vec<i64> = Vec::new();
    let last = *written.iter().max().expect("writes");
    while seen.last().copied().unwrap_or(0) < last {
        let resp = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("watch events in time")
            .expect("stream open")
            .expect("no error");
        assert!(!resp.canceled, "watch canceled: {resp:?}");
        seen.extend(
            resp.events
                .iter()
                .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
        );
    }
    let mut expected = written.clone();
    expected.sort_unstable();
    expected.dedup();
    let mut distinct = seen.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), seen.len(), "duplicate events: {seen:?}");
    for rev in &expected {
        assert!(seen.contains(rev), "watch missed revision {rev}: {seen:?}");
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seen:?}"
    );

    // The lease outlived the leader change: kept alive for 6 s past its 6 s TTL.
    let ttl = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: granted.id,
            keys: true,
        })
        .await
        .expect("ttl")
        .into_inner();
    assert!(
        ttl.ttl > 0,
        "lease expired across the leader change: {ttl:?}"
    );
    assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leases_remaining_ttl_carries_over_to_a_new_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3);
    let old_leader = leader(&cluster, Duration::from_secs(20)).await;
    let survivor = (old_leader + 1) % 3;
    let mut lease = pb::lease_client::LeaseClient::new(channel(&cluster.endpoint(survivor)).await);
    let granted = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect("grant")
        .into_inner();
    // The leader checkpoints every 5 s, so within 12 s one checkpoint falls at least 5 s
    // after the grant (remaining <= 55); then take the leader away.
    tokio::time::sleep(Duration::from_secs(12)).await;
    cluster.kill(old_leader);
    leader(&cluster, Duration::from_secs(15)).await;
    let ttl = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: granted.id,
            keys: false,
        })
        .await
        .expect("ttl")
        .into_inner();
    // Restarting the countdown would give 60 s again; resuming it gives at most 60 - 5.
    assert!(
        ttl.ttl > 0 && ttl.ttl <= 55,
        "remaining TTL after the leader change: {}",
        ttl.ttl
    );
    assert_eq!(ttl.granted_ttl, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_refuses_linearizable_reads_and_writes_but_serves_serializable_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3);
    let first = leader(&cluster, Duration::from_secs(20)).await;
    ctl_ok(&cluster.endpoint(first), &["put", "k", "v1"]);
    // Leave one member alone (once it has applied the write): the others go away.
    let alone = (first + 1) % 3;
    wait_for_value(&cluster, alone, "k", "v1", Duration::from_secs(10)).await;
    for i in 0..3 {
        if i != alone {
            cluster.kill(i);
        }
    }
    let ep = cluster.endpoint(alone);
    // Its own state answers serializable reads...
    let got = ctl_ok(&ep, &["get", "k", "--consistency=s", "--print-value-only"]);
    assert_eq!(got.trim(), "v1");
    // ...but linearizable reads and writes fail with an etcd error, never a stale answer.
    for args in [vec!["get", "k"], vec!["put", "k", "v2"], vec!["txn"]] {
        let stdin = (args[0] == "txn").then_some("\nput k v3\n\n\n");
        let out = etcdctl(&ep, &args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} succeeded on a minority: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            err.contains("etcdserver: request timed out")
                || err.contains("etcdserver: no leader")
                || err.contains("context deadline exceeded"),
            "{args:?}: {err}"
        );
    }
    let got = ctl_ok(&ep, &["get", "k", "--consistency=s", "--print-value-only"]);
    assert_eq!(
        got.trim(),
        "v1",
        "a refused write changed the minority's state"
    );
}

/// Regression: right after the leader died, a follower still named it as leader and a
/// linearizable read there failed at once with "tcp connect error" (the read-index request
/// to the dead leader could not even be sent) instead of waiting for the new leader. A
/// request that was never sent is now asked again once a new leader is elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_at_a_follower_wait_for_a_new_leader_instead_of_failing_on_the_dead_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3);
    let old = leader(&cluster, Duration::from_secs(20)).await;
    let follower = (old + 1) % 3;
    ctl_ok(&cluster.endpoint(follower), &["put", "k", "v1"]);
    cluster.kill(old);
    // At once, before the follower can have noticed: a linearizable read and a write.
    let mut kv = KvClient::new(channel(&cluster.endpoint(follower)).await);
    let read = kv
        .range(pb::RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().kvs.first().map(|kv| kv.value.clone()));
    assert_eq!(read.ok().flatten(), Some(b"v1".to_vec()));
    let write = kv
        .put(pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v2".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(write.is_ok(), "{write:?}");
}

/// A member change is two Raft entries (joint, then uniform). Changes that came in between
/// (here: member updates, as a restarted member publishing its attributes makes) once made
/// the first change answer "last membership log id mismatch" although it had taken effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_add_and_remove_answer_ok_while_other_member_changes_run() {
    use pb::cluster_client::ClusterClient;
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), 3);
    let l = leader(&cluster, Duration::from_secs(20)).await;
    let follower = (l + 1) % 3;

    // Member updates to unchanged URLs, back to back, through the leader and a follower.
    let stop = Arc::new(AtomicBool::new(false));
    let mut updaters = Vec::new();
    for via in [l, follower] {
        let (stop, endpoint) = (stop.clone(), cluster.endpoint(via));
        let ids: Vec<(u64, String)> = ClusterClient::new(channel(&endpoint).await)
            .member_list(pb::MemberListRequest {})
            .await
            .expect("member list")
            .into_inner()
            .members
            .into_iter()
            .map(|m| (m.id, m.peer_ur_ls[0].clone()))
            .collect();
        updaters.push(tokio::spawn(async move {
            let mut client = ClusterClient::new(channel(&endpoint).await);
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let (id, url) = ids[n % ids.len()].clone();
                // Refusals while another change is in progress are fine; answers are not
                // what this task checks.
                let _ = client
                    .member_update(pb::MemberUpdateRequest {
                        id,
                        peer_ur_ls: vec![url],
                    })
                    .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        }));
    }

    // Voters that never start: adding one makes a joint configuration the three running
    // members can commit; removing it makes another.
    let mut client = ClusterClient::new(channel(&cluster.endpoint(follower)).await);
    for round in 0..6 {
        let url = format!("http://127.0.0.1:{}", 1 + round);
        let added = client
            .member_add(pb::MemberAddRequest {
                peer_ur_ls: vec![url.clone()],
                is_learner: false,
            })
            .await
            .unwrap_or_else(|e| panic!("round {round}: MemberAdd {url}: {e:?}"))
            .into_inner();
        let id = added.member.expect("the added member").id;
        client
            .member_remove(pb::MemberRemoveRequest { id })
            .await
            .unwrap_or_else(|e| panic!("round {round}: MemberRemove {id:x}: {e:?}"));
    }
    stop.store(true, Ordering::SeqCst);
    let mut updates = 0;
    for u in updaters {
        updates += u.await.expect("updater");
    }
    assert!(updates > 0, "no member update ran alongside");
    let list = ClusterClient::new(channel(&cluster.endpoint(l)).await)
        .member_list(pb::MemberListRequest {})
        .await
        .expect("member list")
        .into_inner();
    assert_eq!(list.members.len(), 3, "{list:?}");
}
