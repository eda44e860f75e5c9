//! When a failed delivery is tried again: `retry_base` doubling per try, capped at
//! `retry_max`, with jitter; parked once `max_age` has passed since its first try.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// `max_age` has passed: park the message.
    Park,
}

/// The retry settings of `[delivery]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub base: Duration,
    pub max: Duration,
    pub max_age: Duration,
}

impl Retry {
    /// The wait after try number `tries + 1` failed: `base * 2^tries`, capped at `max`,
    /// of which the upper half is scaled by `jitter` (from 0 to 1) — "equal jitter": daemons
    /// that failed together spread out, and no wait is shorter than half its step.
    pub fn delay(&self, tries: u32, jitter: f64) -> Duration {
        let step = self
            .base
            .checked_mul(1u32.checked_shl(tries.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// After try number `tries + 1` (the first at `first_try_at`) failed at `now`: the next
    /// try, no later than `max_age` after the first (so the last try is made right at the
    /// end), or parking once that end has come.
    pub fn after_failure(
        &self,
        tries: u32,
        first_try_at: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Next {
        let end = crate::clock::later(first_try_at, self.max_age);
        if now >= end {
            return Next::Park;
        }
        Next::RetryAt(crate::clock::later(now, self.delay(tries, jitter)).min(end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> Retry {
        Retry {
            base: Duration::from_secs(1),
            max: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
        }
    }

    #[test]
    fn the_wait_doubles_from_the_base_up_to_the_cap_within_its_jitter() {
        let r = retry();
        assert_eq!(r.delay(0, 1.0), Duration::from_secs(1));
        assert_eq!(r.delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(r.delay(3, 1.0), Duration::from_secs(8));
        assert_eq!(r.delay(3, 0.5), Duration::from_secs(6));
        assert_eq!(r.delay(9, 1.0), Duration::from_secs(512));
        assert_eq!(r.delay(10, 1.0), Duration::from_secs(600));
        assert_eq!(r.delay(u32::MAX, 1.0), Duration::from_secs(600));
        assert_eq!(r.delay(u32::MAX, 0.0), Duration::from_secs(300));
    }

    #[test]
    fn a_message_is_parked_once_max_age_has_passed_since_its_first_try() {
        let r = retry();
        let first = Utc::now();
        let day = chrono::Duration::hours(24);
        assert_eq!(
            r.after_failure(0, first, first, 1.0),
            Next::RetryAt(first + chrono::Duration::seconds(1))
        );
        // The last try is made at the end of max_age, not skipped.
        let near = first + day - chrono::Duration::seconds(30);
        assert_eq!(
            r.after_failure(20, first, near, 1.0),
            Next::RetryAt(first + day)
        );
        assert_eq!(r.after_failure(21, first, first + day, 1.0), Next::Park);
    }
}
