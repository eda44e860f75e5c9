//! `jobs.toml`: the campaign file, parsed once into checked, typed values.
//!
//! `fields`: each value's type, which checks itself as toml reads it; `file`: the file as
//! written and the checks across values; `delivery`: the `[delivery]` table (the outbox's
//! webhook); `defaults`: every default, defined once; `settings`: each component's
//! settings, built once from the whole; `locate`: an error's line and key.
//!
//! Unknown keys are errors, and every error names the file, the line and the key and says
//! what was expected (a bad cron expression is quoted back). The API key is never in this
//! file. Precedence for the database: `DATABASE_URL`, then `[database] url`, then
//! `sqlite://fluidtalk-runner.db`; for the API: `FLUIDTALK_BASE_URL`, then
//! `[fluidtalk] base_url`, then the production URL.

mod calendar;
pub mod defaults;
mod delivery;
mod fields;
mod file;
mod http;
mod locate;
mod settings;
#[cfg(test)]
mod tests;

pub use calendar::{
    Calendar, MAX_CALENDARS, MAX_DAYS as MAX_CALENDAR_DAYS, MAX_EVENT_DAYS, MAX_ICS_BYTES,
};
pub use defaults::{
    DELIVERY_SECRET_ENV as DEFAULT_SECRET_ENV, FORECAST_CALLS as DEFAULT_FORECAST_CALLS,
    FORECAST_TIME as DEFAULT_FORECAST_TIME,
};
pub use delivery::Delivery;
pub use fields::{ValueError, WebhookUrl, check_base_url, check_database_url, parse_duration};
pub use http::{HttpSettings, TlsFiles};
pub use settings::RunnerSettings;

use crate::schedule::Schedule;
use chrono::{NaiveTime, Weekday};
use chrono_tz::Tz;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const CONFIG_ENV: &str = "FLUIDTALK_RUNNER_CONFIG";
pub const DEFAULT_CONFIG_PATH: &str = "jobs.toml";

/// A problem with the configuration file; always names the file, and the key or line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: [{table}] {key}: {expected}")]
    Key {
        path: PathBuf,
        table: &'static str,
        key: &'static str,
        expected: String,
    },
    #[error("{path}: line {line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// Why a campaign's API client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] crate::fluidtalk::Error),
}

/// Which configuration file to read: the one named (flag or environment), which must
/// exist, or `./jobs.toml` if it exists.
#[derive(Debug, Clone)]
pub struct ConfigPath {
    pub path: PathBuf,
    pub explicit: bool,
}

impl ConfigPath {
    pub fn new(named: Option<PathBuf>) -> Self {
        match named {
            Some(path) => Self {
                path,
                explicit: true,
            },
            None => Self {
                path: PathBuf::from(DEFAULT_CONFIG_PATH),
                explicit: false,
            },
        }
    }

    /// The file's text, or `None` when the default file does not exist. Only a regular
    /// file of at most `MAX_CONFIG_BYTES` is read: a FIFO or a device (`/dev/zero`) named
    /// as the campaign file is refused at once, never waited on or read without end.
    fn read(&self) -> Result<Option<String>, ConfigError> {
        match read_bounded(&self.path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.explicit => Ok(None),
            Err(cause) => Err(ConfigError::Io {
                path: self.path.clone(),
                cause,
            }),
        }
    }
}

/// The largest campaign file read (4 MiB: a thousand jobs with comments is under 1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A regular file's text, at most `MAX_CONFIG_BYTES`. Opened without blocking, so that a
/// FIFO with no writer does not hold the caller; its type is checked on the opened file.
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.custom_flags(libc::O_NONBLOCK);
    }
    let file = open.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file (a campaign file is read whole, from a file)",
        ));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "larger than {MAX_CONFIG_BYTES} bytes (4 MiB), the most a campaign file may be"
            ),
        ));
    }
    Ok(text)
}

