//! `jobs.toml`: the campaign file, parsed once into checked, typed values.
//!
//! Unknown keys are errors, and every error names the file, the line and the key and says
//! what was expected (a bad cron expression is quoted back). The API key is never in this
//! file. Precedence for the database: `DATABASE_URL`, then `[database] url`, then
//! `sqlite://fluidtalk-runner.db`; for the API: `FLUIDTALK_BASE_URL`, then
//! `[fluidtalk] base_url`, then the production URL.

use crate::store::DEFAULT_DATABASE_URL;
use std::path::{Path, PathBuf};

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

    /// The file's text, or `None` when the default file does not exist.
    fn read(&self) -> Result<Option<String>, ConfigError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.explicit => Ok(None),
            Err(cause) => Err(ConfigError::Io {
                path: self.path.clone(),
                cause,
            }),
        }
    }
}

/// A TOML error as "line L, column C: what". toml's own text quotes the offending source
/// line, which may be the database URL with its password: it is not used.
pub(crate) fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    // Name the key (never its value, which may be a password): the text before `=` on the
    // error's line, under the last table header above it.
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = text
        .lines()
        .take(line)
        .filter(|l| l.trim_start().starts_with('['))
        .last()
        .map(str::trim);
    match (table, key) {
        (Some(t), Some(k)) => format!("line {line}, column {column}: {t} {k}: {}", e.message()),
        (None, Some(k)) => format!("line {line}, column {column}: {k}: {}", e.message()),
        _ => format!("line {line}, column {column}: {}", e.message()),
    }
}

// ---------------------------------------------------------------------------------------
// The typed configuration.

use crate::schedule::Schedule;
use chrono::{NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// The whole campaign file, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub fluidtalk: ApiSettings,
    /// `[database] url`, if given (the environment may still override it).
    pub database_url: Option<String>,
    pub limits: Limits,
    pub backoff: Backoff,
    pub jobs: Vec<Job>,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub base_url: String,
    /// The sender for leads that name none.
    pub own_username: Option<String>,
    pub timeout: Duration,
    /// The only folder local profile images are read from (relative paths in lead files
    /// resolve inside it); `None`: local images are refused.
    pub image_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// API calls in flight, all jobs together.
    pub concurrency: usize,
    /// Sustained API calls per second, all jobs together.
    pub per_second: f64,
}

#[derive(Debug, Clone, Copy)]
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
    pub kind: JobKind,
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
    pub to: NaiveTime,
}

impl SendWindow {
    /// Whether a local day and time is inside the window (`from` included, `to` not).
    pub fn contains(&self, day: Weekday, time: NaiveTime) -> bool {
        self.days[day.num_days_from_monday() as usize] && time >= self.from && time < self.to
    }
}

