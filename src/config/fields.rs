//! The campaign file's values, each a type that checks itself as it is read: toml gives
//! each error the place it came from (`locate` turns that into the line and key), so a
//! value's check is written once, here, and only checks across fields are hand-written
//! (`file`).
//!
//! A value's own complaint is marked (`invalid`) so that it reads as
//! `line L: KEY: what was expected`, like the cross-field checks; toml's complaints about
//! the file's shape (a wrong type, an unknown or missing key) read as
//! `line L, column C: KEY: what toml says`.

use super::{
    BACKOFF_RANGE, FORECAST_CALLS_RANGE, FORECAST_TIME_RANGE, MAX_AGE_RANGE, OnUnknown,
    PER_SECOND_RANGE, QUIET_RANGE, RETENTION_RANGE, TIMEOUT_RANGE,
};
use chrono::{NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// Marks a value's own complaint (see the module docs); never shown.
pub(super) const MARK: char = '\u{1f}';

/// A value's own complaint, for `locate` to show as `line L: KEY: why`.
fn invalid<E: de::Error>(why: impl fmt::Display) -> E {
    E::custom(format!("{MARK}{why}"))
}

/// Why a value was refused, in words that follow `line L: KEY: ` (or the name of the
/// environment variable that gave it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("must be longer than zero")]
    ZeroDuration,
    #[error(
        "{text:?} is out of range; expected from {} to {}",
        humantime::format_duration(*.min),
        humantime::format_duration(*.max)
    )]
    DurationOutOfRange {
        text: String,
        min: Duration,
        max: Duration,
    },
    #[error("{text:?} is not a duration; expected e.g. \"30s\", \"15m\", \"6h\", \"3d\"")]
    NotADuration { text: String },
    #[error("{text:?} is not a URL ({why}); expected e.g. \"https://api.fluidtalk.ai\"")]
    NotAUrl { text: String, why: url::ParseError },
    #[error(
        "{text:?} is not an http(s) URL with a host; expected e.g. \"https://api.fluidtalk.ai\""
    )]
    NotHttp { text: String },
    #[error("is empty; expected e.g. \"sqlite://fluidtalk-runner.db\"")]
    NoDatabase,
    /// `shown` is the URL with its password hidden, as are the next.
    #[error(
        "{shown:?} is not a database this runner can use; expected sqlite://PATH or \
         postgres://USER@HOST/DB"
    )]
    UnknownDatabase { shown: String },
    #[error(
        "{shown:?} is an in-memory database, which keeps nothing after the command ends; \
         name a file, e.g. \"sqlite://fluidtalk-runner.db\""
    )]
    InMemoryDatabase { shown: String },
    #[error("{text:?} is not a day; expected days like \"mon-fri\", \"sat,sun\" or \"daily\"")]
    NotADay { text: String },
}

/// A string value, read then checked by `check`.
fn checked<'de, D, T, E>(d: D, check: impl FnOnce(&str) -> Result<T, E>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    let text = String::deserialize(d)?;
    check(&text).map_err(invalid)
}

const fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A duration like `"30s"`, `"15m"`, `"3d"`, from `MIN_MS` to `MAX_MS` milliseconds
/// (every duration setting has a range, so no value can overflow the time arithmetic it
/// feeds, and a typo like `"300000years"` never takes effect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur<const MIN_MS: u64, const MAX_MS: u64>(pub Duration);

/// `[fluidtalk] timeout`.
pub type TimeoutDur = Dur<{ ms(TIMEOUT_RANGE.0) }, { ms(TIMEOUT_RANGE.1) }>;
/// `[backoff]` durations.
pub type BackoffDur = Dur<{ ms(BACKOFF_RANGE.0) }, { ms(BACKOFF_RANGE.1) }>;
/// A follow-up job's `quiet_after` steps.
pub type QuietDur = Dur<{ ms(QUIET_RANGE.0) }, { ms(QUIET_RANGE.1) }>;
/// `[forecast] max_time`.
pub type ForecastTimeDur = Dur<{ ms(FORECAST_TIME_RANGE.0) }, { ms(FORECAST_TIME_RANGE.1) }>;
/// `[forecast] max_calls`.
pub type ForecastCalls = Count<{ FORECAST_CALLS_RANGE.0 }, { FORECAST_CALLS_RANGE.1 }>;
/// `[retention]` durations.
pub type RetentionDur = Dur<{ ms(RETENTION_RANGE.0) }, { ms(RETENTION_RANGE.1) }>;
/// `[delivery] max_age`.
pub type MaxAgeDur = Dur<{ ms(MAX_AGE_RANGE.0) }, { ms(MAX_AGE_RANGE.1) }>;

