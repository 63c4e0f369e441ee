//! Model-based test of [`Engine`]: random sequences of Put, DeleteRange, compare-and-swap
//! Txns and Compact over a small key space, applied in batches of one or several commands,
//! against a reference model `key -> [(revision, Option<value>)]` plus the current and
//! compacted revision.
//!
//! After every batch the engine must agree with the model on: each command's outcome, the
//! revisions, the events the batch produced, ranges (whole space, a bounded range and single
//! keys) at the current and at random past revisions, including the Compacted and
//! FutureRevision errors, and the history `read_events` returns from random revisions,
//! read whole and in small chunks as a catching-up watcher does: ordered, unique, no gaps,
//! each revision's events together and with their `prev_kv`.

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::prelude::*;
use redb::Durability;
use stead_store::{
    Command, CommandResponse, Compare, CompareResult, CompareTarget, DeleteRangeRequest, Engine,
    EngineOptions, Error, Event, EventType, KeyValue, PutRequest, RangeRequest, RequestOp,
    RevisionEvents, TxnRequest,
};

const KEYS: usize = 5;
const VALUES: u8 = 4;

fn key(i: usize) -> Vec<u8> {
    vec![b'a' + i as u8]
}

fn value(v: u8) -> Vec<u8> {
    format!("v{v}").into_bytes()
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum CasCompare {
    /// mod_revision == the key's current mod revision (0 if absent): always holds.
    ModIsCurrent,
    /// mod_revision == a small number (0 = "absent"): sometimes holds.
    ModEquals(i64),
    /// value == this value: false for a missing key.
    ValueEquals(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Put(usize, u8),
    /// Delete one key, or `[key, end)` where `end == KEYS` means `"\0"` (every key >= key).
    Delete(usize, Option<usize>),
    /// If the compare holds put `key = value`, else delete `failure_delete` (if any).
    Cas {
        key: usize,
        compare: CasCompare,
        value: u8,
        failure_delete: Option<usize>,
    },
    /// Compact at `current - back` (may be at or below the compacted revision, or future).
    Compact(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let compare = prop_oneof![
        Just(CasCompare::ModIsCurrent),
        (0i64..12).prop_map(CasCompare::ModEquals),
        (0..VALUES).prop_map(CasCompare::ValueEquals),
    ];
    prop_oneof![
        4 => (0..KEYS, 0..VALUES).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..KEYS, proptest::option::of(0..=KEYS)).prop_map(|(k, e)| Op::Delete(k, e)),
        3 => (0..KEYS, compare, 0..VALUES, proptest::option::of(0..KEYS)).prop_map(
            |(key, compare, value, failure_delete)| Op::Cas {
                key,
                compare,
                value,
                failure_delete,
            }
        ),
        1 => (-1i64..6).prop_map(Op::Compact),
    ]
}

/// One batch of commands plus seeds for the revisions probed after it.
#[derive(Debug, Clone)]
struct Step {
    ops: Vec<Op>,
    probes: [u16; 3],
}

fn step() -> impl Strategy<Value = Step> {
    let ops = prop_oneof![3 => vec(op(), 1..=1), 2 => vec(op(), 2..=5)];
    (ops, any::<[u16; 3]>()).prop_map(|(ops, probes)| Step { ops, probes })
}

fn single(k: usize) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key(k),
        range_end: Vec::new(),
        prev_kv: false,
    }
}

fn delete_request(k: usize, end: Option<usize>) -> DeleteRangeRequest {
    let range_end = match end {
        None => Vec::new(),
        Some(e) if e == KEYS => vec![0],
        Some(e) => key(e),
    };
    DeleteRangeRequest {
        range_end,
        ..single(k)
    }
}

// ---------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Outcome {
    Put { revision: i64 },
    Delete { revision: i64, deleted: i64 },
    Txn { revision: i64, succeeded: bool },
    Compacted,
    CompactRefused { future: bool },
}

type Key = Vec<u8>;
/// A value, or `None` for a deletion.
type Change = Option<Vec<u8>>;

#[derive(Debug, Default)]
struct Model {
    /// Every version of every key ever written, oldest first; `None` is a deletion.
    history: BTreeMap<Key, Vec<(i64, Change)>>,
    revision: i64,
    compacted: i64,
    /// The keys each revision changed, in order (`None` = deleted).
    changes: BTreeMap<i64, Vec<(Key, Change)>>,
}

impl Model {
    fn new() -> Self {
        Model {
            revision: 1,
            ..Model::default()
        }
    }

