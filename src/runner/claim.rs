//! Claiming: the planner proposes the next batch of due leads (read only, as in a dry
//! run); one statement leases them to this batch's token; the runner keeps only those it
//! now holds that are exactly as planned, and gives the rest back.

use super::RunError;
use super::Runner;
use super::db::{DB_OUTAGE_BUDGET, OnStop};
use super::holds::held_by;
use super::window::{Claimed, Halt, JobRun};
use crate::config::{Job, JobKind};
use crate::plan::{self, Cursor};
use crate::policy::blocking_pause;
use crate::store::Lease;
use crate::store::{JobPause, Lead, Pause, PauseScope};
use std::sync::atomic::Ordering;

/// What planning and claiming a batch found.
pub(super) enum Claim {
    /// A stored pause holds the job: no batch.
    Held(Pause),
    /// A person paused the job (`job pause`): no batch.
    JobPaused(JobPause),
    /// Nothing more is due (or the cap or `max_per_run` is reached).
    NothingDue(Cursor),
    /// The planner's cursor after the batch, the leads this runner now holds exactly as
    /// planned, and those it holds that changed since the plan read them (to give back).
    /// Both empty when other runners took the whole batch first.
    Batch {
        cursor: Cursor,
        fresh: Vec<Claimed>,
        stale: Vec<Claimed>,
    },
}

/// Plans and claims the next batch of `job` after `cursor`: read-only planning, then one
/// statement leases the batch to a new token. Borrows nothing of the run, so it may go on
/// while the run's calls fly and their answers are written (`JobRun::drive`).
pub(super) async fn claim(r: &Runner, job: &Job, cursor: Cursor) -> Result<Claim, RunError> {
    let now = r.clock.now();
    let pauses = r.db.read("read pauses", || r.store.pauses()).await?;
    r.holds.absorb(&pauses);
    if let Some(p) = blocking_pause(&pauses, job, now) {
        return Ok(Claim::Held(p.clone()));
    }
    // Read from the store at every batch: a pause written by any process holds the job.
    if let Some(p) =
        r.db.read("read the job's pause", || r.store.job_pause(&job.name, now))
            .await?
    {
        return Ok(Claim::JobPaused(p));
    }
    let left =
        r.db.read("count today's calls", || {
            plan::remaining(&*r.store, job, now, &cursor)
        })
        .await?;
    let limit = left.min(job.batch_size);
    let (batch, cursor) =
        r.db.read("plan a batch", || {
            let mut cursor = cursor.clone();
            async move {
                let batch = plan::next_batch(&*r.store, job, now, limit, &mut cursor).await?;
                Ok((batch, cursor))
            }
        })
        .await?;
    if batch.is_empty() {
        return Ok(Claim::NothingDue(cursor));
    }
    let lease_token = format!(
        "{}/{}",
        r.runner_id,
        r.claims.fetch_add(1, Ordering::SeqCst) + 1
    );
    let lease_until = now + r.lease(job);
    let ids: Vec<i64> = batch.iter().map(|c| c.lead.id).collect();
    let claimed =
        r.db.run("claim leads", OnStop::GiveUp, || {
            r.store.claim_leads(
                &ids,
                Lease {
                    lease_token: &lease_token,
                    now,
                    until: lease_until,
                },
            )
        })
        .await?;
    // A call may start only while its lease still covers reading its image and the
    // call (each up to the API timeout), then writing its answer through a database
    // outage, and clock skew: a live runner never works under an expired lease.
    let start_by = crate::clock::earlier(
        lease_until,
        r.config
            .fluidtalk
            .timeout
            .saturating_mul(2)
            .saturating_add(DB_OUTAGE_BUDGET)
            .saturating_add(super::SKEW),
    );
    // Only what this runner now holds, and only if it is still as planned: another
    // runner may have taken a lead, or worked it and let go, since the plan read it.
    let (mut fresh, mut stale) = (Vec::new(), Vec::new());
    for mut call in batch {
        let Some(lead) = claimed.iter().find(|l| l.id == call.lead.id) else {
            continue;
        };
        // Its tags may have changed since the plan read it (`leads tag`, an import):
        // a lead no longer in the job's segment is given back, not called.
        let unchanged = unchanged(&call.lead, lead) && job.segment.admits(&lead.tags);
        call.lead = lead.clone();
        let c = Claimed {
            call,
            lease_token: lease_token.clone(),
            start_by,
        };
        if unchanged {
            fresh.push(c);
        } else {
            stale.push(c);
        }
    }
    Ok(Claim::Batch {
        cursor,
        fresh,
        stale,
    })
}

