//! Narrowing down requests whose outcome is unknown, before the linearizability search,
//! with facts from the (checked, complete) event log and the end state — as etcd's
//! robustness tests do. Each rule is sound: it removes only behaviours that the
//! evidence excludes.
//!
//! - An unanswered read says nothing: it leaves the history.
//! - A write of a unique value that appears in the log was applied at that revision
//!   (pinned); one whose value never appears was not applied: it leaves the history.
//! - An operation that made revision `r` took effect before any answer that reported a
//!   revision `>= r` came back: that answer's time becomes its return time.
//! - An unanswered delete of `k` either deleted `k` at a revision with a DELETE event of
//!   `k` that no answered request explains, or changed nothing. With no such event after the
//!   revision its client could have known when it called, it changed nothing: it leaves.
//!   Otherwise it returned, if at all, before the last candidate revision was observed.
//! - A request that failed with "tcp connect error" was never sent: it leaves.
//! - An unanswered grant or revoke of lease `L` took effect, if at all, before any later
//!   grant or revoke of `L` got a definite answer (the client sends it again until one
//!   does): a later grant answered "already exists" or a later revoke answered "not found"
//!   came after it, and one answered OK means the first had not taken effect then, nor
//!   could later (it would have been refused).
//! - An unanswered revoke (grant) of `L` followed by a revoke (grant) of `L` answered OK
//!   never took effect: before that answer it would have made the later one fail, after it
//!   it would itself have been refused. It leaves the history.
//! - The unanswered copies of one resent grant or revoke (same client, back to back) act at
//!   most once between the first call and the last possible return: after one takes
//!   effect the others are refused. They become one operation, which keeps the search from
//!   trying which copy it was.
//! - Lease ids are unique and leases outlive the run: an unanswered revoke of a lease that
//!   still exists at the end did nothing; an unanswered grant of a lease that is gone at the
//!   end, and that no revoke could have removed (every revoke of it answered "not found"),
//!   did nothing. A grant took effect, if at all, before any answered request used the
//!   lease.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::history::{Operation, Outcome, Request, Response, TxnWrite};
use crate::watch::Revisions;

fn response_revision(r: &Response) -> i64 {
    match r {
        Response::Get { revision, .. }
        | Response::Range { revision, .. }
        | Response::Put { revision, .. }
        | Response::Delete { revision, .. }
        | Response::Txn { revision, .. }
        | Response::LeaseGrant { revision }
        | Response::LeaseRevoke { revision } => *revision,
    }
}

/// Answered operations by return time, with the highest revision reported so far.
struct Observed {
    rets: Vec<u64>,
    max_rev: Vec<i64>,
}

impl Observed {
    fn new(ops: &[Operation]) -> Observed {
        let mut answered: Vec<(u64, i64)> = ops
            .iter()
            .filter_map(|o| match &o.outcome {
                Outcome::Ok(r) => Some((o.ret, response_revision(r))),
                _ => None,
            })
            .collect();
        answered.sort_unstable();
        let mut max = 0;
        Observed {
            rets: answered.iter().map(|a| a.0).collect(),
            max_rev: answered
                .iter()
                .map(|a| {
                    max = max.max(a.1);
                    max
                })
                .collect(),
        }
    }

    /// The earliest time an answer reported a revision `>= rev`.
    fn first_at_least(&self, rev: i64) -> Option<u64> {
        let i = self.max_rev.partition_point(|&m| m < rev);
        self.rets.get(i).copied()
    }

    /// The highest revision answered strictly before `t`.
    fn known_before(&self, t: u64) -> i64 {
        let i = self.rets.partition_point(|&r| r < t);
        if i == 0 { 1 } else { self.max_rev[i - 1] }
    }
}

pub fn patch(ops: &mut Vec<Operation>, events: &Revisions, final_leases: Option<&BTreeSet<i64>>) {
    narrow(ops, events, final_leases);
    merge_resends(ops);
}

fn is_unknown(o: &Operation) -> bool {
    matches!(o.outcome, Outcome::Unknown { .. })
}

/// Merges back-to-back unanswered copies of the same lease request of one client.
fn merge_resends(ops: &mut Vec<Operation>) {
    ops.sort_by_key(|o| (o.client, o.call));
    let mut merged: Vec<Operation> = Vec::with_capacity(ops.len());
    for op in ops.drain(..) {
        if let Some(last) = merged.last_mut()
            && last.client == op.client
            && is_unknown(last)
            && is_unknown(&op)
            && last.request == op.request
            && matches!(
                op.request,
                Request::LeaseGrant { .. } | Request::LeaseRevoke { .. }
            )
        {
            last.ret = last.ret.max(op.ret);
            continue;
        }
        merged.push(op);
    }
    merged.sort_by_key(|o| o.call);
    *ops = merged;
}

