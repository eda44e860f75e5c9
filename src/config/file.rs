//! The campaign file as written, with typed values (`fields`), and the checks that span
//! several of them: the schedule's zone, what each kind of job needs and refuses, backoff
//! ranges that must not cross, unique job names, the image folder on disk.

use super::calendar::{self, Calendar};
use super::fields::{
    BackoffDur, BaseUrl, Count, DatabaseUrl, Days, ForecastCalls, ForecastTimeDur, HhMm, JobName,
    Kind, PerSecond, QuietAfter, RetentionDur, TimeoutDur, WindowEnd, Zone,
};
use super::{
    ApiSettings, Backoff, Config, ConfigError, Job, JobKind, Limits, OnUnknown, Retention,
    SEGMENT_TAGS, SendWindow, defaults, locate,
};
use crate::schedule::Schedule;
use crate::senders::{JobSenders, MAX_SENDERS, SenderBook, SenderRule, Warmup};
use crate::store::Segment;
use chrono_tz::Tz;
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

// Every table refuses unknown keys.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    fluidtalk: Api,
    #[serde(default)]
    database: Database,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    backoff: RawBackoff,
    #[serde(default)]
    http: super::http::RawHttp,
    delivery: Option<Spanned<super::delivery::RawDelivery>>,
    #[serde(default)]
    forecast: RawForecast,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default, rename = "sender")]
    senders: Vec<Spanned<RawSender>>,
    #[serde(default, rename = "calendar")]
    calendars: Vec<RawCalendar>,
    #[serde(default, rename = "job")]
    jobs: Vec<RawJob>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSender {
    username: Spanned<String>,
    daily_cap: Option<Count<1, 1_000_000>>,
    timezone: Option<Zone>,
    warmup: Option<Spanned<RawWarmup>>,
    min_gap: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWarmup {
    start: Count<1, 1_000_000>,
    step: Count<1, 1_000_000>,
    every: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    name: Spanned<String>,
    dates: Option<Spanned<Vec<Spanned<String>>>>,
    ics: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Api {
    base_url: Option<BaseUrl>,
    own_username: Option<String>,
    timeout: Option<TimeoutDur>,
    image_dir: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Database {
    url: Option<DatabaseUrl>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    concurrency: Option<Count<1, 1024>>,
    per_second: Option<PerSecond>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawForecast {
    max_calls: Option<ForecastCalls>,
    max_time: Option<ForecastTimeDur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    out_of_tokens: Option<Spanned<BackoffDur>>,
    out_of_tokens_max: Option<Spanned<BackoffDur>>,
    retry_base: Option<Spanned<BackoffDur>>,
    retry_max: Option<Spanned<BackoffDur>>,
    max_attempts: Option<Count<1, 100>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    runs: Option<RetentionDur>,
    outbox: Option<RetentionDur>,
    events: Option<RetentionDur>,
    attempts: Option<RetentionDur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Spanned<JobName>,
    kind: Spanned<Kind>,
    schedule: Spanned<String>,
    timezone: Option<Zone>,
    batch_size: Option<Count<1, 10_000>>,
    max_per_run: Option<Count<1, 10_000_000>>,
    on_unknown: Option<OnUnknown>,
    daily_cap: Option<Spanned<Count<1, 1_000_000>>>,
    send_window: Option<Spanned<RawWindow>>,
    quiet_after: Option<Spanned<QuietAfter>>,
    max_follow_ups: Option<Spanned<Count<1, 100>>>,
    event_type: Option<Spanned<String>>,
    senders: Option<Spanned<Vec<Spanned<String>>>>,
    tags: Option<Spanned<Vec<String>>>,
    exclude_tags: Option<Spanned<Vec<String>>>,
    calendars: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Option<Days>,
    from: HhMm,
    to: WindowEnd,
}

/// Builds errors that name the file, the line and the key.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn err<T>(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: locate::line_column(self.text, span.start).0,
            key: key.into(),
            message: message.into(),
        })
    }

    /// Keys that belong to other kinds of job are mistakes, not options to ignore.
    fn not_for<T>(
        &self,
        field: &Option<Spanned<T>>,
        key: String,
        kind: Kind,
    ) -> Result<(), ConfigError> {
        match field {
            Some(v) => {
                let article = if kind == Kind::Opener || kind == Kind::Event {
                    "an"
                } else {
                    "a"
                };
                self.err(
                    v.span(),
                    key,
                    format!("does not apply to {article} {} job", kind.name()),
                )
            }
            None => Ok(()),
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
        let dir = self.path.parent().unwrap_or(Path::new(".")).join(text);
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

    /// Of two settings, `long` must not be shorter than `short` (either may be a default,
    /// so the error is on the one the file gives).
    fn in_order(
        &self,
        (short, short_key): (&Option<Spanned<BackoffDur>>, &str),
        (long, long_key): (&Option<Spanned<BackoffDur>>, &str),
        values: (Duration, Duration),
    ) -> Result<(), ConfigError> {
        if values.1 >= values.0 {
            return Ok(());
        }
        let shown = |d| humantime::format_duration(d).to_string();
        match (long, short) {
            (Some(l), _) => self.err(
                l.span(),
                format!("[backoff] {long_key}"),
                format!("must not be shorter than {short_key} ({})", shown(values.0)),
            ),
            (None, Some(s)) => self.err(
                s.span(),
                format!("[backoff] {short_key}"),
                format!(
                    "must not be longer than {long_key} ({} when not set)",
                    shown(values.1)
                ),
            ),
            (None, None) => Ok(()),
        }
    }
}

/// Checks campaign text read from `path`.
pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: File = toml::from_str(text).map_err(|e| locate::config_error(path, text, &e))?;
    let c = Checker { path, text };
    let api = &raw.fluidtalk;
    let fluidtalk = ApiSettings {
        base_url: api
            .base_url
            .clone()
            .map_or_else(|| defaults::BASE_URL.to_string(), |u| u.0),
        // Trimmed as a `[[sender]]`'s username is: "@main " must find the rules of "@main".
        own_username: api
            .own_username
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        timeout: api.timeout.map_or(defaults::API_TIMEOUT, |d| d.0),
        image_dir: api.image_dir.as_ref().map(|v| c.image_dir(v)).transpose()?,
    };
    let l = Limits::default();
    let limits = Limits {
        concurrency: raw
            .limits
            .concurrency
            .map_or(l.concurrency, Count::non_zero),
        per_second: raw.limits.per_second.map_or(l.per_second, |n| n.0),
    };
    let b = &raw.backoff;
    let or = |v: &Option<Spanned<BackoffDur>>, default: Duration| {
        v.as_ref().map_or(default, |d| d.get_ref().0)
    };
    let d = Backoff::default();
    let backoff = Backoff {
        out_of_tokens: or(&b.out_of_tokens, d.out_of_tokens),
        out_of_tokens_max: or(&b.out_of_tokens_max, d.out_of_tokens_max),
        retry_base: or(&b.retry_base, d.retry_base),
        retry_max: or(&b.retry_max, d.retry_max),
        max_attempts: b.max_attempts.map_or(d.max_attempts, |n| n.get()),
    };
    c.in_order(
        (&b.out_of_tokens, "out_of_tokens"),
        (&b.out_of_tokens_max, "out_of_tokens_max"),
        (backoff.out_of_tokens, backoff.out_of_tokens_max),
    )?;
    c.in_order(
        (&b.retry_base, "retry_base"),
        (&b.retry_max, "retry_max"),
        (backoff.retry_base, backoff.retry_max),
    )?;
    let r = &raw.retention;
    let kept = Retention::default();
    let retention = Retention {
        runs: r.runs.map_or(kept.runs, |d| d.0),
        outbox: r.outbox.map_or(kept.outbox, |d| d.0),
        events: r.events.map_or(kept.events, |d| d.0),
        attempts: r.attempts.map_or(kept.attempts, |d| d.0),
    };
    let book = std::sync::Arc::new(senders(&c, &raw.senders, fluidtalk.own_username.clone())?);
    let calendars = check_calendars(&c, &raw.calendars)?;
    let mut jobs: Vec<Job> = Vec::with_capacity(raw.jobs.len());
    for rj in &raw.jobs {
        let job = check_job(&c, rj, &book, &calendars)?;
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
        database_url: raw.database.url.map(|u| u.0),
        limits,
        backoff,
        http: super::http::check(path, text, &raw.http)?,
        delivery: raw
            .delivery
            .as_ref()
            .map(|d| super::delivery::check(path, text, d))
            .transpose()?,
        forecast: super::ForecastSettings {
            max_calls: raw
                .forecast
                .max_calls
                .map_or(defaults::FORECAST_CALLS, |n| u64::from(n.get())),
            max_time: raw
                .forecast
                .max_time
                .map_or(defaults::FORECAST_TIME, |d| d.0),
        },
        retention,
        senders: book,
        calendars,
        jobs,
    })
}

