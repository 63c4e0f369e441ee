//! [`Hub`]: publishes committed revisions to watch streams, waking only the streams that
//! watch a key the revisions changed.
//!
//! ```text
//!  publish(revisions) ─► for each subscription:
//!                          watches a changed key? ─► queue Batch, wake the stream
//!                          otherwise              ─► queue Quiet{from, to} (merged with the
//!                                                    Quiet before it), no wake-up
//! ```
//!
//! A stream that watches `/registry/crds/` is not woken by a million puts elsewhere, yet
//! learns from the Quiet entries that its watchers are synced through those revisions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::lock;
use crate::mvcc::keys::KeyRange;
use crate::types::RevisionEvents;

/// How many entries a subscription may fall behind before it lags and catches up from
/// history instead.
const LIVE_CAPACITY: usize = 1024;

/// A batch of revisions committed together.
pub type Batch = Arc<[RevisionEvents]>;

/// What a subscription receives, in commit order.
#[derive(Debug, Clone)]
pub enum Live {
    /// Revisions committed together, at least one of them touching a watched key.
    Batch(Batch),
    /// Revisions `from..=to` were committed and none touched a watched key.
    Quiet { from: i64, to: i64 },
    /// Entries were dropped (the subscriber fell behind, or a snapshot replaced the
    /// state): whatever is missing must be read from history. Always the last entry.
    Lagged,
}

/// The publish side of watches.
///
/// # Correctness
/// - `revision` is raised *before* a batch is queued, and a subscription's interest is
///   checked under its lock. A stream that adds a key range to its interest and *then*
///   reads `revision()` therefore finds every later revision that touches the range
///   queued as a [`Live::Batch`]; earlier ones are at or below the revision it read.
/// - Every revision published after [`Hub::subscribe`] reaches the subscription as a
///   `Batch` or a `Quiet` entry, in order, until a [`Live::Lagged`].
#[derive(Debug)]
pub struct Hub {
    revision: AtomicI64,
    compacted: AtomicI64,
    inboxes: Mutex<Vec<Arc<Inbox>>>,
    /// Watchers, over all subscriptions, that want each event's previous version.
    prev_kv_watchers: Arc<AtomicUsize>,
}

#[derive(Debug, Default)]
struct Inbox {
    state: Mutex<InboxState>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct InboxState {
    /// The watchers' key ranges.
    interest: Vec<Interest>,
    queue: VecDeque<Live>,
    /// `queue` ends in `Lagged`; nothing more is queued until it is taken.
    lagged: bool,
    /// `queue` holds an entry the stream must be woken for: a `Batch`, `Lagged`, or any
    /// entry while `eager`.
    woken: bool,
    /// Quiet entries wake the stream too (it waits for its watchers to be synced).
    eager: bool,
}

impl Inbox {
    /// Wakes the stream if `state` (this inbox's, released here) holds something for it.
    fn notify_if_woken(&self, state: std::sync::MutexGuard<'_, InboxState>) {
        let woken = state.woken;
        drop(state);
        if woken {
            self.wake.notify_one();
        }
    }
}

impl InboxState {
    fn push(&mut self, entry: Live) {
        if self.queue.len() >= LIVE_CAPACITY {
            self.lag();
        } else {
            self.woken |= self.eager || matches!(entry, Live::Batch(_));
            self.queue.push_back(entry);
        }
    }

    /// Queues revisions `from..=to` as quiet, merged with a quiet entry right before them.
    fn push_quiet(&mut self, from: i64, to: i64) {
        match self.queue.back_mut() {
            Some(Live::Quiet { to: end, .. }) if *end + 1 == from => {
                *end = to;
                self.woken |= self.eager;
            }
            _ => self.push(Live::Quiet { from, to }),
        }
    }

    fn lag(&mut self) {
        self.queue.clear();
        self.queue.push_back(Live::Lagged);
        self.lagged = true;
        self.woken = true;
    }

    /// Whether a watched range holds one of `keys` (sorted): the smallest key at or after
    /// a range's start is the only candidate.
    fn wants(&self, keys: &[&[u8]]) -> bool {
        self.interest.iter().any(|Interest { range, .. }| {
            keys.get(keys.partition_point(|k| *k < range.start()))
                .is_some_and(|k| range.contains(k))
        })
    }
}

impl Hub {
    pub fn new(revision: i64, compacted: i64) -> Self {
        Hub {
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            inboxes: Mutex::new(Vec::new()),
            prev_kv_watchers: Arc::default(),
        }
    }