impl JobRun<'_> {
    /// Plans and claims the next batch, and takes it in (`took_claim`).
    pub(super) async fn claim_batch(&mut self) -> Result<(), RunError> {
        self.claim_planned_at = self.writes;
        let found = claim(self.runner, self.job, self.cursor.clone()).await?;
        self.took_claim(found).await;
        Ok(())
    }

    /// Takes in a claim: queues the leads this runner now holds as planned and gives the
    /// rest back; sets `planned_all` when nothing more is due (or the cap or
    /// `max_per_run` is reached); halts the run when a stored pause holds the job.
    pub(super) async fn took_claim(&mut self, found: Claim) {
        match found {
            Claim::Held(p) => {
                tracing::info!(scope = p.scope.as_str(), until = %p.until, reason = %p.reason, "held by a pause");
                self.halt.get_or_insert(if p.scope == PauseScope::All {
                    Halt::Unauthorized
                } else {
                    Halt::Paused
                });
                self.summary.held = Some(held_by(&p));
                self.summary
                    .reasons
                    .push(crate::why::paused(p.scope.as_str(), p.until, &p.reason));
            }
            Claim::JobPaused(p) => self.halt_for_job_pause(&p),
            Claim::NothingDue(cursor) => {
                self.cursor = cursor;
                self.summary.outside_window = u64::from(self.cursor.outside_window);
                self.summary.note_sender_holds(&self.cursor);
                self.summary.day_off = self.cursor.day_off_counts();
                // An event job's lead has its next event due once the one before is
                // written: "nothing due" planned before a write is stale.
                let stale = matches!(self.job.kind, JobKind::Event { .. })
                    && self.writes != self.claim_planned_at;
                if !stale {
                    self.planned_all = true;
                }
            }
            Claim::Batch {
                cursor,
                fresh,
                stale,
            } => {
                self.cursor = cursor;
                self.summary.outside_window = u64::from(self.cursor.outside_window);
                self.summary.note_sender_holds(&self.cursor);
                self.summary.day_off = self.cursor.day_off_counts();
                self.queue.extend(fresh);
                self.give_back(stale).await;
            }
        }
    }
}

/// Whether a lead just claimed is as the plan read it: same state, same step counters, no
/// reply, contact or other change since. Otherwise another runner (or a person) got to it
/// first, and the planned call would be the wrong one.
fn unchanged(planned: &Lead, now_held: &Lead) -> bool {
    planned.state == now_held.state
        && planned.reopens == now_held.reopens
        && planned.follow_ups_total == now_held.follow_ups_total
        && planned.last_contact_at == now_held.last_contact_at
        && planned.last_reply_at == now_held.last_reply_at
        && planned.updated_at == now_held.updated_at
        && planned.next_eligible_at == now_held.next_eligible_at
        && planned.tags == now_held.tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::LeadState;
    use crate::plan::PlannedCall;
    use crate::store::Action;
    use chrono::{DateTime, Utc};

    fn lead() -> Lead {
        let t = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        Lead {
            id: 1,
            target: "@a".into(),
            own_username: None,
            state: LeadState::New,
            timezone: None,
            profile_image: None,
            tags: vec![],
            created_at: t,
            updated_at: t,
            last_contact_at: None,
            last_reply_at: None,
            next_eligible_at: t,
            follow_ups_sent: 0,
            follow_ups_total: 0,
            reopens: 0,
            transient_failures: 0,
            session_id: None,
            last_error: None,
            lease_owner: None,
            lease_expires_at: None,
            pending_event: None,
        }
    }

    #[test]
    fn a_lead_changed_since_the_plan_is_not_called() {
        let call = PlannedCall {
            job: "j".into(),
            target: "@a".into(),
            action: Action::Opener,
            step: 0,
            reason: String::new(),
            sender: None,
            assign: false,
            lead: lead(),
            event: None,
        };
        let mut held = lead();
        held.lease_owner = Some("r/1".into());
        assert!(unchanged(&call.lead, &held), "a lease alone is no change");
        held.updated_at += chrono::Duration::seconds(1);
        assert!(!unchanged(&call.lead, &held));
        let mut held = lead();
        held.reopens = 1;
        assert!(!unchanged(&call.lead, &held));
        // Tags decide a job's segment: a lead retagged since the plan is given back.
        let mut held = lead();
        held.tags = vec!["vip".into()];
        assert!(!unchanged(&call.lead, &held));
    }

    #[test]
    fn a_segment_admits_leads_with_all_its_tags_and_none_it_excludes() {
        use crate::store::Segment;
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let everyone = Segment::default();
        assert!(everyone.is_everyone() && everyone.admits(&[]));
        let vip = Segment {
            tags: tags(&["vip", "warm"]),
            exclude_tags: tags(&["competitor"]),
        };
        assert!(vip.admits(&tags(&["warm", "x", "vip"])));
        assert!(!vip.admits(&tags(&["vip"])), "all of tags");
        assert!(
            !vip.admits(&tags(&["vip", "warm", "competitor"])),
            "none excluded"
        );
        assert!(!vip.admits(&tags(&["VIP", "warm"])), "exact, case included");
        assert_eq!(
            vip.to_string(),
            r#"tagged all of ["vip", "warm"], tagged none of ["competitor"]"#
        );
    }
}
