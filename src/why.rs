//! Why a run sent nothing, or no more: one `Reason` per cause, named the same in the
//! text (`daily_cap 200/200 reached, resets ...`) and in JSON (`{"reason": "daily_cap",
//! ...}`). `run`, `run --dry-run` and the daemon's run records give them.

use crate::config::{Job, JobKind, SendWindow};
use crate::plan::{self, Cursor};
use crate::store::{RunnerStore, StoreError};
use chrono::{DateTime, Datelike, Days, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// One cause of calls not made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reason {
    /// Its name: `daily_cap`, `max_per_run`, `send_window`, `day_off`, `sender_held`,
    /// `paused`, `job_paused`, `not_created_yet` or `nothing_due`; the text starts with it.
    pub reason: String,
    /// How many: calls counted against the cap, leads passed over, leads not yet created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The cap or limit reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<u64>,
    /// When it ends (RFC 3339, in `zone`): the cap resets, the window opens, the pause ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The time zone `until` (or a day off) is judged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// In words, as the text prints it.
    pub text: String,
}

impl Reason {
    fn new(reason: &str, text: String) -> Self {
        Reason {
            reason: reason.into(),
            count: None,
            cap: None,
            until: None,
            zone: None,
            calendar: None,
            sender: None,
            text,
        }
    }
}

