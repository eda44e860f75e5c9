//! Time, injected: the runner asks a `Clock`, so tests move time instead of sleeping.

use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

/// `t + d`, saturating at the end of time instead of panicking: no setting or answer (a
/// huge `Retry-After`, a pause of centuries) can make time arithmetic panic.
pub fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, saturating at the beginning of time.
pub fn earlier(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// Waits `d` of this clock's time (the runner's waits, e.g. a 429's `Retry-After`).
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// A reading that only moves forward, for measuring intervals (the rate limit): the
    /// machine's monotonic clock since the process's first reading, so a wall clock set
    /// back (NTP, `date -s`) cannot stall the calls; a manual clock's own time.
    fn ticks(&self) -> Duration {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed()
    }
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The machine's clock moved by a fixed offset: how the fault tests run a real process
/// "two hours later" (to let leases run out) without waiting, and how clock skew between
/// runners is reproduced. Set from `FLUIDTALK_CLOCK_OFFSET` (see `from_env`).
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock(pub chrono::Duration);

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        // Saturating: `from_env` keeps the offset within `MAX_OFFSET`, and no offset made
        // by hand may panic either.
        let now = Utc::now();
        now.checked_add_signed(self.0)
            .unwrap_or(if self.0 > chrono::Duration::zero() {
                DateTime::<Utc>::MAX_UTC
            } else {
                DateTime::<Utc>::MIN_UTC
            })
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The environment variable that moves a runner's clock: a duration such as `2h` or `-90s`.
pub const OFFSET_ENV: &str = "FLUIDTALK_CLOCK_OFFSET";

/// The largest offset either way: 100 years (36,525 days). Tests need hours; further would
/// leave the times the databases store.
pub const MAX_OFFSET: chrono::Duration = chrono::Duration::days(36_525);

/// Why `FLUIDTALK_CLOCK_OFFSET` cannot be used; each quotes the value as set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    #[error("{OFFSET_ENV}={0:?}: expected a duration such as 2h, 90s or -15m")]
    NotADuration(String),
    #[error("{OFFSET_ENV}={0:?} is out of range: at most 100 years (36525days) either way")]
    OutOfRange(String),
}

/// The runner's clock: the machine's, moved by `FLUIDTALK_CLOCK_OFFSET` if that is set.
pub fn from_env() -> Result<std::sync::Arc<dyn Clock>, OffsetError> {
    match std::env::var(OFFSET_ENV) {
        Err(_) => Ok(std::sync::Arc::new(SystemClock)),
        Ok(v) => {
            let (sign, text) = match v.trim().strip_prefix('-') {
                Some(rest) => (-1, rest),
                None => (1, v.trim().trim_start_matches('+')),
            };
            let d = humantime::parse_duration(text)
                .map_err(|_| OffsetError::NotADuration(v.clone()))?;
            let d = chrono::Duration::from_std(d)
                .ok()
                .filter(|d| *d <= MAX_OFFSET)
                .ok_or_else(|| OffsetError::OutOfRange(v.clone()))?;
            tracing::warn!(
                offset = %v,
                "{OFFSET_ENV} is set: this runner's clock is moved; leases and pauses shared with \
                 other runners are judged by it (for tests; never in production)"
            );
            Ok(std::sync::Arc::new(OffsetClock(d * sign)))
        }
    }
}

/// A clock that stands still until told to move (tests, and `run --at` previews).
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The manual time since the Unix epoch (before it, zero).
    fn ticks(&self) -> Duration {
        (self.now() - DateTime::<Utc>::UNIX_EPOCH)
            .to_std()
            .unwrap_or_default()
    }

    /// Time passes at once: a test waits for nothing.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.advance(chrono::Duration::from_std(d).unwrap_or_default());
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19: `FLUIDTALK_CLOCK_OFFSET=300000years` panicked in `now()`.
    #[test]
    fn an_offset_past_its_range_is_refused_and_none_can_panic() {
        assert!(OffsetClock(chrono::Duration::MAX).now() == DateTime::<Utc>::MAX_UTC);
        assert!(OffsetClock(chrono::Duration::MIN).now() == DateTime::<Utc>::MIN_UTC);
        let hundred = Utc::now() + MAX_OFFSET;
        assert!(OffsetClock(MAX_OFFSET).now() >= hundred);
    }

    #[test]
    fn time_arithmetic_saturates_instead_of_panicking() {
        let now = Utc::now();
        let huge = Duration::from_secs(u64::MAX);
        assert_eq!(later(now, huge), DateTime::<Utc>::MAX_UTC);
        assert_eq!(earlier(now, huge), DateTime::<Utc>::MIN_UTC);
        assert_eq!(
            later(now, Duration::from_secs(60)),
            now + chrono::Duration::seconds(60)
        );
        assert_eq!(
            earlier(now, Duration::from_secs(60)),
            now - chrono::Duration::seconds(60)
        );
    }
}
