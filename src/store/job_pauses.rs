//! Job pauses: a person stops one job (`job pause NAME`, the dashboard, `POST
//! /v1/jobs/{name}/pause`) without stopping the daemon or editing the campaign file, and
//! starts it again (`job resume`). Not the account pauses of a 402 or 401 (`pauses`,
//! `pause list|clear`), which hold calls of a kind for every job.
//!
//! One row per paused job (`job_pauses`, migration 0014), read from the store by every
//! runner at each claim and, while calls go out, at most once a second (`runner::claim`,
//! `runner::flight`), by the dry run's planner (`plan::preview_each`) and copied into the
//! forecast's scratch database. A row goes when the job is resumed, or once its end has
//! passed (retention, `PruneTable::JobPauses`). The table is bounded: the CLI and the API
//! refuse a job name the campaign file does not define, and the store refuses a new row
//! past `JOB_PAUSES_MAX`.

use super::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The longest reason a job pause keeps, in characters.
pub const JOB_PAUSE_REASON_MAX: usize = 200;
/// The most job pauses the table holds (one per job name; a campaign has far fewer jobs).
pub const JOB_PAUSES_MAX: u32 = 1_000;

/// A job paused by a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPause {
    /// The job's name, as in the campaign file.
    pub job: String,
    /// When it was paused (or the pause last changed).
    pub paused_at: DateTime<Utc>,
    /// When the pause ends by itself; none: when the job is resumed.
    pub until: Option<DateTime<Utc>>,
    /// Why, as the person wrote it (at most 200 characters).
    pub reason: Option<String>,
}

impl JobPause {
    /// Whether the pause holds the job at `now`.
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|u| u > now)
    }

    /// The pause in words, for a run's summary (`Summary::held`) and `status`:
    /// "job paused until 2026-12-08T10:00:00Z (reason)", "job paused until resumed".
    pub fn describe(&self) -> String {
        let mut s = match self.until {
            Some(u) => format!(
                "job paused until {}",
                u.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            None => "job paused until resumed".to_string(),
        };
        if let Some(r) = self.reason.as_deref().filter(|r| !r.is_empty()) {
            s.push_str(&format!(" ({r})"));
        }
        s
    }
}

/// Checks a pause's reason: at most `JOB_PAUSE_REASON_MAX` characters, no control
/// characters (a reason is printed in logs and terminals). The error says what is wrong.
pub fn check_reason(reason: &str) -> Result<(), String> {
    let n = reason.chars().count();
    if n > JOB_PAUSE_REASON_MAX {
        return Err(format!(
            "the reason is {n} characters long; at most {JOB_PAUSE_REASON_MAX} are kept"
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err("the reason contains a control character (a newline, a tab...)".into());
    }
    Ok(())
}

/// The job pauses in the lead database.
#[async_trait]
pub trait JobPauseStore: Send + Sync {
    /// Every job pause row, by job name (at most `JOB_PAUSES_MAX`; ended ones included until
    /// retention removes them: compare `until` with now).
    async fn job_pauses(&self) -> Result<Vec<JobPause>, StoreError>;
    /// The pause of `job` in force at `now`, if any.
    async fn job_pause(
        &self,
        job: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<JobPause>, StoreError>;
    /// Pauses `pause.job` (a pause already there is replaced); returns the pause it
    /// replaced, if there was one in force at `pause.paused_at`. Refuses (`Full`, nothing
    /// written) a new row past `JOB_PAUSES_MAX`.
    async fn pause_job(&self, pause: &JobPause) -> Result<Option<JobPause>, StoreError>;
    /// Lifts the pause of `job`; returns it if there was one in force at `now` (an ended
    /// row is removed too, and `None` returned: the job was not paused).
    async fn resume_job(
        &self,
        job: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<JobPause>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_says_until_when_and_why() {
        let at = DateTime::parse_from_rfc3339("2026-12-08T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let mut p = JobPause {
            job: "openers".into(),
            paused_at: at,
            until: Some(at),
            reason: Some("list review".into()),
        };
        assert_eq!(
            p.describe(),
            "job paused until 2026-12-08T10:00:00Z (list review)"
        );
        assert!(p.in_force(at - chrono::Duration::seconds(1)));
        assert!(!p.in_force(at));
        p.until = None;
        p.reason = None;
        assert_eq!(p.describe(), "job paused until resumed");
        assert!(p.in_force(at + chrono::Duration::days(10_000)));
    }

    #[test]
    fn a_reason_is_bounded_and_on_one_line() {
        assert!(check_reason(&"x".repeat(JOB_PAUSE_REASON_MAX)).is_ok());
        let long = check_reason(&"é".repeat(JOB_PAUSE_REASON_MAX + 1)).unwrap_err();
        assert!(long.contains("201 characters"), "{long}");
        assert!(check_reason("a\nb").unwrap_err().contains("control"));
    }
}
