//! Watch streams end to end: a [`Store`] on a temp dir, [`serve_watch`] fed through channels,
//! and etcd's guarantees checked on what comes out (ordered, unique, no gaps, a revision
//! never split across responses, resumable from history, bookmarkable with progress).
//!
//! Every wait has a deadline; nothing relies on sleeping long enough.

use std::collections::BTreeSet;
use std::time::Duration;

use redb::Durability;
use stead_store::watch::{WatchOutput, WatchRequest, WatchSpec, serve_watch};
use stead_store::{
    Command, DeleteRangeRequest, Event, EventType, PutRequest, RequestOp, Store, StoreConfig,
    TxnRequest,
};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Long enough for a loaded CI machine, short enough to fail a hung test quickly.
const DEADLINE: Duration = Duration::from_secs(30);
/// Progress ticks of the streams under test, unless a test wants them.
const NO_TICKS: Duration = Duration::from_secs(3600);

struct Harness {
    _dir: TempDir,
    store: Store,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(StoreConfig::new(dir.path().join("data"))).expect("store opens");
    Harness { _dir: dir, store }
}

struct Stream {
    requests: mpsc::Sender<WatchRequest>,
    out: mpsc::Receiver<WatchOutput>,
    task: JoinHandle<()>,
}

impl Harness {
    fn stream(&self, out_capacity: usize, progress_interval: Duration) -> Stream {
        let (requests, requests_rx) = mpsc::channel(16);
        let (out_tx, out) = mpsc::channel(out_capacity);
        let task = tokio::spawn(serve_watch(
            self.store.clone(),
            requests_rx,
            out_tx,
            progress_interval,
        ));
        Stream {
            requests,
            out,
            task,
        }
    }

    async fn put(&self, key: &str, value: &str) -> i64 {
        self.store
            .put(PutRequest {
                key: key.into(),
                value: value.into(),
                ..PutRequest::default()
            })
            .await
            .expect("put succeeds")
            .revision
    }

    async fn delete(&self, key: &str) -> i64 {
        self.store
            .delete_range(DeleteRangeRequest {
                key: key.into(),
                range_end: Vec::new(),
                prev_kv: false,
            })
            .await
            .expect("delete succeeds")
            .revision
    }
}

fn spec(key: &str, range_end: &str, start_revision: i64) -> WatchSpec {
    WatchSpec {
        key: key.into(),
        range_end: range_end.into(),
        start_revision,
        ..WatchSpec::default()
    }
}

fn prev_kv_spec(key: &str, range_end: &str, start_revision: i64) -> WatchSpec {
    WatchSpec {
        prev_kv: true,
        ..spec(key, range_end, start_revision)
    }
}

impl Stream {
    async fn send(&self, req: WatchRequest) {
        self.requests.send(req).await.expect("stream is serving");
    }

    async fn next(&mut self) -> WatchOutput {
        timeout(DEADLINE, self.out.recv())
            .await
            .expect("a response before the deadline")
            .expect("stream is serving")
    }

    /// Creates a watch and returns its id and the Created header revision.
    async fn create(&mut self, spec: WatchSpec) -> (i64, i64) {
        self.send(WatchRequest::Create(spec)).await;
        match self.next().await {
            WatchOutput::Created { watch_id, revision } => (watch_id, revision),
            other => panic!("expected created, got {other:?}"),
        }
    }

