//! Cron schedules in a named time zone, firing at the right local time across daylight-
//! saving changes.
//!
//! tokio-cron-scheduler 0.15 freezes a job's UTC offset when the job is created (its issue
//! #107): a 09:00 Europe/Berlin job made in winter would fire at 10:00 local in summer.
//! croner, which it parses with, computes occurrences correctly from a real `Tz`, so the
//! daemon asks this module for each job's next fire time and compares it with the injected
//! clock at every one-second heartbeat.
//! The parser settings are tokio-cron-scheduler's own: seconds required (6 fields, or 7 with
//! a year) and day-of-month ANDed with day-of-week when both are restricted.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Why a cron expression was refused; each quotes the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "{text:?} has {fields} fields; expected 6 (sec min hour day-of-month month \
         day-of-week), e.g. \"0 */15 * * * *\" for every 15 minutes"
    )]
    Fields { text: String, fields: usize },
    /// `why` is croner's own words.
    #[error("{text:?} is not a valid cron expression: {why}")]
    Invalid { text: String, why: String },
}

/// A parsed cron expression and the zone it is read in.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
    tz: Tz,
}

/// Two schedules are the same when they are the same expression read in the same zone.
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.tz == other.tz
    }
}

impl Schedule {
    /// Parses `text` (6 or 7 fields, seconds first), read in `tz`.
    pub fn parse(text: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let fields = text.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(ScheduleError::Fields {
                text: text.to_string(),
                fields,
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(text)
            .map_err(|e| ScheduleError::Invalid {
                text: text.to_string(),
                why: e.to_string(),
            })?;
        Ok(Schedule {
            text: text.to_string(),
            cron,
            tz,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `after`, in whole seconds: every runner must name
    /// a tick by the same instant, whatever fraction of a second it started at.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = after.with_nanosecond(0).unwrap_or(after);
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .map(|t| t.with_nanosecond(0).unwrap_or(t))
    }

    /// The next `n` fire times after `after`, in the schedule's zone.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next.with_timezone(&self.tz));
                    t = next;
                }
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn a_nine_oclock_berlin_job_fires_at_nine_local_on_both_sides_of_the_spring_change() {
        // Europe/Berlin goes from +01:00 to +02:00 on 2026-03-29 at 02:00 local.
        let s = Schedule::parse("0 0 9 * * *", chrono_tz::Europe::Berlin).expect("parses");
        let before = s.next_after(utc(2026, 3, 27, 12, 0)).expect("next");
        assert_eq!(before, utc(2026, 3, 28, 8, 0), "09:00 CET is 08:00 UTC");
        let after = s.next_after(before).expect("next");
        assert_eq!(after, utc(2026, 3, 29, 7, 0), "09:00 CEST is 07:00 UTC");
        for t in s.upcoming(utc(2026, 3, 25, 0, 0), 10) {
            assert_eq!(t.format("%H:%M").to_string(), "09:00", "{t}");
        }
    }

    #[test]
    fn the_autumn_change_neither_skips_nor_doubles_a_daily_fire() {
        // Europe/Berlin goes back to +01:00 on 2026-10-25 at 03:00 local.
        let s = Schedule::parse("0 30 9 * * *", chrono_tz::Europe::Berlin).expect("parses");
        let fires = s.upcoming(utc(2026, 10, 23, 0, 0), 4);
        let days: Vec<String> = fires
            .iter()
            .map(|t| t.format("%d %H:%M %z").to_string())
            .collect();
        assert_eq!(
            days,
            [
                "23 09:30 +0200",
                "24 09:30 +0200",
                "25 09:30 +0100",
                "26 09:30 +0100"
            ]
        );
    }

    #[test]
    fn fire_times_are_whole_seconds_whatever_the_fraction_of_now() {
        let s = Schedule::parse("*/5 * * * * *", Tz::UTC).expect("parses");
        let a = s
            .next_after(utc(2026, 11, 24, 10, 0) + chrono::Duration::milliseconds(49))
            .expect("next");
        let b = s
            .next_after(utc(2026, 11, 24, 10, 0) + chrono::Duration::milliseconds(917))
            .expect("next");
        assert_eq!(a, b);
        assert_eq!(a, utc(2026, 11, 24, 10, 0) + chrono::Duration::seconds(5));
    }

    #[test]
    fn five_fields_are_refused_with_an_example() {
        let err = Schedule::parse("*/15 * * * *", Tz::UTC)
            .expect_err("5 fields")
            .to_string();
        assert!(err.contains("has 5 fields; expected 6"), "{err}");
        let err = Schedule::parse("0 0 25 * * *", Tz::UTC)
            .expect_err("hour 25")
            .to_string();
        assert!(err.contains("not a valid cron expression"), "{err}");
    }

    #[test]
    fn day_of_month_and_day_of_week_are_both_required_when_both_are_set() {
        // The 13th that is a Friday: 2026-02-13 and 2026-03-13.
        let s = Schedule::parse("0 0 12 13 * FRI", Tz::UTC).expect("parses");
        let fires = s.upcoming(utc(2026, 1, 1, 0, 0), 2);
        let days: Vec<String> = fires
            .iter()
            .map(|t| t.format("%Y-%m-%d").to_string())
            .collect();
        assert_eq!(days, ["2026-02-13", "2026-03-13"]);
    }
}
