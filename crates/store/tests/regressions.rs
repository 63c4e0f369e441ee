//! Regression tests: one per bug found in the store. Each test's doc comment says what was
//! wrong and how it showed; the fix is named there too.

use std::time::Duration;

use redb::Durability;
use stead_store::watch::{WatchOutput, WatchRequest, WatchSpec, serve_watch};
use stead_store::{
    Command, CommandResponse, DeleteRangeRequest, Engine, EngineOptions, Error, PutRequest,
    RangeRequest, RequestOp, ResponseOp, SortOrder, SortTarget, Store, StoreConfig, TxnRequest,
};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::time::timeout;

fn engine() -> (TempDir, Engine) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine =
        Engine::open(&dir.path().join("db"), &EngineOptions::default()).expect("engine opens");
    (dir, engine)
}

fn apply(engine: &Engine, cmd: Command) -> Result<CommandResponse, Error> {
    let mut batch = engine
        .apply_batch(&[&cmd], Durability::None)
        .expect("batch commits");
    batch.responses.pop().expect("one response")
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    })
}

fn put(engine: &Engine, key: &str, value: &str) {
    let RequestOp::Put(req) = put_op(key, value) else {
        unreachable!()
    };
    apply(engine, Command::Put(req)).expect("put succeeds");
}

fn txn(success: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare: Vec::new(),
        success,
        failure: Vec::new(),
    }
}

/// `keys_only` with `sort_target = VALUE` came back in key order.
///
/// The range decoded only record headers when `keys_only` was set, so every value was empty
/// when the results were sorted by value. etcd sorts first and strips values afterwards.
/// Fixed in `mvcc/read.rs`: values are decoded when sorting by value and dropped after the
/// sort.
#[test]
fn keys_only_sorted_by_value_is_ordered_by_the_values() {
    let (_dir, engine) = engine();
    for (key, value) in [("a", "3"), ("b", "1"), ("c", "2")] {
        put(&engine, key, value);
    }
    for (order, want) in [
        (SortOrder::Ascend, ["b", "c", "a"]),
        (SortOrder::Descend, ["a", "c", "b"]),
        (SortOrder::None, ["b", "c", "a"]),
    ] {
        let r = engine
            .range(&RangeRequest {
                key: b"a".to_vec(),
                range_end: b"z".to_vec(),
                keys_only: true,
                sort_order: order,
                sort_target: SortTarget::Value,
                ..RangeRequest::default()
            })
            .unwrap();
        let keys: Vec<&[u8]> = r.kvs.iter().map(|kv| kv.key.as_slice()).collect();
        let want: Vec<&[u8]> = want.iter().map(|k| k.as_bytes()).collect();
        assert_eq!(keys, want, "{order:?}");
        assert!(
            r.kvs.iter().all(|kv| kv.value.is_empty()),
            "values are still omitted"
        );
    }
}

/// A put in one nested txn and a delete of the same key in a later sibling nested txn change
/// one key twice in one revision.
///
/// Once, history stored one record per (key, revision), so the delete's tombstone overwrote
/// the put: live watchers saw PUT then DELETE while a watcher replaying history saw the
/// DELETE twice. etcd accepts such a txn and keeps both changes apart with sub-revisions;
/// the store now does the same (`kv` is keyed by (revision, sub-revision)), so the txn is
/// accepted and history replays exactly what live watchers saw.
#[test]
fn a_put_and_a_later_delete_of_one_key_in_sibling_nested_txns_replay_as_they_happened() {
    let (_dir, engine) = engine();
    put(&engine, "a", "0");
    let nested = |ops| RequestOp::Txn(txn(ops));
    let del = |key: &str, end: &str| {
        RequestOp::DeleteRange(DeleteRangeRequest {
            key: key.into(),
            range_end: end.into(),
            prev_kv: false,
        })
    };
    let cases = [
        vec![nested(vec![put_op("a", "1")]), nested(vec![del("a", "")])],
        vec![nested(vec![put_op("a1", "1")]), nested(vec![del("a", "b")])],
        vec![
            nested(vec![nested(vec![put_op("a", "1")])]),
            nested(vec![nested(vec![del("a", "\0")])]),
        ],
    ];
    let mut live = Vec::new();
    for ops in cases {
        let cmd = Command::Txn(txn(ops.clone()));
        let batch = engine.apply_batch(&[&cmd], Durability::None).unwrap();
        assert!(batch.responses.iter().all(Result::is_ok), "{ops:?}");
        live.extend(batch.events);
    }
    assert_eq!(engine.revisions().unwrap().0, 5);
    let first = &live[0].events;
    assert_eq!(
        first.len(),
        2,
        "a put then a delete in one revision: {first:?}"
    );
    assert_eq!(first[0].kind, stead_store::EventType::Put);
    assert_eq!(first[1].kind, stead_store::EventType::Delete);
    assert_eq!(
        first[1].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b"1".to_vec()),
        "the delete's prev_kv is the put made just before it"
    );
    assert_eq!(engine.read_events(3, 5, usize::MAX).unwrap(), live);
    // The key is gone after the revision, and a read at the revision before sees the old one.
    let at = |rev| {
        engine
            .range(&stead_store::RangeRequest {
                key: b"a".to_vec(),
                revision: rev,
                ..Default::default()
            })
            .unwrap()
            .kvs
    };
    assert!(at(3).is_empty());
    assert_eq!(at(2)[0].value, b"0");
}

