//! One job's run: the loop that keeps up to `concurrency` calls in flight.
//!
//! The loop only decides what happens next; each step is its own unit: claim a batch when
//! fewer than `concurrency` claimed leads wait (`claim`, in a task of its own while calls
//! are in flight, so the loop goes on taking answers and starting calls), record a group in flight and
//! start it when slots free up (`flight`), judge each answer as it arrives (`verdict`),
//! and write the judged answers in batches: when half the window has answered (so its
//! slots refill as one group), when no call is left, at the latest `FLUSH_EVERY` after the
//! first answer waits, or at `FLUSH_AT` answers; and always before the run returns. A stop, a pause, the daily cap
//! or a 401 *halts* the run: no new call starts and the leads not yet called are given
//! back, while the calls in flight finish and are recorded.

use super::Runner;
use super::db::OnStop;
use super::summary::Summary;
use super::verdict::{self, CallOutcome, Rules, Started};
use crate::config::{Job, JobKind};
use crate::plan::{Cursor, PlannedCall};
use crate::policy::AccountEffect;
use crate::store::StepOf;
use crate::store::{Action, AttemptStatus, LeadResult, PauseScope};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

/// Settled answers wait at most this long for others to be written with (a slot held by
/// an answer not yet written takes no new call: short, so calls keep going) ...
const FLUSH_EVERY: Duration = Duration::from_millis(2);
/// ... and as soon as this many wait.
const FLUSH_AT: usize = 500;

/// A 429's `Retry-After` longer than this ends the run (the next one picks the leads up)
/// instead of holding it open.
const LONGEST_429_WAIT: Duration = Duration::from_secs(60);

/// A lead claimed for a call, waiting for a slot.
pub(super) struct Claimed {
    pub call: PlannedCall,
    /// The lease token of its claim.
    pub lease_token: String,
    /// The last moment its call may start: its lease must still cover the call's timeout,
    /// a database outage after it, and clock skew.
    pub start_by: DateTime<Utc>,
}

/// Why a run stopped starting calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Halt {
    Stopped,
    Paused,
    CapReached,
    RateLimited,
    Unauthorized,
}

type Slots = Pin<Box<dyn Future<Output = Vec<OwnedSemaphorePermit>> + Send>>;
type Claiming = tokio::task::JoinHandle<Result<super::claim::Claim, super::RunError>>;

pub(super) struct JobRun<'a> {
    pub runner: &'a Runner,
    pub job: &'a Job,
    progress: &'a (dyn Fn() + Send + Sync),
    pub summary: Summary,
    pub cursor: Cursor,
    /// Claimed leads waiting for a slot, oldest claim first.
    pub queue: VecDeque<Claimed>,
    /// Calls going out, by task.
    flying: HashMap<tokio::task::Id, Started>,
    calls: JoinSet<CallOutcome>,
    /// Each call's slot is held here, not in its task: a slot stays taken until the
    /// answer is written (even if the task panics), so what a crash leaves in flight never
    /// exceeds `concurrency`.
    slot_of: HashMap<tokio::task::Id, OwnedSemaphorePermit>,
    /// Settled answers not written yet, their slots, and since when the oldest waits.
    pub(super) judged: Vec<LeadResult>,
    pub(super) judged_slots: Vec<OwnedSemaphorePermit>,
    pub(super) judged_since: Option<Instant>,
    /// The next batch, planned and claimed while this one's calls fly, and `writes` when
    /// it was planned.
    claiming: Option<Claiming>,
    pub(super) claim_planned_at: u64,
    /// Groups of answers written so far.
    pub(super) writes: u64,
    /// The planner has nothing more for this run.
    pub planned_all: bool,
    pub halt: Option<Halt>,
    /// A 429 holds new calls until then.
    pub(super) wait_until: Option<DateTime<Utc>>,
    /// Calls answered with success, per kind (new conversation, follow-up).
    succeeded: [bool; 2],
    started_at: DateTime<Utc>,
    /// When the job's pause (`job pause`) was last read while starting calls.
    pub(super) job_pause_read: Option<DateTime<Utc>>,
}

impl<'a> JobRun<'a> {
    pub fn new(
        runner: &'a Runner,
        job: &'a Job,
        progress: &'a (dyn Fn() + Send + Sync),
        summary: Summary,
    ) -> Self {
        JobRun {
            runner,
            job,
            progress,
            summary,
            cursor: Cursor::default(),
            queue: VecDeque::new(),
            flying: HashMap::new(),
            calls: JoinSet::new(),
            slot_of: HashMap::new(),
            judged: Vec::new(),
            judged_slots: Vec::new(),
            judged_since: None,
            claiming: None,
            claim_planned_at: 0,
            writes: 0,
            planned_all: false,
            halt: None,
            wait_until: None,
            succeeded: [false; 2],
            started_at: runner.clock.now(),
            job_pause_read: None,
        }
    }

