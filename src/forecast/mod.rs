//! The forecast: the campaign's next days, simulated in virtual time over a copy of the
//! lead table, by the live run's own code.
//!
//! `forecast` copies the working set (leads, queued events, pauses, the attempts that
//! count against today's caps) from the campaign's database, opened read-only, into a
//! scratch SQLite file (`scratch`), starts the built-in simulator in place of the API
//! (holding a conversation for every lead that has one), and drives the real `Daemon` and
//! `Runner` on a `ManualClock` from `--from` to the end of the last day: every job fires
//! at its schedule's times in its zone, the planner picks the same leads, `per_second`
//! spends virtual time, the policy settles each answer and pauses on a 402 as a live run
//! would. Nothing about the campaign is modelled twice; the only assumptions are how the
//! API and the leads answer (`Assumptions`), drawn per call from a seed. `tally` turns the
//! scratch database's attempts and the day-end counts into one row per day;
//! `in_background` runs it on a thread of its own, for the dashboard.

mod background;
mod scratch;
mod tally;

pub use background::in_background;
pub use tally::{Day, due_now};

use crate::clock::{Clock, ManualClock};
use crate::config::Config;
use crate::daemon::Daemon;
use crate::fluidtalk::{ApiKey, Client, ClientConfig};
use crate::runner::Runner;
use crate::store::{Store, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::sync::Arc;

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

#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the forecast's scratch database or simulator: {0}")]
    Setup(String),
}

/// The forecast of `config`'s jobs over `source`'s leads. Reads `source` only.
pub async fn forecast(
    source: &dyn Store,
    config: &Config,
    opts: &Options,
) -> Result<Forecast, ForecastError> {
    let scratch = scratch::Scratch::copy(source, config, opts).await?;
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
    for (day, day_end) in tally.day_ends().into_iter().enumerate() {
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
            // A tick of a job that came while its own run was going is skipped, as the
            // live daemon's overlap guard skips it (not fired late, once the run ends).
            daemon.skip_missed(&ran, clock.now());
            tally
                .answers(&*store, &opts.assumptions, clock.now())
                .await?;
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
    })
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