/// Inside a txn that had already written, a Range at an explicit `revision` equal to the
/// revision before the txn returned the txn's own, not yet committed, writes.
///
/// The txn's ranges were served as if the store were still at the pre-txn revision, so a
/// read pinned to that revision went to the latest table, which already held the txn's
/// writes. etcd serves such a read at the pinned revision (the txn's writes belong to the
/// next one). Fixed in `mvcc/apply.rs` (`Applier::range`): once the txn has written, its
/// ranges are served with the txn's own revision as the current one.
#[test]
fn a_range_pinned_to_the_pre_txn_revision_does_not_see_the_txns_own_writes() {
    let (_dir, engine) = engine();
    put(&engine, "a", "old"); // 2
    let pinned = |revision| {
        RequestOp::Range(RangeRequest {
            key: b"a".to_vec(),
            revision,
            ..RangeRequest::default()
        })
    };
    let resp = apply(
        &engine,
        Command::Txn(txn(vec![
            pinned(2),
            put_op("a", "new"),
            pinned(2),
            pinned(0),
        ])),
    )
    .unwrap();
    let CommandResponse::Txn(t) = resp else {
        panic!("{resp:?}")
    };
    let values: Vec<Vec<u8>> = t
        .responses
        .iter()
        .filter_map(|r| match r {
            ResponseOp::Range(r) => Some(r.kvs[0].value.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(values, [b"old".to_vec(), b"old".to_vec(), b"new".to_vec()]);
    // Reading at the txn's own revision before it exists is still a future revision.
    let got = apply(
        &engine,
        Command::Txn(txn(vec![put_op("a", "x"), pinned(4)])),
    );
    assert!(
        matches!(
            got,
            Err(Error::FutureRevision {
                requested: 4,
                current: 3
            })
        ),
        "{got:?}"
    );
}

/// Restoring a damaged snapshot whose record length prefix is garbage allocated (and
/// zeroed) a buffer of that length, up to 4 GiB, before noticing the input was short.
///
/// `restore_snapshot` sized its buffer from the untrusted length prefix. A corrupt file or
/// a truncated transfer could take the process down (the engine test that feeds damaged
/// snapshots peaked at 4.2 GB of memory and ran for 20 s). Fixed in `engine.rs`: a record
/// is read through `Read::take`, so the buffer only grows with the bytes actually present.
#[test]
fn a_snapshot_with_a_garbage_record_length_is_refused_without_allocating_it() {
    let (_dir, src) = engine();
    put(&src, "a", "1");
    let mut snap = Vec::new();
    src.write_snapshot(&mut snap).unwrap();
    // The magic, then a length prefix of u32::MAX and a few bytes.
    let mut damaged = snap[..12].to_vec();
    damaged.extend_from_slice(&u32::MAX.to_le_bytes());
    damaged.extend_from_slice(b"short");

    let (_dir2, dst) = engine();
    put(&dst, "keep", "me");
    let before = peak_rss_kib();
    let err = dst.restore_snapshot(&mut damaged.as_slice()).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. } | Error::InvalidSnapshot { .. }),
        "{err:?}"
    );
    if let (Some(before), Some(after)) = (before, peak_rss_kib()) {
        assert!(
            after - before < 256 * 1024,
            "peak memory grew by {} KiB",
            after - before
        );
    }
    let kept = dst
        .range(&RangeRequest {
            key: b"keep".to_vec(),
            ..RangeRequest::default()
        })
        .unwrap();
    assert_eq!(kept.kvs.len(), 1);
}