    /// Runs the job to its end; whatever ends it, answers in memory are written and leads
    /// not called are given back before this returns.
    pub async fn run(mut self) -> Result<Summary, super::RunError> {
        let driven = self.drive().await;
        if driven.is_err() {
            // The run cannot go on: let the calls in flight end and record them.
            self.halt.get_or_insert(Halt::Stopped);
            while let Some(joined) = self.calls.join_next_with_id().await {
                self.on_answer(joined).await;
            }
        }
        // Answers first: they exist only in memory; a lease not given back runs out.
        let flushed = self.flush().await;
        // A claim still under way ends first, so the leads it took are given back too.
        if let Some(claiming) = self.claiming.take()
            && let Ok(Ok(found)) = claiming.await
        {
            self.took_claim(found).await;
        }
        self.give_back_queue().await;
        driven?;
        flushed?;
        self.lift_ended_pauses().await?;
        self.say_why().await;
        if self.halt == Some(Halt::Unauthorized) {
            let until = self.runner.holds.until(PauseScope::All);
            tracing::error!(%until, "THE API REFUSED THE KEY (401/403): every call stops until it is fixed");
            return Err(super::RunError::Unauthorized { until });
        }
        Ok(self.summary)
    }

    async fn drive(&mut self) -> Result<(), super::RunError> {
        let stop = self.runner.db.stop.clone();
        let mut slots: Option<Slots> = None;
        loop {
            if stop.is_cancelled() && self.halt.is_none() {
                tracing::info!("stopping: no new calls; calls in flight finish and are recorded");
                self.halt = Some(Halt::Stopped);
                self.summary.stopped = true;
            }
            if self.halt.is_none()
                && !self.planned_all
                && self.claiming.is_none()
                && self.queue.len() < self.concurrency()
            {
                if self.queue.is_empty() && self.calls.is_empty() {
                    // Nothing else to do meanwhile.
                    let claimed = self.claim_batch().await;
                    self.unless_stopping(claimed)?;
                } else {
                    // Its own task: driven to the end even while this loop writes (a
                    // statement whose rows are not read would hold SQLite's write lock).
                    let (runner, job, cursor) =
                        (self.runner.clone(), self.job.clone(), self.cursor.clone());
                    self.claim_planned_at = self.writes;
                    self.claiming = Some(tokio::spawn(async move {
                        super::claim::claim(&runner, &job, cursor).await
                    }));
                }
            }
            let now = self.runner.clock.now();
            // A 429's wait matters only while calls may still start.
            let waiting_429 = self
                .wait_until
                .filter(|t| *t > now && self.halt.is_none() && !self.queue.is_empty());
            let can_start = self.halt.is_none() && !self.queue.is_empty() && waiting_429.is_none();
            if !can_start {
                slots = None;
            } else if slots.is_none() {
                slots = Some(Box::pin(free_slots(self.runner.clone(), self.queue.len())));
            }
            if self.calls.is_empty()
                && !can_start
                && waiting_429.is_none()
                && self.claiming.is_none()
            {
                if self.halt.is_some() || (self.planned_all && self.queue.is_empty()) {
                    return Ok(());
                }
                // Nothing to wait for: claim again (a batch that was all taken or changed).
                self.flush().await?;
                continue;
            }
            let flush_in = self
                .judged_since
                .map(|t| FLUSH_EVERY.saturating_sub(t.elapsed()));
            tokio::select! {
                biased;
                // The halt is set at the loop's top, before anything else can start a call.
                () = stop.cancelled(), if self.halt.is_none() => continue,
                found = wait_claim(&mut self.claiming), if self.claiming.is_some() => {
                    self.claiming = None;
                    let took = match found {
                        Ok(found) => {
                            self.took_claim(found).await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                    self.unless_stopping(took)?;
                }
                permits = wait_for(&mut slots), if slots.is_some() => {
                    slots = None;
                    let started = self.start(permits).await;
                    self.unless_stopping(started)?;
                }
                Some(joined) = self.calls.join_next_with_id(), if !self.calls.is_empty() => {
                    self.on_answer(joined).await;
                    // Every other call that ended meanwhile too: answers that arrive
                    // together are written together, and their slots refilled as one group.
                    while let Some(joined) = self.calls.try_join_next_with_id() {
                        self.on_answer(joined).await;
                    }
                }
                () = tokio::time::sleep(flush_in.unwrap_or_default()), if flush_in.is_some() => {}
                () = self.runner.clock.sleep(
                    waiting_429.map_or(Duration::ZERO, |t| (t - now).to_std().unwrap_or_default())
                ), if waiting_429.is_some() && self.calls.is_empty() => {}
            }
            if self.flush_due() {
                // This run's own wait for a slot is not another's: dropped (and made again
                // after), so that the slots the answers free may go straight to its next
                // group (`settle_and_start`).
                slots = None;
                self.flush().await?;
            }
        }
    }

    /// A read, claim or start that failed (the database unreachable) while a stop was
    /// asked for ends the run as stopped, not as failed: nothing was called for it.
    fn unless_stopping(
        &mut self,
        done: Result<(), super::RunError>,
    ) -> Result<(), super::RunError> {
        match done {
            Err(e) if self.runner.db.stop.is_cancelled() => {
                tracing::warn!(error = %e, "stopping: the database did not answer; leads not called stay due");
                self.halt.get_or_insert(Halt::Stopped);
                self.summary.stopped = true;
                Ok(())
            }
            other => other,
        }
    }

    fn concurrency(&self) -> usize {
        self.runner.settings.slots()
    }

    /// The action this job's calls make.
    pub fn action(&self) -> Action {
        crate::policy::job_action(&self.job.kind)
    }

    /// Settles one finished call and takes in what its answer means for the job.
    async fn on_answer(
        &mut self,
        joined: Result<(tokio::task::Id, CallOutcome), tokio::task::JoinError>,
    ) {
        let (id, outcome) = match joined {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "a call task failed; its outcome is unknown");
                (e.id(), CallOutcome::Lost)
            }
        };
        if let Some(slot) = self.slot_of.remove(&id) {
            self.judged_slots.push(slot);
        }
        let Some(started) = self.flying.remove(&id) else {
            return;
        };
        (self.progress)();
        let step_retried = self.step_retried(&started, &outcome).await;
        let rules = Rules {
            backoff: &self.runner.settings.backoff,
            on_unknown: self.job.on_unknown,
            step_retried,
        };
        let verdict = verdict::judge(rules, &started, outcome, self.runner.clock.now());
        match verdict.tally {
            Some(tally) => self.summary.count(tally, true),
            None => self.summary.give_back(1),
        }
        self.summary.unreachable += u64::from(verdict.unreachable);
        if matches!(
            verdict.result.attempt.as_ref().map(|a| a.status),
            Some(AttemptStatus::Sent | AttemptStatus::Continued)
        ) {
            self.succeeded[usize::from(started.call.action == Action::FollowUp)] = true;
        }
        self.queue_result(verdict.result);
        if let Some((effect, why)) = verdict.account {
            self.on_account_effect(effect, &why);
        }
    }

