//! The campaign's state at a glance, for `status` and `GET /v1/status`: leads per state,
//! pauses in force, leads held by runners, what each running daemon holds back and why,
//! each job's last run and next fire, queued events no job sends, and the reply rates per
//! job, step and sender (`crate::rates`).

use crate::config::Config;
use crate::lead::LeadState;
use crate::store::{AdminStore, JobRun, LeaseSummary, OutboxCounts, Pause, RunnerSeen, StoreError};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A daemon whose heartbeat is older than this is not listed (it stopped without saying
/// so; its row ages out after a day). Heartbeats are written at least every 10 s.
pub const RUNNER_ALIVE: chrono::Duration = chrono::Duration::seconds(60);

/// What `status` reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub leads: BTreeMap<LeadState, u64>,
    /// Pauses still in force.
    pub pauses: Vec<Pause>,
    pub held: LeaseSummary,
    /// Daemons seen within `RUNNER_ALIVE`, newest heartbeat first, with what each holds.
    pub runners: Vec<RunnerSeen>,
    /// The latest run of each job.
    pub runs: Vec<JobRun>,
    /// Queued events per type that no job sends (they wait forever).
    pub unsent_events: Vec<(String, u64)>,
    /// Undelivered outbox messages: pending (held ones included) and parked.
    pub outbox: OutboxCounts,
    /// Whether the database takes writes.
    pub storage: StorageState,
    /// Sent, replied, sealed and ignored steps per job, step and sender (`crate::rates`).
    pub rates: Vec<crate::rates::StepCount>,
    /// Jobs a person paused (`job pause`), pauses in force only.
    pub job_pauses: Vec<crate::store::JobPause>,
    pub now: DateTime<Utc>,
}

/// Whether the database takes writes: what a look at it finds now (`problem`: a full or
/// read-only file system, a standby server), and, in a daemon, the outage its own writes
/// met (`outage`: since when, the error, the answers it holds meanwhile).
#[derive(Debug, Clone, Default)]
pub struct StorageState {
    pub problem: Option<String>,
    pub outage: Option<crate::runner::db::Outage>,
}

impl StorageState {
    /// Whether nothing says writes would fail.
    pub fn available(&self) -> bool {
        self.problem.is_none() && self.outage.is_none()
    }

    /// One line for people: `None` when storage is available.
    pub fn describe(&self) -> Option<String> {
        match (&self.outage, &self.problem) {
            (Some(o), _) => Some(format!(
                "storage unavailable since {}: {} ({} answer(s) held in memory, written once writes work again; no call starts meanwhile)",
                o.since.format("%Y-%m-%d %H:%M:%S UTC"),
                o.error,
                o.answers_held
            )),
            (None, Some(p)) => Some(format!("storage unavailable: {p}")),
            (None, None) => None,
        }
    }
}

/// The reply rates of `config`'s campaign: a lead with no sender counts under the
/// campaign's `[fluidtalk] own_username` (the one its calls are sent with).
pub async fn read_rates(
    store: &dyn AdminStore,
    config: &Config,
) -> Result<Vec<crate::rates::StepCount>, StoreError> {
    store
        .reply_counts(config.fluidtalk.own_username.as_deref())
        .await
}

impl Report {
    pub async fn read(
        store: &dyn AdminStore,
        config: &Config,
        now: DateTime<Utc>,
    ) -> Result<Report, StoreError> {
        let leads = store.count_by_state().await?;
        let rates = read_rates(store, config).await?;
        Report::read_with(store, config, now, leads, rates).await
    }

    /// `read`, with the leads per state and the reply rates already counted (the
    /// dashboard keeps them a while: counting reads every lead, and every kept attempt).
    pub async fn read_with(
        store: &dyn AdminStore,
        config: &Config,
        now: DateTime<Utc>,
        leads: BTreeMap<LeadState, u64>,
        rates: Vec<crate::rates::StepCount>,
    ) -> Result<Report, StoreError> {
        let pauses = store
            .pauses()
            .await?
            .into_iter()
            .filter(|p| p.until > now)
            .collect();
        let runs = store.last_runs().await?;
        let job_pauses = store
            .job_pauses()
            .await?
            .into_iter()
            .filter(|p| p.in_force(now))
            .collect();
        let held = store.lease_summary(now).await?;
        let sent_by_jobs = config.event_types();
        let unsent_events = store
            .queued_event_types()
            .await?
            .into_iter()
            .filter(|(t, _)| !sent_by_jobs.contains(&t.as_str()))
            .collect();
        let outbox = store.outbox_counts().await?;
        let runners = store
            .runners()
            .await?
            .into_iter()
            .filter(|r| now - r.seen_at <= RUNNER_ALIVE)
            .collect();
        let storage = StorageState {
            problem: store.write_problem().await,
            outage: None,
        };
        Ok(Report {
            outbox,
            runners,
            storage,
            leads,
            pauses,
            job_pauses,
            held,
            runs,
            unsent_events,
            rates,
            now,
        })
    }

    /// The JSON of `status --json` and `GET /v1/status`.
    pub fn to_json(&self, config: &Config) -> serde_json::Value {
        let jobs: Vec<serde_json::Value> = config
            .jobs
            .iter()
            .map(|j| {
                let last = self.runs.iter().find(|r| r.job == j.name);
                let paused = self.job_pauses.iter().find(|p| p.job == j.name);
                serde_json::json!({
                    "name": j.name,
                    "kind": j.kind.name(),
                    "schedule": j.schedule.text(),
                    "timezone": j.timezone.name(),
                    "next_fire": j.schedule.next_after(self.now),
                    "last_run": last,
                    "paused": paused.is_some(),
                    "pause": paused,
                })
            })
            .collect();
        let counts = |v: &mut dyn Iterator<Item = (String, u64)>| {
            v.map(|(k, n)| (k, serde_json::Value::from(n)))
                .collect::<serde_json::Map<_, _>>()
        };
        serde_json::json!({
            "leads": counts(&mut self.leads.iter().map(|(s, n)| (s.as_str().to_string(), *n))),
            "pauses": self.pauses,
            "held_by_runners": self.held,
            "runners": self.runners,
            "jobs": jobs,
            "events_no_job_sends": counts(&mut self.unsent_events.iter().cloned()),
            "outbox": {"pending": self.outbox.pending, "parked": self.outbox.parked},
            "reply_rates": self.rates.iter().map(crate::rates::StepCount::to_json).collect::<Vec<_>>(),
            "storage": {
                "available": self.storage.available(),
                "problem": self.storage.problem,
                "outage": self.storage.outage,
            },
        })
    }
}
