//! The work queue's rules as a pure `Scheduler`: which key runs next, and when.
//!
//! ```text
//!  schedule(key, at) ──► queued {key: due}  (a key is queued once; the earlier time wins)
//!                             │ pop(now): due <= now, a free slot, a rate-limit token
//!                             ▼
//!                        running {key}  ── schedule(key) meanwhile ──► rerun {key: due}
//!                             │ finish(key, outcome, now)
//!                             ▼
//!        success: backoff forgotten; RequeueAfter(d) ─► queued at now + d
//!        error:   failures + 1 ─► queued at now + backoff(failures)   (or the error policy's)
//!        rerun pending ─► queued again (earlier time wins)
//! ```
//!
//! Invariants: a key is never running twice; a key is in at most one of `queued`, `running`;
//! `rerun` only holds running keys. Time is passed in, so the tests need no runtime.

mod rate_limit;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;

use tokio::time::Instant;

use crate::Action;
use crate::backoff::BackoffConfig;

pub use rate_limit::RateLimit;
use rate_limit::TokenBucket;

/// Queue settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Reconciles running at once; 0 means no limit.
    pub concurrency: usize,
    /// Per-key delays after failed reconciles.
    pub backoff: BackoffConfig,
    /// Global limit on reconcile starts; `None` for none.
    pub rate_limit: Option<RateLimit>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            concurrency: 4,
            backoff: BackoffConfig::default(),
            rate_limit: Some(RateLimit::default()),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The reconciler succeeded and asked for this.
    Success(Action),
    /// The reconciler failed; the error policy may override the backoff.
    Failure(Option<Action>),
    /// There was nothing to reconcile (the object is gone).
    Skipped,
}

/// What [`Scheduler::pop`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pop<K> {
    /// Run this key now.
    Ready(K),
    /// Nothing can run before this instant (`None`: until something is scheduled or finishes).
    Wait(Option<Instant>),
}

/// Keys, due times, running keys and failure counts.
#[derive(Debug)]
pub(crate) struct Scheduler<K> {
    config: SchedulerConfig,
    queued: HashMap<K, (Instant, u64)>,
    order: BTreeSet<(Instant, u64, K)>,
    sequence: u64,
    running: HashSet<K>,
    rerun: HashMap<K, Instant>,
    failures: HashMap<K, u32>,
    limiter: Option<TokenBucket>,
}

impl<K: Clone + Eq + Hash + Ord> Scheduler<K> {
    pub(crate) fn new(config: SchedulerConfig, now: Instant) -> Self {
        let limiter = config.rate_limit.map(|limit| TokenBucket::new(limit, now));
        Scheduler {
            config,
            queued: HashMap::new(),
            order: BTreeSet::new(),
            sequence: 0,
            running: HashSet::new(),
            rerun: HashMap::new(),
            failures: HashMap::new(),
            limiter,
        }
    }

    /// Asks for `key` to run at `at` (or earlier, if it already is due earlier).
    pub(crate) fn schedule(&mut self, key: K, at: Instant) {
        if self.running.contains(&key) {
            let due = self.rerun.entry(key).or_insert(at);
            *due = (*due).min(at);
            return;
        }
        if let Some(&(due, sequence)) = self.queued.get(&key) {
            if due <= at {
                return;
            }
            self.order.remove(&(due, sequence, key.clone()));
        }
        self.sequence += 1;
        self.queued.insert(key.clone(), (at, self.sequence));
        self.order.insert((at, self.sequence, key));
    }

    /// The next key to run at `now`, or when to look again.
    pub(crate) fn pop(&mut self, now: Instant) -> Pop<K> {
        let Some((due, _, _)) = self.order.first() else {
            return Pop::Wait(None);
        };
        if *due > now {
            return Pop::Wait(Some(*due));
        }
        if self.config.concurrency > 0 && self.running.len() >= self.config.concurrency {
            return Pop::Wait(None);
        }
        if let Some(limiter) = &mut self.limiter
            && let Err(next) = limiter.try_acquire(now)
        {
            return Pop::Wait(Some(next));
        }
        let Some((_, _, key)) = self.order.pop_first() else {
            return Pop::Wait(None);
        };
        self.queued.remove(&key);
        self.running.insert(key.clone());
        Pop::Ready(key)
    }

    /// Records the end of a run of `key` and schedules what follows.
    pub(crate) fn finish(&mut self, key: &K, outcome: Outcome, now: Instant) {
        self.running.remove(key);
        let next = match outcome {
            Outcome::Success(action) => {
                self.failures.remove(key);
                requeue(action, now)
            }
            Outcome::Failure(policy) => {
                let failures = self.failures.entry(key.clone()).or_insert(0);
                *failures = failures.saturating_add(1);
                match policy {
                    Some(action) => requeue(action, now),
                    None => Some(now + self.config.backoff.delay(*failures)),
                }
            }
            Outcome::Skipped => {
                self.failures.remove(key);
                None
            }
        };
        let rerun = self.rerun.remove(key);
        for at in [next, rerun].into_iter().flatten() {
            self.schedule(key.clone(), at);
        }
    }

