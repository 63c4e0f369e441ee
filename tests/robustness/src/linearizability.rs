//! A linearizability checker for histories of the KV [`model`](crate::model): Wing and
//! Gong's search with Lowe's memoization, as in porcupine and Knossos.
//!
//! ```text
//!  calls and returns, by time:   C1 C2 R1 C3 R2 R3 ...
//!  the search linearizes one pending call at a time (any call before the first return
//!  still in the list), steps the model, and lifts the call and its return out of the list;
//!  meeting a return whose call is not linearized means the last choice was wrong: undo it.
//! ```
//!
//! Memoization: a (set of linearized operations, model state) pair that was explored once
//! cannot succeed the second time. The set is kept as a 128-bit Zobrist hash (two random
//! 64-bit words per operation, XORed in and out) and the state as a 64-bit fingerprint,
//! so the cache stays small for long histories; a false cache hit needs a 128-bit collision.
//!
//! An operation with an unknown outcome has no return: it may take effect at any point after
//! its call, or never (unless the watch pinned it to a revision: then it must take effect,
//! and at exactly that revision). "Never" is decided as late as possible: at the return time
//! the event log bounds it by (see [`patch`](crate::patch)), or at the end of the history;
//! until then the operation stays a candidate. Deciding it early would make the search
//! backtrack over everything in between when the operation turns out to be needed later.
//!
//! The search is exponential in the worst case; a step budget turns a search that runs
//! too long into [`Verdict::Inconclusive`], which the harness reports as a failure.

use std::collections::HashSet;

use crate::history::{Operation, Outcome};
use crate::model::State;

/// The checker's answer.
#[derive(Debug)]
pub enum Verdict {
    Linearizable {
        steps: u64,
    },
    /// No order explains the history. `excerpt` shows where the deepest attempt got stuck.
    Violation {
        excerpt: String,
        /// The model's revision where the deepest attempt got stuck.
        stuck_at: i64,
    },
    /// The budget ran out; `excerpt` shows where the deepest attempt got stuck so far.
    Inconclusive {
        steps: u64,
        excerpt: String,
        stuck_at: i64,
    },
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Linearizable { .. })
    }
}

const NONE: usize = usize::MAX;

/// The doubly linked list of calls and returns (Knuth's dancing links: lifting an entry
/// keeps its own pointers, so it can be put back in O(1), in reverse order).
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each entry: the operation, and whether it is its call.
    op: Vec<(usize, bool)>,
    call_of: Vec<usize>,
    ret_of: Vec<usize>,
}

