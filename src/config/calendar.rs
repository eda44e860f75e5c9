//! `[[calendar]]`: named sets of days off. A job that names calendars (`calendars = ["de"]`)
//! makes no call to a lead on a day off of any of them, the day being the lead's own in its
//! zone (else the job's), like the send window.
//!
//! Days come from `dates` (`"2026-12-25"`) and from an iCalendar file (`ics`, relative to
//! the campaign file), read with the `icalendar` crate: every all-day `VEVENT`
//! (`DTSTART;VALUE=DATE`) is a day off, or several (`DTEND` is exclusive, or a `DURATION`
//! of whole days); timed events are ignored (counted, and `check` says how many);
//! cancelled events are ignored. Of recurrences only the yearly kind is read
//! (`RRULE:FREQ=YEARLY`, with `COUNT` or `UNTIL`): a holiday on a fixed date. Any other
//! `RRULE`, and `RDATE`, `EXDATE` or `RECURRENCE-ID`, is refused with the file and the
//! event named: a day off silently missed would send on a holiday.

use chrono::{Datelike, NaiveDate};
use std::collections::BTreeSet;
use std::path::Path;

/// An `ics` file larger than this is refused (holidays of many years fit in a few KiB).
pub const MAX_ICS_BYTES: u64 = 1024 * 1024;
/// Days off one calendar may list (its `dates` and its file's single events together, each
/// day of a multi-day event counted; a yearly event counts its days once).
pub const MAX_DAYS: usize = 2_000;
/// The longest event read as days off.
pub const MAX_EVENT_DAYS: i64 = 366;
/// `[[calendar]]` tables in one file.
pub const MAX_CALENDARS: usize = 100;

/// A named set of days off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    pub name: String,
    /// Single days off.
    dates: BTreeSet<NaiveDate>,
    /// Yearly days off (an `ics` event with `RRULE:FREQ=YEARLY`).
    yearly: Vec<Yearly>,
    /// Where the days came from, for `check`: `dates`, and the `ics` file as resolved.
    pub ics: Option<String>,
    /// Timed (not all-day) events of the `ics` file, which hold nothing.
    pub timed_ignored: usize,
}

/// A yearly event: `days` days from `first`'s month and day, in every year from `first`'s
/// up to the last one allowed (`COUNT`, `UNTIL`). A February 29 is off in leap years only.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Yearly {
    first: NaiveDate,
    days: i64,
    last_year: Option<i32>,
}

impl Yearly {
    fn start_in(&self, year: i32) -> Option<NaiveDate> {
        if year < self.first.year() || self.last_year.is_some_and(|l| year > l) {
            return None;
        }
        NaiveDate::from_ymd_opt(year, self.first.month(), self.first.day())
    }

    fn holds(&self, day: NaiveDate) -> bool {
        // An event of up to a year starts this year or last.
        [day.year(), day.year() - 1].into_iter().any(|y| {
            self.start_in(y)
                .is_some_and(|s| s <= day && (day - s).num_days() < self.days)
        })
    }
}

impl Calendar {
    /// A calendar of `dates` alone.
    pub fn of_dates(name: &str, dates: impl IntoIterator<Item = NaiveDate>) -> Self {
        Calendar {
            name: name.to_string(),
            dates: dates.into_iter().collect(),
            yearly: Vec::new(),
            ics: None,
            timed_ignored: 0,
        }
    }

    /// Whether `day` (a local date) is a day off.
    pub fn is_day_off(&self, day: NaiveDate) -> bool {
        self.dates.contains(&day) || self.yearly.iter().any(|y| y.holds(day))
    }

    /// The first `n` days off from `from` on, within `within` days.
    pub fn next_days_off(&self, from: NaiveDate, n: usize, within: u32) -> Vec<NaiveDate> {
        from.iter_days()
            .take(within as usize)
            .filter(|d| self.is_day_off(*d))
            .take(n)
            .collect()
    }

    /// Days off counted against `MAX_DAYS`.
    pub fn days(&self) -> usize {
        self.dates.len()
            + self
                .yearly
                .iter()
                .map(|y| y.days.max(0) as usize)
                .sum::<usize>()
    }

