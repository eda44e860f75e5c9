//! How long a stop waits for each part: computed here, once, from the campaign file.

use crate::config::Config;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The shutdown graces, all derived from the campaign file here and nowhere else. A stop
/// stays within systemd's `TimeoutStopSec` when that exceeds `runs` plus 5 s (or `delivery`,
/// if longer).
///
/// - `runs`: the scheduler's runs. A call in flight may take the full API timeout, then its
///   result is recorded: `[fluidtalk] timeout` + 10 s.
/// - `delivery`: webhook deliveries in flight end within the webhook's timeout and are
///   recorded: `[delivery] timeout` (zero without `[delivery]`) + 10 s.
/// - `after_runs`: everything else began stopping with the runs, so the HTTP server and its
///   relayed calls get what is left of `runs` once the runs ended, + 5 s.
/// - `background`: the gauges, delivery and recovery get `after_runs`, or `delivery` if
///   longer.
///
/// The dashboard's forecast is cancelled as the stop begins and waited for within the HTTP
/// server's stop (`http::Server::run`, at most 10 s); the hourly prune stops between its
/// statements with the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Graces {
    pub runs: Duration,
    pub delivery: Duration,
}

/// What `after_runs` adds to what is left of `runs`.
const AFTER_RUNS: Duration = Duration::from_secs(5);

impl Graces {
    pub fn of(config: &Config) -> Graces {
        let delivery = config
            .delivery
            .as_ref()
            .map_or(Duration::ZERO, |d| d.timeout);
        Graces {
            runs: config.fluidtalk.timeout + Duration::from_secs(10),
            delivery: delivery + Duration::from_secs(10),
        }
    }

    /// The HTTP server's and relays' bound, once the runs ended `since_stop` after the stop
    /// was asked for.
    pub fn after_runs(&self, since_stop: Duration) -> Duration {
        self.runs.saturating_sub(since_stop) + AFTER_RUNS
    }

    /// The background parts' bound (gauges, delivery, recovery), at the same moment.
    pub fn background(&self, since_stop: Duration) -> Duration {
        self.after_runs(since_stop).max(self.delivery)
    }
}

/// The process's stop: the token every part watches, and when the stop was asked for (the
/// graces count from then). A fatal error cancels the token without asking: the graces then
/// count from when the runs ended.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    asked: Arc<OnceLock<Instant>>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Stops the service (SIGTERM, Ctrl-C): no new call; every part winds down.
    pub fn ask(&self) {
        let _ = self.asked.set(Instant::now());
        self.token.cancel();
    }

    /// The token the parts watch.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// How long ago the stop was asked for (zero if it was not).
    pub fn since_asked(&self) -> Duration {
        self.asked.get().map_or(Duration::ZERO, |t| t.elapsed())
    }
}
