//! The runner: works a job's due leads against the API, never sending a step twice.
//!
//! A job's run (`run_job`) first recovers what dead runners left in flight (`recover`), then
//! keeps up to `concurrency` calls going (`window`): it claims leads a batch at a time as
//! leases, records each group of calls in flight in one statement just before they start,
//! and judges answers as they arrive, in batched writes. A stop (SIGTERM, Ctrl-C: cancel
//! `stop_token`) starts no new call, gives back leads not yet called, lets calls in flight
//! finish within the API timeout and records every answer before the run returns. A crash
//! leaves at most the calls then in flight for review.
//!
//! The units: `claim` (plan and lease a batch), `flight` (record a group in flight),
//! `call` (make one call), `verdict` (an answer to a result, pure), `window` (the loop that
//! ties them), `recover` (also on a timer in the daemon: `Recovery`), `holds` (pauses held
//! in memory), `db` (riding out outages),
//! `image` (local images), `summary`.

mod call;
mod claim;
pub mod db;
mod flight;
pub mod holds;
pub mod image;
pub mod one;
mod pace;
mod recover;
mod summary;
mod verdict;
mod window;

pub use db::DB_OUTAGE_BUDGET;
pub use holds::held_by;
pub use one::{Called, INBOUND_JOB, Inbound, NotCalled};
pub use recover::{RECOVER_EVERY, Recovery};
pub use summary::{Summary, Tally};

use crate::clock::Clock;
use crate::config::{Config, Job, JobKind, RunnerSettings};
use crate::fluidtalk::Client;
use crate::store::Exhaustion;
use crate::store::Tick;
use crate::store::{RunnerStore, StoreError};
use call::Caller;
use chrono::{DateTime, Utc};
use db::{Db, OnStop};
use holds::Holds;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Why a run ended early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the API refused the key (401/403): fix FLUIDTALK_API_KEY; calls are paused until \
         {until} (once it is fixed, `fluidtalk-runner pause clear` lifts the pause now)"
    )]
    Unauthorized { until: DateTime<Utc> },
    /// A part of the run panicked (a bug): the run ends as after a database error, its
    /// calls in flight finished and recorded, its leads given back.
    #[error("the run failed unexpectedly: {0}")]
    Internal(String),
}

/// The clock skew between hosts that leases tolerate: a live runner writes its results at
/// the latest this long before its lease ends.
pub const SKEW: Duration = Duration::from_secs(30);

/// Added to every lease beyond its calls and `DB_OUTAGE_BUDGET`.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// Runs jobs for one runner process: the store, the client, the shared limits (calls in
/// flight, calls per second), the holds and the stop token. Clones share all of them.
#[derive(Clone)]
pub struct Runner {
    pub store: Arc<dyn RunnerStore>,
    /// The campaign: its jobs and schedules.
    pub config: Arc<Config>,
    /// Limits, back-off and call settings, built once from `config`.
    pub settings: Arc<RunnerSettings>,
    pub clock: Arc<dyn Clock>,
    pub runner_id: String,
    db: Db,
    caller: Caller,
    limiter: Arc<pace::Pace>,
    slots: Arc<Semaphore>,
    /// How many wait for one of `slots` now (jobs and relayed calls): while any does, a
    /// run gives the slots its answers free back to them rather than to its next group.
    slot_waiters: Arc<AtomicUsize>,
    holds: Arc<Holds>,
    /// Numbers this runner's claims: each batch's lease token is `runner_id/N`.
    claims: Arc<AtomicU64>,
}