impl Job {
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
/// A follow-up job's `quiet_after` steps.
pub const QUIET_RANGE: (Duration, Duration) = (Duration::from_secs(60), YEAR);
/// `[limits] per_second`.
pub const PER_SECOND_RANGE: (f64, f64) = (0.01, 100_000.0);

/// A base URL the client can call: http or https, with a host.
pub fn check_base_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let url = url::Url::parse(text).map_err(|e| {
        format!("{text:?} is not a URL ({e}); expected e.g. \"https://api.fluidtalk.ai\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{text:?} is not an http(s) URL with a host; expected e.g. \"https://api.fluidtalk.ai\""
        ));
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// A database URL the runner can open (the password is never shown back).
pub fn check_database_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let shown = crate::store::redact_url(text);
    if text.is_empty() {
        return Err("is empty; expected e.g. \"sqlite://fluidtalk-runner.db\"".into());
    }
    let lower = text.to_ascii_lowercase();
    if !(lower.starts_with("sqlite:")
        || lower.starts_with("postgres://")
        || lower.starts_with("postgresql://"))
    {
        return Err(format!(
            "{shown:?} is not a database this runner can use; expected sqlite://PATH or \
             postgres://USER@HOST/DB"
        ));
    }
    if lower.contains(":memory:") || lower.contains("mode=memory") {
        return Err(format!(
            "{shown:?} is an in-memory database, which keeps nothing after the command ends; \
             name a file, e.g. \"sqlite://fluidtalk-runner.db\""
        ));
    }
    Ok(text.to_string())
}

// The file as written, before checking. Every table refuses unknown keys.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    fluidtalk: RawApi,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    backoff: RawBackoff,
    #[serde(default, rename = "job")]
    jobs: Vec<RawJob>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    base_url: Option<Spanned<String>>,
    own_username: Option<String>,
    timeout: Option<Spanned<String>>,
    image_dir: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    concurrency: Option<Spanned<i64>>,
    per_second: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    out_of_tokens: Option<Spanned<String>>,
    out_of_tokens_max: Option<Spanned<String>>,
    retry_base: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
    max_attempts: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Spanned<String>,
    kind: Spanned<String>,
    schedule: Spanned<String>,
    timezone: Option<Spanned<String>>,
    batch_size: Option<Spanned<i64>>,
    max_per_run: Option<Spanned<i64>>,
    on_unknown: Option<Spanned<String>>,
    daily_cap: Option<Spanned<i64>>,
    send_window: Option<Spanned<RawWindow>>,
    quiet_after: Option<Spanned<QuietAfter>>,
    max_follow_ups: Option<Spanned<i64>>,
    event_type: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum QuietAfter {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Option<String>,
    from: String,
    to: String,
}

/// Turns byte offsets into line numbers and builds errors that name the key.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line(span.start),
            key: key.into(),
            message: message.into(),
        })
    }

    /// Keys that belong to other kinds of job are mistakes, not options to ignore.
    fn not_for<T>(
        &self,
        field: &Option<Spanned<T>>,
        key: String,
        kind: &str,
    ) -> Result<(), ConfigError> {
        match field {
            Some(v) => {
                let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                };
                self.err(
                    v.span(),
                    key,
                    format!("does not apply to {article} {kind} job"),
                )
            }
            None => Ok(()),
        }
    }

    /// A duration within `range` (every duration setting has one, so no value can
    /// overflow the time arithmetic it feeds).
    fn duration(
        &self,
        v: &Spanned<String>,
        key: &str,
        range: (Duration, Duration),
    ) -> Result<Duration, ConfigError> {
        let (min, max) = range;
        let shown = |d| humantime::format_duration(d).to_string();
        match humantime::parse_duration(v.get_ref().trim()) {
            Ok(d) if d.is_zero() => self.err(v.span(), key, "must be longer than zero"),
            Ok(d) if d < min || d > max => self.err(
                v.span(),
                key,
                format!(
                    "{:?} is out of range; expected from {} to {}",
                    v.get_ref(),
                    shown(min),
                    shown(max)
                ),
            ),
            Ok(d) => Ok(d),
            Err(_) => self.err(
                v.span(),
                key,
                format!(
                    "{:?} is not a duration; expected e.g. \"30s\", \"15m\", \"6h\", \"3d\"",
                    v.get_ref()
                ),
            ),
        }
    }

    fn opt_duration(
        &self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
        range: (Duration, Duration),
    ) -> Result<Duration, ConfigError> {
        v.as_ref()
            .map_or(Ok(default), |v| self.duration(v, key, range))
    }

    fn count(&self, v: &Spanned<i64>, key: &str, min: i64, max: i64) -> Result<u32, ConfigError> {
        let n = *v.get_ref();
        if (min..=max).contains(&n) {
            Ok(n as u32)
        } else {
            self.err(
                v.span(),
                key,
                format!("{n} is out of range; expected a whole number from {min} to {max}"),
            )
        }
    }

    /// The image folder: relative to the campaign file's folder, and a folder that exists.
    fn image_dir(&self, v: &Spanned<String>) -> Result<PathBuf, ConfigError> {
        let key = "[fluidtalk] image_dir";
        let text = v.get_ref().trim();
        if text.is_empty() {
            return self.err(
                v.span(),
                key,
                "is empty; expected a folder, e.g. \"images\"",
            );
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        let dir = base.join(text);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(dir),
            Ok(_) => self.err(v.span(), key, format!("{} is not a folder", dir.display())),
            Err(e) => self.err(
                v.span(),
                key,
                format!("{} cannot be used: {e}", dir.display()),
            ),
        }
    }

    fn timezone(&self, v: &Spanned<String>, key: &str) -> Result<Tz, ConfigError> {
        v.get_ref().trim().parse::<Tz>().or_else(|_| {
            self.err(
                v.span(),
                key,
                format!(
                    "unknown time zone {:?}; expected an IANA name such as \"Europe/Berlin\"",
                    v.get_ref()
                ),
            )
        })
    }

    fn window(&self, v: &Spanned<RawWindow>, key: &str) -> Result<SendWindow, ConfigError> {
        let w = v.get_ref();
        let days = match &w.days {
            None => [true; 7],
            Some(text) => {
                parse_days(text).or_else(|why| self.err(v.span(), format!("{key}.days"), why))?
            }
        };
        let time = |t: &str, k: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M").or_else(|_| {
                self.err(
                    v.span(),
                    format!("{key}.{k}"),
                    format!("{t:?} is not a time; expected HH:MM, e.g. \"09:00\""),
                )
            })
        };
        let from = time(&w.from, "from")?;
        let to = time(&w.to, "to")?;
        if from >= to {
            return self.err(
                v.span(),
                key,
                format!(
                    "from {} must be before to {} (a window does not cross midnight)",
                    w.from, w.to
                ),
            );
        }
        Ok(SendWindow { days, from, to })
    }
}

