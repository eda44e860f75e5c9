//! Runs a job's plan against the API: claim, record in flight, call, record the results.
//!
//! Per batch: the planner's leads are claimed as leases (one statement), their attempts
//! written in flight (one statement) *before* any call, the calls made under the shared
//! concurrency and rate limits, each answer turned into a decision by `policy::decide`, and
//! the whole batch's outcomes written in one transaction. A 402 stops this runner from
//! starting further conversation-starting calls at once (calls already in flight finish),
//! and is stored as a pause every runner honours; a 401 stops every call.

use crate::clock::Clock;
use crate::config::{Config, Job, JobKind};
use crate::fluidtalk::{
    ActionResult, Client, Error as ApiError, EventRequest, FollowUpRequest, ImageFile,
    OpenerRequest,
};
use crate::lead::{self, LeadEvent};
use crate::plan::{self, Cursor, PlannedCall};
use crate::policy::{self, AccountEffect, Context, LeadEffect, Outcome};
use crate::store::{
    Action, AttemptEnd, AttemptStatus, DailyCap, LeadResult, NewAttempt, Pause, PauseScope, Store,
    StoreError,
};
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// What a run did, per outcome.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Summary {
    pub calls: u64,
    pub sent: u64,
    pub continued: u64,
    pub ignored: u64,
    pub sealed: u64,
    /// Follow-ups answered 404: back to `new` for an opener.
    pub reopened: u64,
    /// Calls answered 402.
    pub paused: u64,
    /// Transient failures to be retried later.
    pub retried: u64,
    pub failed: u64,
    /// Unknown outcomes sent to `needs_review`.
    pub review: u64,
    pub rate_limited: u64,
    pub unauthorized: u64,
    /// Recorded in flight but not called (the run stopped first).
    pub cancelled: u64,
    /// Leads that became `exhausted` (follow-up jobs).
    pub exhausted: u64,
    /// Queued events dropped because their lead will not be worked.
    pub dropped: u64,
    /// Due leads passed over for their send window.
    pub outside_window: u64,
    /// Attempts found in flight from a runner that died.
    pub recovered: u64,
    /// Why the job could not work, if a pause held it.
    pub held: Option<String>,
}

impl Summary {
    pub fn add(&mut self, o: &Summary) {
        macro_rules! sum { ($($f:ident),*) => { $( self.$f += o.$f; )* } }
        sum!(
            calls,
            sent,
            continued,
            ignored,
            sealed,
            reopened,
            paused,
            retried,
            failed,
            review,
            rate_limited,
            unauthorized,
            cancelled,
            exhausted,
            dropped,
            outside_window,
            recovered
        );
        if self.held.is_none() {
            self.held = o.held.clone();
        }
    }
}

/// Why a run ended early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the API refused the key (401/403): fix FLUIDTALK_API_KEY; calls are paused until {until}"
    )]
    Unauthorized { until: DateTime<Utc> },
}

/// Runs jobs for one runner: shares the client, the limits and the stop flags.
pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub client: Client,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub runner_id: String,
    limiter: Arc<DefaultDirectRateLimiter>,
    slots: Arc<Semaphore>,
    /// Set on shutdown: take no new leads.
    pub shutdown: Arc<AtomicBool>,
    /// Shows progress (a bar on a terminal), one tick per call.
    pub progress: Option<indicatif::ProgressBar>,
    holds: Arc<Holds>,
    /// Numbers this runner's claims: each batch's lease token is `runner_id/N`.
    claims: Arc<AtomicU64>,
}

/// How long a runner keeps trying while the database is unreachable (restarting, its
/// connections dropped, SQLite's file locked) before it gives up on the job's run.
pub const DB_OUTAGE_BUDGET: Duration = Duration::from_secs(120);

/// How long one database operation of the runner may take before it counts as unreachable.
const DB_STATEMENT_LIMIT: Duration = Duration::from_secs(60);

/// Added to every lease beyond its calls and `DB_OUTAGE_BUDGET`.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// The clock skew between hosts that leases tolerate: a live runner writes its results at
/// the latest this long before its lease ends.
pub const SKEW: Duration = Duration::from_secs(30);

/// How often a runner re-reads the stored pauses while its calls are going out, so a 402
/// another runner received stops this one's calls within about this long.
const PAUSE_REFRESH: chrono::Duration = chrono::Duration::seconds(1);

/// How a batch ends the job's run.
enum BatchEnd {
    /// Go on with the next batch.
    Continue,
    /// This job stops for this run (out of tokens, a long 429 hold).
    StopJob,
}