/// The process's peak resident set size, where the platform reports it.
fn peak_rss_kib() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A progress request that arrived while a watcher was still replaying history was never
/// answered.
///
/// The stream answers a progress request only when every watcher is synced (so the
/// bookmark really covers every event sent); otherwise it dropped the request, and a client
/// waiting for the bookmark (Kubernetes' consistent reads do) waited forever. The same
/// happened on a race with a commit whose revision was already published but whose events
/// were not yet delivered. etcd defers the answer until the watchers are synced. Fixed in
/// `watch/stream.rs`: the request is remembered and answered as soon as the stream is
/// synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_request_sent_while_a_watcher_replays_history_is_answered_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path().join("data"))).unwrap();
    let mut last = 0;
    for i in 0..50 {
        last = store
            .put(PutRequest {
                key: format!("k{}", i % 5).into_bytes(),
                value: b"v".to_vec(),
                ..PutRequest::default()
            })
            .await
            .unwrap()
            .revision;
    }
    let (requests, requests_rx) = mpsc::channel(16);
    let (out_tx, mut out) = mpsc::channel(1024);
    // Both requests are queued before the stream starts: the progress request is handled
    // while the new watcher is still behind.
    requests
        .send(WatchRequest::Create(WatchSpec {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            start_revision: 2,
            ..WatchSpec::default()
        }))
        .await
        .unwrap();
    requests.send(WatchRequest::Progress).await.unwrap();
    tokio::spawn(serve_watch(
        store.clone(),
        requests_rx,
        out_tx,
        Duration::from_secs(3600),
    ));

    let mut delivered = 0;
    loop {
        let msg = timeout(Duration::from_secs(10), out.recv())
            .await
            .expect("the progress request is answered")
            .expect("stream is serving");
        match msg {
            WatchOutput::Created { .. } => {}
            WatchOutput::Events { events, .. } => {
                delivered = events.last().unwrap().kv.mod_revision;
            }
            WatchOutput::Progress { watch_id, revision } => {
                assert_eq!((watch_id, revision), (-1, last));
                // The bookmark comes after every event up to it.
                assert_eq!(delivered, last);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    drop(requests);
}

/// After a member installed a snapshot (its whole state replaced by a newer one), watchers
/// on it received nothing for the revisions the snapshot brought until some later write
/// happened to arrive: the hub raised its revision without telling the streams. An empty
/// batch now announces the jump and the streams catch up from history at once. Fixed in
/// `watch/hub.rs` (`publish_jump`) and `watch/stream.rs` (`deliver`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_catch_up_right_after_a_snapshot_replaces_the_state() {
    let behind_dir = tempfile::tempdir().unwrap();
    let behind = Store::open(StoreConfig::new(behind_dir.path())).unwrap();
    let ahead_dir = tempfile::tempdir().unwrap();
    let ahead = Store::open(StoreConfig::new(ahead_dir.path())).unwrap();
    for i in 0..5 {
        ahead
            .put(PutRequest {
                key: format!("k{i}").into_bytes(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    let (req_tx, req_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(16);
    tokio::spawn(serve_watch(
        behind.clone(),
        req_rx,
        out_tx,
        Duration::from_secs(600),
    ));
    req_tx
        .send(WatchRequest::Create(WatchSpec {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let created = timeout(Duration::from_secs(5), out_rx.recv())
        .await
        .unwrap();
    assert!(matches!(created, Some(WatchOutput::Created { .. })));

    // Replace `behind`'s state with `ahead`'s, as a snapshot install does.
    let mut snapshot = Vec::new();
    ahead.engine().write_snapshot(&mut snapshot).unwrap();
    behind
        .engine()
        .restore_snapshot(&mut snapshot.as_slice())
        .unwrap();
    behind.shared().reload().unwrap();

    // No further write: the watcher must still see revisions 2..=6.
    let mut seen = Vec::new();
    while seen.len() < 5 {
        match timeout(Duration::from_secs(5), out_rx.recv()).await {
            Ok(Some(WatchOutput::Events { events, .. })) => {
                seen.extend(events.into_iter().map(|e| e.kv.mod_revision));
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => panic!("the watcher saw only {seen:?} after the snapshot"),
        }
    }
    assert_eq!(seen, vec![2, 3, 4, 5, 6]);
}