impl Runner {
    pub fn new(
        store: Arc<dyn RunnerStore>,
        client: Client,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        runner_id: String,
    ) -> Self {
        let settings = Arc::new(RunnerSettings::from(&*config));
        let stop = CancellationToken::new();
        let holds = Arc::new(Holds::default());
        let caller = Caller {
            client,
            store: store.clone(),
            clock: clock.clone(),
            holds: holds.clone(),
            stop: stop.clone(),
            backoff: settings.backoff,
            own_username: settings.own_username.clone(),
            image_dir: settings.image_dir.clone(),
            timeout: settings.timeout,
            runner_id: runner_id.clone(),
        };
        Runner {
            limiter: Arc::new(pace::Pace::new(settings.per_second, clock.clone())),
            slots: Arc::new(Semaphore::new(settings.slots())),
            slot_waiters: Arc::new(AtomicUsize::new(0)),
            db: Db {
                clock: clock.clone(),
                stop,
                health: Arc::new(db::StorageHealth::default()),
            },
            caller,
            store,
            config,
            settings,
            clock,
            runner_id,
            holds,
            claims: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The API client the runner calls with.
    pub fn client(&self) -> &Client {
        &self.caller.client
    }

    /// What the runner holds back, per pause scope (`holds`).
    pub fn holds(&self) -> &Holds {
        &self.holds
    }

    /// The runner's way to the database, riding out outages (for callers outside a job,
    /// such as the HTTP relay, whose writes must survive one too).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A slot for one API call made outside a job (the HTTP relay): it waits for one of
    /// `[limits] concurrency`'s slots and for `per_second`, both shared with this runner's
    /// jobs, so a burst of relayed calls cannot exceed the account's limits.
    pub async fn call_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = self.wait_for_slot().await?;
        self.limiter.until_ready().await;
        Some(permit)
    }

    /// Waits for one of `[limits] concurrency`'s slots, counted among the waiters meanwhile
    /// (also when the wait is dropped); `None` once the slots are closed.
    async fn wait_for_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.slot_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.slot_waiters);
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Whether anything waits for a slot now.
    fn slot_wanted(&self) -> bool {
        self.slot_waiters.load(Ordering::SeqCst) > 0
    }