fn narrow(ops: &mut Vec<Operation>, events: &Revisions, final_leases: Option<&BTreeSet<i64>>) {
    let observed = Observed::new(ops);
    let by_value: HashMap<&str, i64> = events
        .iter()
        .flat_map(|(rev, evs)| {
            evs.iter()
                .filter(|e| !e.delete)
                .map(move |e| (e.kv.value.as_str(), *rev))
        })
        .collect();
    // DELETE events that answered requests explain.
    let mut explained: HashSet<(i64, String)> = HashSet::new();
    // (revision, lease) of answered revokes: the DELETE events there of keys that lease
    // held are theirs. Not every DELETE at such a revision: a revoke of a lease without
    // keys makes no revision, and answers the revision another request made.
    let mut revoked: HashSet<(i64, i64)> = HashSet::new();
    let mut lease_used_at: HashMap<i64, u64> = HashMap::new();
    // Leases a revoke may have removed: revokes answered OK or not at all ("not found"
    // removed nothing).
    let mut revoke_attempted: HashSet<i64> = HashSet::new();
    // Definite answers to grants and revokes, per lease: (call, return).
    let mut lease_answers: HashMap<i64, Vec<(u64, u64)>> = HashMap::new();
    // Calls of grants and revokes answered OK: (is revoke, lease) -> call times.
    let mut lease_ok: HashMap<(bool, i64), Vec<u64>> = HashMap::new();
    for o in ops.iter() {
        if let Request::LeaseRevoke { id } = o.request
            && !matches!(o.outcome, Outcome::LeaseNotFound)
        {
            revoke_attempted.insert(id);
        }
        if let Request::LeaseGrant { id } | Request::LeaseRevoke { id } = o.request
            && !matches!(o.outcome, Outcome::Unknown { .. })
        {
            lease_answers.entry(id).or_default().push((o.call, o.ret));
            if matches!(o.outcome, Outcome::Ok(_)) {
                let revoke = matches!(o.request, Request::LeaseRevoke { .. });
                lease_ok.entry((revoke, id)).or_default().push(o.call);
            }
        }
        let Outcome::Ok(resp) = &o.outcome else {
            continue;
        };
        match (&o.request, resp) {
            (Request::Delete { key }, Response::Delete { revision, deleted }) if *deleted > 0 => {
                explained.insert((*revision, key.clone()));
            }
            (
                Request::Txn {
                    key,
                    write: TxnWrite::Delete,
                    ..
                },
                Response::Txn {
                    revision,
                    succeeded: true,
                    ..
                },
            ) => {
                explained.insert((*revision, key.clone()));
            }
            (Request::LeaseRevoke { id }, Response::LeaseRevoke { revision }) => {
                revoked.insert((*revision, *id));
                let t = lease_used_at.entry(*id).or_insert(o.ret);
                *t = (*t).min(o.ret);
            }
            (Request::Put { lease, .. }, _) if *lease != 0 => {
                let t = lease_used_at.entry(*lease).or_insert(o.ret);
                *t = (*t).min(o.ret);
            }
            _ => {}
        }
    }
    let unexplained_deletes = |key: &str, after: i64| -> Vec<i64> {
        events
            .range(after + 1..)
            .filter(|(rev, evs)| {
                evs.iter().any(|e| {
                    let by_revoke = e
                        .prev
                        .as_ref()
                        .is_some_and(|p| p.lease != 0 && revoked.contains(&(**rev, p.lease)));
                    e.delete
                        && e.kv.key == key
                        && !by_revoke
                        && !explained.contains(&(**rev, key.to_string()))
                })
            })
            .map(|(rev, _)| *rev)
            .collect()
    };
    let ok_after = |revoke: bool, id: i64, call: u64| {
        lease_ok
            .get(&(revoke, id))
            .is_some_and(|calls| calls.iter().any(|&c| c > call))
    };
    let answered_after = |id: i64, call: u64| {
        lease_answers
            .get(&id)
            .and_then(|v| v.iter().filter(|a| a.0 > call).map(|a| a.1).min())
    };
    ops.retain_mut(|op| {
        let Outcome::Unknown { applied_at, error } = &mut op.outcome else {
            return true;
        };
        if op.request.is_read() || error.contains("tcp connect error") {
            return false;
        }
        let bound = |rev: i64| observed.first_at_least(rev).map(|t| t.max(op.call));
        if let Some(v) = op.request.written_value() {
            let Some(&rev) = by_value.get(v) else {
                return false;
            };
            *applied_at = Some(rev);
            if let Some(t) = bound(rev) {
                op.ret = t;
            }
            return true;
        }
        match &op.request {
            Request::Delete { key }
            | Request::Txn {
                key,
                write: TxnWrite::Delete,
                ..
            } => {
                let candidates = unexplained_deletes(key, observed.known_before(op.call));
                let Some(&last) = candidates.last() else {
                    return false;
                };
                if let Some(t) = bound(last) {
                    op.ret = t;
                }
                true
            }
            Request::LeaseRevoke { id } => {
                if final_leases.is_some_and(|l| l.contains(id)) || ok_after(true, *id, op.call) {
                    return false;
                }
                if let Some(t) = answered_after(*id, op.call) {
                    op.ret = op.ret.min(t.max(op.call));
                }
                true
            }
            Request::LeaseGrant { id } => {
                let exists = final_leases.is_none_or(|l| l.contains(id));
                if (!exists && !revoke_attempted.contains(id)) || ok_after(false, *id, op.call) {
                    return false;
                }
                let used = lease_used_at.get(id).copied();
                let answered = answered_after(*id, op.call);
                if let Some(t) = [used, answered].into_iter().flatten().min() {
                    op.ret = op.ret.min(t.max(op.call));
                }
                true
            }
            _ => true,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Kv;
    use crate::watch::Event;

    fn kv(key: &str, value: &str, m: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.into(),
            create_revision: m,
            mod_revision: m,
            version: 1,
            lease: 0,
        }
    }

    fn op(call: u64, ret: u64, request: Request, outcome: Outcome) -> Operation {
        Operation {
            client: 0,
            call,
            ret,
            request,
            outcome,
        }
    }

    fn unknown() -> Outcome {
        Outcome::Unknown {
            error: "timeout".into(),
            applied_at: None,
        }
    }

    #[test]
    fn an_unknown_revoke_followed_by_a_successful_one_never_happened() {
        let revoke = |id| Request::LeaseRevoke { id };
        let mut ops = vec![
            op(
                0,
                1,
                Request::LeaseGrant { id: 7 },
                Outcome::Ok(Response::LeaseGrant { revision: 1 }),
            ),
            op(2, Operation::NEVER, revoke(7), unknown()),
            op(
                50,
                60,
                revoke(7),
                Outcome::Ok(Response::LeaseRevoke { revision: 1 }),
            ),
        ];
        patch(&mut ops, &Revisions::new(), Some(&BTreeSet::new()));
        assert_eq!(ops.len(), 2, "{ops:#?}");
        assert!(ops.iter().all(|o| !is_unknown(o)));
    }

    #[test]
    fn an_unknown_grant_of_a_lease_gone_at_the_end_that_only_not_found_revokes_named_never_happened()
     {
        // Soak seed 2026 run #0: a grant timed out; later puts with the lease and two revokes
        // (the last 67 s later) answered "not found". Kept, the grant sent the search through
        // every placement before the last revoke, past its step budget.
        let not_found = |call, id| {
            op(
                call,
                call + 3,
                Request::LeaseRevoke { id },
                Outcome::LeaseNotFound,
            )
        };
        let mut ops = vec![
            op(0, 7_000, Request::LeaseGrant { id: 9 }, unknown()),
            not_found(6_990, 9),
            not_found(70_000, 9),
        ];
        patch(&mut ops, &Revisions::new(), Some(&BTreeSet::new()));
        assert_eq!(ops.len(), 2, "{ops:#?}");
        assert!(ops.iter().all(|o| !is_unknown(o)));
        // A revoke that may have removed it (unanswered) keeps the grant in the search.
        let mut ops = vec![
            op(0, 7_000, Request::LeaseGrant { id: 9 }, unknown()),
            op(
                6_990,
                Operation::NEVER,
                Request::LeaseRevoke { id: 9 },
                unknown(),
            ),
            not_found(70_000, 9),
        ];
        patch(&mut ops, &Revisions::new(), Some(&BTreeSet::new()));
        assert!(
            ops.iter()
                .any(|o| matches!(o.request, Request::LeaseGrant { .. }) && is_unknown(o)),
            "{ops:#?}"
        );
    }

    #[test]
    fn unknown_writes_are_pinned_bounded_or_dropped_by_the_event_log() {
        let mut events = Revisions::new();
        events.insert(
            2,
            vec![Event {
                delete: false,
                kv: kv("a", "seen", 2),
                prev: None,
            }],
        );
        let put = |v: &str| Request::Put {
            key: "a".into(),
            value: v.into(),
            lease: 0,
        };
        let mut ops = vec![
            op(0, Operation::NEVER, put("seen"), unknown()),
            op(0, Operation::NEVER, put("lost"), unknown()),
            op(
                0,
                Operation::NEVER,
                Request::Get { key: "a".into() },
                unknown(),
            ),
            op(
                0,
                Operation::NEVER,
                Request::Delete { key: "a".into() },
                unknown(),
            ),
            op(
                5,
                9,
                Request::Get { key: "a".into() },
                Outcome::Ok(Response::Get {
                    revision: 2,
                    kv: Some(kv("a", "seen", 2)),
                }),
            ),
        ];
        patch(&mut ops, &events, None);
        assert_eq!(ops.len(), 2, "{ops:#?}");
        assert_eq!(
            ops[0].outcome,
            Outcome::Unknown {
                error: "timeout".into(),
                applied_at: Some(2)
            }
        );
        assert_eq!(ops[0].ret, 9, "bounded by the read that saw revision 2");
    }

    /// Found by the short profile (seed 7): an answered revoke of a lease that held no keys
    /// answered the revision an unanswered delete had just made; taking every DELETE at a
    /// revoke's revision for the revoke's made the delete look like it did nothing, and the
    /// history then looked like a key vanished without cause.
    #[test]
    fn a_delete_at_a_revoke_revision_is_the_revokes_only_if_the_key_held_that_lease() {
        let mut events = Revisions::new();
        events.insert(
            2,
            vec![Event {
                delete: false,
                kv: kv("a", "x", 2),
                prev: None,
            }],
        );
        events.insert(
            3,
            vec![Event {
                delete: true,
                kv: Kv {
                    mod_revision: 3,
                    ..kv("a", "", 0)
                },
                prev: Some(kv("a", "x", 2)),
            }],
        );
        let ops = || {
            vec![
                op(
                    0,
                    1,
                    Request::LeaseGrant { id: 7 },
                    Outcome::Ok(Response::LeaseGrant { revision: 1 }),
                ),
                op(
                    2,
                    3,
                    Request::Put {
                        key: "a".into(),
                        value: "x".into(),
                        lease: 0,
                    },
                    Outcome::Ok(Response::Put {
                        revision: 2,
                        prev: None,
                    }),
                ),
                op(
                    4,
                    Operation::NEVER,
                    Request::Delete { key: "a".into() },
                    unknown(),
                ),
                op(
                    5,
                    8,
                    Request::LeaseRevoke { id: 7 },
                    Outcome::Ok(Response::LeaseRevoke { revision: 3 }),
                ),
                op(
                    9,
                    10,
                    Request::Get { key: "a".into() },
                    Outcome::Ok(Response::Get {
                        revision: 3,
                        kv: None,
                    }),
                ),
            ]
        };
        let mut patched = ops();
        patch(&mut patched, &events, Some(&BTreeSet::new()));
        assert!(
            patched
                .iter()
                .any(|o| matches!(o.request, Request::Delete { .. })),
            "the delete that made revision 3 was dropped: {patched:#?}"
        );
        let verdict =
            crate::linearizability::check(&patched, crate::model::State::default(), 1_000_000);
        assert!(verdict.is_ok(), "{verdict:?}");

        // Had the key held lease 7, the revoke would explain the DELETE and the delete,
        // with no other candidate, did nothing.
        let mut leased = events.clone();
        for e in leased.values_mut().flatten() {
            e.kv.lease = if e.delete { 0 } else { 7 };
            if let Some(p) = &mut e.prev {
                p.lease = 7;
            }
        }
        let mut patched = ops();
        if let Request::Put { lease, .. } = &mut patched[1].request {
            *lease = 7;
        }
        patch(&mut patched, &leased, Some(&BTreeSet::new()));
        assert!(
            !patched
                .iter()
                .any(|o| matches!(o.request, Request::Delete { .. })),
            "{patched:#?}"
        );
    }
}
