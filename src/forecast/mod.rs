//! The forecast: the campaign's next days, simulated in virtual time over a copy of the
//! lead table, by the live run's own code.
//!
//! `forecast` copies the working set (leads, queued events, pauses, the attempts that
//! count against today's caps, the job pauses) from the campaign's database, opened read-only, into a
//! scratch SQLite file (`scratch`), starts the built-in simulator in place of the API
//! (holding a conversation for every lead that has one), and drives the real `Daemon` and
//! `Runner` on a `ManualClock` from `--from` to the end of the last day: every job fires
//! at its schedule's times in its zone, the planner picks the same leads, `per_second`
//! spends virtual time, the policy settles each answer and pauses on a 402 as a live run
//! would. Nothing about the campaign is modelled twice; the only assumptions are how the
//! API and the leads answer (`Assumptions`), drawn per call from a seed. `tally` turns the
//! scratch database's attempts and the day-end counts into one row per day;
//! `in_background` runs it on a thread of its own, and `Guest` is the daemon's one
//! forecast at a time, on a `Budget`, cancelled at shutdown.
//!
//! The virtual clock stops only where something can happen: a job whose tick made no
//! call is not fired again until the first instant something could be due for it (found
//! by counting due leads at later instants), or, when due leads wait for a window, a cap
//! or a pause, until the next whole minute or the pause's end; any call or reply wakes
//! every job again at its next tick. So a job firing every second costs a tick per call,
//! not 86,400 a day.

mod background;
mod scratch;
mod tally;

pub use background::{Guest, in_background, spawn};
pub use scratch::{SCRATCH_PREFIX, clean_stale_scratch};
pub use tally::{Day, due_now};

use crate::clock::{Clock, ManualClock};
use crate::config::Config;
use crate::daemon::Daemon;
use crate::fluidtalk::{ApiKey, Client, ClientConfig};
use crate::runner::Runner;
use crate::store::Exhaustion;
use crate::store::{SnapshotStore, Store, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How the API and the leads answer: each a share of calls (0 to 1), drawn per call from
/// `seed`; `tokens` is the balance for new conversations (`None`: unlimited).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Assumptions {
    pub reply_rate: f64,
    pub ignore_rate: f64,
    pub seal_rate: f64,
    pub seed: u64,
    pub tokens: Option<u64>,
}

/// What to forecast.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: DateTime<Utc>,
    /// Calendar days in `zone`, the first being the one `from` falls in.
    pub days: u32,
    pub zone: Tz,
    pub assumptions: Assumptions,
}

/// The forecast: one row per day, and what it was computed over.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    pub from: DateTime<Utc>,
    pub zone: String,
    pub leads: u64,
    pub assumptions: Assumptions,
    pub days: Vec<Day>,
    /// Instants the virtual clock stopped at to fire jobs, and the calls simulated.
    pub steps: u64,
    pub calls: u64,
}

impl Forecast {
    /// The first day a daily cap, a send window or a pause left due leads waiting.
    pub fn first_bottleneck(&self) -> Option<(NaiveDate, &str)> {
        self.days
            .iter()
            .find_map(|d| d.bottleneck.as_deref().map(|b| (d.date, b)))
    }

    /// The first 402 answer: when new conversations stop for want of tokens.
    pub fn first_out_of_tokens(&self) -> Option<DateTime<Utc>> {
        self.days.iter().find_map(|d| d.out_of_tokens_at)
    }
}

/// How far a forecast may go: simulated calls and wall time (`None`: no bound). The
/// daemon's dashboard takes `[forecast] max_calls` and `max_time`; the command has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub max_calls: Option<u64>,
    pub max_time: Option<Duration>,
}

impl Budget {
    pub const UNLIMITED: Budget = Budget {
        max_calls: None,
        max_time: None,
    };

    /// `[forecast]`'s budget.
    pub fn of(config: &Config) -> Budget {
        Budget {
            max_calls: Some(config.forecast.max_calls),
            max_time: Some(config.forecast.max_time),
        }
    }

    fn exceeded(&self, calls: u64, elapsed: Duration) -> bool {
        self.max_calls.is_some_and(|m| calls > m) || self.max_time.is_some_and(|m| elapsed >= m)
    }
}

/// A forecast's progress, read while it runs (the dashboard, the command's progress bar),
/// and its stop: `cancel` ends it at its next await, its scratch files removed.
#[derive(Default)]
pub struct Progress {
    pub cancel: CancellationToken,
    steps: AtomicU64,
    /// Seconds of virtual time done, of `total`.
    done: AtomicI64,
    total: AtomicI64,
    sim: std::sync::OnceLock<crate::sim::Simulator>,
}

impl Progress {
    /// Calls simulated so far.
    pub fn calls(&self) -> u64 {
        self.sim.get().map_or(0, |s| s.requests() as u64)
    }