    /// How long a lease must last for one call made outside a job: twice the API timeout
    /// (the call, and the wait for its slot), a database outage, and the margin.
    pub fn single_call_lease(&self) -> chrono::Duration {
        let d = self
            .config
            .fluidtalk
            .timeout
            .saturating_mul(2)
            .saturating_add(DB_OUTAGE_BUDGET)
            .saturating_add(LEASE_MARGIN);
        chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(365))
    }

    /// Cancelling this token stops every job of the runner cleanly: no new call starts,
    /// leads not yet called are given back, calls in flight finish and are recorded.
    pub fn stop_token(&self) -> CancellationToken {
        self.db.stop.clone()
    }

    /// The runner, stopped by `stop` (a token made before it, e.g. when signals are
    /// caught before the store is opened).
    pub fn stopped_by(mut self, stop: CancellationToken) -> Self {
        self.caller.stop = stop.clone();
        self.db.stop = stop;
        self
    }

    /// Runs `job` once: works through every due lead until none is due or a cap, window,
    /// pause or stop ends it.
    pub async fn run_job(
        &self,
        job: &Job,
        scheduled_at: Option<DateTime<Utc>>,
    ) -> Result<Summary, RunError> {
        self.run_job_reporting(job, scheduled_at, &|| {}).await
    }

    /// `run_job`, calling `progress` once per judged call (a progress bar, say).
    pub async fn run_job_reporting(
        &self,
        job: &Job,
        scheduled_at: Option<DateTime<Utc>>,
        progress: &(dyn Fn() + Send + Sync),
    ) -> Result<Summary, RunError> {
        use tracing::Instrument;
        // Instrumented, not entered: an entered span would leak across awaits into other
        // jobs' log lines.
        let span = tracing::info_span!("job", job = %job.name, kind = job.kind.name());
        async {
            let mut summary = Summary::default();
            let timer = std::time::Instant::now();
            self.recover(&mut summary).await?;
            let started = self.clock.now();
            let tick = Tick {
                job: &job.name,
                scheduled_at,
                runner_id: &self.runner_id,
                now: started,
            };
            let run_id = self
                .db
                .run("record the run", OnStop::GiveUp, || {
                    self.store.start_run(&tick)
                })
                .await?;
            // A job a person paused does nothing, not even its preparation, and says why.
            let paused =
                self.db
                    .read("read the job's pause", || {
                        self.store.job_pause(&job.name, started)
                    })
                    .await;
            let result = match paused {
                Ok(Some(p)) => {
                    tracing::info!(until = ?p.until, reason = ?p.reason, "the job is paused: nothing done");
                    summary.held = Some(p.describe());
                    summary.reasons.push(crate::why::job_paused(&p));
                    Ok(summary.clone())
                }
                Err(e) => Err(e.into()),
                Ok(None) => match self.prepare(job, &mut summary).await {
                Ok(()) => {
                    window::JobRun::new(self, job, progress, summary.clone())
                        .run()
                        .await
                }
                    Err(e) => Err(e.into()),
                },
            };
            let summary = match &result {
                Ok(s) => s.clone(),
                Err(_) => summary,
            };
            let mut record = serde_json::to_value(&summary).unwrap_or_default();
            if let Err(e) = &result {
                record["error"] = serde_json::Value::String(e.to_string());
            }
            let finished = self.clock.now();
            self.db
                .run("record the run's end", OnStop::KeepTrying, || {
                    self.store.finish_run(run_id, &record, finished)
                })
                .await?;
            tracing::debug!(?summary, "job run finished");
            crate::metrics::job_run(&job.name, result.is_ok(), timer.elapsed());
            result
        }
        .instrument(span)
        .await
    }

    /// What a job does before it calls: a follow-up job marks leads quiet past its last
    /// step `exhausted`; an event job drops events whose lead will never be worked.
    async fn prepare(&self, job: &Job, summary: &mut Summary) -> Result<(), StoreError> {
        let now = self.clock.now();
        match &job.kind {
            JobKind::FollowUp { max_follow_ups, .. } => {
                let quiet = job.quiet_before(*max_follow_ups).unwrap_or_default();
                let exhaustion = Exhaustion {
                    max: *max_follow_ups,
                    cutoff: crate::clock::earlier(now, quiet),
                    now,
                    dry: false,
                };
                summary.exhausted += self
                    .db
                    .run("mark exhausted leads", OnStop::GiveUp, || {
                        self.store.exhaust(&exhaustion)
                    })
                    .await?;
            }
            JobKind::Event { event_type, .. } => {
                summary.dropped += self
                    .db
                    .run("drop dead events", OnStop::GiveUp, || {
                        self.store.drop_dead_events(event_type, now)
                    })
                    .await?;
            }
            JobKind::Opener { .. } => {}
        }
        Ok(())
    }

    /// How long a claim lasts: its calls (behind up to `concurrency` already waiting) may
    /// each take twice the timeout (reading a local image, then the call), `concurrency`
    /// at a time and no faster than `per_second`; then the results may wait out a database
    /// outage; plus a margin. A call that could not start in time is not made
    /// (`claim`'s `start_by`), so a lease never runs out under a live call.
    fn lease(&self, job: &Job) -> chrono::Duration {
        let s = &self.settings;
        let calls = job.batch_size.saturating_add(s.concurrency.get());
        let timeout = s.timeout.saturating_mul(2);
        let by_slots = timeout.saturating_mul(calls.div_ceil(s.concurrency.get()));
        let by_rate = Duration::from_secs_f64((f64::from(calls) / s.per_second).min(1e9))
            .saturating_add(timeout);
        let d = by_slots
            .max(by_rate)
            .saturating_add(DB_OUTAGE_BUDGET)
            .saturating_add(LEASE_MARGIN);
        chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(365))
    }
}

/// A name for this process in leases and attempt rows: host, pid and a random 64-bit part
/// (host and pid alone repeat across containers, every one pid 1 with hostnames set alike,
/// and two runners must never share lease tokens).
pub fn runner_id() -> String {
    use rand::TryRngCore;
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "runner".into());
    let nonce = rand::rngs::OsRng.try_next_u64().unwrap_or_else(|_| {
        // No OS randomness: std's hasher keys still differ per process.
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
    });
    format!("{host}-{}-{nonce:016x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_ids_differ_within_one_process() {
        let a = runner_id();
        assert_ne!(a, runner_id());
        assert_eq!(a.rsplit('-').next().map(str::len), Some(16), "{a}");
    }
}