/// The `[[sender]]` tables: unique usernames, a warm-up only under a cap, gaps in range.
fn senders(
    c: &Checker<'_>,
    raw: &[Spanned<RawSender>],
    default: Option<String>,
) -> Result<SenderBook, ConfigError> {
    let mut book = SenderBook {
        rules: Default::default(),
        default,
    };
    if raw.len() > MAX_SENDERS {
        return c.err(
            raw[MAX_SENDERS].span(),
            "[[sender]]",
            format!("{} senders; the limit is {MAX_SENDERS}", raw.len()),
        );
    }
    for rs in raw {
        let r = rs.get_ref();
        let username = crate::lead::fields::own_username(r.username.get_ref().trim())
            .or_else(|e| c.err(r.username.span(), "[[sender]] username", e.to_string()))?;
        if username.is_empty() {
            return c.err(
                r.username.span(),
                "[[sender]] username",
                "must not be empty",
            );
        }
        let key = |k: &str| format!("[[sender]] {username:?} {k}");
        if book.rules.contains_key(&username) {
            return c.err(
                r.username.span(),
                key("username"),
                "is used by an earlier sender; usernames must be unique",
            );
        }
        let daily_cap = r.daily_cap.map(|n| n.get());
        let warmup = match &r.warmup {
            None => None,
            Some(w) => {
                let Some(cap) = daily_cap else {
                    return c.err(
                        w.span(),
                        key("warmup"),
                        "ramps up to daily_cap: set daily_cap too",
                    );
                };
                let raw_w = w.get_ref();
                if raw_w.start.get() > cap {
                    return c.err(
                        w.span(),
                        key("warmup"),
                        format!("start {} is above daily_cap {cap}", raw_w.start.get()),
                    );
                }
                let every = whole_days(raw_w.every.get_ref())
                    .or_else(|why| c.err(raw_w.every.span(), key("warmup.every"), why))?;
                Some(Warmup {
                    start: raw_w.start.get(),
                    step: raw_w.step.get(),
                    every_days: every,
                })
            }
        };
        let min_gap = match &r.min_gap {
            None => Duration::ZERO,
            Some(g) => gap(g.get_ref()).or_else(|why| c.err(g.span(), key("min_gap"), why))?,
        };
        book.rules.insert(
            username.clone(),
            std::sync::Arc::new(SenderRule {
                username,
                daily_cap,
                timezone: r.timezone.map_or(Tz::UTC, |z| z.0),
                warmup,
                min_gap,
            }),
        );
    }
    Ok(book)
}

