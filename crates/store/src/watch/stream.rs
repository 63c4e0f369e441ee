//! One client watch stream: many watchers multiplexed, fed from live batches and history.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::Store;
use crate::error::Error;
use crate::mvcc::keys::KeyRange;
use crate::types::{Event, EventType, RevisionEvents};
use crate::watch::hub::{Live, Subscription};

/// Most events read from history per catch-up step (a revision is never split).
const CATCH_UP_EVENTS: usize = 1000;

/// etcd's `WatchCreateRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// 0 = from the next revision.
    pub start_revision: i64,
    pub progress_notify: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    /// 0 = let the server pick.
    pub watch_id: i64,
    pub fragment: bool,
}

/// What a client sends on a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchRequest {
    Create(WatchSpec),
    Cancel(i64),
    Progress,
}

/// What the stream sends back. `revision` is the header revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchOutput {
    Created {
        watch_id: i64,
        revision: i64,
    },
    Canceled {
        watch_id: i64,
        revision: i64,
        compact_revision: i64,
        reason: String,
    },
    Events {
        watch_id: i64,
        revision: i64,
        events: Vec<Event>,
        /// The watcher accepts fragmented responses.
        fragment: bool,
    },
    /// A progress notification: every event up to `revision` has been sent. `watch_id` is
    /// -1 when it answers a progress request for the whole stream.
    Progress {
        watch_id: i64,
        revision: i64,
    },
}

struct Watcher {
    range: KeyRange,
    spec: WatchSpec,
    /// First revision not yet sent.
    next_rev: i64,
    /// A gap exists between what was sent and the live feed; fill it from history.
    behind: bool,
}

impl Watcher {
    /// Whether this watcher has everything up to `revision` and nothing after: only then
    /// may a bookmark at `revision` be sent. A watcher that started beyond the store's
    /// revision (resumed on a member that lags the one it watched before) is not.
    fn is_synced(&self, revision: i64) -> bool {
        self.next_rev == revision + 1
    }

    /// Whether revisions `from..=to` are this watcher's next to take from the live feed:
    /// not if it is behind or past them; a gap before them puts it behind.
    fn takes(&mut self, from: i64, to: i64) -> bool {
        if self.behind || self.next_rev > to {
            return false;
        }
        if self.next_rev < from {
            self.behind = true;
            return false;
        }
        true
    }

    fn select(&self, revs: &[RevisionEvents]) -> Vec<Event> {
        revs.iter()
            .filter(|r| r.revision >= self.next_rev)
            .flat_map(|r| &r.events)
            .filter(|e| self.range.contains(&e.kv.key))
            .filter(|e| match e.kind {
                EventType::Put => !self.spec.no_put,
                EventType::Delete => !self.spec.no_delete,
            })
            .map(|e| Event {
                kind: e.kind,
                kv: e.kv.clone(),
                prev_kv: if self.spec.prev_kv {
                    e.prev_kv.clone()
                } else {
                    None
                },
            })
            .collect()
    }
}

struct StreamState {
    store: Store,
    live: Subscription,
    /// The newest revision the live feed has accounted for: every watcher that is not
    /// behind has been sent everything up to here.
    seen: i64,
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    out: mpsc::Sender<WatchOutput>,
    /// A progress request waits for every watcher to be synced.
    progress_requested: bool,
}