/// Reads a duration within `(min, max)`; the error quotes the text as written.
pub fn parse_duration(
    text: &str,
    (min, max): (Duration, Duration),
) -> Result<Duration, ValueError> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err(ValueError::ZeroDuration),
        Ok(d) if d < min || d > max => Err(ValueError::DurationOutOfRange {
            text: text.to_string(),
            min,
            max,
        }),
        Ok(d) => Ok(d),
        Err(_) => Err(ValueError::NotADuration {
            text: text.to_string(),
        }),
    }
}

impl<'de, const MIN_MS: u64, const MAX_MS: u64> Deserialize<'de> for Dur<MIN_MS, MAX_MS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let range = (Duration::from_millis(MIN_MS), Duration::from_millis(MAX_MS));
        checked(d, |t| parse_duration(t, range)).map(Dur)
    }
}

/// A whole number from `MIN` to `MAX`: made only by reading one in that range (the field
/// is private), so `non_zero` holds by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count<const MIN: u32, const MAX: u32>(u32);

impl<const MIN: u32, const MAX: u32> Count<MIN, MAX> {
    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The count as the non-zero number it is (a count whose `MIN` is at least 1).
    pub fn non_zero(self) -> NonZeroU32 {
        const { assert!(MIN >= 1, "this count may be zero") };
        NonZeroU32::new(self.0).unwrap_or(NonZeroU32::MIN)
    }
}

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for Count<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u32::try_from(n) {
            Ok(n) if (MIN..=MAX).contains(&n) => Ok(Count(n)),
            _ => Err(invalid(format!(
                "{n} is out of range; expected a whole number from {MIN} to {MAX}"
            ))),
        }
    }
}

/// `[limits] per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerSecond(pub f64);

impl<'de> Deserialize<'de> for PerSecond {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (min, max) = PER_SECOND_RANGE;
        let n = f64::deserialize(d)?;
        if (min..=max).contains(&n) {
            Ok(PerSecond(n))
        } else {
            Err(invalid(format!(
                "{n} is out of range; expected a number from {min} to {max}"
            )))
        }
    }
}

/// `[http] listen`: an address and port to serve on, e.g. `127.0.0.1:8080`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub std::net::SocketAddr);

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |t| {
            t.trim().parse().map(Listen).map_err(|_| {
                format!("{t:?} is not an address and port; expected e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"")
            })
        })
    }
}

/// An IANA time zone name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(pub Tz);

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |t| {
            t.trim().parse::<Tz>().map(Zone).map_err(|_| {
                format!("unknown time zone {t:?}; expected an IANA name such as \"Europe/Berlin\"")
            })
        })
    }
}

/// The API's base URL: http or https, with a host; no trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(pub String);

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, check_base_url).map(BaseUrl)
    }
}

/// A base URL the client can call: http or https, with a host.
pub fn check_base_url(text: &str) -> Result<String, ValueError> {
    let text = text.trim();
    let url = url::Url::parse(text).map_err(|why| ValueError::NotAUrl {
        text: text.to_string(),
        why,
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ValueError::NotHttp {
            text: text.to_string(),
        });
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// `scheme://host[:port]/…` of a URL: what may be shown of a webhook URL, whose path or
/// query may be a credential (`WebhookUrl`'s `Display` and `Debug`; the only place a
/// webhook URL is cut down for showing).
fn origin(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) if u.host_str().is_some() => {
            let rest = if u.path() == "/" && u.query().is_none() {
                ""
            } else {
                "/…"
            };
            format!("{}{rest}", u.origin().ascii_serialization())
        }
        _ => "(not a URL)".into(),
    }
}

/// `[delivery] webhook_url`: http or https, with a host. It may carry a token in its path
/// or query, so `Display` and `Debug` show only its scheme, host and port (`origin`);
/// the whole URL is only `as_str`, for the request itself.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// The whole URL, path and query included: for the POST, never for a message.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&origin(&self.0))
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({:?})", origin(&self.0))
    }
}

impl std::str::FromStr for WebhookUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || {
            format!(
                "{:?} is not an http(s) URL with a host; expected e.g. \"https://hooks.example.com/fluidtalk\"",
                origin(text)
            )
        };
        let url = url::Url::parse(text).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(bad());
        }
        Ok(WebhookUrl(text.to_string()))
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, str::parse)
    }
}

