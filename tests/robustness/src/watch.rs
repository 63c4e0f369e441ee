//! Watchers that follow a whole key prefix from revision 1 through member crashes, and the
//! checks of etcd's watch guarantees over what they received.
//!
//! Every write of a run lands under the watched prefix, so a correct watch delivers every
//! revision from 2 to the last one, exactly once, in order, a revision never split across
//! responses. After a stream breaks the watcher resumes from the revision after the last
//! one it knows to be complete (last event or last progress notification): resumption and
//! bookmarks are correct only if nothing goes missing then.
//!
//! The checks (see [`check`]):
//! - ordered, unique: event revisions strictly increase across responses (and never go
//!   back within one), never below the revision asked for;
//! - atomic: one revision's events all come in one response;
//! - reliable: the revisions seen are exactly `2..=final`;
//! - bookmarkable: a progress notification at `r` is never followed by an event at `<= r`,
//!   and progress revisions never decrease within a stream;
//! - correct: replaying the events from an empty store, every event's `prev_kv`, version and
//!   create revision match the replayed state;
//! - all watchers saw the same events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use stead_server::pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cluster::Endpoints;
use crate::history::{Kv, Recorder};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub delete: bool,
    pub kv: Kv,
    pub prev: Option<Kv>,
}

/// One response of a watch stream.
#[derive(Clone, Debug)]
pub struct Received {
    pub time: u64,
    /// Increments each time the watcher had to reconnect.
    pub session: usize,
    pub endpoint: String,
    /// The revision the session asked to start from.
    pub start: i64,
    pub header_revision: i64,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    pub events: Vec<Event>,
}

impl Received {
    fn is_progress(&self) -> bool {
        self.events.is_empty() && !self.created && !self.canceled
    }
}

/// A watcher's record, shared with the task that fills it.
#[derive(Clone, Default)]
pub struct WatchLog {
    pub received: Arc<Mutex<Vec<Received>>>,
    /// The revision up to which this watcher has everything (for the nemesis: never compact
    /// past it, and for the end of the run: wait for it to reach the final revision).
    pub complete_to: Arc<AtomicI64>,
}

impl WatchLog {
    pub fn snapshot(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn event_from_pb(e: &pb::mvccpb::Event) -> Event {
    Event {
        delete: e.r#type == pb::mvccpb::event::EventType::Delete as i32,
        kv: e.kv.as_ref().map(Kv::from_pb).unwrap_or(Kv {
            key: String::new(),
            value: String::new(),
            create_revision: 0,
            mod_revision: 0,
            version: 0,
            lease: 0,
        }),
        prev: e.prev_kv.as_ref().map(Kv::from_pb),
    }
}

/// Follows `prefix` from revision 1 until `stop`, reconnecting to the next endpoint
/// whenever a stream fails, and asking for progress every `progress_every`.
pub async fn run(
    id: usize,
    endpoints: Endpoints,
    prefix: String,
    log: WatchLog,
    clock: Recorder,
    mut stop: tokio::sync::watch::Receiver<bool>,
    progress_every: Duration,
) {
    let mut next = 1i64;
    let mut session = 0usize;
    let mut pick = id;
    while !*stop.borrow() {
        let endpoint = endpoints.pick(pick);
        pick += 1;
        let (tx, rx) = mpsc::channel(4);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(&prefix),
                    start_revision: next,
                    progress_notify: true,
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        };
        if tx.send(create).await.is_err() {
            continue;
        }
        let channel = crate::cluster::channel(&endpoint, None);
        let mut client = pb::watch_client::WatchClient::new(channel);
        let stream = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(3), client.watch(ReceiverStream::new(rx))) => r,
            _ = stop.changed() => return,
        };
        let mut stream = match stream {
            Ok(Ok(s)) => s.into_inner(),
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let start = next;
        let mut ticker = tokio::time::interval(progress_every);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(Ok(resp)) = msg else { break };
                    let got = Received {
                        time: clock.now(),
                        session,
                        endpoint: endpoint.clone(),
                        start,
                        header_revision: resp.header.as_ref().map_or(0, |h| h.revision),
                        created: resp.created,
                        canceled: resp.canceled,
                        compact_revision: resp.compact_revision,
                        events: resp.events.iter().map(event_from_pb).collect(),
                    };
                    if let Some(last) = got.events.last() {
                        next = next.max(last.kv.mod_revision + 1);
                    } else if got.is_progress() {
                        next = next.max(got.header_revision + 1);
                    }
                    let canceled = got.canceled;
                    log.received.lock().unwrap_or_else(|e| e.into_inner()).push(got);
                    log.complete_to.store(next - 1, Ordering::SeqCst);
                    if canceled {
                        break;
                    }
                }
                _ = ticker.tick() => {
                    let progress = pb::WatchRequest {
                        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                            pb::WatchProgressRequest {},
                        )),
                    };
                    if tx.send(progress).await.is_err() {
                        break;
                    }
                }
                _ = stop.changed() => return,
            }
        }
        session += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The events of one revision, in the order delivered.