/// Serves one watch stream until the receiver of `out` is dropped.
pub async fn serve_watch(
    store: Store,
    mut requests: mpsc::Receiver<WatchRequest>,
    out: mpsc::Sender<WatchOutput>,
    progress_interval: Duration,
) {
    // Subscribe before anything reads the current revision: see `Hub`'s correctness note.
    let live = store.hub().subscribe();
    let seen = store.hub().revision();
    let mut state = StreamState {
        store,
        live,
        seen,
        watchers: BTreeMap::new(),
        next_auto_id: 0,
        out,
        progress_requested: false,
    };
    let mut ticker = tokio::time::interval(progress_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // A client may half-close its side and keep reading; serve until `out` is dropped.
    let mut requests_open = true;
    loop {
        let behind = state.watchers.values().any(|w| w.behind);
        let ok = tokio::select! {
            biased;
            req = requests.recv(), if requests_open => match req {
                Some(req) => state.handle(req).await,
                None => {
                    requests_open = false;
                    true
                }
            },
            () = state.out.closed() => false,
            entries = state.live.recv() => state.take_in(entries).await,
            () = std::future::ready(()), if behind => state.catch_up().await,
            _ = ticker.tick() => state.progress_notify().await,
        };
        if !ok || !state.answer_progress().await {
            break;
        }
    }
}

impl StreamState {
    async fn send(&self, msg: WatchOutput) -> bool {
        self.out.send(msg).await.is_ok()
    }

    async fn handle(&mut self, req: WatchRequest) -> bool {
        match req {
            WatchRequest::Create(spec) => {
                let id = if spec.watch_id != 0 {
                    spec.watch_id
                } else {
                    while self.watchers.contains_key(&self.next_auto_id) {
                        self.next_auto_id += 1;
                    }
                    self.next_auto_id
                };
                if self.watchers.contains_key(&id) || id < 0 {
                    return self
                        .send(WatchOutput::Canceled {
                            watch_id: id,
                            revision: self.store.hub().revision(),
                            compact_revision: 0,
                            reason: "mvcc: duplicate watch ID provided on the WatchStream"
                                .to_string(),
                        })
                        .await;
                }
                let range = KeyRange::new(&spec.key, &spec.range_end);
                // Watch the range before reading the revision: see `Hub`'s correctness note.
                self.live.watch(id, range.clone(), spec.prev_kv);
                let current = self.store.hub().revision();
                let next_rev = if spec.start_revision > 0 {
                    spec.start_revision
                } else {
                    current + 1
                };
                let watcher = Watcher {
                    range,
                    behind: next_rev <= current,
                    next_rev,
                    spec,
                };
                self.watchers.insert(id, watcher);
                self.send(WatchOutput::Created {
                    watch_id: id,
                    revision: current,
                })
                .await
            }
            WatchRequest::Cancel(id) => {
                if self.watchers.remove(&id).is_none() {
                    return true;
                }
                self.live.unwatch(id);
                self.send(WatchOutput::Canceled {
                    watch_id: id,
                    revision: self.store.hub().revision(),
                    compact_revision: 0,
                    reason: String::new(),
                })
                .await
            }
            WatchRequest::Progress => {
                self.progress_requested = true;
                self.answer_progress().await
            }
        }
    }

    /// Takes in entries from the live feed, in order.
    async fn take_in(&mut self, entries: Vec<Live>) -> bool {
        for entry in entries {
            match entry {
                Live::Batch(batch) => {
                    if let Some(last) = batch.last() {
                        self.seen = self.seen.max(last.revision);
                    }
                    if !self.deliver(&batch).await {
                        return false;
                    }
                }
                Live::Quiet { from, to } => {
                    self.seen = self.seen.max(to);
                    for w in self.watchers.values_mut() {
                        if w.takes(from, to) {
                            w.next_rev = to + 1;
                        }
                    }
                }
                Live::Lagged => self.mark_lagging(),
            }
        }
        true
    }

    /// Takes in whatever the live feed has queued (quiet revisions never wake the stream),
    /// so that "synced" is judged on fresh state.
    async fn catch_live(&mut self) -> bool {
        let entries = self.live.take();
        self.take_in(entries).await
    }

    /// Answers a pending progress request once every watcher is synced, so the bookmark
    /// covers every event sent; until then it stays pending (as etcd defers it) instead of
    /// being dropped.
    async fn answer_progress(&mut self) -> bool {
        if !self.progress_requested {
            return true;
        }
        // A revision published but not yet queued here keeps a watcher unsynced; once quiet
        // revisions wake the stream, whatever comes after the second look arrives.
        for eager in [false, true] {
            if eager {
                self.live.wake_on_quiet(true);
            }
            if !self.catch_live().await {
                return false;
            }
            let revision = self.seen;
            if self.watchers.values().all(|w| w.is_synced(revision)) {
                self.live.wake_on_quiet(false);
                self.progress_requested = false;
                return self
                    .send(WatchOutput::Progress {
                        watch_id: -1,
                        revision,
                    })
                    .await;
            }
        }
        true
    }

    async fn deliver(&mut self, batch: &[RevisionEvents]) -> bool {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            // An empty batch announces a jump (a snapshot was installed): anything below the
            // new revision comes from history.
            self.mark_lagging();
            return true;
        };
        let mut outputs = Vec::new();
        for (id, w) in &mut self.watchers {
            if !w.takes(first.revision, last.revision) {
                continue;
            }
            let mut events = w.select(batch);
            w.next_rev = last.revision + 1;
            if events.is_empty() {
                continue;
            }
            // Revisions applied before any watcher asked for `prev_kv` came without it (see
            // `Hub::wants_prev_kv`): read it now.
            if w.spec.prev_kv && events.iter().any(Event::lacks_prev_kv) {
                match self.store.fill_prev_kvs(events).await {
                    Ok(filled) => events = filled,
                    Err(e) => {
                        tracing::error!(error = %e, "reading previous versions for a watch failed");
                        return false;
                    }
                }
            }
            outputs.push(WatchOutput::Events {
                watch_id: *id,
                revision: last.revision,
                events,
                fragment: w.spec.fragment,
            });
        }
        for msg in outputs {
            if !self.send(msg).await {
                return false;
            }
        }
        true
    }

    fn mark_lagging(&mut self) {
        let current = self.store.hub().revision();
        self.seen = self.seen.max(current);
        for w in self.watchers.values_mut() {
            if w.next_rev <= current {
                w.behind = true;
            }
        }
    }

    /// Sends one chunk of history to one lagging watcher.
    async fn catch_up(&mut self) -> bool {
        let Some((&id, w)) = self.watchers.iter().find(|(_, w)| w.behind) else {
            return true;
        };
        let to = self.store.hub().revision();
        if w.next_rev > to {
            if let Some(w) = self.watchers.get_mut(&id) {
                w.behind = false;
            }
            return true;
        }
        let from = w.next_rev;
        match self.store.read_events(from, to, CATCH_UP_EVENTS).await {
            Ok(revs) => {
                let Some(w) = self.watchers.get_mut(&id) else {
                    return true;
                };
                let events = w.select(&revs);
                let reached = revs.last().map_or(to, |r| r.revision);
                w.next_rev = reached + 1;
                w.behind = w.next_rev <= to;
                let fragment = w.spec.fragment;
                if events.is_empty() {
                    return true;
                }
                self.send(WatchOutput::Events {
                    watch_id: id,
                    revision: to,
                    events,
                    fragment,
                })
                .await
            }
            Err(Error::Compacted { compacted, .. }) => {
                self.watchers.remove(&id);
                self.live.unwatch(id);
                self.send(WatchOutput::Canceled {
                    watch_id: id,
                    revision: to,
                    compact_revision: compacted,
                    reason: String::new(),
                })
                .await
            }
            Err(e) => {
                tracing::error!(error = %e, "reading watch history failed");
                self.watchers.remove(&id);
                self.live.unwatch(id);
                self.send(WatchOutput::Canceled {
                    watch_id: id,
                    revision: to,
                    compact_revision: 0,
                    reason: e.to_string(),
                })
                .await
            }
        }
    }

    async fn progress_notify(&mut self) -> bool {
        if !self.catch_live().await {
            return false;
        }
        let revision = self.seen;
        let due: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.spec.progress_notify && !w.behind && w.is_synced(revision))
            .map(|(id, _)| *id)
            .collect();
        for watch_id in due {
            if !self
                .send(WatchOutput::Progress { watch_id, revision })
                .await
            {
                return false;
            }
        }
        true
    }
}