/// The name of an environment variable: letters, digits and `_`, not starting with a digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvName(pub String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |t| {
            let name = t.trim();
            let ok = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if ok {
                Ok(EnvName(name.to_string()))
            } else {
                Err(format!(
                    "{t:?} is not an environment variable name; expected e.g. \"FLUIDTALK_WEBHOOK_SECRET\""
                ))
            }
        })
    }
}

/// A database URL the runner can open.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", crate::store::redact_url(&self.0))
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, check_database_url).map(DatabaseUrl)
    }
}

/// A database URL the runner can open (the password is never shown back).
pub fn check_database_url(text: &str) -> Result<String, ValueError> {
    let text = text.trim();
    let shown = crate::store::redact_url(text);
    if text.is_empty() {
        return Err(ValueError::NoDatabase);
    }
    let lower = text.to_ascii_lowercase();
    if !(lower.starts_with("sqlite:")
        || lower.starts_with("postgres://")
        || lower.starts_with("postgresql://"))
    {
        return Err(ValueError::UnknownDatabase { shown });
    }
    if lower.contains(":memory:") || lower.contains("mode=memory") {
        return Err(ValueError::InMemoryDatabase { shown });
    }
    Ok(text.to_string())
}

/// A job's name: letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobName(pub String);

impl<'de> Deserialize<'de> for JobName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |t| {
            let name = t.trim();
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if ok {
                Ok(JobName(name.to_string()))
            } else {
                Err(format!(
                    "{t:?} is not a job name; use letters, digits, - and _"
                ))
            }
        })
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Opener,
    FollowUp,
    Event,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Opener => "opener",
            Kind::FollowUp => "follow_up",
            Kind::Event => "event",
        }
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |t| match t.trim() {
            "opener" => Ok(Kind::Opener),
            "follow_up" => Ok(Kind::FollowUp),
            "event" => Ok(Kind::Event),
            other => Err(format!(
                "{other:?} is not a job kind; expected \"opener\", \"follow_up\" or \"event\""
            )),
        })
    }
}

impl<'de> Deserialize<'de> for OnUnknown {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |t| match t.trim() {
            "review" => Ok(OnUnknown::Review),
            "retry" => Ok(OnUnknown::Retry),
            other => Err(format!("{other:?}; expected \"review\" or \"retry\"")),
        })
    }
}

/// Quiet time before follow-up 1, 2, ...: one duration or a non-empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietAfter(pub Vec<Duration>);

impl<'de> Deserialize<'de> for QuietAfter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Steps;
        impl<'de> Visitor<'de> for Steps {
            type Value = QuietAfter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration or a list of durations, e.g. [\"24h\", \"3d\", \"7d\"]")
            }
            fn visit_str<E: de::Error>(self, t: &str) -> Result<QuietAfter, E> {
                parse_duration(t, QUIET_RANGE)
                    .map(|d| QuietAfter(vec![d]))
                    .map_err(invalid)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<QuietAfter, A::Error> {
                let mut steps = Vec::new();
                while let Some(Dur(d)) = seq.next_element::<QuietDur>()? {
                    steps.push(d);
                }
                if steps.is_empty() {
                    return Err(invalid("is empty; give one duration or a list"));
                }
                Ok(QuietAfter(steps))
            }
        }
        d.deserialize_any(Steps)
    }
}

/// Days of the week, Monday first: `mon-fri`, `sat,sun`, `mon-wed,fri`, `daily`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(pub [bool; 7]);

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, parse_days).map(Days)
    }
}

/// `mon-fri`, `sat,sun`, `mon-wed,fri`, `daily`.
pub fn parse_days(text: &str) -> Result<[bool; 7], ValueError> {
    let day = |s: &str| -> Result<usize, ValueError> {
        s.trim()
            .parse::<Weekday>()
            .map(|d| d.num_days_from_monday() as usize)
            .map_err(|_| ValueError::NotADay {
                text: s.to_string(),
            })
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

/// A send window's end: a time of day, or `"24:00"` (`None`), the end of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowEnd(pub Option<NaiveTime>);

impl<'de> Deserialize<'de> for WindowEnd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |t| {
            if t.trim() == "24:00" {
                return Ok(WindowEnd(None));
            }
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map(|t| WindowEnd(Some(t)))
                .map_err(|_| {
                    format!("{t:?} is not a time; expected HH:MM, e.g. \"18:00\", or \"24:00\"")
                })
        })
    }
}

/// A time of day, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HhMm(pub NaiveTime);

impl<'de> Deserialize<'de> for HhMm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |t| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map(HhMm)
                .map_err(|_| format!("{t:?} is not a time; expected HH:MM, e.g. \"09:00\""))
        })
    }
}
