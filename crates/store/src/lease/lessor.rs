//! [`Lessor`]: deadlines of live leases, refreshed by keep-alives.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The shortest TTL a lease gets (etcd's default minimum: a grant of 1 s yields 2 s).
pub const MIN_LEASE_TTL: i64 = 2;

#[derive(Debug, Clone, Copy)]
struct Entry {
    ttl: i64,
    deadline: Instant,
    /// A revoke for this lease is in flight; do not propose another.
    revoking: bool,
}

/// Deadlines of live leases. Time is passed in, so the logic is testable without a clock.
#[derive(Debug, Default)]
pub struct Lessor {
    leases: HashMap<i64, Entry>,
}

impl Lessor {
    /// Starts tracking a lease granted with `ttl` seconds.
    pub fn track(&mut self, id: i64, ttl: i64, now: Instant) {
        self.leases.insert(
            id,
            Entry {
                ttl,
                deadline: now + secs(ttl),
                revoking: false,
            },
        );
    }

    /// Stops tracking a revoked lease.
    pub fn forget(&mut self, id: i64) {
        self.leases.remove(&id);
    }

    /// A keep-alive: pushes the deadline a full TTL ahead and returns the TTL, or `None` for
    /// an unknown (or expiring) lease.
    pub fn renew(&mut self, id: i64, now: Instant) -> Option<i64> {
        let entry = self.leases.get_mut(&id)?;
        if entry.revoking {
            return None;
        }
        entry.deadline = now + secs(entry.ttl);
        Some(entry.ttl)
    }

    /// Restarts every lease's countdown from `now`: from its checkpointed remaining
    /// seconds when there is one, else from its full TTL.
    pub fn refresh_all(&mut self, now: Instant, checkpoints: &HashMap<i64, i64>) {
        for (id, entry) in self.leases.iter_mut() {
            let left = checkpoints.get(id).copied().unwrap_or(entry.ttl);
            entry.deadline = now + secs(left.min(entry.ttl));
            entry.revoking = false;
        }
    }

    /// Seconds left on every lease, for a checkpoint.
    pub fn checkpoint(&self, now: Instant) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = self
            .leases
            .iter()
            .filter(|(_, e)| !e.revoking)
            .map(|(id, e)| {
                let left = e
                    .deadline
                    .saturating_duration_since(now)
                    .as_secs_f64()
                    .ceil();
                (*id, left as i64)
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Whole seconds left before the lease expires (0 once due), or `None` if unknown.
    pub fn remaining(&self, id: i64, now: Instant) -> Option<i64> {
        let entry = self.leases.get(&id)?;
        Some(entry.deadline.saturating_duration_since(now).as_secs() as i64)
    }

    /// Leases whose deadline has passed and that have no revoke in flight; marks them as
    /// being revoked.
    pub fn take_expired(&mut self, now: Instant) -> Vec<i64> {
        let mut due: Vec<i64> = self
            .leases
            .iter_mut()
            .filter(|(_, e)| !e.revoking && e.deadline <= now)
            .map(|(id, e)| {
                e.revoking = true;
                *id
            })
            .collect();
        due.sort_unstable();
        due
    }

    /// A revoke failed for a reason other than the lease being gone: try again later.
    pub fn retry(&mut self, id: i64) {
        if let Some(e) = self.leases.get_mut(&id) {
            e.revoking = false;
        }
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_postpones_expiry_and_expired_leases_are_taken_once() {
        let t0 = Instant::now();
        let mut l = Lessor::default();
        l.track(7, 10, t0);
        assert_eq!(l.remaining(7, t0 + Duration::from_secs(3)), Some(7));
        assert!(l.take_expired(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(l.renew(7, t0 + Duration::from_secs(9)), Some(10));
        assert!(l.take_expired(t0 + Duration::from_secs(18)).is_empty());
        assert_eq!(l.take_expired(t0 + Duration::from_secs(19)), vec![7]);
        assert!(l.take_expired(t0 + Duration::from_secs(20)).is_empty());
        assert_eq!(l.renew(7, t0 + Duration::from_secs(20)), None);
        l.retry(7);
        assert_eq!(l.take_expired(t0 + Duration::from_secs(20)), vec![7]);
        l.forget(7);
        assert_eq!(l.remaining(7, t0), None);
    }

    #[test]
    fn a_checkpointed_lease_resumes_its_countdown_instead_of_restarting_it() {
        let t0 = Instant::now();
        let mut l = Lessor::default();
        l.track(1, 60, t0);
        l.track(2, 60, t0);
        let later = t0 + Duration::from_secs(45);
        let cp = l.checkpoint(later);
        assert_eq!(cp, vec![(1, 15), (2, 15)]);
        // A new leader: lease 1 has a checkpoint, lease 2 was granted after the last one.
        let mut next = Lessor::default();
        next.track(1, 60, later);
        next.track(2, 60, later);
        next.refresh_all(later, &HashMap::from([(1, 15)]));
        assert_eq!(next.remaining(1, later), Some(15));
        assert_eq!(next.remaining(2, later), Some(60));
    }
}
