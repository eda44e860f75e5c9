//! The daemon: every job on its schedule, with an overlap guard and a graceful stop.
//!
//! tokio-cron-scheduler (the project's chosen scheduler) drives a heartbeat once a second,
//! in UTC, so its frozen-offset bug (issue #107) cannot touch it; each heartbeat `poll`s the
//! jobs, whose fire times come from
//! `schedule::Schedule` in the job's real time zone, right across daylight-saving changes.
//! A job never overlaps itself (a tick during its own run is skipped and logged). Each tick
//! is claimed in the database (job, scheduled time), so of several runners exactly one runs
//! it. Ticks missed while the daemon was down are not replayed: the next fire time is
//! computed from now, and since selection is by lead state, the next tick catches up.
//!
//! Each heartbeat also re-reads the stored pauses, so the runner's holds follow them
//! between ticks (a `pause clear` is honoured within a second), and publishes what the
//! runner holds and why (`runners` table) for `status`: when it changes, and at least
//! every `PUBLISH_EVERY`. A clean stop removes the row.
//!
//! Once per clock hour, beside the heartbeat, a live daemon prunes old rows
//! (`prune_if_due`, `crate::retention::hourly`): the hour is claimed in the database like
//! a tick, so of several daemons on one database one prunes it.

use crate::clock::Clock;
use crate::config::{Config, Job};
use crate::runner::{DB_OUTAGE_BUDGET, RunError, Runner};
use crate::store::Heartbeat;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a poll did with one job's tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// The run started (live).
    Started,
    /// The job's previous run is still going: this tick is skipped.
    SkippedOverlap,
    /// Another runner claimed this tick.
    TakenElsewhere,
    /// The database was unreachable: the tick is tried again on the next heartbeat.
    Retrying,
    /// Dry run: the plan was logged, with this many calls.
    Planned(usize),
}

/// A heartbeat row is written at least this often, even when nothing changed.
const PUBLISH_EVERY: chrono::Duration = chrono::Duration::seconds(10);

/// How long publishing the heartbeat row may take before the heartbeat goes on.
const PUBLISH_LIMIT: Duration = Duration::from_secs(5);

struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

struct Slot {
    job: Job,
    next: Mutex<Option<DateTime<Utc>>>,
    running: Arc<AtomicBool>,
}

/// The jobs as they are now: replaced whole by `Daemon::reload`; a poll works on the
/// jobs as they were when it began.
type Slots = Arc<[Arc<Slot>]>;

/// What a `Daemon::reload` changed, by job name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Jobs the new file adds.
    pub added: Vec<String>,
    /// Jobs the new file no longer has: they fire no more (a run going finishes).
    pub removed: Vec<String>,
    /// Jobs kept by name, with their new settings (a run going finishes under the old).
    pub kept: Vec<String>,
}

/// An error that ends the daemon (the database file gone): the first one seen, and the
/// tokens a fatal error cancels (the runner's stop, and the process's if given).
#[derive(Default)]
struct Fatal {
    error: std::sync::OnceLock<String>,
    stops: Vec<CancellationToken>,
}

impl Fatal {
    fn fail(&self, e: &StoreError) {
        if self.error.set(e.to_string()).is_ok() {
            tracing::error!(error = %e, "STOPPING: the campaign's database is gone; no new call starts");
        }
        for stop in &self.stops {
            stop.cancel();
        }
    }
}

pub struct Daemon {
    store: Arc<dyn Store>,
    /// `None` for a dry-run daemon, which only logs plans.
    runner: Option<Runner>,
    clock: Arc<dyn Clock>,
    runner_id: String,
    slots: Mutex<Slots>,
    /// The overlap guards of jobs a reload removed while their run was going: a job the
    /// next reload puts back takes its guard again, so it does not start beside that run.
    /// Only guards still set are kept (at most one per removed job).
    retired: Mutex<Vec<(String, Arc<AtomicBool>)>>,
    /// The job runs started, so a stop can wait for them.
    runs: TaskTracker,
    fatal: Arc<Fatal>,
    started_at: DateTime<Utc>,
    /// The holds last published, and when.
    published: Mutex<Option<(DateTime<Utc>, Vec<crate::store::HeldPause>)>>,
    /// `[retention]`, and when the next prune is due (`None`: at the first heartbeat).
    retention: crate::config::Retention,
    prune_next: Mutex<Option<DateTime<Utc>>>,
    /// Set while a prune runs (a prune never overlaps itself).
    pruning: Arc<AtomicBool>,
    /// How long a stop waits for the runs going (`with_grace`).
    grace: Duration,
}

