//! Starting calls: a group of claimed leads is recorded in flight in one statement just
//! before its calls start, so a crash leaves at most the calls then in flight for review.
//!
//! The database refuses a step that an earlier attempt may already have sent (the
//! never-send-twice index); that lead alone goes to `needs_review` and the rest of the
//! group is recorded again without it. Under a daily cap the same statement takes the
//! cap: the leads over it are given back and the run stops starting calls.

use super::RunError;
use super::db::OnStop;
use super::verdict::Started;
use super::window::{Claimed, Halt, JobRun};
use crate::config::JobKind;
use crate::lead::LeadEvent;
use crate::plan;
use crate::store::{
    AttemptStatus, DailyCap, LeadResult, NewAttempt, PauseScope, Recorded, RunnerStore, SenderCall,
    StoreError,
};
use chrono::{DateTime, Utc};
use tokio::sync::OwnedSemaphorePermit;

/// How often a run re-reads its job's pause while calls go out (and at each claim).
const JOB_PAUSE_REFRESH: chrono::Duration = chrono::Duration::seconds(1);

impl JobRun<'_> {
    /// Starts calls for as many queued leads as `permits` allow, unless a pause now holds
    /// the job. Leads whose lease could no longer cover a call are given back.
    pub(super) async fn start(
        &mut self,
        permits: Vec<OwnedSemaphorePermit>,
    ) -> Result<(), RunError> {
        let r = self.runner;
        // The campaign's database file still where it was: else no call, whose answer
        // would be written to a file nobody will read again.
        r.store.check_file()?;
        let now = r.clock.now();
        r.holds.refresh(&*r.store, now).await;
        if self.job_paused(now).await {
            return Ok(());
        }
        let action = self.action();
        if r.holds.blocks(action, now) {
            let scope = [
                PauseScope::All,
                PauseScope::FollowUps,
                PauseScope::NewConversations,
            ]
            .into_iter()
            .find(|s| r.holds.held(*s, now))
            .unwrap_or(PauseScope::All);
            self.halt_for_pause(scope);
            return Ok(());
        }
        let group = self.take_group(permits.len(), now, || true).await;
        let started = self.record_in_flight(group).await?;
        for ((s, start_by), permit) in started.into_iter().zip(permits) {
            // A call that can no longer start in time (the recording waited out a database
            // outage) is not made: `Caller::call` checks `start_by` again.
            self.spawn(s, start_by, permit);
        }
        Ok(())
    }

    /// Whether a person paused this job (`job pause`, read from the store at most once a
    /// second while calls go out, so a pause written by any process stops the run's new
    /// calls within about a second): if so the run halts, saying why. A read that fails
    /// changes nothing (the next claim reads the pause again, riding out an outage).
    pub(super) async fn job_paused(&mut self, now: DateTime<Utc>) -> bool {
        if self.halt.is_some() {
            return false;
        }
        if self
            .job_pause_read
            .is_some_and(|t| now.signed_duration_since(t) < JOB_PAUSE_REFRESH)
        {
            return false;
        }
        self.job_pause_read = Some(now);
        let r = self.runner;
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            r.store.job_pause(&self.job.name, now),
        )
        .await;
        match read {
            Ok(Ok(Some(p))) => {
                self.halt_for_job_pause(&p);
                true
            }
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not re-read the job's pause");
                false
            }
            Err(_) => {
                tracing::debug!("re-reading the job's pause timed out");
                false
            }
        }
    }

    /// Up to `n` queued leads whose call may still start at `now`, each only if `may` (the
    /// rate limit) lets it; leads queued too long are given back.
    async fn take_group(
        &mut self,
        n: usize,
        now: DateTime<Utc>,
        mut may: impl FnMut() -> bool,
    ) -> Vec<Claimed> {
        let mut group = Vec::with_capacity(n);
        let mut late = Vec::new();
        while group.len() < n {
            let Some(c) = self.queue.pop_front() else {
                break;
            };
            if c.start_by < now {
                late.push(c);
            } else if may() {
                group.push(c);
            } else {
                self.queue.push_front(c);
                break;
            }
        }
        if !late.is_empty() {
            // Queued too long behind other calls: never called late under a lease that
            // could run out mid-call.
            self.summary.give_back(late.len() as u64);
            self.give_back(late).await;
        }
        group
    }

    /// Group commit: the judged answers are written together with the next group's
    /// attempts in flight, in one transaction, and that group's calls start on the slots
    /// the answers held. Only when the slots may go straight to it: no other job or
    /// relayed call waits for a slot, no pause, halt or 429 holds new calls, and the rate
    /// limit has cells. Returns whether it wrote the answers; when not (it did not apply,
    /// or the combined write failed, in which case nothing of it was written), the leads
    /// are back at the front of the queue and the caller writes the answers alone.
    pub(super) async fn settle_and_start(&mut self) -> Result<bool, RunError> {
        let r = self.runner;
        let now = r.clock.now();
        if !r.store.group_commit()
            || self.halt.is_some()
            || r.db.stop.is_cancelled()
            || self.queue.is_empty()
            || self.judged_slots.is_empty()
            || self.wait_until.is_some_and(|t| t > now)
            || r.slot_wanted()
            // In an outage the answers are held by the ordinary write, which says so.
            || r.db.health.outage().is_some()
            || r.store.check_file().is_err()
        {
            return Ok(false);
        }
        r.holds.refresh(&*r.store, now).await;
        if r.holds.blocks(self.action(), now) || self.job_paused(now).await {
            return Ok(false);
        }
        let group = self
            .take_group(self.judged_slots.len(), now, || r.limiter.try_take())
            .await;
        if group.is_empty() {
            return Ok(false);
        }
        let attempts = self.attempts_of(&group, now);
        let cap = self.cap();
        let written =
            r.db.once(r.store.settle_and_start(&self.judged, now, &attempts, cap));
        let recorded = match written.await {
            Ok((_, recorded)) => recorded,
            // Refused (a step that may have been sent): nothing was written.
            Err(e @ StoreError::AlreadySent { .. }) => {
                tracing::debug!(error = %e, "the answers and the next group could not be written together; writing them apart");
                self.requeue(group);
                return Ok(false);
            }
            Err(e) => {
                if e.is_transient() {
                    tracing::warn!(error = %e, "the database is unreachable; looking whether the answers and the next group were written");
                } else {
                    tracing::warn!(error = %e, "the answers and the next group were maybe not written; looking");
                }
                // A lost reply: the commit may have landed. All or nothing, so the next
                // group's attempts in flight under their tokens say whether it did; until
                // that is known no slot of it is given up (the crash bound).
                let found =
                    r.db.read("look for a group's attempts", || ours(&*r.store, &attempts))
                        .await;
                match found {
                    Ok(Some(found)) => found,
                    Ok(None) => {
                        self.requeue(group);
                        return Ok(false);
                    }
                    Err(e) => {
                        // The run ends: its last write holds the answers, and giving the
                        // queue back cancels any attempts the lost commit left in flight.
                        self.requeue(group);
                        return Err(e.into());
                    }
                }
            }
        };
        let mut slots = std::mem::take(&mut self.judged_slots);
        self.written();
        for (s, start_by) in self.took(group, recorded).await {
            let Some(permit) = slots.pop() else {
                break;
            };
            self.spawn(s, start_by, permit);
        }
        Ok(true)
    }

    /// Puts `group` back at the front of the queue, in its order.
    fn requeue(&mut self, group: Vec<Claimed>) {
        for c in group.into_iter().rev() {
            self.queue.push_front(c);
        }
    }

    /// The daily cap the job's openers count against now, if any.
    fn cap(&self) -> Option<DailyCap> {
        match &self.job.kind {
            JobKind::Opener {
                daily_cap: Some(limit),
                ..
            } => Some(DailyCap {
                since: plan::day_start(self.runner.clock.now(), self.job.timezone),
                limit: *limit,
            }),
            _ => None,
        }
    }

    /// The attempts `group`'s calls record in flight, started at `now`.
    fn attempts_of(&self, group: &[Claimed], now: DateTime<Utc>) -> Vec<NewAttempt> {
        group
            .iter()
            .map(|c| NewAttempt {
                lead_id: c.call.lead.id,
                job: self.job.name.clone(),
                action: c.call.action,
                step: c.call.step,
                lease_token: c.lease_token.clone(),
                started_at: now,
                claimed: Some(c.call.lead.state),
                sender: c.call.sender.clone().map(|username| SenderCall {
                    rule: self.job.senders.book.get(&username).cloned(),
                    assign: c.call.assign,
                    username,
                }),
            })
            .collect()
    }

    /// Takes in what recording `group` in flight found: the calls that may start, in
    /// order, with the last moment each may start; the leads that changed since their
    /// claim, are over the daily cap (which halts the run) or whose sender's room another
    /// runner used since the plan are given back, and counted in `given_back`.
    async fn took(
        &mut self,
        group: Vec<Claimed>,
        recorded: Vec<Recorded>,
    ) -> Vec<(Started, DateTime<Utc>)> {
        let (mut started, mut changed, mut over) = (Vec::new(), Vec::new(), Vec::new());
        let mut held = Vec::new();
        for (c, r) in group.into_iter().zip(recorded) {
            match r {
                Recorded::Started(attempt_id) => {
                    let s = Started {
                        call: c.call,
                        lease_token: c.lease_token,
                        attempt_id,
                    };
                    started.push((s, c.start_by));
                }
                // Blocked, replied to or taken since the claim: not called.
                Recorded::Changed => changed.push(c),
                Recorded::OverCap => over.push(c),
                // Its sender's cap or gap was used by another run since the plan.
                Recorded::SenderHeld => held.push(c),
            }
        }
        if !held.is_empty() {
            tracing::info!(
                left_for_later = held.len(),
                "their senders' caps or gaps were used since the plan (counting every runner): not called"
            );
        }
        if !over.is_empty() {
            tracing::info!(
                left_for_later = over.len(),
                "the daily cap was reached (counting every runner)"
            );
            self.halt.get_or_insert(Halt::CapReached);
        }
        if !changed.is_empty() {
            tracing::info!(
                leads = changed.len(),
                "leads changed since they were claimed (blocked, replied to): not called"
            );
        }
        self.summary
            .give_back((over.len() + changed.len() + held.len()) as u64);
        changed.append(&mut over);
        changed.append(&mut held);
        self.give_back(changed).await;
        started
    }

    /// Records `group` in flight; returns the calls recorded, in order, with the last
    /// moment each may start.
    async fn record_in_flight(
        &mut self,
        mut group: Vec<Claimed>,
    ) -> Result<Vec<(Started, DateTime<Utc>)>, RunError> {
        let r = self.runner;
        let cap = self.cap();
        while !group.is_empty() {
            let now = r.clock.now();
            let attempts = self.attempts_of(&group, now);
            let mut tries = 0;
            let recorded =
                r.db.run("record attempts in flight", OnStop::GiveUp, || {
                    tries += 1;
                    let retry = tries > 1;
                    let attempts = &attempts;
                    async move {
                        // A try whose answer was lost may have been written: use that one.
                        if retry && let Some(recorded) = ours(&*r.store, attempts).await? {
                            return Ok(recorded);
                        }
                        r.store.start_attempts_within(attempts, cap).await
                    }
                })
                .await;
            let recorded = match recorded {
                // The first try may have been written before its connection was lost.
                Err(StoreError::AlreadySent { .. }) => match ours(&*r.store, &attempts).await? {
                    Some(found) => Ok(found),
                    None => recorded,
                },
                other => other,
            };
            match recorded {
                Ok(recorded) => return Ok(self.took(group, recorded).await),
                Err(StoreError::AlreadySent {
                    lead_id,
                    action,
                    step,
                }) => {
                    // Never send twice: the database refused one step. That lead goes to a
                    // person; the rest of the group is recorded again without it.
                    tracing::error!(
                        lead_id,
                        action,
                        step,
                        "a step may already have been sent: not sent again; the lead needs review"
                    );
                    let Some(i) = group.iter().position(|c| c.call.lead.id == lead_id) else {
                        self.give_back(group).await;
                        return Err(StoreError::Corrupt(format!(
                            "the attempts index refused lead {lead_id}, which was not in the group"
                        ))
                        .into());
                    };
                    let c = group.remove(i);
                    let mut review = LeadResult::new(&c.call.lead, &c.lease_token);
                    review.event = Some(LeadEvent::OutcomeUnknown);
                    review.last_error = Some(format!(
                        "{action} step {step} may already have been sent: not sent again"
                    ));
                    self.summary.review += 1;
                    self.queue_result(review);
                }
                Err(e) => {
                    self.give_back(group).await;
                    return Err(e.into());
                }
            }
        }
        Ok(Vec::new())
    }
}

/// After a lost connection: what an earlier try recorded of `attempts` (in flight under
/// their tokens), or `None` if it recorded none. One it did not record (its lead changed,
/// or over the cap) is given back as `Changed`; the next group meets the cap again.
async fn ours(
    store: &dyn RunnerStore,
    attempts: &[NewAttempt],
) -> Result<Option<Vec<Recorded>>, StoreError> {
    let mut found = Vec::with_capacity(attempts.len());
    for a in attempts {
        let held = store.attempts_for(a.lead_id).await?;
        found.push(
            held.iter()
                .find(|h| {
                    h.status == AttemptStatus::InFlight
                        && h.lease_token == a.lease_token
                        && h.action == a.action
                        && h.step == a.step
                })
                .map_or(Recorded::Changed, |h| Recorded::Started(h.id)),
        );
    }
    let any = found.iter().any(|r| matches!(r, Recorded::Started(_)));
    Ok(any.then_some(found))
}