/// The whole campaign file, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub fluidtalk: ApiSettings,
    /// `[database] url`, if given (the environment may still override it).
    pub database_url: Option<String>,
    pub limits: Limits,
    pub backoff: Backoff,
    pub http: HttpSettings,
    /// `[delivery]`: the outbox's webhook, if the file sets one.
    pub delivery: Option<Delivery>,
    /// `[forecast]`: the dashboard's forecast budget.
    pub forecast: ForecastSettings,
    /// `[retention]`: how long old rows are kept.
    pub retention: Retention,
    /// `[[sender]]`: the sender accounts, by username.
    pub senders: std::sync::Arc<crate::senders::SenderBook>,
    /// `[[calendar]]`: days off, in file order.
    pub calendars: Vec<std::sync::Arc<Calendar>>,
    pub jobs: Vec<Job>,
}

/// `[forecast]`: how far the daemon's dashboard may take its forecast (the `forecast`
/// command has no budget). Past either bound the forecast stops and the dashboard says
/// so, naming the command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastSettings {
    /// Simulated API calls (default `DEFAULT_FORECAST_CALLS`).
    pub max_calls: u64,
    /// Wall time (default `DEFAULT_FORECAST_TIME`).
    pub max_time: Duration,
}

impl Default for ForecastSettings {
    fn default() -> Self {
        ForecastSettings {
            max_calls: DEFAULT_FORECAST_CALLS,
            max_time: DEFAULT_FORECAST_TIME,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiSettings {
    pub base_url: String,
    /// The sender for leads that name none.
    pub own_username: Option<String>,
    pub timeout: Duration,
    /// The only folder local profile images are read from (relative paths in lead files
    /// resolve inside it); `None`: local images are refused.
    pub image_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// API calls in flight, all jobs together.
    pub concurrency: NonZeroU32,
    /// Sustained API calls per second, all jobs together.
    pub per_second: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            concurrency: defaults::CONCURRENCY,
            per_second: defaults::PER_SECOND,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Pause after a 402; doubles on each further 402 up to `out_of_tokens_max`.
    pub out_of_tokens: Duration,
    pub out_of_tokens_max: Duration,
    /// Transient errors: exponential back-off with jitter from this ...
    pub retry_base: Duration,
    /// ... up to this.
    pub retry_max: Duration,
    /// Transient failures before a lead is `failed`.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            out_of_tokens: defaults::OUT_OF_TOKENS,
            out_of_tokens_max: defaults::OUT_OF_TOKENS_MAX,
            retry_base: defaults::RETRY_BASE,
            retry_max: defaults::RETRY_MAX,
            max_attempts: defaults::MAX_ATTEMPTS,
        }
    }
}

/// `[retention]`: how long old rows are kept before they are pruned (each from
/// `RETENTION_RANGE`). What may be pruned at all is in docs/ARCHITECTURE.md ("Retention").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Claimed ticks and job runs, by when they were claimed or started.
    pub runs: Duration,
    /// Outbox messages delivered or acknowledged, by when.
    pub outbox: Duration,
    /// Events sent or dropped, by when.
    pub events: Duration,
    /// Attempts the never-send-twice rule no longer needs, by when they started.
    pub attempts: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            runs: defaults::RETENTION_RUNS,
            outbox: defaults::RETENTION_OUTBOX,
            events: defaults::RETENTION_EVENTS,
            attempts: defaults::RETENTION_ATTEMPTS,
        }
    }
}

/// What a job does with an attempt found in flight after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnknown {
    /// The lead goes to `needs_review`; nothing is re-sent (the default).
    Review,
    /// Send the step once more (the engine may answer `continued` with no text).
    Retry,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub schedule: Schedule,
    /// The zone of the schedule, the daily cap's day and the default send window.
    pub timezone: Tz,
    /// Leads claimed per batch.
    pub batch_size: u32,
    /// At most this many calls in one run.
    pub max_per_run: Option<u32>,
    pub on_unknown: OnUnknown,
    /// `calendars`: no call on a day off of any of them, in the lead's zone (else the
    /// job's), for every kind of job.
    pub calendars: Vec<std::sync::Arc<Calendar>>,
    pub kind: JobKind,
    /// The `[[sender]]`s of the file, and those this job's openers assign leads to.
    pub senders: crate::senders::JobSenders,
    /// The leads an opener or follow-up job selects (`tags`, `exclude_tags`): all by
    /// default. An event job has none: it answers each queued event of its type.
    pub segment: crate::store::Segment,
}