/// A warm-up's `every`: whole days, from 1d to 365d.
fn whole_days(text: &str) -> Result<u32, String> {
    const DAY: u64 = 24 * 3600;
    match humantime::parse_duration(text.trim()) {
        Ok(d)
            if d.as_secs() % DAY == 0
                && d.subsec_nanos() == 0
                && (1..=365).contains(&(d.as_secs() / DAY)) =>
        {
            Ok((d.as_secs() / DAY) as u32)
        }
        Ok(_) => Err(format!(
            "{text:?} is not a whole number of days from 1d to 365d (the ramp steps on the sender's days)"
        )),
        Err(_) => Err(format!(
            "{text:?} is not a duration; expected e.g. \"1d\" or \"7d\""
        )),
    }
}

/// A sender's `min_gap`: from 0s to 24h.
fn gap(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d <= Duration::from_secs(24 * 3600) => Ok(d),
        Ok(_) => Err(format!("{text:?} is out of range; expected from 0s to 24h")),
        Err(_) => Err(format!(
            "{text:?} is not a duration; expected e.g. \"90s\" or \"5m\""
        )),
    }
}

/// A job's `senders`: configured senders, named once each.
fn job_senders(
    c: &Checker<'_>,
    raw: &Option<Spanned<Vec<Spanned<String>>>>,
    book: &std::sync::Arc<SenderBook>,
    key: &str,
) -> Result<JobSenders, ConfigError> {
    let mut of_job: Vec<std::sync::Arc<SenderRule>> = Vec::new();
    for name in raw.iter().flat_map(|v| v.get_ref()) {
        let Some(rule) = book.get(name.get_ref().trim()) else {
            let known: Vec<&str> = book.rules.keys().map(String::as_str).collect();
            return c.err(
                name.span(),
                key,
                format!(
                    "{:?} is not a [[sender]] of this file (senders: {})",
                    name.get_ref(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        };
        if of_job.iter().any(|r| r.username == rule.username) {
            return c.err(name.span(), key, format!("names {:?} twice", rule.username));
        }
        of_job.push(rule.clone());
    }
    if let Some(v) = raw
        && v.get_ref().is_empty()
    {
        return c.err(
            v.span(),
            key,
            "is empty; name at least one [[sender]] or leave it out",
        );
    }
    Ok(JobSenders {
        book: book.clone(),
        of_job,
    })
}

/// The `[[calendar]]` tables: unique names, dates that are dates, an `ics` file that can be
/// read (relative to the campaign file), within the bounds of `calendar`.
fn check_calendars(
    c: &Checker<'_>,
    raw: &[RawCalendar],
) -> Result<Vec<Arc<Calendar>>, ConfigError> {
    let mut out: Vec<Arc<Calendar>> = Vec::with_capacity(raw.len());
    for (i, rc) in raw.iter().enumerate() {
        let name = rc.name.get_ref().trim();
        if i >= calendar::MAX_CALENDARS {
            return c.err(
                rc.name.span(),
                "[[calendar]]",
                format!("more than {} calendars", calendar::MAX_CALENDARS),
            );
        }
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !ok {
            return c.err(
                rc.name.span(),
                "[[calendar]] name",
                format!(
                    "{:?} is not a calendar name; use 1 to 64 letters, digits, - and _",
                    rc.name.get_ref()
                ),
            );
        }
        if out.iter().any(|k| k.name == name) {
            return c.err(
                rc.name.span(),
                format!("[[calendar]] {name:?} name"),
                "is used by an earlier calendar; calendar names must be unique",
            );
        }
        let key = |k: &str| format!("[[calendar]] {name:?} {k}");
        if rc.dates.is_none() && rc.ics.is_none() {
            return c.err(
                rc.name.span(),
                key("dates"),
                "a calendar needs dates = [\"2026-12-25\", ...] or ics = \"holidays.ics\", or both",
            );
        }
        let mut cal = Calendar::of_dates(name, []);
        if let Some(dates) = &rc.dates {
            let list = dates.get_ref();
            if list.len() > calendar::MAX_DAYS {
                return c.err(
                    dates.span(),
                    key("dates"),
                    format!("lists {} dates; at most {}", list.len(), calendar::MAX_DAYS),
                );
            }
            let mut days = Vec::with_capacity(list.len());
            for (j, d) in list.iter().enumerate() {
                let text = d.get_ref().trim();
                match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                    Ok(day) if text.len() == 10 => days.push(day),
                    _ => {
                        return c.err(
                            d.span(),
                            key(&format!("dates[{j}]")),
                            format!(
                                "{:?} is not a date; expected YYYY-MM-DD, e.g. \"2026-12-25\"",
                                d.get_ref()
                            ),
                        );
                    }
                }
            }
            cal = Calendar::of_dates(name, days);
        }
        if let Some(ics) = &rc.ics {
            let text = ics.get_ref().trim();
            if text.is_empty() {
                return c.err(
                    ics.span(),
                    key("ics"),
                    "is empty; expected a file, e.g. \"holidays/de.ics\"",
                );
            }
            let path = c.path.parent().unwrap_or(Path::new(".")).join(text);
            let body =
                calendar::read_ics(&path).or_else(|why| c.err(ics.span(), key("ics"), why))?;
            cal.add_ics(&path.display().to_string(), &body)
                .or_else(|why| c.err(ics.span(), key("ics"), why))?;
        }
        if cal.days() > calendar::MAX_DAYS {
            return c.err(
                rc.name.span(),
                key("dates"),
                format!(
                    "more than {} days off (dates and ics together)",
                    calendar::MAX_DAYS
                ),
            );
        }
        out.push(Arc::new(cal));
    }
    Ok(out)
}

fn check_job(
    c: &Checker<'_>,
    rj: &RawJob,
    book: &std::sync::Arc<SenderBook>,
    calendars: &[Arc<Calendar>],
) -> Result<Job, ConfigError> {
    let name = rj.name.get_ref().0.clone();
    let key = |k: &str| format!("[[job]] {name:?} {k}");
    let timezone = rj.timezone.map_or(Tz::UTC, |z| z.0);
    let schedule = Schedule::parse(rj.schedule.get_ref().trim(), timezone)
        .or_else(|why| c.err(rj.schedule.span(), key("schedule"), why.to_string()))?;
    let send_window = rj
        .send_window
        .as_ref()
        .map(|w| window(c, w, &key("send_window")))
        .transpose()?;
    let mut job_calendars: Vec<Arc<Calendar>> = Vec::new();
    for (i, n) in rj
        .calendars
        .iter()
        .flat_map(|l| l.get_ref().iter())
        .enumerate()
    {
        let wanted = n.get_ref().trim();
        let Some(cal) = calendars.iter().find(|k| k.name == wanted) else {
            let known: Vec<&str> = calendars.iter().map(|k| k.name.as_str()).collect();
            return c.err(
                n.span(),
                key(&format!("calendars[{i}]")),
                if known.is_empty() {
                    format!("no [[calendar]] is named {wanted:?}: the file defines none")
                } else {
                    format!(
                        "no [[calendar]] is named {wanted:?} (calendars: {})",
                        known.join(", ")
                    )
                },
            );
        };
        if !job_calendars.iter().any(|k| k.name == cal.name) {
            job_calendars.push(cal.clone());
        }
    }
    let kind = *rj.kind.get_ref();
    let kind = match kind {
        Kind::Opener => {
            c.not_for(&rj.quiet_after, key("quiet_after"), kind)?;
            c.not_for(&rj.max_follow_ups, key("max_follow_ups"), kind)?;
            c.not_for(&rj.event_type, key("event_type"), kind)?;
            JobKind::Opener {
                daily_cap: rj.daily_cap.as_ref().map(|n| n.get_ref().get()),
                send_window,
            }
        }
        Kind::FollowUp => {
            c.not_for(&rj.daily_cap, key("daily_cap"), kind)?;
            c.not_for(&rj.senders, key("senders"), kind)?;
            c.not_for(&rj.event_type, key("event_type"), kind)?;
            let Some(q) = &rj.quiet_after else {
                return c.err(
                    rj.kind.span(),
                    key("quiet_after"),
                    "is required for a follow_up job, e.g. [\"24h\", \"3d\", \"7d\"]",
                );
            };
            let quiet_after = q.get_ref().0.clone();
            JobKind::FollowUp {
                max_follow_ups: rj
                    .max_follow_ups
                    .as_ref()
                    .map_or(quiet_after.len() as u32, |n| n.get_ref().get()),
                quiet_after,
                send_window,
            }
        }
        Kind::Event => {
            c.not_for(&rj.daily_cap, key("daily_cap"), kind)?;
            c.not_for(&rj.senders, key("senders"), kind)?;
            // An event job answers each queued event of its type: one it passed over would
            // stay queued and hold its lead's opener back for good.
            c.not_for(&rj.tags, key("tags"), kind)?;
            c.not_for(&rj.exclude_tags, key("exclude_tags"), kind)?;
            c.not_for(&rj.quiet_after, key("quiet_after"), kind)?;
            c.not_for(&rj.max_follow_ups, key("max_follow_ups"), kind)?;
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
    };
    let senders = job_senders(c, &rj.senders, book, &key("senders"))?;
    let segment = segment(c, rj, &key)?;
    Ok(Job {
        senders,
        segment,
        batch_size: rj.batch_size.map_or(defaults::BATCH_SIZE, |n| n.get()),
        max_per_run: rj.max_per_run.map(|n| n.get()),
        name,
        schedule,
        timezone,
        on_unknown: rj.on_unknown.unwrap_or(OnUnknown::Review),
        calendars: job_calendars,
        kind,
    })
}

/// A job's segment: `tags` and `exclude_tags`, each checked as a lead's tags are (trimmed,
/// at most `TAG_CHARS` characters, no control characters), none empty, each once, at most
/// `SEGMENT_TAGS` of each, and no tag in both.
fn segment(
    c: &Checker<'_>,
    rj: &RawJob,
    key: &dyn Fn(&str) -> String,
) -> Result<Segment, ConfigError> {
    let list = |v: &Option<Spanned<Vec<String>>>, name: &str| -> Result<Vec<String>, ConfigError> {
        let Some(v) = v else {
            return Ok(Vec::new());
        };
        if v.get_ref().iter().any(|t| t.trim().is_empty()) {
            return c.err(v.span(), key(name), "has an empty tag");
        }
        if v.get_ref().len() > SEGMENT_TAGS {
            return c.err(
                v.span(),
                key(name),
                format!(
                    "has {} tags; the limit is {SEGMENT_TAGS}",
                    v.get_ref().len()
                ),
            );
        }
        let tags = crate::lead::fields::tags(v.get_ref().clone())
            .or_else(|e| c.err(v.span(), key(name), e.to_string()))?;
        let mut once: Vec<String> = Vec::with_capacity(tags.len());
        for t in tags {
            if once.contains(&t) {
                return c.err(v.span(), key(name), format!("has {t:?} twice"));
            }
            once.push(t);
        }
        Ok(once)
    };
    let tags = list(&rj.tags, "tags")?;
    let exclude_tags = list(&rj.exclude_tags, "exclude_tags")?;
    if let (Some(t), Some(v)) = (
        exclude_tags.iter().find(|t| tags.contains(t)),
        &rj.exclude_tags,
    ) {
        return c.err(
            v.span(),
            key("exclude_tags"),
            format!("{t:?} is also in tags: no lead could be in this job's segment"),
        );
    }
    Ok(Segment { tags, exclude_tags })
}

/// A send window: its hours must not cross midnight.
fn window(c: &Checker<'_>, v: &Spanned<RawWindow>, key: &str) -> Result<SendWindow, ConfigError> {
    let w = v.get_ref();
    let (from, to) = (w.from.0, w.to.0);
    if to.is_some_and(|to| from >= to) {
        return c.err(
            v.span(),
            key,
            format!(
                "from {} must be before to {} (a window does not cross midnight; \"24:00\" \
                 ends it at midnight)",
                from.format("%H:%M"),
                to.map_or("24:00".into(), |t| t.format("%H:%M").to_string())
            ),
        );
    }
    Ok(SendWindow {
        days: w.days.map_or([true; 7], |d| d.0),
        from,
        to,
    })
}
