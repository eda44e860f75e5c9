//! The calls of the last 14 days per day and outcome: the store counts attempts per UTC
//! hour and status (one range read per job on `attempts_started`), and the hours are
//! folded here into days of one zone, the campaign's first job's (UTC without jobs).
//!
//! A zone whose offset is not a whole number of hours (Asia/Kolkata, +05:30) folds by the
//! UTC hour: calls in the half hour around its midnight may count on the neighbouring day.

use super::chart::{DayBar, Series};
use crate::store::{AttemptStatus, StoreError};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// How many days the chart shows, today included.
pub const DAYS: u32 = 14;

/// The chart's data.
#[derive(Debug, Clone)]
pub struct Calls {
    /// The zone the days are in, and the job it was taken from.
    pub zone: Tz,
    pub zone_job: Option<String>,
    pub days: Vec<DayBar>,
}

/// Each status as a series of its own (`in_flight` too), in `AttemptStatus::ALL`'s order,
/// with a stable colour.
pub fn series() -> Vec<Series<'static>> {
    AttemptStatus::ALL
        .into_iter()
        .map(|s| Series {
            key: s.as_str(),
            label: s.as_str(),
            colour: colour(s),
        })
        .collect()
}

fn colour(s: AttemptStatus) -> &'static str {
    match s {
        AttemptStatus::InFlight => "#1e88e5",
        AttemptStatus::Sent => "#2e7d32",
        AttemptStatus::Continued => "#81c784",
        AttemptStatus::Ignored => "#9e9e9e",
        AttemptStatus::Sealed => "#6a1b9a",
        AttemptStatus::NoConversation => "#8d6e63",
        AttemptStatus::OutOfTokens => "#ef6c00",
        AttemptStatus::Unauthorized => "#7f0000",
        AttemptStatus::RateLimited => "#f9a825",
        AttemptStatus::TransientError => "#ec407a",
        AttemptStatus::Failed => "#e53935",
        AttemptStatus::Unknown => "#37474f",
        AttemptStatus::Cancelled => "#b0bec5",
    }
}

/// The first of the `DAYS` local days ending today, and the instant it began.
pub fn first_day(now: DateTime<Utc>, zone: Tz) -> (NaiveDate, DateTime<Utc>) {
    let today = now.with_timezone(&zone).date_naive();
    let first = today
        .checked_sub_days(chrono::Days::new(u64::from(DAYS - 1)))
        .unwrap_or(today);
    let noon = first
        .and_hms_opt(12, 0, 0)
        .and_then(|t| zone.from_local_datetime(&t).earliest())
        .map_or(now, |t| t.with_timezone(&Utc));
    (first, crate::plan::day_start(noon, zone))
}

/// Reads and folds the calls of `jobs` (the relay's included by the caller).
pub async fn read(
    store: &dyn crate::store::ServiceStore,
    jobs: &[&str],
    zone: Tz,
    zone_job: Option<String>,
    now: DateTime<Utc>,
) -> Result<Calls, StoreError> {
    let (first, since) = first_day(now, zone);
    let mut hours = Vec::new();
    for job in jobs {
        hours.extend(store.attempts_per_hour(job, since).await?);
    }
    Ok(Calls {
        zone,
        zone_job,
        days: fold(&hours, first, since, zone),
    })
}

/// Hour counts folded into `DAYS` days from `first` in `zone`. An hour that began before
/// `since` (a zone with a half-hour offset) counts on the first day.
pub fn fold(
    hours: &[(DateTime<Utc>, AttemptStatus, u64)],
    first: NaiveDate,
    since: DateTime<Utc>,
    zone: Tz,
) -> Vec<DayBar> {
    let statuses = AttemptStatus::ALL;
    let mut days: Vec<DayBar> = (0..DAYS)
        .map(|i| {
            let d = first
                .checked_add_days(chrono::Days::new(u64::from(i)))
                .unwrap_or(first);
            DayBar {
                key: d.format("%Y-%m-%d").to_string(),
                label: d.format("%a %-d").to_string(),
                values: vec![0; statuses.len()],
            }
        })
        .collect();
    for (hour, status, n) in hours {
        let local = (*hour).max(since).with_timezone(&zone).date_naive();
        let Ok(i) = usize::try_from((local - first).num_days()) else {
            continue;
        };
        let Some(s) = statuses.iter().position(|x| x == status) else {
            continue;
        };
        if let Some(v) = days.get_mut(i).and_then(|d| d.values.get_mut(s)) {
            *v += n;
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn hours_fold_into_local_days() {
        let zone: Tz = "Europe/Berlin".parse().expect("zone");
        let now = at("2026-11-24T10:00:00Z");
        let (first, since) = first_day(now, zone);
        assert_eq!(first.to_string(), "2026-11-11");
        assert_eq!(
            since,
            at("2026-11-10T23:00:00Z"),
            "Berlin's midnight, in UTC"
        );
        let hours = [
            (at("2026-11-10T23:00:00Z"), AttemptStatus::Sent, 1), // 00:xx on the 11th
            (at("2026-11-23T22:00:00Z"), AttemptStatus::Failed, 2), // 23:xx on the 23rd
            (at("2026-11-23T23:00:00Z"), AttemptStatus::InFlight, 3), // 00:xx on the 24th
        ];
        let days = fold(&hours, first, since, zone);
        assert_eq!(days.len(), 14);
        let sent = 1;
        let failed = 10;
        assert_eq!(AttemptStatus::ALL[failed], AttemptStatus::Failed);
        assert_eq!(days[0].key, "2026-11-11");
        assert_eq!(days[0].values[sent], 1);
        assert_eq!(days[12].values[failed], 2);
        assert_eq!(
            (days[13].key.as_str(), days[13].values[0]),
            ("2026-11-24", 3)
        );
        assert_eq!(days.iter().map(DayBar::total).sum::<u64>(), 6);
    }
}
