//! Pausing one job by hand, as the command line (`job pause|resume|list`), the HTTP API
//! (`/v1/jobs`) and the dashboard's Pause / Resume buttons share it: the job must be one
//! the campaign file defines (so the table holds at most one row per configured job), a
//! pause may end (`for` a while, or `until` an instant) or last until resumed, and its
//! reason is short and on one line. The store keeps the pause (`store::JobPauseStore`);
//! every runner reads it there (`runner::claim`).

use crate::config::{Config, Job};
use crate::store::{JobPause, check_job_pause_reason};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// The longest pause one may ask for (`for`, or `until` from now): ten years. A job paused
/// for longer is paused until resumed.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// What a person asks: a pause of a while (`for`), to an instant (`until`) or until
/// resumed (neither); and why.
#[derive(Debug, Clone, Default)]
pub struct PauseAsk {
    pub for_: Option<Duration>,
    pub until: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// Why a pause or resume was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// The campaign file has no job of that name.
    #[error("no job named {name:?} in the campaign file (jobs: {known})")]
    UnknownJob { name: String, known: String },
    /// The ask itself is wrong (both ends, an end in the past, a reason too long): `field`
    /// names the key (`for`, `until`, `reason`).
    #[error("{message}")]
    Bad {
        field: &'static str,
        message: String,
        /// A value over its limit (a reason too long), rather than a wrong one.
        over_limit: bool,
    },
}

fn bad(field: &'static str, message: impl Into<String>) -> AskError {
    AskError::Bad {
        field,
        message: message.into(),
        over_limit: false,
    }
}

/// The job named `name` in `config`, or an error naming it and the jobs there are.
pub fn find_job<'a>(config: &'a Config, name: &str) -> Result<&'a Job, AskError> {
    config
        .jobs
        .iter()
        .find(|j| j.name == name)
        .ok_or_else(|| AskError::UnknownJob {
            name: name.to_string(),
            known: if config.jobs.is_empty() {
                "none".to_string()
            } else {
                config
                    .jobs
                    .iter()
                    .map(|j| j.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
}

/// The pause `ask` makes of job `name` at `now`, checked.
pub fn pause_of(
    config: &Config,
    name: &str,
    ask: &PauseAsk,
    now: DateTime<Utc>,
) -> Result<JobPause, AskError> {
    let job = find_job(config, name)?;
    let until = match (ask.for_, ask.until) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "until",
                "give `for` (a while) or `until` (an instant), not both",
            ));
        }
        (Some(d), None) => {
            if d.is_zero() {
                return Err(bad(
                    "for",
                    "`for` is zero: a pause must last a while (e.g. 2h)",
                ));
            }
            if d > LONGEST_PAUSE {
                return Err(bad(
                    "for",
                    format!(
                        "`for` is longer than {} days; leave it out to pause until resumed",
                        LONGEST_PAUSE.as_secs() / 86_400
                    ),
                ));
            }
            Some(crate::clock::later(now, d))
        }
        (None, Some(t)) => {
            if t <= now {
                return Err(bad(
                    "until",
                    format!(
                        "`until` ({}) is not after now ({}): a pause must end in the future",
                        t.to_rfc3339(),
                        now.to_rfc3339()
                    ),
                ));
            }
            if t > crate::clock::later(now, LONGEST_PAUSE) {
                return Err(bad(
                    "until",
                    format!(
                        "`until` ({}) is more than {} days ahead; leave it out to pause until resumed",
                        t.to_rfc3339(),
                        LONGEST_PAUSE.as_secs() / 86_400
                    ),
                ));
            }
            Some(t)
        }
        (None, None) => None,
    };
    let reason = ask
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if let Some(r) = reason {
        check_job_pause_reason(r).map_err(|e| AskError::Bad {
            field: "reason",
            over_limit: r.chars().count() > crate::store::JOB_PAUSE_REASON_MAX,
            message: format!("`reason`: {e}"),
        })?;
    }
    Ok(JobPause {
        job: job.name.clone(),
        paused_at: now,
        until,
        reason: reason.map(str::to_string),
    })
}

/// A configured job and whether a person paused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobState {
    /// The job's name.
    pub name: String,
    /// opener, follow_up or event.
    pub kind: String,
    /// Its cron schedule, as written.
    pub schedule: String,
    /// Whether a pause holds it now.
    pub paused: bool,
    /// The pause, while one holds it.
    pub pause: Option<JobPause>,
}

/// Every configured job (in file order) with the pause of `pauses` in force at `now`.
pub fn states(config: &Config, pauses: &[JobPause], now: DateTime<Utc>) -> Vec<JobState> {
    config
        .jobs
        .iter()
        .map(|j| {
            let pause = pauses
                .iter()
                .find(|p| p.job == j.name && p.in_force(now))
                .cloned();
            JobState {
                name: j.name.clone(),
                kind: j.kind.name().to_string(),
                schedule: j.schedule.text().to_string(),
                paused: pause.is_some(),
                pause,
            }
        })
        .collect()
}