    /// Whether `on_unknown = "retry"` already re-sent this call's step once: asked of the
    /// database only for an unknown outcome of a job that retries (rare), since only then
    /// does it matter. Unreadable: taken as retried, so the lead goes to a person rather
    /// than risk a third send.
    async fn step_retried(&self, started: &Started, outcome: &CallOutcome) -> bool {
        let unknown =
            matches!(outcome, CallOutcome::Answered(Err(e)) if e.kind().outcome_unknown());
        if !unknown || self.job.on_unknown != crate::config::OnUnknown::Retry {
            return false;
        }
        let (store, call) = (&self.runner.store, &started.call);
        let step = StepOf {
            lead_id: call.lead.id,
            action: call.action,
            step: call.step,
        };
        match self
            .runner
            .db
            .run("read the step's releases", OnStop::GiveUp, || {
                store.step_released_by(&step, crate::store::ON_UNKNOWN_RELEASE)
            })
            .await
        {
            Ok(retried) => retried,
            Err(e) => {
                tracing::warn!(error = %e, target = %call.target, "could not read whether the step was retried; it goes to review");
                true
            }
        }
    }

    fn on_account_effect(&mut self, effect: AccountEffect, why: &str) {
        let now = self.runner.clock.now();
        match effect {
            AccountEffect::PauseNewConversations | AccountEffect::PauseFollowUps => {
                let scope = effect.pauses().last().copied().unwrap_or(PauseScope::All);
                self.halt_for_pause(scope);
            }
            AccountEffect::Unauthorized => self.halt = Some(Halt::Unauthorized),
            AccountEffect::RateLimited(after) => {
                let wait = after.unwrap_or(self.runner.settings.backoff.retry_base);
                tracing::warn!(?wait, "rate limited (429): holding the job: {why}");
                if wait > LONGEST_429_WAIT {
                    // Too long to hold a run open: the next tick picks the leads up.
                    self.halt.get_or_insert(Halt::RateLimited);
                } else {
                    let until = crate::clock::later(now, wait);
                    self.wait_until = Some(self.wait_until.map_or(until, |t| t.max(until)));
                }
            }
        }
    }