    /// Whether some watcher wants each event's previous version (then the apply path reads
    /// it for every put; otherwise only where a request asks for it).
    pub fn wants_prev_kv(&self) -> bool {
        self.prev_kv_watchers.load(Ordering::Acquire) > 0
    }

    /// The newest committed revision.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The newest compaction revision.
    pub fn compacted(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    /// Receives every revision published from now on; read [`Hub::revision`] after this
    /// call to know where the subscription starts. It wakes only for revisions touching
    /// the ranges added with [`Subscription::watch`].
    pub fn subscribe(&self) -> Subscription {
        let inbox = Arc::new(Inbox::default());
        let mut inboxes = lock(&self.inboxes);
        inboxes.retain(|inbox| Arc::strong_count(inbox) > 1);
        inboxes.push(inbox.clone());
        Subscription {
            inbox,
            prev_kv_watchers: self.prev_kv_watchers.clone(),
        }
    }

    /// Called after the whole state was replaced (a snapshot installed): streams learn that
    /// revisions up to `revision` exist and catch up from history.
    pub fn publish_jump(&self, revision: i64, compacted: i64) {
        self.compacted.store(compacted, Ordering::Release);
        self.revision.store(revision, Ordering::Release);
        let mut inboxes = lock(&self.inboxes);
        inboxes.retain(|inbox| Arc::strong_count(inbox) > 1);
        for inbox in inboxes.iter() {
            let mut state = lock(&inbox.state);
            if !state.lagged {
                state.lag();
            }
            inbox.notify_if_woken(state);
        }
    }

    /// Called after a batch is durable and visible to reads.
    pub fn publish(&self, revision: i64, compacted: i64, events: Vec<RevisionEvents>) {
        self.compacted.store(compacted, Ordering::Release);
        self.revision.store(revision, Ordering::Release);
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return;
        };
        let (from, to) = (first.revision, last.revision);
        let batch: Batch = events.into();
        let mut keys: Vec<&[u8]> = batch
            .iter()
            .flat_map(|r| &r.events)
            .map(|e| &e.kv.key[..])
            .collect();
        keys.sort_unstable();
        let mut inboxes = lock(&self.inboxes);
        // A subscription only the hub holds has been dropped.
        inboxes.retain(|inbox| Arc::strong_count(inbox) > 1);
        for inbox in inboxes.iter() {
            let mut state = lock(&inbox.state);
            if state.lagged {
                continue;
            }
            if state.wants(&keys) {
                state.push(Live::Batch(batch.clone()));
            } else {
                state.push_quiet(from, to);
            }
            inbox.notify_if_woken(state);
        }
    }
}

/// One stream's feed from the [`Hub`]; dropping it unsubscribes.
/// One watcher's part in a subscription.
#[derive(Debug)]
struct Interest {
    id: i64,
    range: KeyRange,
    /// The watcher wants each event's previous version (counted in the hub).
    prev_kv: bool,
}

#[derive(Debug)]
pub struct Subscription {
    inbox: Arc<Inbox>,
    prev_kv_watchers: Arc<AtomicUsize>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let state = lock(&self.inbox.state);
        let wanted = state.interest.iter().filter(|i| i.prev_kv).count();
        self.prev_kv_watchers.fetch_sub(wanted, Ordering::AcqRel);
    }
}

