//! [`Backoff`]: exponential delays with a cap, used per key by the scheduler and per
//! connection by the watcher.
//!
//! ```text
//!  failures:  1      2      3      4     ...  n
//!  delay:     base   2·base 4·base 8·base ... min(base·factorⁿ⁻¹, max)
//! ```
//!
//! The state is just a failure count, so it is pure and trivially testable; whoever owns it
//! calls [`Backoff::reset`] on success.

use std::time::Duration;

/// The shape of an exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Delay after the first failure.
    pub base: Duration,
    /// Multiplier per further failure.
    pub factor: f64,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl Default for BackoffConfig {
    /// 100 ms, doubling, at most 5 minutes.
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(300),
        }
    }
}

impl BackoffConfig {
    /// The delay after `failures` consecutive failures (0 failures: no delay).
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        // powi on a clamped exponent cannot overflow to a panic; the min() caps it.
        let exponent = i32::try_from(failures - 1).unwrap_or(i32::MAX).min(64);
        let secs = self.base.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

/// Consecutive failures of one thing, and the delay they call for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
}

impl Backoff {
    /// No failures yet.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            failures: 0,
        }
    }

    /// Records a failure and answers how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.config.delay(self.failures)
    }

    /// Forgets the failures (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_base_up_to_the_cap() {
        let config = BackoffConfig {
            base: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(1),
        };
        let cases = [
            (0, 0),
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
            (u32::MAX, 1000),
        ];
        for (failures, millis) in cases {
            assert_eq!(
                config.delay(failures),
                Duration::from_millis(millis),
                "after {failures} failures"
            );
        }
    }

    #[test]
    fn a_reset_starts_again_from_the_base() {
        let mut backoff = Backoff::new(BackoffConfig::default());
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(), Duration::from_millis(200));
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }
}