/// `mon-fri`, `sat,sun`, `mon-wed,fri`, `daily`.
fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let expected = "expected days like \"mon-fri\", \"sat,sun\" or \"daily\"";
    let day = |s: &str| -> Result<usize, String> {
        s.trim()
            .parse::<Weekday>()
            .map(|d| d.num_days_from_monday() as usize)
            .map_err(|_| format!("{s:?} is not a day; {expected}"))
    };
    let text = text.trim().to_ascii_lowercase();
    if text == "daily" || text == "*" {
        return Ok([true; 7]);
    }
    let mut days = [false; 7];
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
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
    pub fn check_event_type(&self, event_type: &str) -> Result<(), String> {
        let known = self.event_types();
        if known.contains(&event_type) {
            return Ok(());
        }
        Err(if known.is_empty() {
            format!(
                "no job sends {event_type:?} events: {} has no event job, so the event would \
                 wait forever (and hold its lead back from openers); add a [[job]] with \
                 kind = \"event\" and event_type = {event_type:?} first",
                self.path.display()
            )
        } else {
            format!(
                "no job sends {event_type:?} events (the event jobs of {} send: {}); it would \
                 wait forever and hold its lead back from openers",
                self.path.display(),
                known.join(", ")
            )
        })
    }

    /// The lead database: `DATABASE_URL`, else `[database] url`, else the default file.
    pub fn database_url(&self) -> String {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => self
                .database_url
                .clone()
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()),
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
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: syntax_message(text, &e),
    })?;
    let c = Checker { path, text };
    let api = &raw.fluidtalk;
    let base_url = match &api.base_url {
        Some(v) => match check_base_url(v.get_ref()) {
            Ok(url) => url,
            Err(why) => return c.err(v.span(), "[fluidtalk] base_url", why),
        },
        None => crate::fluidtalk::DEFAULT_BASE_URL.to_string(),
    };
    let image_dir = match &api.image_dir {
        Some(v) => Some(c.image_dir(v)?),
        None => None,
    };
    let fluidtalk = ApiSettings {
        base_url,
        own_username: api.own_username.clone().filter(|u| !u.trim().is_empty()),
        timeout: c.opt_duration(
            &api.timeout,
            "[fluidtalk] timeout",
            crate::fluidtalk::DEFAULT_TIMEOUT,
            TIMEOUT_RANGE,
        )?,
        image_dir,
    };
    let database_url = match &raw.database.url {
        Some(v) => match check_database_url(v.get_ref()) {
            Ok(url) => Some(url),
            Err(why) => return c.err(v.span(), "[database] url", why),
        },
        None => None,
    };
    let limits = Limits {
        concurrency: raw
            .limits
            .concurrency
            .as_ref()
            .map_or(Ok(8), |v| c.count(v, "[limits] concurrency", 1, 1024))?
            as usize,
        per_second: match &raw.limits.per_second {
            Some(v) if !(PER_SECOND_RANGE.0..=PER_SECOND_RANGE.1).contains(v.get_ref()) => {
                return c.err(
                    v.span(),
                    "[limits] per_second",
                    format!(
                        "{} is out of range; expected a number from {} to {}",
                        v.get_ref(),
                        PER_SECOND_RANGE.0,
                        PER_SECOND_RANGE.1
                    ),
                );
            }
            Some(v) => *v.get_ref(),
            None => 5.0,
        },
    };
    let b = &raw.backoff;
    let backoff = Backoff {
        out_of_tokens: c.opt_duration(
            &b.out_of_tokens,
            "[backoff] out_of_tokens",
            Duration::from_secs(15 * 60),
            BACKOFF_RANGE,
        )?,
        out_of_tokens_max: c.opt_duration(
            &b.out_of_tokens_max,
            "[backoff] out_of_tokens_max",
            Duration::from_secs(6 * 3600),
            BACKOFF_RANGE,
        )?,
        retry_base: c.opt_duration(
            &b.retry_base,
            "[backoff] retry_base",
            Duration::from_secs(30),
            BACKOFF_RANGE,
        )?,
        retry_max: c.opt_duration(
            &b.retry_max,
            "[backoff] retry_max",
            Duration::from_secs(3600),
            BACKOFF_RANGE,
        )?,
        max_attempts: b
            .max_attempts
            .as_ref()
            .map_or(Ok(5), |v| c.count(v, "[backoff] max_attempts", 1, 100))?,
    };
    if backoff.out_of_tokens_max < backoff.out_of_tokens {
        let span = b.out_of_tokens_max.as_ref().map_or(0..0, |v| v.span());
        return c.err(
            span,
            "[backoff] out_of_tokens_max",
            "must not be shorter than out_of_tokens",
        );
    }
    if backoff.retry_max < backoff.retry_base {
        let span = b.retry_max.as_ref().map_or(0..0, |v| v.span());
        return c.err(
            span,
            "[backoff] retry_max",
            "must not be shorter than retry_base",
        );
    }
    let mut jobs: Vec<Job> = Vec::with_capacity(raw.jobs.len());
    for rj in &raw.jobs {
        let job = check_job(&c, rj)?;
        if jobs.iter().any(|j| j.name == job.name) {
            return c.err(
                rj.name.span(),
                format!("[[job]] {:?} name", job.name),
                "is used by an earlier job; job names must be unique",
            );
        }
        jobs.push(job);
    }
    Ok(Config {
        path: path.to_path_buf(),
        fluidtalk,
        database_url,
        limits,
        backoff,
        jobs,
    })
}