/// `t` in `tz`, as RFC 3339 with its offset (`2026-12-08T00:00:00+01:00`).
pub fn stamp(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// A stored pause (or a runner's hold) stops the job until `until`.
pub fn paused(scope: &str, until: DateTime<Utc>, why: &str) -> Reason {
    let until_s = stamp(until, Tz::UTC);
    let mut r = Reason::new("paused", format!("paused: {scope} until {until_s} ({why})"));
    r.until = Some(until_s);
    r.zone = Some("UTC".into());
    r
}

/// A person paused the job (`job pause`): no call until `until`, or until resumed.
pub fn job_paused(p: &crate::store::JobPause) -> Reason {
    let mut r = Reason::new("job_paused", format!("job_paused: {}", p.describe()));
    if let Some(u) = p.until {
        r.until = Some(stamp(u, Tz::UTC));
        r.zone = Some("UTC".into());
    }
    r
}

/// Leads created after `at`: a dry run at a past instant does not see them.
pub fn not_created_yet(n: u64, at: DateTime<Utc>) -> Reason {
    let at_s = stamp(at, Tz::UTC);
    let mut r = Reason::new(
        "not_created_yet",
        format!("not_created_yet: {n} lead(s) were created after {at_s} and are not counted"),
    );
    r.count = Some(n);
    r
}

/// No lead is due, and nothing else held one back.
pub fn nothing_due() -> Reason {
    Reason::new("nothing_due", "nothing_due: no lead due".into())
}

/// The first instant after `now` at which `window` opens in `tz` (within the next week).
/// Written against `contains` and `days`/`from` only.
pub fn next_opening(window: &SendWindow, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let today = now.with_timezone(&tz).date_naive();
    (0..=7u64).find_map(|d| {
        let day = today.checked_add_days(Days::new(d))?;
        if !window.contains(day.weekday(), window.from) {
            return None;
        }
        let t = first_instant_at_or_after(tz, day.and_time(window.from))?;
        (t > now).then_some(t)
    })
}

/// The first instant whose local time in `tz` is `local` or, when the clocks skip over it
/// (spring forward), the first after the gap: a window from 02:30 opens at 03:00 that night.
fn first_instant_at_or_after(tz: Tz, local: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    // Gaps are at most a few hours; step a minute at a time through them.
    (0..=24 * 60).find_map(|m| {
        let t = local.checked_add_signed(chrono::Duration::minutes(m))?;
        let t = tz.from_local_datetime(&t).earliest()?;
        Some(t.with_timezone(&Utc))
    })
}

/// The next start of a day in `tz` after the one containing `now` (a daily cap resets).
pub fn next_day_start(now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    // Days are 23 to 25 hours long: 36 hours after a day's start is in the next one.
    plan::day_start(plan::day_start(now, tz) + chrono::Duration::hours(36), tz)
}

/// What held calls back when the planner stopped at `now` with `cursor`: the daily cap
/// and `max_per_run` reached, leads outside their window, on a day off or held by their
/// sender. Reads the day's calls once (a job with a daily cap).
pub async fn after_plan(
    store: &dyn RunnerStore,
    job: &Job,
    now: DateTime<Utc>,
    cursor: &Cursor,
) -> Result<Vec<Reason>, StoreError> {
    let mut out = Vec::new();
    if let JobKind::Opener {
        daily_cap: Some(cap),
        ..
    } = &job.kind
    {
        let used = store
            .count_started_since(&job.name, plan::day_start(now, job.timezone))
            .await?
            + if cursor.is_dry() {
                u64::from(cursor.planned)
            } else {
                0
            };
        if used >= u64::from(*cap) {
            let resets = stamp(next_day_start(now, job.timezone), job.timezone);
            let mut r = Reason::new(
                "daily_cap",
                format!("daily_cap {used}/{cap} reached, resets {resets}"),
            );
            r.count = Some(used);
            r.cap = Some(u64::from(*cap));
            r.until = Some(resets);
            r.zone = Some(job.timezone.name().into());
            out.push(r);
        }
    }
    if let Some(max) = job.max_per_run
        && cursor.planned >= max
    {
        let mut r = Reason::new(
            "max_per_run",
            format!("max_per_run {max} reached: the next run goes on"),
        );
        r.count = Some(u64::from(cursor.planned));
        r.cap = Some(u64::from(max));
        out.push(r);
    }
    if cursor.outside_window > 0 {
        let n = cursor.outside_window;
        let tz = cursor.window_zone().unwrap_or(job.timezone);
        let opens = job
            .kind
            .send_window()
            .and_then(|w| next_opening(w, tz, now))
            .map(|t| stamp(t, tz));
        let mut r = Reason::new(
            "send_window",
            match &opens {
                Some(t) => format!(
                    "send_window closed for {n} due lead(s), opens {t} ({})",
                    tz.name()
                ),
                None => format!("send_window closed for {n} due lead(s)"),
            },
        );
        r.count = Some(u64::from(n));
        r.until = opens;
        r.zone = Some(tz.name().into());
        out.push(r);
    }
    for (name, c) in &cursor.day_off {
        let days: Vec<String> = c.dates.iter().map(ToString::to_string).collect();
        let mut r = Reason::new(
            "day_off",
            format!(
                "day_off (calendar {name:?}) for {} due lead(s): {} in their zone",
                c.leads,
                days.join(", ")
            ),
        );
        r.count = Some(u64::from(c.leads));
        r.calendar = Some(name.clone());
        out.push(r);
    }
    for (hold, n) in &cursor.sender_held {
        let mut r = Reason::new(
            "sender_held",
            format!("sender_held {n} due lead(s): {}", hold.reason()),
        );
        r.count = Some(u64::from(*n));
        r.sender = Some(hold.sender().to_string());
        out.push(r);
    }
    Ok(out)
}

/// Why a dry run at `now` plans no more than `planned` calls: a pause that holds the
/// job, else what `after_plan` finds in its `cursor`, else (no call) that none is due.
pub async fn of_preview(
    store: &dyn RunnerStore,
    job: &Job,
    now: DateTime<Utc>,
    cursor: &Cursor,
    planned: u64,
) -> Result<Vec<Reason>, StoreError> {
    let pauses = store.pauses().await?;
    if let Some(p) = crate::policy::blocking_pause(&pauses, job, now) {
        return Ok(vec![paused(p.scope.as_str(), p.until, &p.reason)]);
    }
    if let Some(p) = store.job_pause(&job.name, now).await? {
        return Ok(vec![job_paused(&p)]);
    }
    let mut out = after_plan(store, job, now, cursor).await?;
    if planned == 0 && out.is_empty() {
        out.push(nothing_due());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, Weekday};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_window_next_opens_at_its_from_on_its_next_day() {
        // Monday to Friday, 09:00 to 17:00.
        let w = SendWindow {
            days: [true, true, true, true, true, false, false],
            from: NaiveTime::from_hms_opt(9, 0, 0).expect("t"),
            to: Some(NaiveTime::from_hms_opt(17, 0, 0).expect("t")),
        };
        let berlin = chrono_tz::Europe::Berlin;
        // Friday 2026-12-04 18:00 in Berlin: next Monday 09:00.
        let now = t("2026-12-04T18:00:00+01:00");
        assert_eq!(now.with_timezone(&berlin).weekday(), Weekday::Fri);
        let opens = next_opening(&w, berlin, now).expect("opens");
        assert_eq!(stamp(opens, berlin), "2026-12-07T09:00:00+01:00");
        // Monday 07:00: the same day.
        let opens = next_opening(&w, berlin, t("2026-12-07T07:00:00+01:00")).expect("opens");
        assert_eq!(stamp(opens, berlin), "2026-12-07T09:00:00+01:00");
        // A window on no day never opens.
        let never = SendWindow {
            days: [false; 7],
            ..w.clone()
        };
        assert_eq!(next_opening(&never, berlin, now), None);
    }

    #[test]
    fn a_cap_resets_at_the_next_local_midnight_even_across_a_clock_change() {
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(
            stamp(
                next_day_start(t("2026-12-07T09:00:00+01:00"), berlin),
                berlin
            ),
            "2026-12-08T00:00:00+01:00"
        );
        // 2026-10-25 is 25 hours long in Berlin.
        assert_eq!(
            stamp(
                next_day_start(t("2026-10-25T00:30:00+02:00"), berlin),
                berlin
            ),
            "2026-10-26T00:00:00+01:00"
        );
    }
}