#[derive(Debug, Clone)]
pub enum JobKind {
    Opener {
        /// New conversations per day (in the job's zone).
        daily_cap: Option<u32>,
        send_window: Option<SendWindow>,
    },
    FollowUp {
        /// Quiet time before follow-up 1, 2, ...; the last value repeats.
        quiet_after: Vec<Duration>,
        max_follow_ups: u32,
        send_window: Option<SendWindow>,
    },
    Event {
        event_type: String,
        send_window: Option<SendWindow>,
    },
}

impl JobKind {
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Opener { .. } => "opener",
            JobKind::FollowUp { .. } => "follow_up",
            JobKind::Event { .. } => "event",
        }
    }

    pub fn send_window(&self) -> Option<&SendWindow> {
        match self {
            JobKind::Opener { send_window, .. }
            | JobKind::FollowUp { send_window, .. }
            | JobKind::Event { send_window, .. } => send_window.as_ref(),
        }
    }
}

/// Days and hours in which a job may send, in the lead's zone (else the job's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    /// Monday first.
    pub days: [bool; 7],
    pub from: NaiveTime,
    /// The end, not included; `None` is `"24:00"`, the end of the day.
    pub to: Option<NaiveTime>,
}

impl SendWindow {
    /// Whether a local day and time is inside the window (`from` included, `to` not).
    pub fn contains(&self, day: Weekday, time: NaiveTime) -> bool {
        self.days[day.num_days_from_monday() as usize]
            && time >= self.from
            && self.to.is_none_or(|to| time < to)
    }

    /// The hours as written, `09:00-18:00` or `00:00-24:00`.
    pub fn hours(&self) -> String {
        format!(
            "{}-{}",
            self.from.format("%H:%M"),
            self.to
                .map_or("24:00".to_string(), |t| t.format("%H:%M").to_string())
        )
    }
}

impl Job {
    /// The first of the job's calendars that has `day` (a local date) off.
    pub fn day_off(&self, day: chrono::NaiveDate) -> Option<&Calendar> {
        self.calendars
            .iter()
            .map(|c| &**c)
            .find(|c| c.is_day_off(day))
    }

    /// The quiet time before follow-up `step` (1-based); the last value repeats.
    pub fn quiet_before(&self, step: u32) -> Option<Duration> {
        match &self.kind {
            JobKind::FollowUp { quiet_after, .. } => {
                let i = (step.max(1) as usize - 1).min(quiet_after.len().saturating_sub(1));
                quiet_after.get(i).copied()
            }
            _ => None,
        }
    }
}

// The range of every setting that has no natural one. Each bound keeps the runner's
// arithmetic far from overflow and a typo from taking effect ("300000years" for a pause).
const SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// A year as humantime reads "1year" (365.25 days).
const YEAR: Duration = Duration::from_secs(31_557_600);
/// `[fluidtalk] timeout`: a call must be able to answer, and a stop waits this long.
pub const TIMEOUT_RANGE: (Duration, Duration) = (SECOND, Duration::from_secs(600));
/// `[backoff]` durations.
pub const BACKOFF_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), DAY.saturating_mul(30));
/// Tags in a job's `tags`, and in its `exclude_tags`: a lead carries at most
/// `lead::fields::TAGS`, and a segment is a few of them.
pub const SEGMENT_TAGS: usize = 20;
/// A follow-up job's `quiet_after` steps.
pub const QUIET_RANGE: (Duration, Duration) = (Duration::from_secs(60), YEAR);
/// `[delivery] max_age`: long enough for a few tries, short enough to notice.
pub const MAX_AGE_RANGE: (Duration, Duration) = (Duration::from_secs(60), DAY.saturating_mul(365));
/// `[forecast] max_time`.
pub const FORECAST_TIME_RANGE: (Duration, Duration) = (SECOND, DAY);
/// `[forecast] max_calls`.
pub const FORECAST_CALLS_RANGE: (u32, u32) = (1, 10_000_000);
/// `[retention]` durations: from an hour to a hundred years.
pub const RETENTION_RANGE: (Duration, Duration) =
    (Duration::from_secs(3600), YEAR.saturating_mul(100));