    /// Adds what an iCalendar file's text lists (`shown`: the file as resolved, for
    /// errors and `check`).
    pub fn add_ics(&mut self, shown: &str, text: &str) -> Result<(), String> {
        use icalendar::{CalendarComponent, Component, DatePerhapsTime};
        self.ics = Some(shown.to_string());
        // The parser is lenient: a file that is not a calendar at all would read as one
        // without events, and hold nothing.
        if !text
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("BEGIN:VCALENDAR"))
        {
            return Err(format!(
                "{shown}: not an iCalendar file (no BEGIN:VCALENDAR line)"
            ));
        }
        let parsed: icalendar::Calendar = text
            .parse()
            .map_err(|e: String| format!("{shown}: not an iCalendar file: {}", first_line(&e)))?;
        let mut events = 0usize;
        for c in &parsed.components {
            let CalendarComponent::Event(e) = c else {
                continue;
            };
            events += 1;
            let what = match (e.get_uid(), e.get_summary()) {
                (Some(uid), Some(s)) => format!("event {s:?} (UID {uid})"),
                (Some(uid), None) => format!("event UID {uid}"),
                (None, Some(s)) => format!("event {s:?}"),
                (None, None) => format!("event #{events}"),
            };
            let bad = |why: String| format!("{shown}: {what}: {why}");
            if e.property_value("STATUS")
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("CANCELLED"))
            {
                continue;
            }
            let start = match e.get_start() {
                Some(DatePerhapsTime::Date(d)) => d,
                Some(DatePerhapsTime::DateTime(_)) => {
                    self.timed_ignored += 1;
                    continue;
                }
                None => return Err(bad("has no DTSTART (or one that is not a date)".into())),
            };
            let days = match (e.get_end(), e.property_value("DURATION")) {
                (Some(DatePerhapsTime::Date(end)), _) => (end - start).num_days(),
                (Some(DatePerhapsTime::DateTime(_)), _) => {
                    return Err(bad(
                        "DTSTART is a date but DTEND a time; an all-day event ends on a date"
                            .into(),
                    ));
                }
                (None, Some(d)) => whole_days(d).ok_or_else(|| {
                    bad(format!(
                        "DURATION {d:?} is not whole days or weeks (like P2D or P1W)"
                    ))
                })?,
                (None, None) => 1,
            };
            if !(1..=MAX_EVENT_DAYS).contains(&days) {
                return Err(bad(format!(
                    "lasts {days} day(s) from {start}; an event of days off lasts 1 to \
                     {MAX_EVENT_DAYS} (DTEND is the day after the last)"
                )));
            }
            for key in ["RDATE", "EXDATE", "RECURRENCE-ID"] {
                if e.property_value(key).is_some() {
                    return Err(bad(format!(
                        "{key} is not supported; list the days off as events of their own"
                    )));
                }
            }
            match e.property_value("RRULE") {
                Some(rule) => {
                    let last_year = yearly(rule, start).map_err(|why| {
                        bad(format!(
                            "RRULE {rule:?}: {why}; only FREQ=YEARLY (with COUNT or UNTIL) \
                             is read, so list other days off as events of their own"
                        ))
                    })?;
                    self.yearly.push(Yearly {
                        first: start,
                        days,
                        last_year,
                    });
                }
                None => {
                    for d in start.iter_days().take(days as usize) {
                        self.dates.insert(d);
                    }
                }
            }
            if self.days() > MAX_DAYS {
                return Err(format!(
                    "{shown}: more than {MAX_DAYS} days off in calendar {:?}",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// The error's first line (the parser's may quote the whole file).
fn first_line(e: &str) -> String {
    let line = e.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

/// `P2D`, `P1W`: whole days.
fn whole_days(d: &str) -> Option<i64> {
    let d = d.trim().strip_prefix('+').unwrap_or(d.trim());
    let body = d.strip_prefix('P')?;
    let (n, unit) = body.split_at(body.len().checked_sub(1)?);
    let n: i64 = n.parse().ok()?;
    match unit {
        "D" => Some(n),
        "W" => n.checked_mul(7),
        _ => None,
    }
}

/// A yearly rule's last year (`None`: for ever), or why it is not one.
fn yearly(rule: &str, start: NaiveDate) -> Result<Option<i32>, String> {
    let mut freq = None;
    let mut last = None;
    for part in rule.split(';').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
        match k.trim().to_ascii_uppercase().as_str() {
            "FREQ" => freq = Some(v.trim().to_ascii_uppercase()),
            "INTERVAL" if v.trim() == "1" => {}
            "COUNT" => {
                let n: i32 = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| format!("COUNT {v:?} is not from 1 to 1000"))?;
                last = Some(start.year() + n - 1);
            }
            "UNTIL" => {
                let date = v
                    .trim()
                    .get(..8)
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok());
                let until = date.ok_or_else(|| format!("UNTIL {v:?} is not a date"))?;
                // The last year whose day is not after UNTIL.
                let y = until.year();
                let this = NaiveDate::from_ymd_opt(y, start.month(), start.day());
                last = Some(if this.is_some_and(|d| d > until) {
                    y - 1
                } else {
                    y
                });
            }
            other => return Err(format!("{other} is not supported")),
        }
    }
    match freq.as_deref() {
        Some("YEARLY") => Ok(last),
        Some(f) => Err(format!("FREQ={f} is not supported")),
        None => Err("it has no FREQ".into()),
    }
}

/// Reads an `ics` file, bounded by `MAX_ICS_BYTES`.
pub fn read_ics(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{shown} cannot be read: {e}"))?;
    let mut text = String::new();
    file.take(MAX_ICS_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown} cannot be read: {e}"))?;
    if text.len() as u64 > MAX_ICS_BYTES {
        return Err(format!(
            "{shown} is larger than {MAX_ICS_BYTES} bytes (1 MiB), the most a calendar file may be"
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn ics(events: &str) -> String {
        format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{events}END:VCALENDAR\r\n")
    }

    fn read(events: &str) -> Result<Calendar, String> {
        let mut c = Calendar::of_dates("t", []);
        c.add_ics("t.ics", &ics(events))?;
        Ok(c)
    }

    #[test]
    fn all_day_events_are_days_off_and_dtend_is_exclusive() {
        let c = read(
            "BEGIN:VEVENT\r\nUID:a\r\nSUMMARY:Xmas\r\nDTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261227\r\nEND:VEVENT\r\n\
             BEGIN:VEVENT\r\nUID:b\r\nDTSTART;VALUE=DATE:20270101\r\nEND:VEVENT\r\n\
             BEGIN:VEVENT\r\nUID:c\r\nDTSTART:20261230T100000Z\r\nDTEND:20261230T110000Z\r\nEND:VEVENT\r\n",
        )
        .expect("reads");
        assert!(c.is_day_off(d("2026-12-25")));
        assert!(c.is_day_off(d("2026-12-26")));
        assert!(!c.is_day_off(d("2026-12-27")), "DTEND is the day after");
        assert!(c.is_day_off(d("2027-01-01")));
        assert!(
            !c.is_day_off(d("2026-12-30")),
            "a timed event holds nothing"
        );
        assert_eq!(c.timed_ignored, 1);
        assert_eq!(
            c.next_days_off(d("2026-12-01"), 5, 366),
            vec![d("2026-12-25"), d("2026-12-26"), d("2027-01-01")]
        );
    }

    #[test]
    fn a_yearly_event_recurs_and_others_are_refused_naming_the_event() {
        let c = read(
            "BEGIN:VEVENT\r\nUID:ny\r\nDTSTART;VALUE=DATE:20250101\r\nRRULE:FREQ=YEARLY;COUNT=3\r\nEND:VEVENT\r\n",
        )
        .expect("reads");
        assert!(c.is_day_off(d("2025-01-01")));
        assert!(c.is_day_off(d("2027-01-01")));
        assert!(!c.is_day_off(d("2028-01-01")), "COUNT=3 ends in 2027");
        assert!(!c.is_day_off(d("2024-01-01")), "not before the first");
        let e = read(
            "BEGIN:VEVENT\r\nUID:w1\r\nSUMMARY:Mondays\r\nDTSTART;VALUE=DATE:20260105\r\nRRULE:FREQ=WEEKLY;BYDAY=MO\r\nEND:VEVENT\r\n",
        )
        .expect_err("weekly is refused");
        assert!(
            e.contains("t.ics") && e.contains("\"Mondays\" (UID w1)"),
            "{e}"
        );
        assert!(e.contains("FREQ=WEEKLY"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_calendar_is_refused() {
        let mut c = Calendar::of_dates("t", []);
        let e = c
            .add_ics("t.ics", "2026-12-25\n2026-12-26\n")
            .expect_err("not iCalendar");
        assert_eq!(e, "t.ics: not an iCalendar file (no BEGIN:VCALENDAR line)");
    }

    #[test]
    fn an_event_of_too_many_days_is_refused() {
        let e = read(
            "BEGIN:VEVENT\r\nUID:long\r\nDTSTART;VALUE=DATE:20260101\r\nDTEND;VALUE=DATE:20280101\r\nEND:VEVENT\r\n",
        )
        .expect_err("two years");
        assert!(e.contains("UID long") && e.contains("730 day(s)"), "{e}");
    }

    #[test]
    fn the_example_calendar_file_reads() {
        let mut c = Calendar::of_dates("de", []);
        c.add_ics("holidays/de.ics", include_str!("../../holidays/de.ics"))
            .expect("the example reads");
        assert!(c.is_day_off(d("2026-12-25")) && c.is_day_off(d("2026-12-26")));
        assert!(c.is_day_off(d("2030-10-03")), "yearly");
    }
}