impl Entries {
    /// Entry 0 is the head sentinel.
    fn new(ops: &[Operation]) -> Entries {
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, o) in ops.iter().enumerate() {
            events.push((o.call, true, i));
            if o.ret != Operation::NEVER {
                events.push((o.ret, false, i));
            }
        }
        // At equal times calls go first: such operations count as concurrent.
        events.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
        let n = events.len() + 1;
        let mut e = Entries {
            next: (1..=n).collect(),
            prev: (0..n).map(|i| i.wrapping_sub(1)).collect(),
            op: Vec::with_capacity(n),
            call_of: vec![NONE; ops.len()],
            ret_of: vec![NONE; ops.len()],
        };
        e.next[n - 1] = NONE;
        e.prev[0] = NONE;
        e.op.push((NONE, false));
        for (idx, &(_, is_call, i)) in events.iter().enumerate() {
            e.op.push((i, is_call));
            if is_call {
                e.call_of[i] = idx + 1;
            } else {
                e.ret_of[i] = idx + 1;
            }
        }
        e
    }

    fn first(&self) -> usize {
        self.next[0]
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != NONE {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != NONE {
            self.prev[n] = x;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        if self.ret_of[op] != NONE {
            self.unlink(self.ret_of[op]);
        }
    }

    fn unlift(&mut self, op: usize) {
        if self.ret_of[op] != NONE {
            self.relink(self.ret_of[op]);
        }
        self.relink(self.call_of[op]);
    }
}

struct Frame {
    op: usize,
    /// Whether the operation vanished (never took effect) rather than took effect.
    vanished: bool,
    before: State,
}

fn splitmix(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether `op` may also never take effect.
fn may_vanish(op: &Operation) -> bool {
    matches!(
        op.outcome,
        Outcome::Unknown {
            applied_at: None,
            ..
        }
    )
}

/// Checks `ops` (any order) from `initial`, giving up after `budget` model steps.
pub fn check(ops: &[Operation], initial: State, budget: u64) -> Verdict {
    let mut entries = Entries::new(ops);
    let mut seed = 0x5EED_u64;
    let zobrist: Vec<(u64, u64)> = ops
        .iter()
        .map(|_| (splitmix(&mut seed), splitmix(&mut seed)))
        .collect();
    let mut bits = (0u64, 0u64);
    let mut state = initial;
    let mut cache: HashSet<(u64, u64, u64)> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut deepest = Stuck::default();
    let mut entry = entries.first();
    let mut steps = 0u64;
    loop {
        if entries.first() == NONE {
            return Verdict::Linearizable { steps };
        }
        if steps >= budget {
            return Verdict::Inconclusive {
                steps,
                excerpt: deepest.excerpt(ops),
                stuck_at: deepest.state.revision,
            };
        }
        steps += 1;
        if entry != NONE && entries.op[entry].1 {
            // A pending call: try to let it take effect now.
            let i = entries.op[entry].0;
            if let Some(next) = state.step(&ops[i]) {
                // An operation that may never take effect and would change nothing now is
                // left pending: vanishing later is the same, and placing it at every point
                // would multiply the search.
                let idle = may_vanish(&ops[i]) && next == state;
                let nbits = (bits.0 ^ zobrist[i].0, bits.1 ^ zobrist[i].1);
                if !idle && cache.insert((nbits.0, nbits.1, next.fingerprint())) {
                    let before = std::mem::replace(&mut state, next);
                    stack.push(Frame {
                        op: i,
                        vanished: false,
                        before,
                    });
                    bits = nbits;
                    entries.lift(i);
                    entry = entries.first();
                    continue;
                }
            }
            entry = entries.next[entry];
            continue;
        }
        if entry != NONE {
            // The return of a pending call. One that may never take effect vanishes here,
            // as late as possible, so that it stayed available until now.
            let i = entries.op[entry].0;
            if may_vanish(&ops[i]) {
                let nbits = (bits.0 ^ zobrist[i].0, bits.1 ^ zobrist[i].1);
                if cache.insert((nbits.0, nbits.1, state.fingerprint())) {
                    stack.push(Frame {
                        op: i,
                        vanished: true,
                        before: state.clone(),
                    });
                    bits = nbits;
                    entries.lift(i);
                    entry = entries.first();
                    continue;
                }
            }
        } else if pending_all_may_vanish(&entries, ops) {
            // Only calls without a return are left, and none of them has to take effect.
            return Verdict::Linearizable { steps };
        }
        // Stuck: undo choices until one leaves another candidate to try.
        if stack.len() >= deepest.depth {
            deepest = Stuck::at(&entries, &stack, &state);
        }
        loop {
            let Some(frame) = stack.pop() else {
                return Verdict::Violation {
                    excerpt: deepest.excerpt(ops),
                    stuck_at: deepest.state.revision,
                };
            };
            entries.unlift(frame.op);
            bits = (bits.0 ^ zobrist[frame.op].0, bits.1 ^ zobrist[frame.op].1);
            state = frame.before;
            if !frame.vanished {
                entry = entries.next[entries.call_of[frame.op]];
                break;
            }
        }
    }
}

fn pending_all_may_vanish(entries: &Entries, ops: &[Operation]) -> bool {
    let mut e = entries.first();
    while e != NONE {
        let (i, is_call) = entries.op[e];
        if !is_call || !may_vanish(&ops[i]) {
            return false;
        }
        e = entries.next[e];
    }
    true
}

/// Where the deepest attempt got stuck: the last few operations it placed, the model
/// state there, and the pending operations it could not place next.
#[derive(Default)]
struct Stuck {
    depth: usize,
    last: Vec<usize>,
    state: State,
    pending: Vec<usize>,
}

impl Stuck {
    fn at(entries: &Entries, stack: &[Frame], state: &State) -> Stuck {
        let mut pending = Vec::new();
        let mut e = entries.first();
        while e != NONE && pending.len() < 16 {
            let (op, is_call) = entries.op[e];
            pending.push(op);
            if !is_call {
                break;
            }
            e = entries.next[e];
        }
        Stuck {
            depth: stack.len(),
            last: stack.iter().rev().take(8).rev().map(|f| f.op).collect(),
            state: state.clone(),
            pending,
        }
    }

    fn excerpt(&self, ops: &[Operation]) -> String {
        let mut out = format!(
            "the longest linearizable prefix has {} operations; its last ones:\n",
            self.depth
        );
        for &i in &self.last {
            out.push_str(&format!("  {}\n", ops[i]));
        }
        out.push_str(&format!(
            "model state there: revision {}\n",
            self.state.revision
        ));
        for kv in self.state.keys.values() {
            out.push_str(&format!("  {kv}\n"));
        }
        if !self.state.leases.is_empty() {
            out.push_str(&format!("  leases {:x?}\n", self.state.leases));
        }
        out.push_str("pending operations, none of which can be linearized next:\n");
        for &i in &self.pending {
            out.push_str(&format!("  {}\n", ops[i]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Kv, Request, Response, TxnWrite};

    fn op(client: usize, call: u64, ret: u64, request: Request, outcome: Outcome) -> Operation {
        Operation {
            client,
            call,
            ret,
            request,
            outcome,
        }
    }

    fn put(key: &str, value: &str) -> Request {
        Request::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }
    }

    fn put_ok(revision: i64, prev: Option<Kv>) -> Outcome {
        Outcome::Ok(Response::Put { revision, prev })
    }

    fn get(key: &str) -> Request {
        Request::Get { key: key.into() }
    }

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

    fn get_ok(revision: i64, kv: Option<Kv>) -> Outcome {
        Outcome::Ok(Response::Get { revision, kv })
    }

    fn unknown() -> Outcome {
        Outcome::Unknown {
            error: "timeout".into(),
            applied_at: None,
        }
    }

    const BUDGET: u64 = 1_000_000;

    #[test]
    fn concurrent_writes_may_land_in_either_order() {
        // Two overlapping puts; the one invoked second took revision 2.
        let h = vec![
            op(
                0,
                0,
                10,
                put("a", "x"),
                put_ok(3, Some(kv("a", "y", 2, 2, 1))),
            ),
            op(1, 1, 9, put("a", "y"), put_ok(2, None)),
            op(2, 11, 12, get("a"), get_ok(3, Some(kv("a", "x", 2, 3, 2)))),
        ];
        assert!(check(&h, State::default(), BUDGET).is_ok());
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_a_violation() {
        let h = vec![
            op(0, 0, 10, put("a", "x"), put_ok(2, None)),
            // Invoked after the put returned, but it read the state before the put.
            op(1, 11, 12, get("a"), get_ok(1, None)),
        ];
        let v = check(&h, State::default(), BUDGET);
        let Verdict::Violation { excerpt, .. } = v else {
            panic!("stale read accepted: {v:?}");
        };
        assert!(excerpt.contains("Get"), "{excerpt}");
    }

    #[test]
    fn a_read_overlapping_the_write_may_see_either_state() {
        let h = vec![
            op(0, 0, 10, put("a", "x"), put_ok(2, None)),
            op(1, 5, 12, get("a"), get_ok(1, None)),
            op(2, 6, 13, get("a"), get_ok(2, Some(kv("a", "x", 2, 2, 1)))),
        ];
        assert!(check(&h, State::default(), BUDGET).is_ok());
    }

    #[test]
    fn reads_that_go_back_in_time_are_a_violation() {
        // Both reads overlap the write, but the second starts after the first returned the
        // new value, so it cannot see the old one.
        let h = vec![
            op(0, 0, 100, put("a", "x"), put_ok(2, None)),
            op(1, 5, 10, get("a"), get_ok(2, Some(kv("a", "x", 2, 2, 1)))),
            op(2, 20, 30, get("a"), get_ok(1, None)),
        ];
        assert!(matches!(
            check(&h, State::default(), BUDGET),
            Verdict::Violation { .. }
        ));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let seen_late = vec![
            op(0, 0, Operation::NEVER, put("a", "x"), unknown()),
            op(1, 10, 20, get("a"), get_ok(1, None)),
            op(1, 30, 40, get("a"), get_ok(2, Some(kv("a", "x", 2, 2, 1)))),
        ];
        assert!(check(&seen_late, State::default(), BUDGET).is_ok());
        let never = vec![
            op(0, 0, Operation::NEVER, put("a", "x"), unknown()),
            op(1, 10, 20, get("a"), get_ok(1, None)),
        ];
        assert!(check(&never, State::default(), BUDGET).is_ok());
        // ...but not before it was invoked.
        let before_call = vec![
            op(1, 0, 5, get("a"), get_ok(2, Some(kv("a", "x", 2, 2, 1)))),
            op(0, 10, Operation::NEVER, put("a", "x"), unknown()),
        ];
        assert!(!check(&before_call, State::default(), BUDGET).is_ok());
    }

    #[test]
    fn an_unknown_delete_that_lands_long_after_its_call_is_found_without_blowing_up() {
        // a exists; a delete of a times out; 2000 writes to b follow; then a read shows a
        // gone, one revision after the last write to b.
        let mut h = vec![
            op(0, 0, 1, put("a", "x"), put_ok(2, None)),
            op(
                0,
                2,
                Operation::NEVER,
                Request::Delete { key: "a".into() },
                unknown(),
            ),
        ];
        let mut prev = None;
        for i in 0..2000u64 {
            let rev = i as i64 + 3;
            let v = format!("v{i}");
            h.push(op(
                1 + (i % 3) as usize,
                10 + 3 * i,
                11 + 3 * i,
                put("b", &v),
                put_ok(rev, prev.clone()),
            ));
            prev = Some(kv("b", &v, 3, rev, i as i64 + 1));
        }
        h.push(op(1, 10_000, 10_001, get("a"), get_ok(2003, None)));
        let v = check(&h, State::default(), BUDGET);
        assert!(v.is_ok(), "{v:?}");
        // Without the delete's effect the read's revision cannot be explained.
        h.remove(1);
        assert!(!check(&h, State::default(), BUDGET).is_ok());
    }

    #[test]
    fn a_write_pinned_by_the_watch_must_take_that_revision() {
        let pinned = |rev| Outcome::Unknown {
            error: "timeout".into(),
            applied_at: Some(rev),
        };
        let h = vec![
            op(0, 0, Operation::NEVER, put("a", "x"), pinned(3)),
            op(1, 1, 5, put("b", "y"), put_ok(2, None)),
        ];
        assert!(check(&h, State::default(), BUDGET).is_ok());
        let wrong = vec![
            op(0, 0, Operation::NEVER, put("a", "x"), pinned(2)),
            op(1, 1, 5, put("b", "y"), put_ok(2, None)),
            op(1, 6, 7, get("a"), get_ok(2, None)),
        ];
        assert!(!check(&wrong, State::default(), BUDGET).is_ok());
    }

    #[test]
    fn a_lost_compare_and_swap_is_a_violation() {
        // Two CAS from the same mod_revision both claim success: only one can.
        let cas = |v: &str| Request::Txn {
            key: "a".into(),
            expected: 2,
            write: TxnWrite::Put { value: v.into() },
        };
        let ok = |revision| {
            Outcome::Ok(Response::Txn {
                revision,
                succeeded: true,
                kv: None,
            })
        };
        let h = vec![
            op(0, 0, 1, put("a", "x"), put_ok(2, None)),
            op(1, 2, 10, cas("y"), ok(3)),
            op(2, 3, 11, cas("z"), ok(4)),
        ];
        assert!(!check(&h, State::default(), BUDGET).is_ok());
    }

    #[test]
    fn a_long_sequential_history_is_checked_quickly() {
        let mut h = Vec::new();
        let mut prev: Option<Kv> = None;
        for i in 0..5000u64 {
            let rev = i as i64 + 2;
            let v = format!("v{i}");
            h.push(op(
                (i % 4) as usize,
                3 * i,
                3 * i + 1,
                put("a", &v),
                put_ok(rev, prev.clone()),
            ));
            prev = Some(kv("a", &v, 2, rev, i as i64 + 1));
        }
        let v = check(&h, State::default(), BUDGET);
        assert!(v.is_ok(), "{v:?}");
    }
}