    /// Forgets a key's failures (its object is gone).
    pub(crate) fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Keys waiting to run (queued, or due again after their current run).
    pub(crate) fn depth(&self) -> usize {
        self.queued.len() + self.rerun.len()
    }

    /// Keys running now.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    /// Consecutive failures of `key`.
    #[cfg(test)]
    pub(crate) fn failures(&self, key: &K) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }
}

fn requeue(action: Action, now: Instant) -> Option<Instant> {
    match action {
        Action::RequeueAfter(after) => Some(now + after),
        Action::AwaitChange => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn unlimited() -> SchedulerConfig {
        SchedulerConfig {
            concurrency: 0,
            backoff: BackoffConfig {
                base: ms(100),
                factor: 2.0,
                max: ms(1000),
            },
            rate_limit: None,
        }
    }

    #[test]
    fn a_key_scheduled_many_times_runs_once_at_the_earliest_time() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(unlimited(), t0);
        s.schedule("a", t0 + ms(50));
        s.schedule("a", t0 + ms(10));
        s.schedule("a", t0 + ms(90));
        s.schedule("b", t0 + ms(20));
        assert_eq!(s.depth(), 2);
        assert_eq!(s.pop(t0), Pop::Wait(Some(t0 + ms(10))));
        assert_eq!(s.pop(t0 + ms(30)), Pop::Ready("a"));
        assert_eq!(s.pop(t0 + ms(30)), Pop::Ready("b"));
        assert_eq!(s.pop(t0 + ms(100)), Pop::Wait(None), "a ran once");
    }

    #[test]
    fn a_key_triggered_while_running_runs_again_once_after_it_finishes() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(unlimited(), t0);
        s.schedule("a", t0);
        assert_eq!(s.pop(t0), Pop::Ready("a"));
        for _ in 0..3 {
            s.schedule("a", t0);
        }
        assert_eq!(s.pop(t0), Pop::Wait(None), "never twice at once");
        s.finish(&"a", Outcome::Success(Action::AwaitChange), t0 + ms(5));
        assert_eq!(s.pop(t0 + ms(5)), Pop::Ready("a"));
        s.finish(&"a", Outcome::Success(Action::AwaitChange), t0 + ms(6));
        assert_eq!(s.pop(t0 + ms(6)), Pop::Wait(None));
    }

    #[test]
    fn failures_back_off_exponentially_and_a_success_resets_them() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(unlimited(), t0);
        let mut now = t0;
        s.schedule("a", now);
        // (outcome, expected delay until the next run)
        let cases = [
            (Outcome::Failure(None), Some(100)),
            (Outcome::Failure(None), Some(200)),
            (Outcome::Failure(None), Some(400)),
            (Outcome::Failure(None), Some(800)),
            (Outcome::Failure(None), Some(1000)),
            (Outcome::Success(Action::RequeueAfter(ms(30))), Some(30)),
            (Outcome::Failure(None), Some(100)),
            (Outcome::Failure(Some(Action::RequeueAfter(ms(7)))), Some(7)),
            (Outcome::Success(Action::AwaitChange), None),
        ];
        for (i, (outcome, delay)) in cases.into_iter().enumerate() {
            assert_eq!(s.pop(now), Pop::Ready("a"), "step {i}");
            s.finish(&"a", outcome, now);
            match delay {
                Some(d) => {
                    assert_eq!(s.pop(now), Pop::Wait(Some(now + ms(d))), "step {i}");
                    now += ms(d);
                }
                None => assert_eq!(s.pop(now), Pop::Wait(None), "step {i}"),
            }
        }
        assert_eq!(s.failures(&"a"), 0);
    }

    #[test]
    fn concurrency_and_the_rate_limit_hold_keys_back() {
        let t0 = Instant::now();
        let config = SchedulerConfig {
            concurrency: 2,
            rate_limit: Some(RateLimit {
                per_second: 10.0,
                burst: 3,
            }),
            ..unlimited()
        };
        let mut s = Scheduler::new(config, t0);
        for key in ["a", "b", "c", "d", "e"] {
            s.schedule(key, t0);
        }
        assert_eq!(s.pop(t0), Pop::Ready("a"));
        assert_eq!(s.pop(t0), Pop::Ready("b"));
        assert_eq!(s.pop(t0), Pop::Wait(None), "two slots");
        s.finish(&"a", Outcome::Success(Action::AwaitChange), t0);
        s.finish(&"b", Outcome::Success(Action::AwaitChange), t0);
        assert_eq!(s.pop(t0), Pop::Ready("c"));
        assert_eq!(
            s.pop(t0),
            Pop::Wait(Some(t0 + ms(100))),
            "burst of three used"
        );
        assert_eq!(s.pop(t0 + ms(100)), Pop::Ready("d"));
        assert_eq!(s.running(), 2);
    }
}