    /// Instants the virtual clock stopped at so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Virtual seconds done and in all (0 and 0 while the leads are being copied).
    pub fn seconds(&self) -> (u64, u64) {
        let total = self.total.load(Ordering::Relaxed).max(0) as u64;
        let done = self.done.load(Ordering::Relaxed).max(0) as u64;
        (done.min(total), total)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the forecast's scratch database or simulator: {0}")]
    Setup(String),
    #[error(
        "the forecast went past its budget ({}): stopped after {calls} simulated call(s) in {:.1} s",
        describe(budget), elapsed.as_secs_f64()
    )]
    OverBudget {
        calls: u64,
        elapsed: Duration,
        budget: Budget,
    },
    #[error("the forecast was cancelled: the process is stopping")]
    Cancelled,
}

/// A budget as the campaign file sets it.
pub fn describe(b: &Budget) -> String {
    let calls = b
        .max_calls
        .map_or("no limit".into(), |c| format!("{c} simulated calls"));
    let time = b.max_time.map_or("no limit".into(), |t| {
        humantime::format_duration(t).to_string()
    });
    format!("[forecast] max_calls = {calls}, max_time = {time}")
}

/// How often the budget is looked at while a forecast runs.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// The forecast of `config`'s jobs over `source`'s leads. Reads `source` only.
pub async fn forecast(
    source: &dyn SnapshotStore,
    config: &Config,
    opts: &Options,
) -> Result<Forecast, ForecastError> {
    forecast_with(
        source,
        config,
        opts,
        Budget::UNLIMITED,
        &Progress::default(),
    )
    .await
}

/// `forecast` within `budget`, reporting to `progress` and ended by its `cancel`. Past the
/// budget or cancelled, it stops (its scratch database and simulator dropped, their files
/// removed) and says so; it never returns partial numbers.
pub async fn forecast_with(
    source: &dyn SnapshotStore,
    config: &Config,
    opts: &Options,
    budget: Budget,
    progress: &Progress,
) -> Result<Forecast, ForecastError> {
    let started = Instant::now();
    let over = |calls| ForecastError::OverBudget {
        calls,
        elapsed: started.elapsed(),
        budget,
    };
    // Also within a step (one run may make many calls) and while the leads are copied.
    let watchdog = async {
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let calls = progress.calls();
            if budget.exceeded(calls, started.elapsed()) {
                return over(calls);
            }
        }
    };
    let after_step = |calls| {
        budget
            .exceeded(calls, started.elapsed())
            .then(|| over(calls))
    };
    tokio::select! {
        biased;
        () = progress.cancel.cancelled() => Err(ForecastError::Cancelled),
        e = watchdog => Err(e),
        r = simulate(source, config, opts, progress, &after_step) => r,
    }
}

async fn simulate(
    source: &dyn SnapshotStore,
    config: &Config,
    opts: &Options,
    progress: &Progress,
    over: &(dyn Fn(u64) -> Option<ForecastError> + Sync),
) -> Result<Forecast, ForecastError> {
    let scratch = scratch::Scratch::copy(source, config, opts).await?;
    let _ = progress.sim.set(scratch.sim.clone());
    let mut key = ClientConfig::new(
        ApiKey::new("ft_forecast_simulator").map_err(|e| ForecastError::Setup(e.to_string()))?,
    );
    key.base_url = scratch.sim_url.clone();
    key.timeout = config.fluidtalk.timeout;
    key.own_username = config.fluidtalk.own_username.clone();
    let client = Client::new(key).map_err(|e| ForecastError::Setup(e.to_string()))?;
    let clock = Arc::new(ManualClock::new(opts.from));
    let store = scratch.store.clone();
    let runner = Runner::new(
        store.clone(),
        client,
        Arc::new(config.clone()),
        clock.clone(),
        "forecast".into(),
    );
    let daemon = Daemon::new(
        config,
        store.clone(),
        Some(runner),
        clock.clone(),
        "forecast".into(),
    );
    let mut tally = tally::Tally::new(config, opts, scratch.last_attempt);
    tally.start(&*store).await?;
    let ends = tally.day_ends();
    let end = ends.last().copied().unwrap_or(opts.from);
    progress
        .total
        .store((end - opts.from).num_seconds(), Ordering::Relaxed);
    // Jobs fired last with nothing to do, sent ahead to when something could be due.
    let mut deferred: HashSet<String> = HashSet::new();
    let mut calls_seen = progress.calls();
    for (day, day_end) in ends.into_iter().enumerate() {
        loop {
            retire_idle_event_jobs(&daemon, config, &*store).await?;
            let next = daemon.next_fires().into_iter().filter_map(|(_, t)| t).min();
            let Some(at) = next.filter(|t| *t < day_end) else {
                break;
            };
            clock.set(at.max(clock.now()));
            let mut ran = Vec::new();
            for (job, _, run) in daemon.poll().await {
                if let Some(run) = run {
                    run.await
                        .map_err(|e| ForecastError::Setup(format!("a job's run: {e}")))?;
                    ran.push(job);
                }
            }
            let now = clock.now();
            // A tick of a job that came while its own run was going is skipped, as the
            // live daemon's overlap guard skips it (not fired late, once the run ends).
            daemon.skip_missed(&ran, now);
            let replies = tally.answers(&*store, &opts.assumptions, now).await?;
            progress.steps.fetch_add(1, Ordering::Relaxed);
            progress
                .done
                .store((now - opts.from).num_seconds(), Ordering::Relaxed);
            let calls = progress.calls();
            if let Some(e) = over(calls) {
                return Err(e);
            }
            if calls != calls_seen || replies > 0 {
                // The leads changed: every job looks again at its next tick.
                for job in deferred.drain() {
                    daemon.resume(&job, now);
                }
            } else {
                // Nothing happened: each job that fired sleeps until it could have work.
                for name in &ran {
                    let Some(job) = config.jobs.iter().find(|j| &j.name == name) else {
                        continue;
                    };
                    let wake = idle_until(&*store, job, now, end).await?;
                    daemon.defer(name, wake);
                    deferred.insert(name.clone());
                }
            }
            calls_seen = calls;
        }
        clock.set(day_end.max(clock.now()));
        tally.day_end(&*store, day, clock.now()).await?;
    }
    Ok(Forecast {
        from: opts.from,
        zone: opts.zone.name().to_string(),
        leads: scratch.leads,
        assumptions: opts.assumptions.clone(),
        days: tally.finish(),
        steps: progress.steps(),
        calls: progress.calls(),
    })
}