    /// Stops starting calls because `scope` is paused, saying so in the summary.
    pub fn halt_for_pause(&mut self, scope: PauseScope) {
        if self.halt.is_none() {
            let until = self.runner.holds.until(scope);
            self.summary.held = Some(format!(
                "held: {} paused until {}",
                scope.as_str().replace('_', " "),
                until.format("%Y-%m-%d %H:%M UTC")
            ));
            let why = self
                .runner
                .holds
                .held_now(self.runner.clock.now())
                .into_iter()
                .find(|h| h.scope == scope)
                .map_or_else(|| "held by this runner".to_string(), |h| h.reason);
            self.summary
                .reasons
                .push(crate::why::paused(scope.as_str(), until, &why));
        }
        self.halt.get_or_insert(if scope == PauseScope::All {
            Halt::Unauthorized
        } else {
            Halt::Paused
        });
    }

    /// Stops starting calls because a person paused the job, saying so in the summary
    /// (the calls in flight finish and are recorded; leads not called are given back).
    pub fn halt_for_job_pause(&mut self, p: &crate::store::JobPause) {
        if self.halt.is_none() {
            tracing::info!(until = ?p.until, reason = ?p.reason, "the job is paused: no new call");
            self.summary.held = Some(p.describe());
            self.summary.reasons.push(crate::why::job_paused(p));
        }
        self.halt.get_or_insert(Halt::Paused);
    }

    /// Queues a judged result for the next write.
    pub fn queue_result(&mut self, result: LeadResult) {
        self.judged.push(result);
        self.judged_since.get_or_insert_with(Instant::now);
    }

    /// Whether to write the judged answers now: many wait, the oldest has waited long
    /// enough, no call is left to wait for, or their slots are wanted for new calls.
    fn flush_due(&self) -> bool {
        // Half the window answered: write them, so their slots take new calls in one group.
        let half_window = self.judged_slots.len() >= self.concurrency().div_ceil(2);
        !self.judged.is_empty()
            && (self.judged.len() >= FLUSH_AT
                || self.calls.is_empty()
                || half_window
                || self
                    .judged_since
                    .is_some_and(|t| t.elapsed() >= FLUSH_EVERY))
    }

    /// Writes the judged answers (trying again while the database is unreachable: until
    /// this succeeds they exist only in memory).
    async fn flush(&mut self) -> Result<(), super::RunError> {
        if self.judged.is_empty() {
            return Ok(());
        }
        // Group commit: written with the next group's start, when that can go now.
        if self.settle_and_start().await? {
            return Ok(());
        }
        let results = std::mem::take(&mut self.judged);
        let now = self.runner.clock.now();
        let store = &self.runner.store;
        let written = self
            .runner
            .db
            .hold("record results", results.len(), || {
                store.record_results(&results, now)
            })
            .await;
        if let Err(e) = written {
            // Kept for a later try (the run's last flush): never dropped.
            let mut results = results;
            results.append(&mut self.judged);
            self.judged = results;
            return Err(e.into());
        }
        self.written();
        Ok(())
    }

    /// The judged answers are written: their slots may take new calls.
    pub(super) fn written(&mut self) {
        self.writes += 1;
        self.judged.clear();
        self.judged_since = None;
        self.judged_slots.clear();
        // A lead's next queued event is due only once the one before it is settled: the
        // planner may find more now, though it found none before.
        if matches!(self.job.kind, JobKind::Event { .. }) {
            self.planned_all = false;
        }
    }

