//! [`TokenBucket`]: a global rate limit on reconciles — `burst` at once, then `per_second`.
//!
//! ```text
//!  tokens ▲ burst ───┐        ┌──────
//!         │          └──┐  ┌──┘  refill: per_second tokens each second, up to burst
//!         │             └──┘     each reconcile takes one token
//!         └──────────────────────► time
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// How fast reconciles may start overall.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained reconciles per second.
    pub per_second: f64,
    /// Reconciles that may start at once after a quiet period.
    pub burst: u32,
}

impl Default for RateLimit {
    /// 10 per second with bursts of 100, like client-go's default work queue.
    fn default() -> Self {
        RateLimit {
            per_second: 10.0,
            burst: 100,
        }
    }
}

/// A token bucket; time is passed in, so it is pure.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        TokenBucket {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        let capacity = f64::from(self.limit.burst.max(1));
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(capacity);
        self.updated = now;
    }

    /// Takes a token, or answers when the next one will be there.
    pub(crate) fn try_acquire(&mut self, now: Instant) -> Result<(), Instant> {
        self.refill(now);
        // The epsilon absorbs float error in the refill arithmetic.
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Ok(());
        }
        if self.limit.per_second <= 0.0 {
            // A zero rate never refills; check again in a minute rather than never.
            return Err(now + Duration::from_secs(60));
        }
        let missing = 1.0 - self.tokens;
        Err(now + Duration::from_secs_f64(missing / self.limit.per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_and_then_tokens_come_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(
            RateLimit {
                per_second: 4.0,
                burst: 2,
            },
            t0,
        );
        assert_eq!(bucket.try_acquire(t0), Ok(()));
        assert_eq!(bucket.try_acquire(t0), Ok(()));
        let next = bucket.try_acquire(t0);
        assert_eq!(next, Err(t0 + Duration::from_millis(250)));
        let cases = [
            (100, false),
            (250, true),
            (300, false),
            (500, true),
            (2000, true),
            (2000, true),
            (2000, false),
        ];
        for (millis, allowed) in cases {
            let at = t0 + Duration::from_millis(millis);
            assert_eq!(bucket.try_acquire(at).is_ok(), allowed, "at {millis} ms");
        }
    }
}