/// When `job`, whose tick at `now` made no call while nothing else changed, could next
/// have work (`end` at the latest). With leads due, they wait for a send window, a daily
/// cap or a pause: a window opens and a day starts on a whole minute of some zone, a
/// pause at its end. With none due, the first whole second at which one is: the count
/// of due leads only grows with time while the leads do not change (quiet times pass,
/// retries come due), so it is found by doubling, then halving, the step ahead.
async fn idle_until(
    store: &dyn Store,
    job: &crate::config::Job,
    now: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<DateTime<Utc>, StoreError> {
    use chrono::Timelike;
    // A job a person paused does nothing until its pause ends (or at all, with no end).
    if let Some(p) = store.job_pause(&job.name, now).await? {
        return Ok(p.until.map_or(end, |u| u.min(end)));
    }
    if due_now(store, job, now).await? > 0 {
        let minute = now.with_nanosecond(0).unwrap_or(now)
            + chrono::Duration::seconds(60 - i64::from(now.second()));
        let pause = store
            .pauses()
            .await?
            .into_iter()
            .map(|p| p.until)
            .filter(|u| *u > now)
            .min();
        return Ok(pause.map_or(minute, |p| p.min(minute)).min(end));
    }
    let base = now.with_nanosecond(0).unwrap_or(now);
    let at = |s: i64| (base + chrono::Duration::seconds(s)).min(end);
    let (mut lo, mut hi) = (0i64, 1i64);
    loop {
        if work_at(store, job, at(hi)).await? > 0 {
            break;
        }
        if at(hi) >= end {
            return Ok(end);
        }
        lo = hi;
        hi *= 2;
    }
    // Nothing due at `lo` seconds, something at `hi`.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if work_at(store, job, at(mid)).await? > 0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(at(hi))
}

/// What `job` would find to do at `t` if the leads stayed as they are: leads due, and for
/// a follow-up job leads quiet past its last step, which its run marks `exhausted`.
async fn work_at(
    store: &dyn Store,
    job: &crate::config::Job,
    t: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut n = due_now(store, job, t).await?;
    if let crate::config::JobKind::FollowUp { max_follow_ups, .. } = &job.kind {
        let quiet = job.quiet_before(*max_follow_ups).unwrap_or_default();
        n += store
            .exhaust(&Exhaustion {
                max: *max_follow_ups,
                cutoff: crate::clock::earlier(t, quiet),
                now: t,
                dry: true,
            })
            .await?;
    }
    Ok(n)
}

/// Event jobs whose event type has nothing queued stop firing: events that arrive later
/// are not part of the forecast, so such a job has no work left, and a job that fires
/// every few seconds would otherwise cost a run (a handful of statements) per tick.
async fn retire_idle_event_jobs(
    daemon: &Daemon,
    config: &Config,
    store: &dyn Store,
) -> Result<(), StoreError> {
    for job in &config.jobs {
        if let crate::config::JobKind::Event { event_type, .. } = &job.kind
            // Nothing that could ever be due: queued events of leads that are done or
            // blocked do not count.
            && store
                .count_due_events(event_type, DateTime::<Utc>::MAX_UTC)
                .await?
                == 0
        {
            daemon.retire(&job.name);
        }
    }
    Ok(())
}