/// `[limits] per_second`.
pub const PER_SECOND_RANGE: (f64, f64) = (0.01, 100_000.0);

/// An event type that no job of the campaign file `path` sends (`Config::check_event_type`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventTypeError {
    #[error(
        "no job sends {event_type:?} events: {path} has no event job, so the event would \
         wait forever (and hold its lead back from openers); add a [[job]] with \
         kind = \"event\" and event_type = {event_type:?} first"
    )]
    NoEventJob { event_type: String, path: PathBuf },
    /// `sent`: the event types the file's event jobs send, comma-separated.
    #[error(
        "no job sends {event_type:?} events (the event jobs of {path} send: {sent}); it would \
         wait forever and hold its lead back from openers"
    )]
    NotSent {
        event_type: String,
        path: PathBuf,
        sent: String,
    },
}

impl Config {
    /// The event types the campaign's event jobs send, in file order.
    pub fn event_types(&self) -> Vec<&str> {
        self.jobs
            .iter()
            .filter_map(|j| match &j.kind {
                JobKind::Event { event_type, .. } => Some(event_type.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Refuses an event type no job sends: such an event would wait forever, and hold its
    /// lead back from openers meanwhile (a typo like `story_reactoin`).
    pub fn check_event_type(&self, event_type: &str) -> Result<(), EventTypeError> {
        let known = self.event_types();
        if known.contains(&event_type) {
            return Ok(());
        }
        let (event_type, path) = (event_type.to_string(), self.path.clone());
        Err(if known.is_empty() {
            EventTypeError::NoEventJob { event_type, path }
        } else {
            EventTypeError::NotSent {
                event_type,
                path,
                sent: known.join(", "),
            }
        })
    }

    /// The lead database: `DATABASE_URL`, else `[database] url`, else the default file.
    pub fn database_url(&self) -> String {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => self
                .database_url
                .clone()
                .unwrap_or_else(|| defaults::DATABASE_URL.to_string()),
        }
    }

    /// `base_url`, checked: `FLUIDTALK_BASE_URL` is outside input like the file (the
    /// file's value was checked when it was read); an error names the variable.
    pub fn checked_base_url(&self) -> Result<String, ConfigError> {
        let url = self.base_url();
        if url == self.fluidtalk.base_url {
            return Ok(url);
        }
        check_base_url(&url).map_err(|why| ConfigError::File {
            path: self.path.clone(),
            message: format!("FLUIDTALK_BASE_URL (which overrides [fluidtalk] base_url): {why}"),
        })
    }

    /// The API client this campaign calls with `key`: the base URL (checked, the
    /// environment's included), the timeout and the default sender.
    pub fn client(
        &self,
        key: crate::fluidtalk::ApiKey,
    ) -> Result<crate::fluidtalk::Client, ClientSetupError> {
        let mut c = crate::fluidtalk::ClientConfig::new(key);
        c.base_url = self.checked_base_url()?;
        c.timeout = self.fluidtalk.timeout;
        c.own_username = self.fluidtalk.own_username.clone();
        Ok(crate::fluidtalk::Client::new(c)?)
    }

    /// `database_url`, checked (`DATABASE_URL` is outside input; the error names it).
    pub fn checked_database_url(&self) -> Result<String, ConfigError> {
        let url = self.database_url();
        check_database_url(&url).map_err(|why| ConfigError::File {
            path: self.path.clone(),
            message: format!("the database URL (DATABASE_URL, else [database] url): {why}"),
        })
    }

    /// The API: `FLUIDTALK_BASE_URL`, else `[fluidtalk] base_url`, else production.
    pub fn base_url(&self) -> String {
        match std::env::var("FLUIDTALK_BASE_URL") {
            Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => self.fluidtalk.base_url.clone(),
        }
    }
}

/// Reads and checks the campaign file. A missing default file gives the defaults and no
/// jobs; a missing named file is an error.
pub fn load(config: &ConfigPath) -> Result<Config, ConfigError> {
    let text = config.read()?.unwrap_or_default();
    parse(&config.path, &text)
}

/// Checks campaign text read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    file::parse(path, text)
}