/// Until when (unix ms) this runner holds back calls, per pause scope: set the moment a
/// 402 or 401 arrives, and from the stored pauses at each batch, so every job of the runner
/// stops at once (other runners read the stored pause).
#[derive(Default)]
pub struct Holds {
    new_conversations: AtomicI64,
    follow_ups: AtomicI64,
    all: AtomicI64,
    /// When (unix ms) the stored pauses were last read.
    refreshed: AtomicI64,
}

impl Holds {
    fn slot(&self, scope: PauseScope) -> &AtomicI64 {
        match scope {
            PauseScope::NewConversations => &self.new_conversations,
            PauseScope::FollowUps => &self.follow_ups,
            PauseScope::All => &self.all,
        }
    }

    fn hold(&self, scope: PauseScope, until: DateTime<Utc>) {
        self.slot(scope)
            .fetch_max(until.timestamp_millis(), Ordering::SeqCst);
    }

    fn absorb(&self, pauses: &[Pause]) {
        for p in pauses {
            self.hold(p.scope, p.until);
        }
    }

    fn held(&self, scope: PauseScope, now: DateTime<Utc>) -> bool {
        self.slot(scope).load(Ordering::SeqCst) > now.timestamp_millis()
    }

    /// Whether a call of `action` must wait at `now`.
    fn blocks(&self, action: Action, now: DateTime<Utc>) -> bool {
        self.held(PauseScope::All, now)
            || match action {
                Action::FollowUp => self.held(PauseScope::FollowUps, now),
                _ => self.held(PauseScope::NewConversations, now),
            }
    }