impl Subscription {
    /// Adds `range` (watcher `id`'s) to the keys whose changes wake this subscription.
    /// Read [`Hub::revision`] after this call: every later change in `range` is queued.
    /// `prev_kv`: the watcher wants each event's previous version.
    pub fn watch(&self, id: i64, range: KeyRange, prev_kv: bool) {
        let mut state = lock(&self.inbox.state);
        state.interest.push(Interest { id, range, prev_kv });
        if prev_kv {
            self.prev_kv_watchers.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether quiet revisions wake the subscription too: a stream waiting for its
    /// watchers to be synced (to answer a progress request) must not sleep through them.
    pub fn wake_on_quiet(&self, eager: bool) {
        lock(&self.inbox.state).eager = eager;
    }

    /// Removes watcher `id`'s range.
    pub fn unwatch(&self, id: i64) {
        let mut state = lock(&self.inbox.state);
        let mut wanted = 0;
        state.interest.retain(|i| {
            wanted += usize::from(i.id == id && i.prev_kv);
            i.id != id
        });
        self.prev_kv_watchers.fetch_sub(wanted, Ordering::AcqRel);
    }

    /// Everything queued, oldest first (empty if nothing is).
    pub fn take(&self) -> Vec<Live> {
        Self::take_from(&mut lock(&self.inbox.state))
    }

    fn take_from(state: &mut InboxState) -> Vec<Live> {
        state.lagged = false;
        state.woken = false;
        state.queue.drain(..).collect()
    }

    /// Waits for a batch touching a watched key (or a lag), then takes everything queued.
    /// Cancel safe: entries are only taken by the poll that returns them.
    pub async fn recv(&self) -> Vec<Live> {
        loop {
            {
                let mut state = lock(&self.inbox.state);
                if state.woken {
                    return Self::take_from(&mut state);
                }
            }
            // A wake-up sent since `take` is kept as a permit, so none is missed.
            self.inbox.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Event, EventType, KeyValue};

    fn revision(revision: i64, key: &str) -> RevisionEvents {
        RevisionEvents {
            revision,
            events: vec![Event {
                kind: EventType::Put,
                kv: KeyValue {
                    key: key.as_bytes().to_vec(),
                    mod_revision: revision,
                    ..KeyValue::default()
                },
                prev_kv: None,
            }],
        }
    }

    fn revisions(entries: &[Live]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                Live::Batch(b) => format!("batch {}", b[0].revision),
                Live::Quiet { from, to } => format!("quiet {from}-{to}"),
                Live::Lagged => "lagged".to_string(),
            })
            .collect()
    }

    #[tokio::test]
    async fn only_changes_to_watched_keys_wake_a_subscription_and_quiet_revisions_merge() {
        let hub = Hub::new(1, 0);
        let sub = hub.subscribe();
        sub.watch(7, KeyRange::new(b"a/", b"a0"), false);
        hub.publish(2, 0, vec![revision(2, "b/1")]);
        hub.publish(4, 0, vec![revision(3, "b/2"), revision(4, "c")]);
        let woken = tokio::time::timeout(std::time::Duration::from_millis(50), sub.recv()).await;
        assert!(woken.is_err(), "woken by keys it does not watch");
        hub.publish(5, 0, vec![revision(5, "a/x")]);
        hub.publish(6, 0, vec![revision(6, "z")]);
        assert_eq!(
            revisions(&sub.recv().await),
            ["quiet 2-4", "batch 5", "quiet 6-6"]
        );
        sub.unwatch(7);
        hub.publish(7, 0, vec![revision(7, "a/x")]);
        assert_eq!(revisions(&sub.take()), ["quiet 7-7"]);
    }

    #[tokio::test]
    async fn a_subscription_that_falls_behind_gets_one_lagged_then_resumes() {
        let hub = Hub::new(0, 0);
        let sub = hub.subscribe();
        sub.watch(0, KeyRange::new(b"\0", b"\0"), false);
        let n = LIVE_CAPACITY as i64 + 5;
        for rev in 1..=n {
            hub.publish(rev, 0, vec![revision(rev, "k")]);
        }
        assert_eq!(revisions(&sub.recv().await), ["lagged"]);
        hub.publish(n + 1, 0, vec![revision(n + 1, "k")]);
        assert_eq!(revisions(&sub.take()), [format!("batch {}", n + 1)]);
        hub.publish_jump(n + 10, 0);
        assert_eq!(revisions(&sub.take()), ["lagged"]);
    }

    #[test]
    fn a_batch_is_wanted_when_any_watched_range_holds_any_of_its_keys() {
        let wants = |key: &str, end: &str| {
            let state = InboxState {
                interest: vec![Interest {
                    id: 0,
                    range: KeyRange::new(key.as_bytes(), end.as_bytes()),
                    prev_kv: false,
                }],
                ..InboxState::default()
            };
            state.wants(&[b"a", b"m", b"z"])
        };
        assert!(wants("m", ""), "a single key");
        assert!(!wants("n", ""), "a single key not changed");
        assert!(wants("b", "n"), "a range holding m");
        assert!(!wants("n", "y"), "a range between the keys");
        assert!(wants("y", "\0"), "everything from y on");
        assert!(!wants("zz", "\0"), "everything after the last key");
        assert!(wants("\0", "\0"), "every key");
    }

    #[test]
    fn a_dropped_subscription_is_forgotten() {
        let hub = Hub::new(0, 0);
        let sub = hub.subscribe();
        drop(sub);
        hub.publish(1, 0, vec![revision(1, "k")]);
        assert!(lock(&hub.inboxes).is_empty());
    }
}
