//! A sequential model of etcd's KV semantics: the latest version of every key, the current
//! revision, and the live leases. [`State::step`] says which states can follow a state
//! when one operation takes effect and returns what the history recorded.
//!
//! The rules (etcd 3.4, `server/etcdserver/apply.go`, `mvcc/kvstore_txn.go`):
//! - every request that changes a key makes exactly one new revision; one that changes
//!   nothing (a delete of a missing key, a failed compare, a lease grant) makes none;
//! - a put keeps `create_revision`, bumps `version`, sets `mod_revision` to the new revision
//!   and replaces the lease (0 detaches); a put naming a missing lease is refused;
//! - `mod_revision` of a missing key compares as 0;
//! - revoking a lease deletes its keys in one revision, and a missing lease is refused;
//! - every response header carries the revision current after the request.
//!
//! Worked example: from revision 1, `Put a=x` answers revision 2 and makes
//! `a=x (c2 m2 v1)`; `Txn[mod(a)==2] Put a=y` answers revision 3, succeeded, and makes
//! `a=y (c2 m3 v2)`; `Txn[mod(a)==2] Delete` then fails, answers revision 3 and returns
//! `a=y` from its Range.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::history::{Kv, Operation, Outcome, Request, Response, TxnWrite};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub revision: i64,
    pub keys: BTreeMap<String, Kv>,
    pub leases: BTreeSet<i64>,
}

impl Default for State {
    fn default() -> Self {
        State {
            revision: 1,
            keys: BTreeMap::new(),
            leases: BTreeSet::new(),
        }
    }
}

/// What applying a request to a state does, before comparing with what was observed.
enum Effect {
    /// The new state (maybe equal to the old one) and the response the store should give.
    Applied(State, Response),
    /// The store refuses the request without changing anything.
    LeaseNotFound,
    LeaseExists,
}

