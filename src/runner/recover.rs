//! Crash recovery: attempts left in flight by a runner whose lease ran out.
//!
//! Such a call may or may not have reached the API. The attempt becomes `unknown`
//! (`error_kind = runner_lost`, so a late answer from that runner is still recorded over
//! it) and keeps its step; the lead goes to `needs_review`, or, blocked meanwhile, keeps
//! that pending for its unblock. A job with `on_unknown = "retry"` instead releases the
//! step, recorded as such, once in the step's life (an earlier release by it is read back
//! from the step's attempts). Leases that expired with nothing in flight are cleared: a
//! claimed lead whose call never started is simply worked again.

use super::Runner;
use super::db::OnStop;
use super::summary::Summary;
use crate::config::OnUnknown;
use crate::lead::LeadEvent;
use crate::store::StepOf;
use crate::store::{
    AttemptEnd, AttemptStatus, LeadResult, ON_UNKNOWN_RELEASE, RUNNER_LOST, StoreError,
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the daemon looks for calls left in flight by dead processes, besides each job
/// run.
pub const RECOVER_EVERY: Duration = Duration::from_secs(60);

/// The daemon's recovery: calls a dead process left in flight (a job's or the relay's) are
/// settled every `RECOVER_EVERY`, even when no job fires for a long time.
pub struct Recovery {
    runner: Runner,
}

impl Recovery {
    pub fn new(runner: Runner) -> Recovery {
        Recovery { runner }
    }

    /// Runs the runner's recovery every `RECOVER_EVERY` until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(RECOVER_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut summary = Summary::default();
            if let Err(e) = self.runner.recover(&mut summary).await {
                tracing::warn!(error = %e, "could not look for calls left in flight; trying again later");
            }
        }
    }
}

impl Runner {
    /// Settles what dead runners left in flight, and clears their empty leases.
    pub async fn recover(&self, summary: &mut Summary) -> Result<(), StoreError> {
        let now = self.clock.now();
        let orphans = self
            .db
            .read("read attempts left in flight", || self.store.orphans(now))
            .await?;
        let mut results = Vec::with_capacity(orphans.len());
        for o in orphans {
            let retries = self
                .config
                .jobs
                .iter()
                .find(|j| j.name == o.attempt.job)
                .is_some_and(|j| j.on_unknown == OnUnknown::Retry);
            // Once in the step's life, whatever was done to the lead since.
            let step = StepOf {
                lead_id: o.lead.id,
                action: o.attempt.action,
                step: o.attempt.step,
            };
            let retry = retries
                && !self
                    .db
                    .run("read the step's releases", OnStop::GiveUp, || {
                        self.store.step_released_by(&step, ON_UNKNOWN_RELEASE)
                    })
                    .await?;
            tracing::warn!(target = %o.lead.target, job = %o.attempt.job, action = o.attempt.action.as_str(),
                retry, "an attempt was left in flight by a runner that stopped; its outcome is unknown");
            // The attempt's own token: its lease is cleared if it still holds one; a lease
            // another runner holds now is left alone.
            let mut result = LeadResult::new(&o.lead, &o.attempt.lease_token);
            result.attempt = Some(AttemptEnd {
                attempt_id: o.attempt.id,
                status: AttemptStatus::Unknown,
                http_status: None,
                error_kind: Some(RUNNER_LOST.into()),
                error_detail: Some(format!(
                    "runner {} stopped mid-call; the engine may or may not have answered",
                    o.attempt.lease_token
                )),
                session_id: None,
                finished_at: now,
                message: None,
                release: retry.then(|| ON_UNKNOWN_RELEASE.to_string()),
            });
            if retry {
                result.transient_failures += 1;
            } else {
                result.event = Some(LeadEvent::OutcomeUnknown);
            }
            result.last_error = Some("outcome unknown: the runner stopped mid-call".into());
            results.push(result);
            summary.recovered += 1;
        }
        self.db
            .run("record recovered attempts", OnStop::KeepTrying, || {
                self.store.record_results(&results, now)
            })
            .await?;
        self.db
            .run("clear expired leases", OnStop::GiveUp, || {
                self.store.clear_expired_leases(now)
            })
            .await?;
        Ok(())
    }
}