    /// Reads event responses of `watch_id` until one carries an event at `last_rev`.
    async fn events_until(&mut self, watch_id: i64, last_rev: i64) -> Vec<Vec<Event>> {
        let mut responses = Vec::new();
        loop {
            match self.next().await {
                WatchOutput::Events {
                    watch_id: id,
                    events,
                    ..
                } if id == watch_id => {
                    let done = events.iter().any(|e| e.kv.mod_revision >= last_rev);
                    responses.push(events);
                    if done {
                        return responses;
                    }
                }
                WatchOutput::Progress { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Nothing arrives within a short grace period.
    async fn assert_quiet(&mut self) {
        if let Ok(msg) = timeout(Duration::from_millis(200), self.out.recv()).await {
            panic!("expected no response, got {msg:?}");
        }
    }
}

/// Checks etcd's delivery guarantees over the event responses of one watcher and returns
/// the revisions delivered: ordered, no revision twice, and a revision never split across
/// two responses.
fn check_guarantees(responses: &[Vec<Event>]) -> Vec<i64> {
    let mut revisions = Vec::new();
    let mut finished: BTreeSet<i64> = BTreeSet::new();
    let mut last = 0;
    for events in responses {
        assert!(!events.is_empty(), "an events response without events");
        for e in events {
            let rev = e.kv.mod_revision;
            assert!(rev >= last, "revision {rev} after {last}: out of order");
            assert!(!finished.contains(&rev), "revision {rev} split or repeated");
            if rev != last {
                revisions.push(rev);
            }
            last = rev;
        }
        finished.extend(events.iter().map(|e| e.kv.mod_revision));
    }
    revisions
}

fn flat(responses: &[Vec<Event>]) -> Vec<(EventType, String, i64)> {
    responses
        .iter()
        .flatten()
        .map(|e| {
            (
                e.kind,
                String::from_utf8_lossy(&e.kv.key).into_owned(),
                e.kv.mod_revision,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_watch_answers_created_with_the_current_revision() {
    let h = harness();
    h.put("a", "1").await;
    let mut s = h.stream(64, NO_TICKS);
    let (id, rev) = s.create(spec("a", "", 0)).await;
    assert_eq!((id, rev), (0, 2));
    // Ids are picked in order when the client leaves them to the server.
    let (id, _) = s.create(spec("b", "", 0)).await;
    assert_eq!(id, 1);
    let (id, _) = s
        .create(WatchSpec {
            watch_id: 7,
            ..spec("c", "", 0)
        })
        .await;
    assert_eq!(id, 7);
    s.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_watch_id_is_canceled_and_the_first_watch_keeps_working() {
    let h = harness();
    let mut s = h.stream(64, NO_TICKS);
    s.create(WatchSpec {
        watch_id: 3,
        ..spec("a", "", 0)
    })
    .await;
    s.send(WatchRequest::Create(WatchSpec {
        watch_id: 3,
        ..spec("b", "", 0)
    }))
    .await;
    match s.next().await {
        WatchOutput::Canceled {
            watch_id, reason, ..
        } => {
            assert_eq!(watch_id, 3);
            assert!(reason.contains("duplicate watch ID"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let rev = h.put("a", "1").await;
    let got = s.events_until(3, rev).await;
    assert_eq!(flat(&got), [(EventType::Put, "a".into(), rev)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_of_the_watched_range_are_delivered_in_order() {
    let h = harness();
    let mut s = h.stream(64, NO_TICKS);
    let (id, _) = s.create(spec("p/", "p0", 0)).await;
    let r1 = h.put("p/a", "1").await;
    h.put("other", "1").await;
    let r2 = h.put("p/b", "1").await;
    let r3 = h.delete("p/a").await;
    let got = s.events_until(id, r3).await;
    assert_eq!(
        flat(&got),
        [
            (EventType::Put, "p/a".into(), r1),
            (EventType::Put, "p/b".into(), r2),
            (EventType::Delete, "p/a".into(), r3),
        ]
    );
    check_guarantees(&got);
    let put = &got.iter().flatten().next().unwrap().kv;
    assert_eq!(
        (put.value.as_slice(), put.version, put.create_revision),
        (&b"1"[..], 1, r1)
    );
    s.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_with_many_events_arrives_in_one_response() {
    let h = harness();
    let mut s = h.stream(64, NO_TICKS);
    let (id, _) = s.create(spec("\0", "\0", 0)).await;
    let put = |k: &str| {
        RequestOp::Put(PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            ..PutRequest::default()
        })
    };
    let t = h
        .store
        .txn(TxnRequest {
            compare: vec![],
            success: vec![put("x"), put("y"), put("z")],
            failure: vec![],
        })
        .await
        .unwrap();
    let got = s.events_until(id, t.revision).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        flat(&got).iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["x", "y", "z"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prev_kv_is_sent_only_to_watchers_that_ask_for_it() {
    let h = harness();
    h.put("k", "old").await;
    let mut s = h.stream(64, NO_TICKS);
    let (with, _) = s.create(prev_kv_spec("k", "", 0)).await;
    let (without, _) = s.create(spec("k", "", 0)).await;
    h.put("k", "new").await;
    let del = h.delete("k").await;
    let mut seen = [Vec::new(), Vec::new()];
    while seen.iter().any(|v| v.len() < 2) {
        match s.next().await {
            WatchOutput::Events {
                watch_id, events, ..
            } => seen[usize::from(watch_id == without)].extend(events),
            other => panic!("{other:?}"),
        }
    }
    let [with_prev, without_prev] = seen;
    let prevs: Vec<Option<Vec<u8>>> = with_prev
        .iter()
        .map(|e| e.prev_kv.as_ref().map(|p| p.value.clone()))
        .collect();
    assert_eq!(prevs, [Some(b"old".to_vec()), Some(b"new".to_vec())]);
    assert!(without_prev.iter().all(|e| e.prev_kv.is_none()));
    assert_eq!(with_prev[1].kv.mod_revision, del);
    assert_eq!(with, 0);
}

#[tokio::test]
async fn puts_carry_prev_kv_only_while_a_watcher_wants_it() {
    let h = harness();
    let mut sub = h.store.hub().subscribe();
    sub.watch(0, stead_store::KeyRange::new(b"k", b""), false);
    let puts = |sub: &mut stead_store::watch::Subscription| {
        let mut events = Vec::new();
        for live in sub.take() {
            if let stead_store::watch::Live::Batch(batch) = live {
                events.extend(batch.iter().flat_map(|r| r.events.clone()));
            }
        }
        events
    };
    h.put("k", "1").await;
    h.put("k", "2").await;
    let lean = puts(&mut sub);
    assert_eq!(lean.len(), 2);
    assert!(lean[1].lacks_prev_kv(), "{:?}", lean[1]);
    let mut s = h.stream(64, NO_TICKS);
    let (id, _) = s.create(prev_kv_spec("k", "", 0)).await;
    assert!(h.store.hub().wants_prev_kv());
    let rev = h.put("k", "3").await;
    let full = puts(&mut sub);
    assert_eq!(
        full[0].prev_kv.as_ref().map(|p| p.value.clone()),
        Some(b"2".to_vec())
    );
    s.events_until(id, rev).await;
    s.send(WatchRequest::Cancel(id)).await;
    assert!(matches!(s.next().await, WatchOutput::Canceled { .. }));
    assert!(
        !h.store.hub().wants_prev_kv(),
        "a canceled watcher no longer wants it"
    );
    s.create(prev_kv_spec("k", "", 0)).await;
    assert!(h.store.hub().wants_prev_kv());
    let Stream {
        requests,
        out,
        task,
    } = s;
    drop((requests, out));
    timeout(DEADLINE, task)
        .await
        .expect("the stream ends")
        .expect("no panic");
    assert!(
        !h.store.hub().wants_prev_kv(),
        "a closed stream's watchers no longer want it"
    );
}

#[tokio::test]
async fn a_live_put_that_came_without_prev_kv_gets_it_from_the_store() {
    let h = harness();
    h.put("k", "1").await;
    let rev = h.put("k", "2").await;
    let mut s = h.stream(64, NO_TICKS);
    let (id, _) = s.create(prev_kv_spec("k", "", 0)).await;
    // A put applied before the watcher asked for prev_kv and published after it did: the
    // next revision, as the apply path leaves it when no watcher wants the previous version.
    let put = Event {
        kind: EventType::Put,
        kv: stead_store::KeyValue {
            key: b"k".to_vec(),
            value: b"3".to_vec(),
            create_revision: rev - 1,
            mod_revision: rev + 1,
            version: 3,
            lease: 0,
        },
        prev_kv: None,
    };
    let batch = vec![stead_store::RevisionEvents {
        revision: rev + 1,
        events: vec![put],
    }];
    h.store.hub().publish(rev + 1, 0, batch);
    let events = s.events_until(id, rev + 1).await.concat();
    let prev = events[0]
        .prev_kv
        .as_ref()
        .expect("prev_kv read from the store");
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"2"[..], rev));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noput_and_nodelete_filters_drop_those_events() {
    let h = harness();
    let mut s = h.stream(64, NO_TICKS);
    let (no_put, _) = s
        .create(WatchSpec {
            no_put: true,
            ..spec("k", "", 0)
        })
        .await;
    let (no_delete, _) = s
        .create(WatchSpec {
            no_delete: true,
            ..spec("k", "", 0)
        })
        .await;
    let p1 = h.put("k", "1").await;
    let d1 = h.delete("k").await;
    let p2 = h.put("k", "2").await;
    let d2 = h.delete("k").await;
    let mut by_watch: [Vec<(EventType, i64)>; 2] = [Vec::new(), Vec::new()];
    while by_watch[0].len() < 2 || by_watch[1].len() < 2 {
        match s.next().await {
            WatchOutput::Events {
                watch_id, events, ..
            } => {
                let slot = if watch_id == no_put { 0 } else { 1 };
                assert!(watch_id == no_put || watch_id == no_delete);
                by_watch[slot].extend(events.iter().map(|e| (e.kind, e.kv.mod_revision)));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        by_watch[0],
        [(EventType::Delete, d1), (EventType::Delete, d2)]
    );
    assert_eq!(by_watch[1], [(EventType::Put, p1), (EventType::Put, p2)]);
    s.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_watch_is_confirmed_and_receives_nothing_more() {
    let h = harness();
    let mut s = h.stream(64, NO_TICKS);
    let (gone, _) = s.create(spec("k", "", 0)).await;
    let (kept, _) = s.create(spec("k", "", 0)).await;
    let r1 = h.put("k", "1").await;
    let mut first = Vec::new();
    while first.len() < 2 {
        match s.next().await {
            WatchOutput::Events { watch_id, .. } => first.push(watch_id),
            other => panic!("{other:?}"),
        }
    }
    first.sort_unstable();
    assert_eq!(first, [gone, kept]);
    s.send(WatchRequest::Cancel(gone)).await;
    match s.next().await {
        WatchOutput::Canceled {
            watch_id,
            compact_revision,
            ..
        } => assert_eq!((watch_id, compact_revision), (gone, 0)),
        other => panic!("{other:?}"),
    }
    // Canceling an unknown watch is ignored.
    s.send(WatchRequest::Cancel(99)).await;
    let r2 = h.put("k", "2").await;
    let got = s.events_until(kept, r2).await;
    assert_eq!(flat(&got), [(EventType::Put, "k".into(), r2)]);
    assert!(r2 > r1);
    s.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_revision_is_canceled_with_compact_revision() {
    let h = harness();
    for i in 0..5 {
        h.put("k", &i.to_string()).await; // 2..=6
    }
    h.store.compact(5).await.unwrap();
    let mut s = h.stream(64, NO_TICKS);
    s.send(WatchRequest::Create(spec("k", "", 3))).await;
    let id = match s.next().await {
        WatchOutput::Created { watch_id, .. } => watch_id,
        other => panic!("expected created first, got {other:?}"),
    };
    match s.next().await {
        WatchOutput::Canceled {
            watch_id,
            compact_revision,
            revision,
            ..
        } => {
            assert_eq!(watch_id, id);
            assert_eq!(compact_revision, 5);
            assert_eq!(revision, 6);
        }
        other => panic!("expected canceled, got {other:?}"),
    }
    // The stream stays usable, and a watch from exactly the compacted revision works.
    let (id, _) = s.create(spec("k", "", 5)).await;
    let got = s.events_until(id, 6).await;
    assert_eq!(check_guarantees(&got), [5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_starting_in_the_future_skips_earlier_revisions() {
    let h = harness();
    let mut s = h.stream(64, NO_TICKS);
    let (id, rev) = s.create(spec("k", "", 4)).await;
    assert_eq!(rev, 1);
    h.put("k", "2").await;
    h.put("k", "3").await;
    h.put("k", "4").await;
    h.put("k", "5").await;
    let got = s.events_until(id, 5).await;
    assert_eq!(check_guarantees(&got), [4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_batch_spanning_a_watchers_start_revision_delivers_only_the_revisions_from_it() {
    let h = harness();
    let mut s = h.stream(64, NO_TICKS);
    let (id, rev) = s.create(spec("k", "", 3)).await;
    assert_eq!(rev, 1);
    // A group commit of three writes (revisions 2, 3, 4), published as the writer does.
    let cmds: Vec<Command> = (0..3)
        .map(|i| {
            Command::Put(PutRequest {
                key: b"k".to_vec(),
                value: format!("{i}").into_bytes(),
                ..PutRequest::default()
            })
        })
        .collect();
    let refs: Vec<&Command> = cmds.iter().collect();
    let batch = h
        .store
        .engine()
        .apply_batch(&refs, Durability::Immediate)
        .unwrap();
    assert_eq!(batch.events.len(), 3);
    h.store
        .hub()
        .publish(batch.revision, batch.compacted, batch.events);
    let got = s.events_until(id, 4).await;
    assert_eq!(got.len(), 1, "one batch, one response");
    assert_eq!(check_guarantees(&got), [3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_the_latest_revision_gets_it_without_further_writes() {
    let h = harness();
    h.put("k", "1").await;
    let rev = h.put("k", "2").await;
    let mut s = h.stream(64, NO_TICKS);
    let (id, _) = s.create(spec("k", "", rev)).await;
    let got = s.events_until(id, rev).await;
    assert_eq!(check_guarantees(&got), [rev]);
    s.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_an_old_revision_replays_history_then_live_without_gap_or_duplicate() {
    const BEFORE: i64 = 400;
    const DURING: i64 = 400;
    let h = harness();
    for i in 0..BEFORE {
        h.put(&format!("k/{}", i % 13), "before").await;
    }
    let store = h.store.clone();
    // Writes keep landing while the watch is created and replays history.
    let writer = tokio::spawn(async move {
        for i in 0..DURING {
            let key = format!("k/{}", i % 17);
            if i % 5 == 4 {
                store
                    .delete_range(DeleteRangeRequest {
                        key: key.into_bytes(),
                        range_end: Vec::new(),
                        prev_kv: false,
                    })
                    .await
                    .unwrap();
            } else {
                store
                    .put(PutRequest {
                        key: key.into_bytes(),
                        value: b"during".to_vec(),
                        ..PutRequest::default()
                    })
                    .await
                    .unwrap();
            }
        }
    });
    let mut s = h.stream(8, NO_TICKS);
    let (id, _) = s.create(prev_kv_spec("k/", "k0", 2)).await;
    writer.await.unwrap();
    let last = h.store.hub().revision();
    let got = s.events_until(id, last).await;
    let revisions = check_guarantees(&got);
    // Deletes of absent keys take no revision, so compare with what the store recorded.
    let history = h.store.read_events(2, last, usize::MAX).await.unwrap();
    let want: Vec<i64> = history.iter().map(|r| r.revision).collect();
    assert_eq!(revisions, want);
    assert_eq!(*revisions.first().unwrap(), 2);
    let delivered: Vec<&Event> = got.iter().flatten().collect();
    let recorded: Vec<&Event> = history.iter().flat_map(|r| &r.events).collect();
    assert_eq!(
        delivered, recorded,
        "replayed and live events equal the recorded history"
    );
    s.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_request_is_answered_with_watch_id_minus_one_once_synced() {
    let h = harness();
    let mut s = h.stream(64, NO_TICKS);
    // With no watchers the stream is trivially synced.
    s.send(WatchRequest::Progress).await;
    assert_eq!(
        s.next().await,
        WatchOutput::Progress {
            watch_id: -1,
            revision: 1
        }
    );
    let (id, _) = s.create(spec("a", "", 0)).await;
    h.put("b", "1").await;
    let rev = h.put("a", "1").await;
    s.events_until(id, rev).await;
    s.send(WatchRequest::Progress).await;
    assert_eq!(
        s.next().await,
        WatchOutput::Progress {
            watch_id: -1,
            revision: rev
        }
    );
    // A write outside every watched range still moves the bookmark.
    let rev = h.put("b", "2").await;
    s.send(WatchRequest::Progress).await;
    assert_eq!(
        s.next().await,
        WatchOutput::Progress {
            watch_id: -1,
            revision: rev
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notify_watchers_get_periodic_bookmarks_when_idle() {
    let h = harness();
    let rev = h.put("a", "1").await;
    let mut s = h.stream(64, Duration::from_millis(50));
    let (id, _) = s
        .create(WatchSpec {
            progress_notify: true,
            ..spec("a", "", 0)
        })
        .await;
    let (_quiet, _) = s.create(spec("a", "", 0)).await;
    for _ in 0..2 {
        assert_eq!(
            s.next().await,
            WatchOutput::Progress {
                watch_id: id,
                revision: rev
            }
        );
    }
}

/// Found by the robustness soak: a client resuming its watch on a member that lags behind
/// the one it watched before asks for a revision this member does not have yet. Such a
/// watcher is not synced, and a bookmark at this member's older revision would tell the
/// client it is behind the events it already has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_ahead_of_the_store_gets_no_bookmark_below_its_start() {
    let h = harness();
    let rev = h.put("a", "1").await;
    let mut s = h.stream(64, Duration::from_millis(50));
    let (id, _) = s
        .create(WatchSpec {
            progress_notify: true,
            ..spec("a", "", rev + 3)
        })
        .await;
    s.send(WatchRequest::Progress).await;
    // Neither the ticks nor the request may answer before the store reaches rev + 2.
    assert!(
        timeout(Duration::from_millis(300), s.out.recv())
            .await
            .is_err(),
        "a bookmark below the watch's start revision"
    );
    h.put("b", "1").await;
    let caught_up = h.put("b", "2").await;
    assert_eq!(caught_up, rev + 2);
    // Both now, in either order (a tick may come first).
    let mut got = vec![s.next().await, s.next().await];
    got.sort_by_key(|o| match o {
        WatchOutput::Progress { watch_id, .. } => *watch_id,
        _ => i64::MAX,
    });
    assert_eq!(
        got,
        vec![
            WatchOutput::Progress {
                watch_id: -1,
                revision: caught_up
            },
            WatchOutput::Progress {
                watch_id: id,
                revision: caught_up
            }
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_still_receives_every_revision_exactly_once_in_order() {
    // More committed batches than the live channel holds (1024), so the stream lags and
    // has to catch up from history.
    const WRITES: usize = 5000;
    let h = harness();
    let mut s = h.stream(4, NO_TICKS);
    let (all, start) = s.create(spec("\0", "\0", 0)).await;
    let (evens, _) = s.create(prev_kv_spec("even/", "even0", 0)).await;
    // Counts the batches committed, to prove the stream's live feed overflowed.
    let commits_before = h.store.write_stats().commits;
    // Concurrent writers, so batches of several commands are in the mix too.
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = h.store.clone();
        writers.push(tokio::spawn(async move {
            for i in (w..WRITES).step_by(4) {
                let prefix = if i % 2 == 0 { "even" } else { "odd" };
                store
                    .put(PutRequest {
                        key: format!("{prefix}/{}", i % 50).into_bytes(),
                        value: i.to_string().into_bytes(),
                        ..PutRequest::default()
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    // Not reading `s.out` while the writes happen.
    for w in writers {
        timeout(Duration::from_secs(300), w)
            .await
            .expect("writes finish")
            .unwrap();
    }
    let last = h.store.hub().revision();
    assert_eq!(last, start + WRITES as i64);
    let batches = h.store.write_stats().commits - commits_before;
    assert!(
        batches >= 1100,
        "only {batches} batches: the live feed never overflowed"
    );

    let mut got: [Vec<Vec<Event>>; 2] = [Vec::new(), Vec::new()];
    let done = |g: &[Vec<Event>]| {
        g.last()
            .is_some_and(|e| e.iter().any(|e| e.kv.mod_revision >= last))
    };
    let evens_last = h
        .store
        .read_events(start + 1, last, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find(|r| r.events.iter().any(|e| e.kv.key.starts_with(b"even/")))
        .unwrap()
        .revision;
    while !done(&got[0])
        || !got[1]
            .last()
            .is_some_and(|e| e.iter().any(|e| e.kv.mod_revision >= evens_last))
    {
        match s.next().await {
            WatchOutput::Events {
                watch_id, events, ..
            } => {
                assert!(watch_id == all || watch_id == evens);
                got[usize::from(watch_id == evens)].push(events);
            }
            other => panic!("{other:?}"),
        }
    }
    let want: Vec<i64> = (start + 1..=last).collect();
    assert_eq!(check_guarantees(&got[0]), want);
    let history = h
        .store
        .read_events(start + 1, last, usize::MAX)
        .await
        .unwrap();
    let want_evens: Vec<&Event> = history
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| e.kv.key.starts_with(b"even/"))
        .collect();
    check_guarantees(&got[1]);
    let evens_got: Vec<&Event> = got[1].iter().flatten().collect();
    assert_eq!(evens_got, want_evens);
    s.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_when_the_client_goes_away() {
    let h = harness();
    let mut s = h.stream(64, NO_TICKS);
    s.create(spec("a", "", 0)).await;
    let Stream {
        requests,
        out,
        task,
    } = s;
    drop(requests);
    drop(out);
    h.put("a", "1").await;
    timeout(DEADLINE, task)
        .await
        .expect("stream task ends")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_other_keys_keep_a_watch_synced_without_lagging_it() {
    // More commits elsewhere than a stream's live feed holds (1024): the stream is never
    // woken for them, yet its watcher counts as synced through every one of them.
    const WRITES: usize = 1500;
    let h = harness();
    let mut s = h.stream(16, Duration::from_millis(200));
    let (id, _) = s
        .create(WatchSpec {
            progress_notify: true,
            ..spec("a/", "a0", 0)
        })
        .await;
    let mut last = 0;
    for i in 0..WRITES {
        last = h.put(&format!("b/{}", i % 10), "v").await;
    }
    // A periodic bookmark covers the quiet revisions...
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        assert!(
            tokio::time::Instant::now() < until,
            "no bookmark reached revision {last}"
        );
        match s.next().await {
            WatchOutput::Progress { watch_id, revision } if watch_id == id => {
                assert!(revision <= last);
                if revision == last {
                    break;
                }
            }
            other => panic!("expected a progress notification, got {other:?}"),
        }
    }
    // ...so does an answer to a progress request...
    s.send(WatchRequest::Progress).await;
    loop {
        match s.next().await {
            WatchOutput::Progress {
                watch_id: -1,
                revision,
            } => {
                assert_eq!(revision, last);
                break;
            }
            WatchOutput::Progress { watch_id, .. } if watch_id == id => {}
            other => panic!("expected the progress answer, got {other:?}"),
        }
    }
    // ...and the watcher's next event comes live, exactly once.
    let rev = h.put("a/1", "v").await;
    loop {
        match s.next().await {
            WatchOutput::Events {
                watch_id, events, ..
            } => {
                assert_eq!(watch_id, id);
                assert_eq!(check_guarantees(&[events]), [rev]);
                break;
            }
            WatchOutput::Progress { watch_id, .. } if watch_id == id => {}
            other => panic!("expected the event, got {other:?}"),
        }
    }
    // Nothing but bookmarks after it.
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(msg)) = tokio::time::timeout_at(until, s.out.recv()).await {
        assert_eq!(
            msg,
            WatchOutput::Progress {
                watch_id: id,
                revision: rev
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_request_waiting_for_a_watcher_is_answered_when_only_other_keys_change() {
    let h = harness();
    let now = h.put("b/0", "v").await;
    let mut s = h.stream(16, NO_TICKS);
    // Starts two revisions ahead of the store: not synced until the store gets there.
    let (id, _) = s.create(spec("a/", "a0", now + 3)).await;
    s.send(WatchRequest::Progress).await;
    s.assert_quiet().await;
    h.put("b/1", "v").await;
    let reached = h.put("b/2", "v").await;
    assert_eq!(reached, now + 2);
    assert_eq!(
        s.next().await,
        WatchOutput::Progress {
            watch_id: -1,
            revision: reached
        }
    );
    let rev = h.put("a/1", "v").await;
    assert_eq!(check_guarantees(&s.events_until(id, rev).await), [rev]);
}