impl Daemon {
    /// Every job of `config`, each first firing at its next scheduled time after now.
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        runner: Option<Runner>,
        clock: Arc<dyn Clock>,
        runner_id: String,
    ) -> Daemon {
        let now = clock.now();
        let slots = config
            .jobs
            .iter()
            .map(|job| {
                Arc::new(Slot {
                    next: Mutex::new(job.schedule.next_after(now)),
                    job: job.clone(),
                    running: Arc::new(AtomicBool::new(false)),
                })
            })
            .collect();
        let fatal = Arc::new(Fatal {
            error: std::sync::OnceLock::new(),
            stops: runner.iter().map(Runner::stop_token).collect(),
        });
        Daemon {
            store,
            runner,
            clock,
            runner_id,
            slots: Mutex::new(slots),
            retired: Mutex::new(Vec::new()),
            runs: TaskTracker::new(),
            fatal,
            started_at: now,
            published: Mutex::new(None),
            retention: config.retention,
            prune_next: Mutex::new(None),
            pruning: Arc::new(AtomicBool::new(false)),
            grace: Duration::ZERO,
        }
    }

    /// The jobs now.
    fn slots(&self) -> Slots {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the jobs with `config`'s (SIGHUP: the campaign file read again and checked).
    /// A job kept by name keeps its overlap guard (a run going finishes, under the settings
    /// it started with, before the job runs again) and its next fire time if its schedule
    /// is unchanged; a new or rescheduled job fires next at its first time after now; a
    /// removed job fires no more (a run going finishes). Everything else of `config` is
    /// the caller's to judge (`service::reload`).
    pub fn reload(&self, config: &Config) -> Reloaded {
        let now = self.clock.now();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|(_, running)| running.load(Ordering::SeqCst));
        let mut out = Reloaded::default();
        let new: Slots = config
            .jobs
            .iter()
            .map(|job| {
                let old = slots.iter().find(|s| s.job.name == job.name);
                let next = match old {
                    Some(old) if old.job.schedule == job.schedule => {
                        *old.next.lock().unwrap_or_else(|p| p.into_inner())
                    }
                    _ => job.schedule.next_after(now),
                };
                match old {
                    Some(_) => out.kept.push(job.name.clone()),
                    None => out.added.push(job.name.clone()),
                }
                Arc::new(Slot {
                    job: job.clone(),
                    next: Mutex::new(next),
                    running: old.map(|o| o.running.clone()).unwrap_or_else(|| {
                        retired
                            .iter()
                            .find(|(name, _)| *name == job.name)
                            .map_or_else(|| Arc::new(AtomicBool::new(false)), |(_, r)| r.clone())
                    }),
                })
            })
            .collect();
        out.removed = slots
            .iter()
            .filter(|s| !config.jobs.iter().any(|j| j.name == s.job.name))
            .map(|s| s.job.name.clone())
            .collect();
        for gone in slots
            .iter()
            .filter(|s| out.removed.contains(&s.job.name) && s.running.load(Ordering::SeqCst))
        {
            retired.retain(|(name, _)| *name != gone.job.name);
            retired.push((gone.job.name.clone(), gone.running.clone()));
        }
        // A job put back took its guard again: it is no longer retired.
        retired.retain(|(name, _)| !config.jobs.iter().any(|j| j.name == *name));
        *slots = new;
        out
    }

    /// Starts the hourly prune if its time has come (the first heartbeat, then each new
    /// clock hour) and none is running: the hour is claimed in the database, so of several
    /// daemons one prunes it; the prune is bounded (`retention::DAEMON_STATEMENTS`
    /// statements of at most `PRUNE_BATCH` rows per table, yielding between them) and stops
    /// between statements at shutdown. Returns its task (tests await it); a dry-run daemon
    /// never prunes.
    pub fn prune_if_due(&self) -> Option<tokio::task::JoinHandle<()>> {
        let runner = self.runner.as_ref()?;
        if self.fatal.error.get().is_some() {
            return None;
        }
        let now = self.clock.now();
        let mut next = self.prune_next.lock().unwrap_or_else(|p| p.into_inner());
        if next.is_some_and(|t| now < t) {
            return None;
        }
        if self
            .pruning
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return None;
        }
        *next = Some(crate::retention::hour_of(now) + chrono::Duration::hours(1));
        drop(next);
        let store = self.store.clone();
        let retention = self.retention;
        let runner_id = self.runner_id.clone();
        let stop = runner.stop_token();
        let pruning = ClearOnDrop(self.pruning.clone());
        Some(self.runs.spawn(async move {
            let _pruning = pruning;
            match crate::retention::hourly(&*store, &retention, &runner_id, now, &stop).await {
                Ok(Some(p)) if p.total() > 0 || !p.complete => {
                    tracing::info!(removed = %p.describe(), complete = p.complete, "pruned old rows ([retention])")
                }
                Ok(Some(_)) => tracing::debug!("nothing to prune"),
                Ok(None) => tracing::debug!("this hour's prune is another runner's"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not prune old rows; trying again next hour")
                }
            }
        }))
    }

    /// Once a second, beside `poll`: holds follow the stored pauses (up and down), and
    /// what the runner holds is published for `status` when it changed or every
    /// `PUBLISH_EVERY`. Bounded in time; a failure is tried again on the next heartbeat.
    pub async fn heartbeat(&self) {
        let Some(runner) = &self.runner else { return };
        let now = self.clock.now();
        runner.holds().refresh(&*self.store, now).await;
        let held = runner.holds().held_now(now);
        let due = self
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|(at, last)| *last != held || now - *at >= PUBLISH_EVERY);
        if !due {
            return;
        }
        let beat = Heartbeat {
            runner_id: &self.runner_id,
            started_at: self.started_at,
            holds: &held,
            now,
        };
        let publish = self.store.publish_runner(&beat);
        match tokio::time::timeout(PUBLISH_LIMIT, publish).await {
            Ok(Ok(())) => {
                *self.published.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, held));
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "could not publish the heartbeat"),
            Err(_) => tracing::debug!("publishing the heartbeat timed out"),
        }
    }

    /// A fatal error (the database file deleted, replaced or moved) also cancels `stop`
    /// (the process's: the HTTP server, delivery and the rest stop with the daemon).
    pub fn stop_on_fatal(mut self, stop: CancellationToken) -> Self {
        if let Some(fatal) = Arc::get_mut(&mut self.fatal) {
            fatal.stops.push(stop);
        }
        self
    }

    /// The error that stopped the daemon, if one did.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.error.get().cloned()
    }

    /// Each job's next fire time.
    pub fn next_fires(&self) -> Vec<(String, Option<DateTime<Utc>>)> {
        self.slots()
            .iter()
            .map(|s| {
                (
                    s.job.name.clone(),
                    *s.next.lock().unwrap_or_else(|p| p.into_inner()),
                )
            })
            .collect()
    }

    /// Stops firing `job` (the forecast retires an event job once no event of its type is
    /// queued: in a forecast none arrives, so it would never have work again).
    pub fn retire(&self, job: &str) {
        for slot in self.slots().iter().filter(|s| s.job.name == job) {
            *slot.next.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Fires `job` next at its first scheduled time at or after `at` (the forecast sends a
    /// job with nothing to do ahead to when it could have work), if that is later.
    pub fn defer(&self, job: &str, at: DateTime<Utc>) {
        for slot in self.slots().iter().filter(|s| s.job.name == job) {
            let mut next = slot.next.lock().unwrap_or_else(|p| p.into_inner());
            let Some(current) = *next else { continue };
            // `next_after` is strictly after whole seconds: a second before is "at or after".
            let later = slot
                .job
                .schedule
                .next_after(at - chrono::Duration::nanoseconds(1));
            if later.is_none_or(|t| t > current) {
                *next = later;
            }
        }
    }

    /// Fires `job` next at its first scheduled time after `now`, undoing `defer` (a
    /// retired job stays retired).
    pub fn resume(&self, job: &str, now: DateTime<Utc>) {
        for slot in self.slots().iter().filter(|s| s.job.name == job) {
            let mut next = slot.next.lock().unwrap_or_else(|p| p.into_inner());
            if next.is_some() {
                *next = slot.job.schedule.next_after(now);
            }
        }
    }

    /// For each of `jobs` whose next fire time passed while its run was going (a run
    /// awaited in virtual time), the next one after `now`: the live daemon skips a tick
    /// that comes during the job's own run.
    pub fn skip_missed(&self, jobs: &[String], now: DateTime<Utc>) {
        for slot in self.slots().iter().filter(|s| jobs.contains(&s.job.name)) {
            let mut next = slot.next.lock().unwrap_or_else(|p| p.into_inner());
            if next.is_some_and(|t| t < now) {
                *next = slot.job.schedule.next_after(now);
            }
        }
    }

    /// Whether any job is running.
    pub fn busy(&self) -> bool {
        self.slots()
            .iter()
            .any(|s| s.running.load(Ordering::SeqCst))
            || self
                .retired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|(_, r)| r.load(Ordering::SeqCst))
    }

    /// Fires every job whose time has come. Returns what happened to each tick and, for
    /// runs started, their task (tests await them; the daemon lets them run).
    pub async fn poll(&self) -> Vec<(String, Tick, Option<tokio::task::JoinHandle<()>>)> {
        let now = self.clock.now();
        let mut out = Vec::new();
        if self.fatal.error.get().is_some() {
            return out;
        }
        if let Err(e) = self.store.check_file() {
            self.fatal.fail(&e);
            return out;
        }
        let slots = self.slots();
        for slot in slots.iter() {
            let scheduled = {
                let mut next = slot.next.lock().unwrap_or_else(|p| p.into_inner());
                match *next {
                    Some(t) if t <= now => {
                        // Missed ticks are not replayed: the next one is after now.
                        *next = slot.job.schedule.next_after(now);
                        Some(t)
                    }
                    _ => None,
                }
            };
            let Some(scheduled) = scheduled else { continue };
            let job = &slot.job;
            let Some(runner) = &self.runner else {
                match crate::plan::preview(&*self.store, job, now).await {
                    Ok(plan) => {
                        let calls = plan.calls;
                        tracing::info!(job = %job.name, %scheduled, calls = calls.len(), "tick (dry run): the plan");
                        for c in &calls {
                            tracing::info!(job = %job.name, target = %c.target, action = c.action.as_str(), step = c.step, sender = c.sender.as_deref().unwrap_or(""), reason = %c.reason, "would call");
                        }
                        for n in &plan.notes {
                            tracing::info!(job = %job.name, note = %n, "would note");
                        }
                        for h in &plan.held {
                            tracing::info!(job = %job.name, target = %h.target, held = h.held, reason = %h.reason, "would hold");
                        }
                        out.push((job.name.clone(), Tick::Planned(calls.len()), None));
                    }
                    Err(e) => {
                        tracing::error!(job = %job.name, error = %e, "could not plan the tick")
                    }
                }
                continue;
            };
            if slot
                .running
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                if runner.db().health.outage().is_some() {
                    // Its run holds answers through a storage outage, said once already.
                    tracing::debug!(job = %job.name, %scheduled, "tick skipped: the job's previous run is still going");
                } else {
                    tracing::warn!(job = %job.name, %scheduled, "tick skipped: the job's previous run is still going");
                }
                out.push((job.name.clone(), Tick::SkippedOverlap, None));
                continue;
            }
            match self
                .store
                .claim_tick(&crate::store::Tick {
                    job: &job.name,
                    scheduled_at: scheduled,
                    runner_id: &self.runner_id,
                    now,
                })
                .await
            {
                Ok(true) => runner.db().health.wrote(now),
                Ok(false) => {
                    slot.running.store(false, Ordering::SeqCst);
                    tracing::info!(job = %job.name, %scheduled, "tick run by another runner");
                    out.push((job.name.clone(), Tick::TakenElsewhere, None));
                    continue;
                }
                Err(e) => {
                    slot.running.store(false, Ordering::SeqCst);
                    let late = now - scheduled;
                    let health = &runner.db().health;
                    if e.is_transient() && health.outage().is_some() {
                        // Said once, when the outage began (`StorageHealth::failed`), not
                        // once a second per job.
                        health.failed(now, &e, 0);
                        tracing::debug!(job = %job.name, %scheduled, error = %e, "tick skipped: storage unavailable");
                    } else if e.is_transient()
                        && late.to_std().unwrap_or_default() < DB_OUTAGE_BUDGET
                    {
                        // Try this tick again on the next heartbeat, while it is recent:
                        // a database that drops a connection costs a second, not a tick.
                        *slot.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(scheduled);
                        tracing::warn!(job = %job.name, %scheduled, error = %e, "could not claim the tick: the database is unreachable; trying again");
                        out.push((job.name.clone(), Tick::Retrying, None));
                    } else {
                        tracing::error!(job = %job.name, %scheduled, error = %e, "could not claim the tick; it is skipped");
                    }
                    continue;
                }
            }
            let d = runner.clone();
            let job = job.clone();
            let running = slot.running.clone();
            let fatal = self.fatal.clone();
            let handle = self.runs.spawn(async move {
                // Cleared however the run ends, a panic included: else the job would be
                // skipped as "still running" forever.
                let _running = ClearOnDrop(running);
                match d.run_job(&job, Some(scheduled)).await {
                    Ok(s) => {
                        tracing::info!(job = %job.name, summary = %s.describe(), "run finished")
                    }
                    Err(RunError::Unauthorized { until }) => tracing::error!(
                        job = %job.name, %until,
                        "THE API REFUSED THE KEY (401/403): all calls paused; probing again at most once an hour"
                    ),
                    Err(RunError::Store(e)) if e.is_moved() => fatal.fail(&e),
                    Err(e) => tracing::error!(job = %job.name, error = %e, "run failed"),
                }
            });
            out.push((slot.job.name.clone(), Tick::Started, Some(handle)));
        }
        out
    }

    /// How long a stop waits for the runs going (`run`); none unless set (the service sets
    /// `service::Graces::runs`).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Runs until `stop` is cancelled; then starts no new call, gives back leads not yet
    /// called, waits up to its grace (`with_grace`) for calls in flight to finish and be
    /// recorded, and returns whether every run ended in time.
    pub async fn run(
        self: Arc<Self>,
        stop: CancellationToken,
    ) -> Result<bool, tokio_cron_scheduler::JobSchedulerError> {
        use tokio_cron_scheduler::{Job as CronJob, JobScheduler};
        let mut scheduler = JobScheduler::new().await?;
        let me = self.clone();
        scheduler
            .add(CronJob::new_async("* * * * * *", move |_, _| {
                let me = me.clone();
                Box::pin(async move {
                    me.poll().await;
                    me.heartbeat().await;
                    me.prune_if_due();
                })
            })?)
            .await?;
        scheduler.start().await?;
        for (job, next) in self.next_fires() {
            match next {
                Some(t) => tracing::info!(%job, next = %t.to_rfc3339(), "scheduled"),
                None => {
                    tracing::warn!(%job, "this job's schedule never fires (e.g. February 30): it will not run")
                }
            }
        }
        stop.cancelled().await;
        tracing::info!("stopping: no new calls; calls in flight finish and are recorded");
        if let Some(r) = &self.runner {
            r.stop_token().cancel();
        }
        scheduler.shutdown().await?;
        self.runs.close();
        let ended = tokio::time::timeout(self.grace, self.runs.wait())
            .await
            .is_ok();
        if !ended {
            tracing::warn!(
                "grace period over with a run still going; its calls in flight go to review once their leases expire"
            );
        }
        if self.runner.is_some() {
            // Gone: `status` no longer lists this runner (a row left by a hard stop ages out).
            let forget = self.store.forget_runner(&self.runner_id);
            if let Ok(Err(e)) = tokio::time::timeout(PUBLISH_LIMIT, forget).await {
                tracing::debug!(error = %e, "could not remove the heartbeat row");
            }
        }
        Ok(ended)
    }
}