fn check_job(c: &Checker<'_>, rj: &RawJob) -> Result<Job, ConfigError> {
    let name = rj.name.get_ref().trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return c.err(
            rj.name.span(),
            "[[job]] name",
            format!(
                "{:?} is not a job name; use letters, digits, - and _",
                rj.name.get_ref()
            ),
        );
    }
    let key = |k: &str| format!("[[job]] {name:?} {k}");
    let timezone = match &rj.timezone {
        Some(v) => c.timezone(v, &key("timezone"))?,
        None => Tz::UTC,
    };
    let schedule = Schedule::parse(rj.schedule.get_ref().trim(), timezone)
        .or_else(|why| c.err(rj.schedule.span(), key("schedule"), why))?;
    let kind_text = rj.kind.get_ref().trim();
    let send_window = rj
        .send_window
        .as_ref()
        .map(|w| c.window(w, &key("send_window")))
        .transpose()?;
    let kind = match kind_text {
        "opener" => {
            c.not_for(&rj.quiet_after, key("quiet_after"), kind_text)?;
            c.not_for(&rj.max_follow_ups, key("max_follow_ups"), kind_text)?;
            c.not_for(&rj.event_type, key("event_type"), kind_text)?;
            JobKind::Opener {
                daily_cap: rj
                    .daily_cap
                    .as_ref()
                    .map(|v| c.count(v, &key("daily_cap"), 1, 1_000_000))
                    .transpose()?,
                send_window,
            }
        }
        "follow_up" => {
            c.not_for(&rj.daily_cap, key("daily_cap"), kind_text)?;
            c.not_for(&rj.event_type, key("event_type"), kind_text)?;
            let Some(q) = &rj.quiet_after else {
                return c.err(
                    rj.kind.span(),
                    key("quiet_after"),
                    "is required for a follow_up job, e.g. [\"24h\", \"3d\", \"7d\"]",
                );
            };
            let texts = match q.get_ref() {
                QuietAfter::One(t) => vec![t.clone()],
                QuietAfter::Many(v) => v.clone(),
            };
            if texts.is_empty() {
                return c.err(
                    q.span(),
                    key("quiet_after"),
                    "is empty; give one duration or a list",
                );
            }
            let mut quiet_after = Vec::with_capacity(texts.len());
            for t in texts {
                quiet_after.push(c.duration(
                    &Spanned::new(q.span(), t),
                    &key("quiet_after"),
                    QUIET_RANGE,
                )?);
            }
            let max_follow_ups = match &rj.max_follow_ups {
                Some(v) => c.count(v, &key("max_follow_ups"), 1, 100)?,
                None => quiet_after.len() as u32,
            };
            JobKind::FollowUp {
                quiet_after,
                max_follow_ups,
                send_window,
            }
        }
        "event" => {
            c.not_for(&rj.daily_cap, key("daily_cap"), kind_text)?;
            c.not_for(&rj.quiet_after, key("quiet_after"), kind_text)?;
            c.not_for(&rj.max_follow_ups, key("max_follow_ups"), kind_text)?;
            let Some(t) = rj
                .event_type
                .as_ref()
                .filter(|t| !t.get_ref().trim().is_empty())
            else {
                return c.err(
                    rj.kind.span(),
                    key("event_type"),
                    "is required for an event job, e.g. \"story_reaction\"",
                );
            };
            JobKind::Event {
                event_type: t.get_ref().trim().to_string(),
                send_window,
            }
        }
        other => {
            return c.err(
                rj.kind.span(),
                key("kind"),
                format!(
                    "{other:?} is not a job kind; expected \"opener\", \"follow_up\" or \"event\""
                ),
            );
        }
    };
    let on_unknown = match rj
        .on_unknown
        .as_ref()
        .map(|v| (v.get_ref().trim(), v.span()))
    {
        None | Some(("review", _)) => OnUnknown::Review,
        Some(("retry", _)) => OnUnknown::Retry,
        Some((other, span)) => {
            return c.err(
                span,
                key("on_unknown"),
                format!("{other:?}; expected \"review\" or \"retry\""),
            );
        }
    };
    Ok(Job {
        batch_size: rj
            .batch_size
            .as_ref()
            .map_or(Ok(50), |v| c.count(v, &key("batch_size"), 1, 10_000))?,
        max_per_run: rj
            .max_per_run
            .as_ref()
            .map(|v| c.count(v, &key("max_per_run"), 1, 10_000_000))
            .transpose()?,
        name,
        schedule,
        timezone,
        on_unknown,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Config, String> {
        parse(Path::new("jobs.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_in_the_repository_parses_as_written() {
        let text = include_str!("../jobs.toml");
        let c = check(text).expect("the example parses");
        assert_eq!(c.jobs.len(), 3);
        assert_eq!(c.limits.concurrency, 8);
        assert_eq!(c.backoff.out_of_tokens, Duration::from_secs(900));
        let fu = &c.jobs[1];
        assert_eq!(fu.quiet_before(1), Some(Duration::from_secs(86_400)));
        assert_eq!(fu.quiet_before(3), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(
            fu.quiet_before(9),
            Some(Duration::from_secs(7 * 86_400)),
            "the last repeats"
        );
        let JobKind::Opener {
            daily_cap,
            send_window,
        } = &c.jobs[0].kind
        else {
            panic!("the first job is the opener")
        };
        assert_eq!(*daily_cap, Some(200));
        let w = send_window.as_ref().expect("a window");
        assert!(w.contains(Weekday::Mon, NaiveTime::from_hms_opt(9, 0, 0).expect("t")));
        assert!(!w.contains(Weekday::Mon, NaiveTime::from_hms_opt(18, 0, 0).expect("t")));
        assert!(!w.contains(Weekday::Sat, NaiveTime::from_hms_opt(12, 0, 0).expect("t")));
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = check("").expect("empty is fine");
        assert!(c.jobs.is_empty());
        assert_eq!(c.fluidtalk.timeout, Duration::from_secs(60));
        assert_eq!(c.backoff.max_attempts, 5);
        assert_eq!(c.database_url, None);
    }

    /// One test per kind of mistake: each error names the file, the line and the key.
    #[test]
    fn each_kind_of_mistake_names_file_line_and_key() {
        let job = |extra: &str| {
            format!("[[job]]\nname = \"j\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n{extra}")
        };
        let cases: Vec<(String, &str)> = vec![
            (
                "[fluidtalk]\ntimeout = 60\n".into(),
                "jobs.toml: line 2, column 11: [fluidtalk] timeout: invalid type",
            ),
            (
                "[limits]\nconcurrancy = 4\n".into(),
                "jobs.toml: line 2, column 1: [limits] concurrancy: unknown field `concurrancy`",
            ),
            ("[limts]\n".into(), "unknown field `limts`"),
            ("[limits]\nconcurrency = \"many\"\n".into(), "line 2"),
            (
                "[limits]\nconcurrency = 0\n".into(),
                "jobs.toml: line 2: [limits] concurrency: 0 is out of range",
            ),
            (
                "[limits]\nper_second = -1.0\n".into(),
                "[limits] per_second: -1 is out of range; expected a number from 0.01 to 100000",
            ),
            // Issue 9: every setting has a range, and no value of any setting can panic.
            (
                "[limits]\nper_second = 1e10\n".into(),
                "jobs.toml: line 2: [limits] per_second: 10000000000 is out of range",
            ),
            (
                "[backoff]\nout_of_tokens = \"300000years\"\n".into(),
                "jobs.toml: line 2: [backoff] out_of_tokens: \"300000years\" is out of range; expected from 100ms to 30days",
            ),
            (
                "[backoff]\nretry_base = \"1000000000years\"\n".into(),
                "[backoff] retry_base: \"1000000000years\" is out of range",
            ),
            (
                "[fluidtalk]\ntimeout = \"1ns\"\n".into(),
                "jobs.toml: line 2: [fluidtalk] timeout: \"1ns\" is out of range; expected from 1s to 10m",
            ),
            (
                "[fluidtalk]\ntimeout = \"5000years\"\n".into(),
                "[fluidtalk] timeout: \"5000years\" is out of range",
            ),
            (
                "[fluidtalk]\nbase_url = \"ftp://api.example\"\n".into(),
                "[fluidtalk] base_url: \"ftp://api.example\" is not an http(s) URL with a host",
            ),
            (
                "[database]\nurl = \"mysql://root@localhost/leads\"\n".into(),
                "jobs.toml: line 2: [database] url: \"mysql://root@localhost/leads\" is not a database this runner can use",
            ),
            (
                "[database]\nurl = \"sqlite::memory:\"\n".into(),
                "[database] url: \"sqlite::memory:\" is an in-memory database",
            ),
            (
                "[fluidtalk]\nimage_dir = \"no/such/folder\"\n".into(),
                "jobs.toml: line 2: [fluidtalk] image_dir: no/such/folder cannot be used",
            ),
            (
                job("").replace(
                    "kind = \"opener\"",
                    "kind = \"follow_up\"\nquiet_after = [\"1d\", \"90000years\"]",
                ),
                "quiet_after: \"90000years\" is out of range; expected from 1m to 1year",
            ),
            (
                "[backoff]\nretry_base = \"soon\"\n".into(),
                "jobs.toml: line 2: [backoff] retry_base: \"soon\" is not a duration",
            ),
            (
                "[backoff]\nout_of_tokens = \"1h\"\nout_of_tokens_max = \"5m\"\n".into(),
                "out_of_tokens_max: must not be shorter",
            ),
            (
                "[fluidtalk]\nbase_url = \"not a url\"\n".into(),
                "[fluidtalk] base_url: \"not a url\" is not a URL",
            ),
            ("[database]\nurl = 42\n".into(), "jobs.toml: line 2"),
            (
                job("").replace("0 0 * * * *", "*/15 * * * *"),
                "jobs.toml: line 4: [[job]] \"j\" schedule: \"*/15 * * * *\" has 5 fields",
            ),
            (
                job("").replace("0 0 * * * *", "0 0 25 * * *"),
                "schedule: \"0 0 25 * * *\" is not a valid cron expression",
            ),
            (
                job("timezone = \"Mars/Base\"\n"),
                "jobs.toml: line 5: [[job]] \"j\" timezone: unknown time zone \"Mars/Base\"",
            ),
            (
                job("").replace("opener", "blast"),
                "kind: \"blast\" is not a job kind",
            ),
            (
                job("quiet_after = \"1d\"\n"),
                "quiet_after: does not apply to an opener job",
            ),
            (job("batch_size = 0\n"), "batch_size: 0 is out of range"),
            (
                job("send_window = { days = \"mon-fry\", from = \"09:00\", to = \"18:00\" }\n"),
                "send_window.days: \"fry\" is not a day",
            ),
            (
                job("send_window = { from = \"18:00\", to = \"09:00\" }\n"),
                "must be before to",
            ),
            (
                job("send_window = { from = \"9am\", to = \"18:00\" }\n"),
                "send_window.from: \"9am\" is not a time",
            ),
            (job("on_unknown = \"resend\"\n"), "on_unknown: \"resend\""),
            (job("colour = \"red\"\n"), "unknown field `colour`"),
            (
                job("").replace("kind = \"opener\"", "kind = \"follow_up\""),
                "quiet_after: is required for a follow_up job",
            ),
            (
                job("").replace("kind = \"opener\"", "kind = \"event\""),
                "event_type: is required for an event job",
            ),
            (
                format!("{}{}", job(""), job("")),
                "jobs.toml: line 6: [[job]] \"j\" name: is used by an earlier job",
            ),
            (
                job("").replace("name = \"j\"", "name = \"my job\""),
                "name: \"my job\" is not a job name",
            ),
            ("[[job]]\nname = \"x\"\n".into(), "missing field"),
        ];
        for (text, want) in cases {
            let err = check(&text).expect_err(&format!("refused:\n{text}"));
            assert!(err.contains(want), "for\n{text}\ngot: {err}\nwant: {want}");
            assert!(err.starts_with("jobs.toml: "), "{err}");
        }
    }

    #[test]
    fn days_read_like_people_write_them() {
        assert_eq!(
            parse_days("mon-fri"),
            Ok([true, true, true, true, true, false, false])
        );
        assert_eq!(
            parse_days("sat,sun"),
            Ok([false, false, false, false, false, true, true])
        );
        assert_eq!(
            parse_days("fri-mon"),
            Ok([true, false, false, false, true, true, true])
        );
        assert_eq!(parse_days("Daily"), Ok([true; 7]));
    }

    #[test]
    fn a_syntax_error_does_not_quote_the_line_with_the_password() {
        let err =
            check("[database]\nurl = \"postgres://app:s3cret@db/leads\n").expect_err("refused");
        assert!(err.starts_with("jobs.toml: line 2, column"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