    /// Reads the stored pauses if they were last read more than `PAUSE_REFRESH` ago (one
    /// task reads; the others go on). A read that fails keeps the holds as they are.
    async fn refresh(&self, store: &dyn Store, now: DateTime<Utc>) {
        let last = self.refreshed.load(Ordering::SeqCst);
        let due = now.timestamp_millis() - last >= PAUSE_REFRESH.num_milliseconds();
        if due
            && self
                .refreshed
                .compare_exchange(
                    last,
                    now.timestamp_millis(),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
        {
            match store.pauses().await {
                Ok(p) => self.absorb(&p),
                Err(e) => tracing::debug!(error = %e, "could not re-read the pauses"),
            }
        }
    }

    /// Forgets a hold whose stored pause was lifted.
    fn release(&self, scope: PauseScope) {
        self.slot(scope).store(0, Ordering::SeqCst);
    }
}

fn pause_blocks(pause: &Pause, kind: &JobKind, now: DateTime<Utc>) -> bool {
    pause.until > now
        && match pause.scope {
            PauseScope::All => true,
            PauseScope::NewConversations => !matches!(kind, JobKind::FollowUp { .. }),
            PauseScope::FollowUps => matches!(kind, JobKind::FollowUp { .. }),
        }
}

/// The pause, if any, that stops `job` at `now`.
pub fn blocking_pause<'a>(pauses: &'a [Pause], job: &Job, now: DateTime<Utc>) -> Option<&'a Pause> {
    pauses.iter().find(|p| pause_blocks(p, &job.kind, now))
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        client: Client,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        runner_id: String,
    ) -> Self {
        let per_second = config.limits.per_second.max(0.001);
        let burst =
            NonZeroU32::new(per_second.ceil().clamp(1.0, 1000.0) as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / per_second))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Dispatcher {
            limiter: Arc::new(RateLimiter::direct(quota)),
            slots: Arc::new(Semaphore::new(config.limits.concurrency.max(1))),
            store,
            client,
            config,
            clock,
            runner_id,
            shutdown: Arc::new(AtomicBool::new(false)),
            progress: None,
            holds: Arc::new(Holds::default()),
            claims: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A second handle on the same store, client, limits and stop flags.
    pub fn shallow(&self) -> Dispatcher {
        Dispatcher {
            store: self.store.clone(),
            client: self.client.clone(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            runner_id: self.runner_id.clone(),
            limiter: self.limiter.clone(),
            slots: self.slots.clone(),
            shutdown: self.shutdown.clone(),
            progress: self.progress.clone(),
            holds: self.holds.clone(),
            claims: self.claims.clone(),
        }
    }

    /// Runs a database operation, backing off and trying again while the database is
    /// unreachable (see `StoreError::is_transient`), for up to `DB_OUTAGE_BUDGET`. Every
    /// operation passed here is safe to repeat: reads, claims by lease token, writes that
    /// only finish what is still in flight. With `until_shutdown`, a shutdown ends the
    /// waiting (results in memory are written even then).
    async fn db<T, F, Fut>(
        &self,
        what: &str,
        until_shutdown: bool,
        mut op: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        use backon::BackoffBuilder;
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        let give_up =
            self.clock.now() + chrono::Duration::from_std(DB_OUTAGE_BUDGET).unwrap_or_default();
        let mut failures = 0u32;
        loop {
            // A server that stops answering (a host gone without closing its sockets)
            // counts as unreachable too, not as a wait without end.
            let tried = tokio::time::timeout(DB_STATEMENT_LIMIT, op())
                .await
                .unwrap_or(Err(StoreError::Unresponsive(DB_STATEMENT_LIMIT)));
            match tried {
                Ok(v) => {
                    if failures > 0 {
                        tracing::info!(what, failures, "the database is back");
                    }
                    return Ok(v);
                }
                Err(e)
                    if e.is_transient()
                        && self.clock.now() < give_up
                        && !(until_shutdown && self.shutdown.load(Ordering::SeqCst)) =>
                {
                    failures += 1;
                    let wait = delays.next().unwrap_or(Duration::from_secs(10));
                    tracing::warn!(what, error = %e, ?wait, failures, "the database is unreachable; backing off and trying again");
                    self.clock.sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// How long a claim lasts: every call of a batch may take the full timeout, the
    /// batch's calls `concurrency` at a time, then the results may wait out a database
    /// outage (`DB_OUTAGE_BUDGET`), plus a margin for clock skew between hosts.
    fn lease(&self, job: &Job) -> chrono::Duration {
        let rounds = job
            .batch_size
            .div_ceil(self.config.limits.concurrency.max(1) as u32)
            .max(1);
        let d = self.config.fluidtalk.timeout * rounds + DB_OUTAGE_BUDGET + LEASE_MARGIN;
        chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))
    }

    /// Settles attempts left in flight by runners that died: their outcome is unknown.
    pub async fn recover(&self, summary: &mut Summary) -> Result<(), StoreError> {
        let now = self.clock.now();
        let orphans = self
            .db("read attempts left in flight", true, || {
                self.store.orphans(now)
            })
            .await?;
        let mut results = Vec::with_capacity(orphans.len());
        for o in orphans {
            let job = self.config.jobs.iter().find(|j| j.name == o.attempt.job);
            let retry = job.is_some_and(|j| j.on_unknown == crate::config::OnUnknown::Retry)
                && o.lead.transient_failures == 0;
            let (to_state, failures) = if retry {
                (o.lead.state, o.lead.transient_failures + 1)
            } else {
                (
                    lead::next(o.lead.state, LeadEvent::OutcomeUnknown).unwrap_or(o.lead.state),
                    o.lead.transient_failures,
                )
            };
            tracing::warn!(target = %o.lead.target, job = %o.attempt.job, action = o.attempt.action.as_str(),
                retry, "an attempt was left in flight by a runner that stopped; its outcome is unknown");
            results.push(LeadResult {
                lead_id: o.lead.id,
                from_state: o.lead.state,
                to_state,
                runner_id: o.lead.lease_owner.clone().unwrap_or_default(),
                attempt: Some(AttemptEnd {
                    attempt_id: o.attempt.id,
                    status: AttemptStatus::Unknown,
                    http_status: None,
                    error_kind: Some("unknown".into()),
                    error_detail: Some(format!(
                        "runner {} stopped mid-call; the engine may or may not have answered",
                        o.attempt.runner_id
                    )),
                    session_id: None,
                    finished_at: now,
                    message: None,
                }),
                contacted: false,
                follow_up_sent: false,
                reset_follow_ups: false,
                transient_failures: failures,
                next_eligible_at: None,
                last_error: Some("outcome unknown: the runner stopped mid-call".into()),
                event: None,
            });
            summary.recovered += 1;
        }
        self.db("record recovered attempts", false, || {
            self.store.record_results(&results, now)
        })
        .await?;
        self.db("clear expired leases", true, || {
            self.store.clear_expired_leases(now)
        })
        .await?;
        Ok(())
    }

    /// Runs `job` once: works through every due lead until none is due or a cap, window,
    /// pause or shutdown stops it.
    pub async fn run_job(
        &self,
        job: &Job,
        scheduled_at: Option<DateTime<Utc>>,
    ) -> Result<Summary, RunError> {
        use tracing::Instrument;
        // Instrumented, not entered: an entered span would leak across awaits into other
        // jobs' log lines.
        let span = tracing::info_span!("job", job = %job.name, kind = job.kind.name());
        self.run_job_in_span(job, scheduled_at)
            .instrument(span)
            .await
    }

    async fn run_job_in_span(
        &self,
        job: &Job,
        scheduled_at: Option<DateTime<Utc>>,
    ) -> Result<Summary, RunError> {
        let mut summary = Summary::default();
        self.recover(&mut summary).await?;
        let started = self.clock.now();
        let run_id = self
            .db("record the run", true, || {
                self.store
                    .start_run(&job.name, &self.runner_id, scheduled_at, started)
            })
            .await?;
        let result = self.work(job, &mut summary).await;
        let mut record = serde_json::to_value(&summary).unwrap_or_default();
        if let Err(e) = &result {
            record["error"] = serde_json::Value::String(e.to_string());
        }
        let finished = self.clock.now();
        self.db("record the run's end", false, || {
            self.store.finish_run(run_id, &record, finished)
        })
        .await?;
        tracing::debug!(?summary, "job run finished");
        result.map(|()| summary)
    }

    async fn work(&self, job: &Job, summary: &mut Summary) -> Result<(), RunError> {
        let now = self.clock.now();
        match &job.kind {
            JobKind::FollowUp { max_follow_ups, .. } => {
                let quiet = job.quiet_before(*max_follow_ups).unwrap_or_default();
                let cutoff = now - chrono::Duration::from_std(quiet).unwrap_or_default();
                summary.exhausted += self
                    .db("mark exhausted leads", true, || {
                        self.store.exhaust(*max_follow_ups, cutoff, now, false)
                    })
                    .await?;
            }
            JobKind::Event { event_type, .. } => {
                summary.dropped += self
                    .db("drop dead events", true, || {
                        self.store.drop_dead_events(event_type, now)
                    })
                    .await?;
            }
            JobKind::Opener { .. } => {}
        }
        let mut cursor = Cursor::default();
        loop {
            if self.shutdown.load(Ordering::SeqCst) {
                tracing::info!("shutting down: no new leads");
                break;
            }
            let now = self.clock.now();
            let pauses = self.db("read pauses", true, || self.store.pauses()).await?;
            self.holds.absorb(&pauses);
            if let Some(p) = blocking_pause(&pauses, job, now) {
                tracing::info!(scope = p.scope.as_str(), until = %p.until, reason = %p.reason, "held by a pause");
                summary.held = Some(format!(
                    "held: {} paused until {}",
                    p.scope.as_str().replace('_', " "),
                    p.until.format("%Y-%m-%d %H:%M UTC")
                ));
                if p.scope == PauseScope::All {
                    return Err(RunError::Unauthorized { until: p.until });
                }
                break;
            }
            let left = self
                .db("count today's calls", true, || {
                    plan::remaining(&*self.store, job, now, &cursor)
                })
                .await?;
            let limit = left.min(job.batch_size);
            let (batch, moved) = self
                .db("plan a batch", true, || {
                    let mut c = cursor.clone();
                    async move {
                        let b = plan::next_batch(&*self.store, job, now, limit, &mut c).await?;
                        Ok((b, c))
                    }
                })
                .await?;
            cursor = moved;
            summary.outside_window = u64::from(cursor.outside_window);
            if batch.is_empty() {
                break;
            }
            match self.run_batch(job, batch, summary).await? {
                BatchEnd::Continue => {}
                BatchEnd::StopJob => break,
            }
        }
        Ok(())
    }

    /// Claims, records and calls one batch. Returns an error that must stop everything.
    async fn run_batch(
        &self,
        job: &Job,
        batch: Vec<PlannedCall>,
        summary: &mut Summary,
    ) -> Result<BatchEnd, RunError> {
        let now = self.clock.now();
        let token = format!(
            "{}/{}",
            self.runner_id,
            self.claims.fetch_add(1, Ordering::SeqCst) + 1
        );
        let ids: Vec<i64> = batch.iter().map(|c| c.lead.id).collect();
        let lease_until = now + self.lease(job);
        let claimed = self
            .db("claim leads", true, || {
                self.store.claim_leads(&ids, &token, now, lease_until)
            })
            .await?;
        // Only what this runner now holds, and only if it is still as planned: another
        // runner may have taken a lead, or worked it and let go, since the plan read it.
        let mut stale = Vec::new();
        let calls: Vec<PlannedCall> = batch
            .into_iter()
            .filter_map(|mut c| {
                let lead = claimed.iter().find(|l| l.id == c.lead.id)?;
                if !unchanged(&c.lead, lead) {
                    stale.push(lead.id);
                    return None;
                }
                c.lead = lead.clone();
                Some(c)
            })
            .collect();
        self.release(&stale, &token).await;
        if calls.is_empty() {
            return Ok(BatchEnd::Continue);
        }
        let attempts: Vec<NewAttempt> = calls
            .iter()
            .map(|c| NewAttempt {
                lead_id: c.lead.id,
                job: job.name.clone(),
                action: c.action,
                step: c.step,
                runner_id: token.clone(),
                started_at: now,
            })
            .collect();
        let cap = match &job.kind {
            JobKind::Opener {
                daily_cap: Some(limit),
                ..
            } => Some(DailyCap {
                since: plan::day_start(now, job.timezone),
                limit: *limit,
            }),
            _ => None,
        };
        let mut tries = 0;
        let started = self
            .db("record attempts in flight", true, || {
                tries += 1;
                let retry = tries > 1;
                let attempts = &attempts;
                async move {
                    // A try whose answer was lost may have been written: use that one.
                    if retry && let Some(ids) = self.ours(attempts).await? {
                        return Ok(ids);
                    }
                    self.store.start_attempts_within(attempts, cap).await
                }
            })
            .await;
        let started = match started {
            // The first try may have been written before its connection was lost.
            Err(StoreError::AlreadySent { .. }) => match self.ours(&attempts).await? {
                Some(ids) => Ok(ids),
                None => started,
            },
            other => other,
        };
        let attempt_ids = match started {
            Ok(ids) => ids,
            Err(StoreError::AlreadySent {
                lead_id,
                action,
                step,
            }) => {
                // Never send twice: the database refused one step. That lead goes to a
                // person (`needs_review`); the rest of the batch is given back untouched and
                // planned again, so one lead cannot hold up the others.
                tracing::error!(
                    lead_id,
                    action,
                    step,
                    "a step is already in flight or answered: the lead needs review"
                );
                if let Some(lead) = calls.iter().map(|c| &c.lead).find(|l| l.id == lead_id) {
                    let review = LeadResult {
                        lead_id,
                        from_state: lead.state,
                        to_state: lead::next(lead.state, LeadEvent::OutcomeUnknown)
                            .unwrap_or(lead.state),
                        runner_id: token.clone(),
                        attempt: None,
                        contacted: false,
                        follow_up_sent: false,
                        reset_follow_ups: false,
                        transient_failures: lead.transient_failures,
                        next_eligible_at: None,
                        last_error: Some(format!(
                            "{action} step {step} was already in flight or answered"
                        )),
                        event: None,
                    };
                    self.record(&[review], now).await?;
                }
                let held: Vec<i64> = calls.iter().map(|c| c.lead.id).collect();
                self.release(&held, &token).await;
                return Ok(BatchEnd::Continue);
            }
            Err(e) => {
                let held: Vec<i64> = calls.iter().map(|c| c.lead.id).collect();
                self.release(&held, &token).await;
                return Err(e.into());
            }
        };
        // The daily cap, counted in the same transaction, may have let only the first few
        // through: the rest are given back for another day.
        let mut calls = calls;
        if attempt_ids.len() < calls.len() {
            let over: Vec<i64> = calls[attempt_ids.len()..]
                .iter()
                .map(|c| c.lead.id)
                .collect();
            tracing::info!(
                left_for_later = over.len(),
                "the daily cap was reached (counting every runner)"
            );
            self.release(&over, &token).await;
            calls.truncate(attempt_ids.len());
        }
        if calls.is_empty() {
            return Ok(BatchEnd::StopJob);
        }

        // A call may start only while the lease still covers its whole timeout: a call
        // queued behind other jobs' calls past that point is cancelled, never made late.
        let timeout = chrono::Duration::from_std(self.config.fluidtalk.timeout)
            .unwrap_or(chrono::Duration::minutes(1));
        // ... and while a database outage after it could still be waited out in time.
        let start_deadline = lease_until
            - timeout
            - chrono::Duration::from_std(DB_OUTAGE_BUDGET + SKEW).unwrap_or_default();
        let batch_started = now;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, call) in calls.iter().enumerate() {
            let client = self.client.clone();
            let slots = self.slots.clone();
            let limiter = self.limiter.clone();
            let holds = self.holds.clone();
            let shutdown = self.shutdown.clone();
            let clock = self.clock.clone();
            let store = self.store.clone();
            let runner = self.runner_id.clone();
            let backoff = self.config.backoff;
            let call = call.clone();
            let sender = call
                .lead
                .own_username
                .clone()
                .or_else(|| self.config.fluidtalk.own_username.clone());
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await;
                limiter.until_ready().await;
                holds.refresh(&*store, clock.now()).await;
                let now = clock.now();
                if now >= start_deadline || holds.blocks(call.action, now) || shutdown.load(Ordering::SeqCst) {
                    return (i, None);
                }
                let result = make_call(&client, &call, sender).await;
                if let Err(e) = &result {
                    let now = clock.now();
                    let (scopes, length): (&[PauseScope], Box<dyn Fn(u32) -> Duration + Send + Sync>) = match e.kind() {
                        crate::fluidtalk::ErrorKind::OutOfTokens if call.action == Action::FollowUp => (
                            &[PauseScope::NewConversations, PauseScope::FollowUps],
                            Box::new(move |s| policy::out_of_tokens_pause(&backoff, s)),
                        ),
                        crate::fluidtalk::ErrorKind::OutOfTokens => (
                            &[PauseScope::NewConversations],
                            Box::new(move |s| policy::out_of_tokens_pause(&backoff, s)),
                        ),
                        crate::fluidtalk::ErrorKind::Unauthorized => (&[PauseScope::All], Box::new(|_| policy::UNAUTHORIZED_PROBE)),
                        _ => (&[], Box::new(|_| Duration::ZERO)),
                    };
                    for scope in scopes {
                        // The first such answer sets the stored pause (one strike per event,
                        // not per call in flight); every later call of this runner sees the hold.
                        if !holds.held(*scope, now) {
                            holds.hold(*scope, now + chrono::Duration::from_std(length(1)).unwrap_or_default());
                            match store.set_pause(*scope, &e.to_string(), &runner, now, &*length).await {
                                Ok(p) => {
                                    holds.hold(*scope, p.until);
                                    tracing::warn!(scope = scope.as_str(), until = %p.until, strikes = p.strikes, "paused: {e}");
                                }
                                Err(db) => tracing::error!(error = %db, "could not store the pause; it holds in this runner"),
                            }
                        }
                    }
                }
                (i, Some(result))
            });
        }
        // Outer None: the task never returned (it panicked); inner None: not called.
        let mut answers: Vec<Option<Option<Result<ActionResult, ApiError>>>> =
            (0..calls.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, answer)) => {
                    if let Some(bar) = &self.progress {
                        bar.inc(1);
                    }
                    answers[i] = Some(answer);
                }
                Err(e) => tracing::error!(error = %e, "a call task failed; its outcome is unknown"),
            }
        }

        let finished = self.clock.now();
        let mut results = Vec::with_capacity(calls.len());
        let mut effects: Vec<AccountEffect> = Vec::new();
        let mut succeeded = [false; 2]; // [new conversation, follow-up]
        for ((call, attempt_id), answer) in calls.iter().zip(&attempt_ids).zip(answers) {
            let (mut result, effect) =
                self.settle(job, call, *attempt_id, answer, finished, summary);
            result.runner_id = token.clone();
            effects.extend(effect.map(|(e, _)| e));
            if matches!(
                result.attempt.as_ref().map(|a| a.status),
                Some(AttemptStatus::Sent | AttemptStatus::Continued)
            ) {
                succeeded[usize::from(call.action == Action::FollowUp)] = true;
            }
            results.push(result);
        }
        self.record(&results, finished).await?;

        let mut end = BatchEnd::Continue;
        let follow_up_job = matches!(job.kind, JobKind::FollowUp { .. });
        let mut wait: Option<Duration> = None;
        for effect in &effects {
            match effect {
                AccountEffect::PauseNewConversations if !follow_up_job => end = BatchEnd::StopJob,
                AccountEffect::PauseFollowUps => end = BatchEnd::StopJob,
                AccountEffect::Unauthorized => {
                    let until =
                        DateTime::from_timestamp_millis(self.holds.all.load(Ordering::SeqCst))
                            .unwrap_or(finished);
                    tracing::error!(%until, "THE API REFUSED THE KEY (401/403): every call stops until it is fixed");
                    return Err(RunError::Unauthorized { until });
                }
                AccountEffect::RateLimited(after) => {
                    let w = after.unwrap_or(self.config.backoff.retry_base);
                    wait = Some(wait.map_or(w, |x| x.max(w)));
                }
                _ => {}
            }
        }
        if let Some(wait) = wait {
            tracing::warn!(?wait, "rate limited (429): holding the job");
            if wait > Duration::from_secs(60) {
                // Too long to hold a run open: the next tick picks the leads up.
                end = BatchEnd::StopJob;
            } else {
                // In slices, so a shutdown does not wait out the hold.
                let until = self.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                while self.clock.now() < until && !self.shutdown.load(Ordering::SeqCst) {
                    self.clock.sleep(Duration::from_millis(100).min(wait)).await;
                }
            }
        }
        // A success lifts a pause that had already run out before this batch began: a pause
        // set during the batch (a 401 among successes) stays.
        if succeeded[0] || succeeded[1] {
            for p in self.db("read pauses", true, || self.store.pauses()).await? {
                let lift = p.until <= batch_started
                    && match p.scope {
                        PauseScope::NewConversations => succeeded[0],
                        PauseScope::FollowUps => succeeded[1],
                        PauseScope::All => true,
                    };
                if lift {
                    self.db("lift a pause", true, || {
                        self.store.clear_pause(p.scope, batch_started)
                    })
                    .await?;
                    self.holds.release(p.scope);
                }
            }
        }
        Ok(end)
    }

    /// Writes a batch's results, trying again while the database is unreachable: the
    /// answers exist only in memory until this succeeds. (Repeating it is safe: only
    /// attempts still in flight and leads still leased to the token are written.)
    async fn record(&self, results: &[LeadResult], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.db("record results", false, || {
            self.store.record_results(results, now)
        })
        .await
    }

    /// Gives back leases held by `token`, for leads not called. Best effort: a lease not
    /// given back runs out on its own.
    async fn release(&self, ids: &[i64], token: &str) {
        if ids.is_empty() {
            return;
        }
        let now = self.clock.now();
        if let Err(e) = self
            .db("give leases back", false, || {
                self.store.release_leads(ids, token, now)
            })
            .await
        {
            tracing::warn!(error = %e, "could not give leases back; they run out on their own");
        }
    }

    /// After a lost connection: the ids of `attempts` if an earlier try recorded them (in
    /// flight under this claim's token), else `None`. The daily cap may have let only the
    /// first few through, so the answer may be a prefix.
    async fn ours(&self, attempts: &[NewAttempt]) -> Result<Option<Vec<i64>>, StoreError> {
        let mut ids = Vec::new();
        for a in attempts {
            let held = self.store.attempts_for(a.lead_id).await?;
            match held.iter().find(|h| {
                h.status == AttemptStatus::InFlight
                    && h.runner_id == a.runner_id
                    && h.action == a.action
                    && h.step == a.step
            }) {
                Some(h) => ids.push(h.id),
                None => break,
            }
        }
        Ok((!ids.is_empty()).then_some(ids))
    }

    /// Turns one call's answer into the lead's result and the account effect, if any.
    fn settle(
        &self,
        job: &Job,
        call: &PlannedCall,
        attempt_id: i64,
        answer: Option<Option<Result<ActionResult, ApiError>>>,
        now: DateTime<Utc>,
        summary: &mut Summary,
    ) -> (LeadResult, Option<(AccountEffect, String)>) {
        let lead = &call.lead;
        let mut result = LeadResult {
            lead_id: lead.id,
            from_state: lead.state,
            to_state: lead.state,
            runner_id: self.runner_id.clone(),
            attempt: None,
            contacted: false,
            follow_up_sent: false,
            reset_follow_ups: false,
            transient_failures: lead.transient_failures,
            next_eligible_at: None,
            last_error: lead.last_error.clone(),
            event: None,
        };
        let Some(answer) = answer else {
            // The call's task died: it may or may not have reached the API.
            summary.review += 1;
            result.to_state =
                lead::next(lead.state, LeadEvent::OutcomeUnknown).unwrap_or(lead.state);
            result.attempt = Some(AttemptEnd {
                attempt_id,
                status: AttemptStatus::Unknown,
                http_status: None,
                error_kind: Some("unknown".into()),
                error_detail: Some("the call's task failed; outcome unknown".into()),
                session_id: None,
                finished_at: now,
                message: None,
            });
            return (result, None);
        };
        let Some(answer) = answer else {
            summary.cancelled += 1;
            result.attempt = Some(AttemptEnd {
                attempt_id,
                status: AttemptStatus::Cancelled,
                http_status: None,
                error_kind: None,
                error_detail: Some("not called: the run stopped first".into()),
                session_id: None,
                finished_at: now,
                message: None,
            });
            return (result, None);
        };
        summary.calls += 1;
        let ctx = Context {
            action: call.action,
            transient_failures: lead.transient_failures,
            backoff: &self.config.backoff,
            on_unknown: job.on_unknown,
        };
        let outcome = match &answer {
            Ok(r) => Outcome::Answered(r),
            Err(e) => Outcome::Failed {
                kind: e.kind(),
                retry_after: e.retry_after(),
            },
        };
        let decision = policy::decide(&ctx, outcome);
        let (ok, err) = match &answer {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
        result.attempt = Some(AttemptEnd {
            attempt_id,
            status: decision.status,
            http_status: err
                .and_then(|e| e.status())
                .map(i32::from)
                .or(ok.map(|_| 200)),
            error_kind: err.map(|e| {
                serde_json::to_value(e.kind())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }),
            error_detail: err.map(|e| e.detail()),
            session_id: ok.and_then(|r| r.session_id.clone()),
            finished_at: now,
            message: ok.filter(|_| decision.deliver).map(|r| r.message.clone()),
        });
        match decision.status {
            AttemptStatus::Sent => summary.sent += 1,
            AttemptStatus::Continued => summary.continued += 1,
            AttemptStatus::Ignored => summary.ignored += 1,
            AttemptStatus::Sealed => summary.sealed += 1,
            AttemptStatus::NoConversation => summary.reopened += 1,
            AttemptStatus::OutOfTokens => summary.paused += 1,
            AttemptStatus::RateLimited => summary.rate_limited += 1,
            AttemptStatus::Unauthorized => summary.unauthorized += 1,
            _ => {}
        }
        match decision.lead {
            LeadEffect::Event(ev) => {
                match lead::next(lead.state, ev) {
                    Ok(to) => result.to_state = to,
                    Err(refused) => {
                        tracing::warn!(target = %lead.target, %refused, "lifecycle refused a change; state kept")
                    }
                }
                result.contacted = matches!(
                    ev,
                    LeadEvent::OpenerSent
                        | LeadEvent::OpenerContinued
                        | LeadEvent::EventSent
                        | LeadEvent::FollowUpSent
                );
                result.follow_up_sent = ev == LeadEvent::FollowUpSent;
                result.reset_follow_ups = ev == LeadEvent::NoConversation;
                if ev == LeadEvent::NoConversation {
                    result.next_eligible_at = Some(now);
                }
                if result.contacted {
                    result.transient_failures = 0;
                    result.last_error = None;
                } else {
                    result.last_error = err.map(|e| e.to_string());
                }
                match ev {
                    LeadEvent::Failed => {
                        summary.failed += 1;
                        if matches!(decision.status, AttemptStatus::TransientError) {
                            result.transient_failures += 1;
                        }
                    }
                    LeadEvent::OutcomeUnknown => summary.review += 1,
                    _ => {}
                }
                if let Some((event_id, _, _)) = &call.event {
                    let state = match ev {
                        LeadEvent::Failed | LeadEvent::Sealed | LeadEvent::OutcomeUnknown => {
                            "failed"
                        }
                        _ => "sent",
                    };
                    result.event = Some((*event_id, state));
                }
            }
            LeadEffect::Release => {}
            LeadEffect::RetryAfter(delay) => {
                summary.retried += 1;
                result.transient_failures += 1;
                result.next_eligible_at =
                    Some(now + chrono::Duration::from_std(delay).unwrap_or_default());
                result.last_error = err.map(|e| e.to_string());
            }
        }
        let effect = decision
            .account
            .map(|a| (a, err.map(|e| e.to_string()).unwrap_or_default()));
        (result, effect)
    }
}