    /// Says why calls were not made, or no more (`Summary::reasons`): what the planner
    /// passed over, the cap or `max_per_run` reached; else, with nothing called and no
    /// other reason, that no lead was due. Not for a stopped run (it did not look at
    /// everything); a read that fails leaves the reasons out, not the run.
    async fn say_why(&mut self) {
        if self.summary.stopped
            || self.summary.has_reason("paused")
            || self.summary.has_reason("job_paused")
        {
            return;
        }
        let now = self.runner.clock.now();
        let (store, job, cursor) = (&self.runner.store, self.job, &self.cursor);
        match self
            .runner
            .db
            .read("say why", || {
                crate::why::after_plan(&**store, job, now, cursor)
            })
            .await
        {
            Ok(reasons) => self.summary.reasons.extend(reasons),
            Err(e) => tracing::debug!(error = %e, "could not read why calls were not made"),
        }
        if self.summary.calls == 0
            && self.summary.given_back == 0
            && self.summary.reasons.is_empty()
        {
            self.summary.reasons.push(crate::why::nothing_due());
        }
    }

    /// Gives back the leases of leads claimed but never called.
    async fn give_back_queue(&mut self) {
        let leads: Vec<Claimed> = self.queue.drain(..).collect();
        self.summary.give_back(leads.len() as u64);
        self.give_back(leads).await;
    }

    /// Gives back the leases of `leads` (by token), cancelling any attempt an earlier try
    /// recorded for them. Best effort: a lease not given back runs out on its own.
    pub async fn give_back(&self, leads: Vec<Claimed>) {
        let mut by_lease: HashMap<String, Vec<i64>> = HashMap::new();
        for c in leads {
            by_lease
                .entry(c.lease_token)
                .or_default()
                .push(c.call.lead.id);
        }
        for (lease_token, ids) in by_lease {
            let now = self.runner.clock.now();
            let store = &self.runner.store;
            if let Err(e) = self
                .runner
                .db
                .run("give leases back", OnStop::GiveUp, || {
                    store.release_leads(&ids, &lease_token, now)
                })
                .await
            {
                tracing::warn!(error = %e, "could not give leases back; they run out on their own");
            }
        }
    }

    /// A success lifts a pause that had already ended before this run began: a pause set
    /// meanwhile (by another runner, or a 401 among the successes) stays.
    async fn lift_ended_pauses(&self) -> Result<(), super::RunError> {
        let [new, follow] = self.succeeded;
        if !(new || follow) {
            return Ok(());
        }
        let db = &self.runner.db;
        let store = &self.runner.store;
        for p in db.read("read pauses", || store.pauses()).await? {
            let lift = p.until <= self.started_at
                && match p.scope {
                    PauseScope::NewConversations => new,
                    PauseScope::FollowUps => follow,
                    PauseScope::All => true,
                };
            if lift {
                db.run("lift a pause", OnStop::GiveUp, || {
                    store.clear_pause(p.scope, self.started_at)
                })
                .await?;
                self.runner.holds.release_ended(p.scope, self.started_at);
            }
        }
        Ok(())
    }

    pub(super) fn spawn(
        &mut self,
        started: Started,
        start_by: DateTime<Utc>,
        permit: OwnedSemaphorePermit,
    ) {
        let caller = self.runner.caller.clone();
        let call = started.call.clone();
        let handle = self
            .calls
            .spawn(async move { caller.call(&call, start_by).await });
        self.flying.insert(handle.id(), started);
        self.slot_of.insert(handle.id(), permit);
    }
}

/// Waits for the claim under way, if any.
async fn wait_claim(
    claiming: &mut Option<Claiming>,
) -> Result<super::claim::Claim, super::RunError> {
    match claiming.as_mut() {
        // Never aborted: a join error is the claim's panic. It ends the run as a database
        // error would (the calls in flight finish and are recorded), not by unwinding it.
        Some(f) => f
            .await
            .unwrap_or_else(|e| Err(super::RunError::Internal(format!("claiming a batch: {e}")))),
        None => std::future::pending().await,
    }
}

/// Waits for the pinned slot future, if any.
async fn wait_for(slots: &mut Option<Slots>) -> Vec<OwnedSemaphorePermit> {
    match slots.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Waits for a free call slot and a rate-limit cell, then takes every other slot (and
/// cell) free at once, up to `want`: calls that start together are recorded in flight
/// together, in one statement.
async fn free_slots(runner: Runner, want: usize) -> Vec<OwnedSemaphorePermit> {
    let Some(first) = runner.wait_for_slot().await else {
        return Vec::new();
    };
    runner.limiter.until_ready().await;
    let mut got = vec![first];
    while got.len() < want {
        let Ok(permit) = runner.slots.clone().try_acquire_owned() else {
            break;
        };
        if !runner.limiter.try_take() {
            break;
        }
        got.push(permit);
    }
    got
}
