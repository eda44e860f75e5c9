//! Log lines that a flood cannot multiply: things that may happen thousands of times a
//! second (a refused connection, a wrong token) are counted, and one line per interval
//! says how many of each there were. The first one is said at once, so a single event is
//! not held back; then at most one line per interval, at the next event or when the
//! server's ticker asks (`flush`), whichever comes first.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a tally may write a line.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// Counts by kind since the last line.
pub type Counts = BTreeMap<&'static str, u64>;

#[derive(Debug)]
pub struct Tally {
    every: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_line: Option<Instant>,
    counts: Counts,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new(LOG_EVERY)
    }
}

impl Tally {
    pub fn new(every: Duration) -> Tally {
        Tally {
            every,
            state: Mutex::default(),
        }
    }

    /// Counts one `kind`; returns the counts to write now if a line is due.
    pub fn note(&self, kind: &'static str) -> Option<Counts> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s.counts.entry(kind).or_default() += 1;
        Self::due(&mut s, self.every, Instant::now())
    }

    /// The counts to write now, if any are waiting and a line is due.
    pub fn flush(&self) -> Option<Counts> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Self::due(&mut s, self.every, Instant::now())
    }

    fn due(s: &mut State, every: Duration, now: Instant) -> Option<Counts> {
        if s.counts.is_empty() || s.last_line.is_some_and(|at| now.duration_since(at) < every) {
            return None;
        }
        s.last_line = Some(now);
        Some(std::mem::take(&mut s.counts))
    }
}

/// `3 per_client, 1 total`: counts for a log line.
pub fn describe(counts: &Counts) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_said_then_one_line_per_interval_with_the_count() {
        let t = Tally::new(Duration::from_secs(3600));
        let first = t.note("per_client").expect("the first is said at once");
        assert_eq!(first.get("per_client"), Some(&1));
        for _ in 0..999 {
            assert!(
                t.note("per_client").is_none(),
                "held back within the interval"
            );
        }
        assert!(t.note("total").is_none());
        assert!(t.flush().is_none(), "not due yet");
        let t = Tally::new(Duration::ZERO);
        t.note("per_client");
        t.note("per_client");
        assert!(t.flush().is_none(), "nothing waiting: nothing to say");
    }
}