impl State {
    pub fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    fn put(&mut self, key: &str, value: &str, lease: i64) -> Option<Kv> {
        let rev = self.revision + 1;
        let prev = self.keys.get(key).cloned();
        let kv = Kv {
            key: key.to_string(),
            value: value.to_string(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
        };
        self.keys.insert(key.to_string(), kv);
        self.revision = rev;
        prev
    }

    fn delete(&mut self, key: &str) -> i64 {
        if self.keys.remove(key).is_some() {
            self.revision += 1;
            1
        } else {
            0
        }
    }

    fn apply(&self, request: &Request) -> Effect {
        let mut next = self.clone();
        let response = match request {
            Request::Get { key } => Response::Get {
                revision: self.revision,
                kv: self.keys.get(key).cloned(),
            },
            Request::Range { prefix } => Response::Range {
                revision: self.revision,
                kvs: self
                    .keys
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                    .map(|(_, kv)| kv.clone())
                    .collect(),
            },
            Request::Put { key, value, lease } => {
                if *lease != 0 && !self.leases.contains(lease) {
                    return Effect::LeaseNotFound;
                }
                let prev = next.put(key, value, *lease);
                Response::Put {
                    revision: next.revision,
                    prev,
                }
            }
            Request::Delete { key } => {
                let deleted = next.delete(key);
                Response::Delete {
                    revision: next.revision,
                    deleted,
                }
            }
            Request::Txn {
                key,
                expected,
                write,
            } => {
                let current = self.keys.get(key);
                let succeeded = current.map_or(0, |kv| kv.mod_revision) == *expected;
                let kv = if succeeded {
                    match write {
                        TxnWrite::Put { value } => {
                            next.put(key, value, 0);
                        }
                        TxnWrite::Delete => {
                            next.delete(key);
                        }
                    }
                    None
                } else {
                    current.cloned()
                };
                Response::Txn {
                    revision: next.revision,
                    succeeded,
                    kv,
                }
            }
            Request::LeaseGrant { id } => {
                if !next.leases.insert(*id) {
                    return Effect::LeaseExists;
                }
                Response::LeaseGrant {
                    revision: self.revision,
                }
            }
            Request::LeaseRevoke { id } => {
                if !next.leases.remove(id) {
                    return Effect::LeaseNotFound;
                }
                let attached: Vec<String> = next
                    .keys
                    .values()
                    .filter(|kv| kv.lease == *id)
                    .map(|kv| kv.key.clone())
                    .collect();
                if !attached.is_empty() {
                    for key in attached {
                        next.keys.remove(&key);
                    }
                    next.revision += 1;
                }
                Response::LeaseRevoke {
                    revision: next.revision,
                }
            }
        };
        Effect::Applied(next, response)
    }

    /// The states that can follow `self` when `op` takes effect now, given what `op`
    /// returned; empty when no linearization point here explains the observation.
    ///
    /// An operation whose outcome is unknown may also never take effect; the checker
    /// handles that choice itself, so this only returns the "took effect" state.
    pub fn step(&self, op: &Operation) -> Option<State> {
        let effect = self.apply(&op.request);
        match (&op.outcome, effect) {
            (Outcome::Ok(observed), Effect::Applied(next, expected)) => {
                (*observed == expected).then_some(next)
            }
            (Outcome::LeaseNotFound, Effect::LeaseNotFound)
            | (Outcome::LeaseExists, Effect::LeaseExists) => Some(self.clone()),
            (Outcome::Unknown { applied_at, .. }, Effect::Applied(next, _)) => match applied_at {
                // The watch saw it at this revision: only a point where it makes exactly that
                // revision explains the history.
                Some(rev) => {
                    (next.revision == *rev && next.revision != self.revision).then_some(next)
                }
                None => Some(next),
            },
            // Refused, so it changed nothing: the same as never taking effect.
            (
                Outcome::Unknown {
                    applied_at: None, ..
                },
                Effect::LeaseNotFound,
            ) => Some(self.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(request: Request, outcome: Outcome) -> Operation {
        Operation {
            client: 0,
            call: 0,
            ret: 1,
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

    #[test]
    fn the_worked_example_of_the_module_doc_holds() {
        let s = State::default();
        let s = s
            .step(&op(
                put("a", "x"),
                Outcome::Ok(Response::Put {
                    revision: 2,
                    prev: None,
                }),
            ))
            .expect("first put");
        let cas = |expected, write| Request::Txn {
            key: "a".into(),
            expected,
            write,
        };
        let s = s
            .step(&op(
                cas(2, TxnWrite::Put { value: "y".into() }),
                Outcome::Ok(Response::Txn {
                    revision: 3,
                    succeeded: true,
                    kv: None,
                }),
            ))
            .expect("cas");
        assert_eq!(s.keys["a"], kv("a", "y", 2, 3, 2));
        let failed = op(
            cas(2, TxnWrite::Delete),
            Outcome::Ok(Response::Txn {
                revision: 3,
                succeeded: false,
                kv: Some(kv("a", "y", 2, 3, 2)),
            }),
        );
        assert_eq!(s.step(&failed), Some(s.clone()));
    }

    #[test]
    fn a_wrong_revision_or_value_is_rejected() {
        let s = State::default();
        let wrong_rev = op(
            put("a", "x"),
            Outcome::Ok(Response::Put {
                revision: 3,
                prev: None,
            }),
        );
        assert_eq!(s.step(&wrong_rev), None);
        let stale_read = op(
            Request::Get { key: "a".into() },
            Outcome::Ok(Response::Get {
                revision: 1,
                kv: Some(kv("a", "x", 2, 2, 1)),
            }),
        );
        assert_eq!(s.step(&stale_read), None);
    }

    #[test]
    fn leases_must_exist_and_revoking_deletes_their_keys_in_one_revision() {
        let s = State::default();
        let with_lease = |k: &str| Request::Put {
            key: k.into(),
            value: k.into(),
            lease: 7,
        };
        let refused = op(with_lease("a"), Outcome::LeaseNotFound);
        assert_eq!(s.step(&refused), Some(s.clone()));
        let s = s
            .step(&op(
                Request::LeaseGrant { id: 7 },
                Outcome::Ok(Response::LeaseGrant { revision: 1 }),
            ))
            .expect("grant");
        assert_eq!(s.step(&refused), None, "the lease exists now");
        let mut s = s;
        for (i, k) in ["a", "b"].iter().enumerate() {
            s = s
                .step(&op(
                    with_lease(k),
                    Outcome::Ok(Response::Put {
                        revision: 2 + i as i64,
                        prev: None,
                    }),
                ))
                .expect("put with lease");
        }
        let s = s
            .step(&op(
                Request::LeaseRevoke { id: 7 },
                Outcome::Ok(Response::LeaseRevoke { revision: 4 }),
            ))
            .expect("revoke");
        assert!(s.keys.is_empty());
        assert_eq!(s.revision, 4);
    }
}