/// Whether a lead just claimed is as the plan read it: same state, same step counters, no
/// reply, contact or other change since. Otherwise another runner (or a person) got to it
/// first, and the planned call would be the wrong one.
fn unchanged(planned: &crate::store::Lead, now_held: &crate::store::Lead) -> bool {
    planned.state == now_held.state
        && planned.reopens == now_held.reopens
        && planned.follow_ups_total == now_held.follow_ups_total
        && planned.last_contact_at == now_held.last_contact_at
        && planned.last_reply_at == now_held.last_reply_at
        && planned.updated_at == now_held.updated_at
        && planned.next_eligible_at == now_held.next_eligible_at
}

/// The API call for a planned call.
async fn make_call(
    client: &Client,
    call: &PlannedCall,
    sender: Option<String>,
) -> Result<ActionResult, ApiError> {
    let lead = &call.lead;
    let target = lead.target.clone();
    match call.action {
        Action::Opener => {
            let (image_url, image_file) = match lead.profile_image.as_deref() {
                Some(i) if i.starts_with("http://") || i.starts_with("https://") => {
                    (Some(i.to_string()), None)
                }
                Some(i) => (None, Some(ImageFile::Path(i.into()))),
                None => (None, None),
            };
            client
                .ai_opener(&OpenerRequest {
                    target,
                    own_username: sender,
                    image_url,
                    image_file,
                })
                .await
        }
        Action::FollowUp => {
            client
                .follow_up(&FollowUpRequest {
                    target,
                    own_username: sender,
                })
                .await
        }
        Action::Event => {
            let (event_type, context) = call
                .event
                .as_ref()
                .map(|(_, t, c)| {
                    (
                        t.clone(),
                        c.as_deref().and_then(|c| serde_json::from_str(c).ok()),
                    )
                })
                .unwrap_or_default();
            client
                .event_trigger(&EventRequest {
                    target,
                    event_type,
                    context,
                    own_username: sender,
                    image_url: None,
                    image_file: None,
                })
                .await
        }
    }
}
