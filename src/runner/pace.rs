//! `per_second`, on the runner's injected clock: governor's GCRA reads the runner's
//! `Clock::ticks` (monotonic: the machine's, or a manual clock's own time) and waits with
//! `Clock::sleep`, so a run in virtual time (the forecast, tests on a `ManualClock`)
//! spends virtual seconds on the rate limit exactly as a live run spends real ones, and a
//! live runner's wall clock set back cannot hold its calls.

use crate::clock::Clock;
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The runner's clock as governor reads it: `Clock::ticks`, which only moves forward
/// (the machine's monotonic clock; a manual clock's own time).
#[derive(Clone)]
struct Injected {
    clock: Arc<dyn Clock>,
}

impl GovernorClock for Injected {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.clock.ticks()
    }
}

/// Calls per second, shared by every job of a runner (and its HTTP relay).
pub struct Pace {
    limiter: RateLimiter<NotKeyed, InMemoryState, Injected, NoOpMiddleware<Duration>>,
    injected: Injected,
}

impl Pace {
    pub fn new(per_second: f64, clock: Arc<dyn Clock>) -> Self {
        let injected = Injected { clock };
        Pace {
            limiter: RateLimiter::direct_with_clock(quota(per_second), injected.clone()),
            injected,
        }
    }

    /// Waits (on the runner's clock) until one call may start, and takes it.
    pub async fn until_ready(&self) {
        loop {
            match self.limiter.check() {
                Ok(()) => return,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.injected.now());
                    // At least a microsecond, so a clock that rounds can never spin.
                    self.injected
                        .clock
                        .sleep(wait.max(Duration::from_micros(1)))
                        .await;
                }
            }
        }
    }

    /// Takes one call now if the rate allows it.
    pub fn try_take(&self) -> bool {
        self.limiter.check().is_ok()
    }
}

/// The rate limit: `per_second` calls a second (checked in the campaign file to lie
/// between 0.01 and 100,000), with bursts of up to a second's worth.
fn quota(per_second: f64) -> Quota {
    let per_second = per_second.clamp(0.01, 100_000.0);
    let burst =
        NonZeroU32::new(per_second.ceil().clamp(1.0, 100_000.0) as u32).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(Duration::from_secs_f64(1.0 / per_second))
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn the_rate_limit_follows_per_second_at_both_ends() {
        let fast = quota(100_000.0);
        assert_eq!(fast.burst_size().get(), 100_000);
        assert!(fast.replenish_interval() <= Duration::from_micros(10));
        let slow = quota(0.01);
        assert_eq!(slow.burst_size().get(), 1);
        assert_eq!(slow.replenish_interval(), Duration::from_secs(100));
        // Out of range (the campaign file refuses these) is clamped, never 1/s by accident.
        assert_eq!(quota(1e12).burst_size().get(), 100_000);
    }

    /// The machine's clock with its wall time set back by an hour after the first calls.
    struct SteppedBack(std::sync::atomic::AtomicBool);

    impl Clock for SteppedBack {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            let back = self.0.load(std::sync::atomic::Ordering::SeqCst);
            chrono::Utc::now() - chrono::Duration::hours(if back { 1 } else { 0 })
        }
        fn sleep(
            &self,
            d: Duration,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
            Box::pin(tokio::time::sleep(d))
        }
    }

    #[tokio::test]
    async fn a_wall_clock_set_back_does_not_hold_the_calls() {
        let clock = Arc::new(SteppedBack(std::sync::atomic::AtomicBool::new(false)));
        let pace = Pace::new(1000.0, clock.clone());
        for _ in 0..1000 {
            pace.until_ready().await;
        }
        clock.0.store(true, std::sync::atomic::Ordering::SeqCst);
        // 100 calls at 1,000 a second: a tenth of a second, not the hour the wall went back.
        let calls = async {
            for _ in 0..100 {
                pace.until_ready().await;
            }
        };
        let done = tokio::time::timeout(Duration::from_secs(5), calls).await;
        assert!(
            done.is_ok(),
            "the calls waited for the wall clock to catch up"
        );
    }

    #[tokio::test]
    async fn on_a_manual_clock_the_limit_spends_virtual_time_not_real_time() {
        let start = chrono::Utc::now();
        let clock = Arc::new(ManualClock::new(start));
        let pace = Pace::new(2.0, clock.clone());
        let real = std::time::Instant::now();
        for _ in 0..10 {
            pace.until_ready().await;
        }
        // A burst of 2, then one call each half second: 8 more calls take 4 s.
        let spent = clock.now() - start;
        assert_eq!(spent.num_milliseconds(), 4_000, "{spent}");
        assert!(real.elapsed() < Duration::from_secs(1));
        assert!(!pace.try_take(), "the next cell is half a second away");
        clock.advance(chrono::Duration::milliseconds(500));
        assert!(pace.try_take());
    }
}