    /// The key as of `rev`, with the create revision and version etcd would report.
    fn kv_at(&self, k: &[u8], rev: i64) -> Option<KeyValue> {
        let mut current: Option<KeyValue> = None;
        for (r, v) in self.history.get(k)?.iter().take_while(|(r, _)| *r <= rev) {
            current = v.as_ref().map(|value| {
                let (create, version) = current
                    .as_ref()
                    .map_or((*r, 1), |p| (p.create_revision, p.version + 1));
                KeyValue {
                    key: k.to_vec(),
                    create_revision: create,
                    mod_revision: *r,
                    version,
                    value: value.clone(),
                    lease: 0,
                }
            });
        }
        current
    }

    fn live(&self, k: &[u8]) -> Option<KeyValue> {
        self.kv_at(k, self.revision)
    }

    fn range_at(&self, rev: i64, start: &[u8], end: Option<&[u8]>) -> Vec<KeyValue> {
        self.history
            .keys()
            .filter(|k| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e))
            .filter_map(|k| self.kv_at(k, rev))
            .collect()
    }

    /// Records the changes of one request as the next revision, if it changed anything.
    fn commit(&mut self, changes: Vec<(Key, Change)>) {
        if changes.is_empty() {
            return;
        }
        self.revision += 1;
        for (k, v) in &changes {
            self.history
                .entry(k.clone())
                .or_default()
                .push((self.revision, v.clone()));
        }
        self.changes.insert(self.revision, changes);
    }

    fn deletions(&self, req: &DeleteRangeRequest) -> Vec<(Key, Change)> {
        let keys: Vec<Vec<u8>> = match req.range_end.as_slice() {
            [] => vec![req.key.clone()],
            [0] => self
                .history
                .keys()
                .filter(|k| **k >= req.key)
                .cloned()
                .collect(),
            end => self
                .history
                .keys()
                .filter(|k| **k >= req.key && k.as_slice() < end)
                .cloned()
                .collect(),
        };
        keys.into_iter()
            .filter(|k| self.live(k).is_some())
            .map(|k| (k, None))
            .collect()
    }

    /// Applies `op` and returns the command the engine gets and the outcome it must report.
    fn apply(&mut self, op: &Op) -> (Command, Outcome) {
        match op {
            Op::Put(k, v) => {
                self.commit(vec![(key(*k), Some(value(*v)))]);
                let cmd = Command::Put(PutRequest {
                    key: key(*k),
                    value: value(*v),
                    ..PutRequest::default()
                });
                (
                    cmd,
                    Outcome::Put {
                        revision: self.revision,
                    },
                )
            }
            Op::Delete(k, end) => {
                let req = delete_request(*k, *end);
                let changes = self.deletions(&req);
                let deleted = changes.len() as i64;
                self.commit(changes);
                (
                    Command::DeleteRange(req),
                    Outcome::Delete {
                        revision: self.revision,
                        deleted,
                    },
                )
            }
            Op::Cas {
                key: k,
                compare,
                value: v,
                failure_delete,
            } => {
                let live = self.live(&key(*k));
                let (target, holds) = match compare {
                    CasCompare::ModIsCurrent => {
                        let m = live.as_ref().map_or(0, |kv| kv.mod_revision);
                        (CompareTarget::Mod(m), true)
                    }
                    CasCompare::ModEquals(m) => (
                        CompareTarget::Mod(*m),
                        live.as_ref().map_or(0, |kv| kv.mod_revision) == *m,
                    ),
                    CasCompare::ValueEquals(expect) => (
                        CompareTarget::Value(value(*expect)),
                        live.as_ref().is_some_and(|kv| kv.value == value(*expect)),
                    ),
                };
                let success = vec![RequestOp::Put(PutRequest {
                    key: key(*k),
                    value: value(*v),
                    ..PutRequest::default()
                })];
                let failure: Vec<RequestOp> = failure_delete
                    .iter()
                    .map(|d| RequestOp::DeleteRange(single(*d)))
                    .collect();
                if holds {
                    self.commit(vec![(key(*k), Some(value(*v)))]);
                } else if let Some(d) = failure_delete {
                    let changes = self.deletions(&single(*d));
                    self.commit(changes);
                }
                let cmd = Command::Txn(TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal,
                        target,
                        key: key(*k),
                        range_end: Vec::new(),
                    }],
                    success,
                    failure,
                });
                (
                    cmd,
                    Outcome::Txn {
                        revision: self.revision,
                        succeeded: holds,
                    },
                )
            }
            Op::Compact(back) => {
                let revision = self.revision - back;
                let outcome = if revision <= self.compacted {
                    Outcome::CompactRefused { future: false }
                } else if revision > self.revision {
                    Outcome::CompactRefused { future: true }
                } else {
                    self.compacted = revision;
                    Outcome::Compacted
                };
                (Command::Compact { revision }, outcome)
            }
        }
    }

    /// The events of revisions `from..=to` as a watcher must see them.
    fn events(&self, from: i64, to: i64) -> Vec<RevisionEvents> {
        if from > to {
            return Vec::new();
        }
        self.changes
            .range(from..=to)
            .map(|(&rev, changes)| RevisionEvents {
                revision: rev,
                events: changes
                    .iter()
                    .map(|(k, v)| Event {
                        kind: if v.is_some() {
                            EventType::Put
                        } else {
                            EventType::Delete
                        },
                        kv: self.kv_at(k, rev).unwrap_or_else(|| KeyValue {
                            key: k.clone(),
                            mod_revision: rev,
                            ..KeyValue::default()
                        }),
                        prev_kv: self.kv_at(k, rev - 1),
                    })
                    .collect(),
            })
            .collect()
    }

    /// What a read at `rev` must answer: the revision served, or the error.
    fn read_revision(&self, rev: i64) -> Result<i64, Error> {
        if rev <= 0 {
            Ok(self.revision)
        } else if rev > self.revision {
            Err(Error::FutureRevision {
                requested: rev,
                current: self.revision,
            })
        } else if rev < self.compacted {
            Err(Error::Compacted {
                requested: rev,
                compacted: self.compacted,
            })
        } else {
            Ok(rev)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

fn outcome(resp: &Result<CommandResponse, Error>) -> Outcome {
    match resp {
        Ok(CommandResponse::Put(p)) => Outcome::Put {
            revision: p.revision,
        },
        Ok(CommandResponse::DeleteRange(d)) => Outcome::Delete {
            revision: d.revision,
            deleted: d.deleted,
        },
        Ok(CommandResponse::Txn(t)) => Outcome::Txn {
            revision: t.revision,
            succeeded: t.succeeded,
        },
        Ok(CommandResponse::Compact { .. }) => Outcome::Compacted,
        Err(Error::Compacted { .. }) => Outcome::CompactRefused { future: false },
        Err(Error::FutureRevision { .. }) => Outcome::CompactRefused { future: true },
        other => panic!("unexpected response {other:?}"),
    }
}

fn same_error(got: &Error, want: &Error) -> bool {
    format!("{got:?}") == format!("{want:?}")
}

/// Compares history read from the engine with the model's. Events at the compacted revision
/// may have lost their `prev_kv` (compaction keeps only the newest version at or below it).
fn check_events(got: &[RevisionEvents], want: &[RevisionEvents], compacted: i64) {
    let got_revs: Vec<i64> = got.iter().map(|r| r.revision).collect();
    let want_revs: Vec<i64> = want.iter().map(|r| r.revision).collect();
    assert_eq!(got_revs, want_revs, "revisions of the history");
    for (g, w) in got.iter().zip(want) {
        if g.revision == compacted {
            assert_eq!(g.events.len(), w.events.len(), "events of {}", g.revision);
            for (ge, we) in g.events.iter().zip(&w.events) {
                assert_eq!((ge.kind, &ge.kv), (we.kind, &we.kv), "at {}", g.revision);
                assert!(
                    ge.prev_kv.is_none() || ge.prev_kv == we.prev_kv,
                    "prev_kv at {}: {:?}",
                    g.revision,
                    ge.prev_kv
                );
            }
        } else {
            assert_eq!(g, w, "events of revision {}", g.revision);
        }
    }
}

fn check_reads_at(engine: &Engine, model: &Model, rev: i64) {
    // (key, range_end, the model's exclusive end)
    type Probe<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);
    let ranges: [Probe<'_>; 2] = [(b"\0", b"\0", None), (b"b", b"d", Some(b"d"))];
    for (start, end, model_end) in ranges {
        let req = RangeRequest {
            key: start.to_vec(),
            range_end: end.to_vec(),
            revision: rev,
            ..RangeRequest::default()
        };
        let got = engine.range(&req);
        match model.read_revision(rev) {
            Ok(at) => {
                let got = got.unwrap_or_else(|e| panic!("range at {rev}: {e:?}"));
                let want = model.range_at(at, start, model_end);
                assert_eq!(got.kvs, want, "range {start:?}..{end:?} at {rev}");
                assert_eq!(got.count, want.len() as i64);
                assert_eq!(got.revision, model.revision, "header revision");
            }
            Err(want) => {
                let got = got.expect_err("the read must fail");
                assert!(same_error(&got, &want), "at {rev}: {got:?} != {want:?}");
            }
        }
    }
    for k in 0..KEYS {
        let req = RangeRequest {
            key: key(k),
            revision: rev,
            ..RangeRequest::default()
        };
        if let Ok(at) = model.read_revision(rev) {
            let got = engine.range(&req).expect("get succeeds");
            assert_eq!(
                got.kvs.first(),
                model.kv_at(&key(k), at).as_ref(),
                "get {k} at {rev}"
            );
        }
    }
}

fn check_history(engine: &Engine, model: &Model, from: i64, to: i64) {
    let got = engine.read_events(from, to, usize::MAX);
    if from < model.compacted {
        let err = got.expect_err("history below the compacted revision");
        let want = Error::Compacted {
            requested: from,
            compacted: model.compacted,
        };
        assert!(same_error(&err, &want), "{err:?}");
        return;
    }
    let want = model.events(from, to.min(model.revision));
    check_events(&got.expect("history is readable"), &want, model.compacted);

    // In small chunks, as a watcher catching up reads it: the same, never split.
    let mut chunked = Vec::new();
    let mut next = from;
    loop {
        let chunk = engine.read_events(next, to, 2).unwrap();
        let Some(last) = chunk.last() else { break };
        next = last.revision + 1;
        chunked.extend(chunk);
    }
    check_events(&chunked, &want, model.compacted);
}

fn run(steps: &[Step]) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&dir.path().join("db"), &EngineOptions::default()).unwrap();
    // A second engine gets the same commands one per batch: it must end identical.
    let single = Engine::open(&dir.path().join("single"), &EngineOptions::default()).unwrap();
    let mut model = Model::new();

    for step in steps {
        let before = model.revision;
        let (cmds, outcomes): (Vec<Command>, Vec<Outcome>) =
            step.ops.iter().map(|op| model.apply(op)).unzip();
        let refs: Vec<&Command> = cmds.iter().collect();
        let batch = engine.apply_batch(&refs, Durability::None).unwrap();
        for cmd in &cmds {
            single.apply_batch(&[cmd], Durability::None).unwrap();
        }

        let got: Vec<Outcome> = batch.responses.iter().map(outcome).collect();
        assert_eq!(got, outcomes, "outcomes of {:?}", step.ops);
        assert_eq!(
            (batch.revision, batch.compacted),
            (model.revision, model.compacted)
        );
        assert_eq!(
            engine.revisions().unwrap(),
            (model.revision, model.compacted)
        );
        // What the batch published to watchers is exactly the model's new revisions.
        assert_eq!(batch.events, model.events(before + 1, model.revision));

        let span = model.revision + 2;
        let [a, b, c] = step.probes.map(|p| i64::from(p) % span);
        check_reads_at(&engine, &model, 0);
        check_reads_at(&engine, &model, a);
        check_reads_at(&engine, &model, model.compacted);
        check_history(&engine, &model, b, model.revision);
        check_history(&engine, &model, model.compacted.max(b), c.max(1));
        check_history(&engine, &model, model.compacted, model.revision);
    }
    assert_eq!(engine.hash_kv(0).unwrap(), single.hash_kv(0).unwrap());
    assert_eq!(engine.hash().unwrap(), single.hash().unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_engine_agrees_with_a_reference_model(steps in vec(step(), 1..40)) {
        run(&steps);
    }
}

/// A fixed scenario through the same checks, so the model itself is known to be exercised
/// on compaction, range deletes and both txn branches.
#[test]
fn the_model_check_covers_a_fixed_scenario() {
    let step = |ops: Vec<Op>| Step {
        ops,
        probes: [3, 5, 7],
    };
    run(&[
        step(vec![Op::Put(0, 1), Op::Put(1, 1), Op::Put(2, 2)]),
        step(vec![Op::Put(0, 2)]),
        step(vec![Op::Cas {
            key: 0,
            compare: CasCompare::ModIsCurrent,
            value: 3,
            failure_delete: None,
        }]),
        step(vec![Op::Cas {
            key: 4,
            compare: CasCompare::ValueEquals(0),
            value: 3,
            failure_delete: Some(1),
        }]),
        step(vec![Op::Delete(0, Some(KEYS))]),
        step(vec![Op::Compact(1), Op::Put(3, 0), Op::Compact(0)]),
        step(vec![Op::Compact(0), Op::Compact(-1), Op::Put(3, 1)]),
        step(vec![Op::Cas {
            key: 3,
            compare: CasCompare::ModEquals(0),
            value: 2,
            failure_delete: Some(3),
        }]),
    ]);
}