pub type Revisions = BTreeMap<i64, Vec<Event>>;

/// Checks one watcher's responses; returns the events by revision and the anomalies found.
pub fn check(name: &str, received: &[Received], final_revision: i64) -> (Revisions, Vec<String>) {
    let mut anomalies = Vec::new();
    let mut by_rev: Revisions = BTreeMap::new();
    let mut last_event_rev = 1i64;
    let mut bookmark = 1i64;
    let mut session_progress: BTreeMap<usize, i64> = BTreeMap::new();
    for (n, r) in received.iter().enumerate() {
        let at = format!(
            "{name} response #{n} (session {}, {}, t={:.3}s)",
            r.session,
            r.endpoint,
            r.time as f64 / 1e9
        );
        if r.canceled {
            anomalies.push(format!(
                "{at}: watch canceled (compact_revision {}) - the watcher fell behind",
                r.compact_revision
            ));
            continue;
        }
        if r.is_progress() {
            let seen = session_progress.entry(r.session).or_insert(0);
            if r.header_revision < *seen {
                anomalies.push(format!(
                    "{at}: progress notification went back from {} to {}",
                    seen, r.header_revision
                ));
            }
            *seen = r.header_revision;
            if r.header_revision < last_event_rev {
                anomalies.push(format!(
                    "{at}: progress notification at {} after an event at {}",
                    r.header_revision, last_event_rev
                ));
            }
            bookmark = bookmark.max(r.header_revision);
            continue;
        }
        let mut prev_in_resp = 0i64;
        for e in &r.events {
            let rev = e.kv.mod_revision;
            if rev < r.start {
                anomalies.push(format!(
                    "{at}: event at {rev} before the start revision {}",
                    r.start
                ));
            }
            if rev < prev_in_resp {
                anomalies.push(format!(
                    "{at}: events out of order ({prev_in_resp} then {rev})"
                ));
            }
            if rev != prev_in_resp && rev <= last_event_rev && last_event_rev > 1 {
                let what = if by_rev.contains_key(&rev) && rev == last_event_rev {
                    "split across responses (not atomic) or duplicated"
                } else {
                    "duplicated or out of order"
                };
                anomalies.push(format!(
                    "{at}: revision {rev} {what}; the previous response ended at {last_event_rev}"
                ));
            }
            if rev <= bookmark && bookmark > 1 {
                anomalies.push(format!(
                    "{at}: event at {rev} after a progress notification at {bookmark}"
                ));
            }
            if r.header_revision < rev {
                anomalies.push(format!(
                    "{at}: header revision {} below event revision {rev}",
                    r.header_revision
                ));
            }
            prev_in_resp = rev;
            let slot = by_rev.entry(rev).or_default();
            if slot.iter().any(|x| x.kv.key == e.kv.key) {
                anomalies.push(format!("{at}: key {} twice at revision {rev}", e.kv.key));
            }
            slot.push(e.clone());
        }
        last_event_rev = last_event_rev.max(prev_in_resp);
    }
    // Reliable: every revision, none beyond the end.
    let missing: Vec<i64> = (2..=final_revision)
        .filter(|r| !by_rev.contains_key(r))
        .collect();
    if !missing.is_empty() {
        anomalies.push(format!(
            "{name}: {} revisions never delivered (gaps), e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    if let Some((&last, _)) = by_rev.last_key_value()
        && last > final_revision
    {
        anomalies.push(format!(
            "{name}: event at {last} beyond the final revision {final_revision}"
        ));
    }
    anomalies.extend(check_replay(name, &by_rev));
    (by_rev, anomalies)
}

/// Replays events from an empty store and checks each against the state before it.
fn check_replay(name: &str, by_rev: &Revisions) -> Vec<String> {
    let mut anomalies = Vec::new();
    let mut state: BTreeMap<String, Kv> = BTreeMap::new();
    for (&rev, events) in by_rev {
        for e in events {
            let before = state.get(&e.kv.key).cloned();
            if e.prev != before {
                anomalies.push(format!(
                    "{name}: revision {rev} {}: prev_kv {:?}, but the key was {:?}",
                    e.kv.key, e.prev, before
                ));
            }
            if e.delete {
                if before.is_none() {
                    anomalies.push(format!(
                        "{name}: revision {rev}: delete of missing key {}",
                        e.kv.key
                    ));
                }
                state.remove(&e.kv.key);
            } else {
                let version = before.as_ref().map_or(1, |b| b.version + 1);
                let create = before.as_ref().map_or(rev, |b| b.create_revision);
                if e.kv.version != version || e.kv.create_revision != create {
                    anomalies.push(format!(
                        "{name}: revision {rev}: {} has version {} create {}; replay says {} and {}",
                        e.kv.key, e.kv.version, e.kv.create_revision, version, create
                    ));
                }
                state.insert(e.kv.key.clone(), e.kv.clone());
            }
        }
    }
    anomalies
}

/// The state after replaying every revision up to `rev`.
pub fn state_at(by_rev: &Revisions, rev: i64) -> BTreeMap<String, Kv> {
    let mut state = BTreeMap::new();
    for (_, events) in by_rev.range(..=rev) {
        for e in events {
            if e.delete {
                state.remove(&e.kv.key);
            } else {
                state.insert(e.kv.key.clone(), e.kv.clone());
            }
        }
    }
    state
}

/// Compares the events of two watchers, revision by revision.
pub fn compare(a_name: &str, a: &Revisions, b_name: &str, b: &Revisions) -> Vec<String> {
    let mut anomalies = Vec::new();
    for (rev, ea) in a {
        match b.get(rev) {
            Some(eb) if eb == ea => {}
            Some(eb) => anomalies.push(format!(
                "revision {rev}: {a_name} saw {ea:?}, {b_name} saw {eb:?}"
            )),
            None => {}
        }
        if anomalies.len() > 5 {
            break;
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, c: i64, m: i64, v: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.into(),
            create_revision: c,
            mod_revision: m,
            version: v,
            lease: 0,
        }
    }

    fn resp(session: usize, start: i64, header: i64, events: Vec<Event>) -> Received {
        Received {
            time: 0,
            session,
            endpoint: "e".into(),
            start,
            header_revision: header,
            created: false,
            canceled: false,
            compact_revision: 0,
            events,
        }
    }

    fn put(kv: Kv, prev: Option<Kv>) -> Event {
        Event {
            delete: false,
            kv,
            prev,
        }
    }

    fn good() -> Vec<Received> {
        let a2 = kv("a", "1", 2, 2, 1);
        let b3 = kv("b", "2", 3, 3, 1);
        let a4 = kv("a", "3", 2, 4, 2);
        vec![
            resp(0, 1, 2, vec![put(a2.clone(), None)]),
            resp(0, 1, 3, vec![put(b3, None)]),
            // Progress notification at 3, then the stream breaks and resumes from 4.
            resp(0, 1, 3, vec![]),
            resp(1, 4, 4, vec![put(a4, Some(a2))]),
        ]
    }

    #[test]
    fn a_correct_stream_with_a_resume_passes() {
        let (revs, anomalies) = check("w", &good(), 4);
        assert!(anomalies.is_empty(), "{anomalies:?}");
        assert_eq!(revs.len(), 3);
        assert_eq!(state_at(&revs, 3).len(), 2);
    }

    #[test]
    fn a_gap_a_duplicate_a_bad_prev_kv_and_a_lying_bookmark_are_caught() {
        let mut gap = good();
        gap.remove(1);
        let (_, a) = check("w", &gap, 4);
        assert!(a.iter().any(|m| m.contains("never delivered")), "{a:?}");

        let mut dup = good();
        dup.push(dup[3].clone());
        let (_, a) = check("w", &dup, 4);
        assert!(a.iter().any(|m| m.contains("duplicated")), "{a:?}");

        let mut bad_prev = good();
        bad_prev[3].events[0].prev = None;
        let (_, a) = check("w", &bad_prev, 4);
        assert!(a.iter().any(|m| m.contains("prev_kv")), "{a:?}");

        // A bookmark at 3 sent before the event at 3.
        let mut early = good();
        early.swap(1, 2);
        let (_, a) = check("w", &early, 4);
        assert!(a.iter().any(|m| m.contains("progress")), "{a:?}");
    }

    #[test]
    fn a_revision_split_across_two_responses_is_not_atomic() {
        let a2 = kv("a", "1", 2, 2, 1);
        let b2 = kv("b", "1", 2, 2, 1);
        let split = vec![
            resp(0, 1, 2, vec![put(a2, None)]),
            resp(0, 1, 2, vec![put(b2, None)]),
        ];
        let (_, a) = check("w", &split, 2);
        assert!(a.iter().any(|m| m.contains("not atomic")), "{a:?}");
    }
}
