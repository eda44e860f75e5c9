//! `impl AdminStore`: people's commands. Mounted by each backend (`sqlite.rs`,
//! `postgres.rs`) over its own types.

use super::helpers::lead_in;
use super::hot::hot_samples;
use super::import::{Import, begin_import_tx};
use super::replies::credit_reply;
use super::{D, Store};
use crate::store::Lead;
use crate::store::dialect::Dialect;
use crate::store::params::{NewEvent, Retag};
use crate::store::rows::LEAD_COLUMNS;
use crate::store::rules::{FUTURE_SKEW, check_reply_time, counts_by_state, in_tx, user_change};
use crate::store::types::{
    BlockedAll, JobRun, LeadFilter, LeaseSummary, OutboxItem, Pause, PauseScope, QueryPlan,
    QueuedEvent, Retagged, RunnerSeen, UserAction,
};
use crate::store::values::{Ids, Ts};
use crate::store::{AdminStore, ImportSession};
use crate::store::{StoreError, rows};

/// Ids acked per statement (SQLite binds them as one JSON text, PostgreSQL as one array).
const ACK_CHUNK: usize = 1_000;

impl Store {
    /// Applies a person's `action` to `target`, checking the lead did not change
    /// since it was read. A retry deliberately frees the steps of the lead's lost or
    /// failed attempts, recorded as such.
    pub(super) async fn user_transition(
        &self,
        target: &str,
        action: UserAction,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Lead, StoreError> {
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            let lead = lead_in(tx, target, true).await?;
            act_in(tx, &lead, action, now).await?;
            lead_in(tx, target, false).await
        })
        .await
    }
}

/// Applies a person's `action` to `lead` (read locked in this transaction by the caller),
/// as the lifecycle allows: `Refused` for a state the action does not apply to, `Busy` for
/// a retry while a call is in flight, `Conflict` if the lead changed since it was read.
/// A retry deliberately frees the steps of the lead's lost or failed attempts, recorded
/// as such. One rule for a lead at a time and for the dashboard's bulk actions.
pub(super) async fn act_in(
    tx: &mut super::Conn,
    lead: &Lead,
    action: UserAction,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    let (to, pending) = user_change(action, lead)?;
    if action == UserAction::Retry {
        // A call under a live lease (a runner's, or the inbound relay's for
        // a lead under review) will be answered: retrying now would throw
        // that answer away and send the step again. Refused until it is
        // answered; a call whose lease ran out (its runner died) is not
        // waited for.
        let flying: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM attempts a JOIN leads l ON l.id = a.lead_id
                 WHERE a.lead_id = $1 AND a.status = 'in_flight'
                   AND l.lease_owner = a.runner_id AND l.lease_expires_at > $2",
        )
        .bind(lead.id)
        .bind(Ts(now))
        .fetch_one(&mut *tx)
        .await?;
        if flying > 0 {
            return Err(StoreError::Busy(lead.target.clone()));
        }
    }
    set_state_in(tx, lead, (to, pending), action, now).await?;
    if action == UserAction::Retry {
        sqlx::query(
                "UPDATE attempts SET status = CASE WHEN status = 'in_flight' THEN 'unknown' ELSE status END,
                    finished_at = COALESCE(finished_at, $1), released_at = $1,
                    released_by = 'leads retry'
                 WHERE lead_id = $2 AND released_at IS NULL
                   AND status IN ('in_flight', 'unknown', 'failed')",
            )
            .bind(Ts(now))
            .bind(lead.id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Writes a person's change of `lead` (to the state and pending event `change`), checking
/// the lead did not change since it was read (else `Conflict`).
async fn set_state_in(
    tx: &mut super::Conn,
    lead: &Lead,
    change: (crate::lead::LeadState, Option<crate::lead::LeadEvent>),
    action: UserAction,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    let (to, pending) = change;
    let done = sqlx::query(
        // Retry and unblock make the lead eligible at once, with a fresh retry
        // budget; a retry starts afresh, while an unblocked lead's call may
        // still be in flight under its lease.
        "UPDATE leads SET state = $1, pending_event = $2, updated_at = $3,
            next_eligible_at = CASE WHEN $6 THEN $3 ELSE next_eligible_at END,
            transient_failures = CASE WHEN $6 THEN 0 ELSE transient_failures END,
            lease_owner = CASE WHEN $7 THEN NULL ELSE lease_owner END,
            lease_expires_at = CASE WHEN $7 THEN NULL ELSE lease_expires_at END
         WHERE id = $4 AND state = $5",
    )
    .bind(to.as_str())
    .bind(pending.and_then(crate::lead::LeadEvent::pending_name))
    .bind(Ts(now))
    .bind(lead.id)
    .bind(lead.state.as_str())
    .bind(action != UserAction::Block)
    .bind(action == UserAction::Retry)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(lead.target.clone()));
    }
    Ok(())
}

#[async_trait::async_trait]
impl AdminStore for Store {
    fn backend(&self) -> &'static str {
        D::NAME
    }

    async fn hot_query_plans(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<QueryPlan>, StoreError> {
        let mut plans = Vec::new();
        for hot in hot_samples(now) {
            plans.push(hot.plan(&self.pool).await?);
        }
        Ok(plans)
    }

    async fn begin_import(&self, atomic: bool) -> Result<Box<dyn ImportSession>, StoreError> {
        let tx = if atomic {
            Some(begin_import_tx(&self.pool).await?)
        } else {
            None
        };
        Ok(Box::new(Import {
            pool: self.pool.clone(),
            atomic,
            tx,
            written: 0,
        }))
    }

    async fn get_lead(&self, target: &str) -> Result<Option<Lead>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        match lead_in(&mut conn, target, false).await {
            Ok(lead) => Ok(Some(lead)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn retag_leads(&self, change: &Retag<'_>) -> Result<Retagged, StoreError> {
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            let mut out = Retagged::default();
            let mut changed = Vec::new();
            for target in change.targets {
                let lead = match lead_in(tx, target, true).await {
                    Ok(lead) => lead,
                    Err(StoreError::NotFound(_)) => {
                        out.unknown.push(target.clone());
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let mut tags: Vec<String> = lead
                    .tags
                    .iter()
                    .filter(|t| !change.remove.contains(t))
                    .cloned()
                    .collect();
                for t in change.add {
                    if !tags.contains(t) {
                        tags.push(t.clone());
                    }
                }
                if tags.len() > crate::lead::fields::TAGS {
                    out.refused.push((
                        lead.target.clone(),
                        format!(
                            "would carry {} tags; the limit is {}",
                            tags.len(),
                            crate::lead::fields::TAGS
                        ),
                    ));
                    continue;
                }
                if tags != lead.tags {
                    changed.push((lead.id, tags));
                }
                out.leads.push(lead);
            }
            // Nothing is written unless every target can change.
            if !out.unknown.is_empty() || !out.refused.is_empty() {
                out.leads.clear();
                return Ok(out);
            }
            for (id, tags) in &changed {
                sqlx::query(stmt!(
                    "UPDATE leads SET tags = {tags}, updated_at = $2 WHERE id = $3",
                    tags = D::tags_from("$1")
                ))
                .bind(serde_json::Value::from(tags.clone()).to_string())
                .bind(Ts(change.now))
                .bind(*id)
                .execute(&mut *tx)
                .await?;
            }
            let mut leads = Vec::with_capacity(out.leads.len());
            for lead in &out.leads {
                leads.push(lead_in(tx, &lead.target, false).await?);
            }
            out.leads = leads;
            Ok(out)
        })
        .await
    }

    async fn set_blocked(
        &self,
        targets: &[String],
        block: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<BlockedAll, StoreError> {
        let action = if block {
            UserAction::Block
        } else {
            UserAction::Unblock
        };
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            let mut out = BlockedAll::default();
            let mut known = Vec::with_capacity(targets.len());
            for target in targets {
                let lead = match lead_in(tx, target, true).await {
                    Ok(lead) => lead,
                    Err(StoreError::NotFound(_)) => {
                        out.unknown.push(target.clone());
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                match user_change(action, &lead) {
                    Ok(change) => known.push((lead, change)),
                    // A list may name a lead blocked before (for an unblock, one not
                    // blocked): nothing to do for it.
                    Err(r) if (r.from == crate::lead::LeadState::Blocked) == block => {
                        out.skipped.push((lead.target.clone(), r.from));
                    }
                    Err(r) => return Err(r.into()),
                }
            }
            if !block && !out.unknown.is_empty() {
                // Nothing is written unless every target is a lead.
                out.skipped.clear();
                return Ok(out);
            }
            for (lead, change) in &known {
                set_state_in(tx, lead, *change, action, now).await?;
            }
            // A do-not-contact list may name people not imported yet: added, blocked.
            let added = std::mem::take(&mut out.unknown);
            if !added.is_empty() {
                let rows = added
                    .iter()
                    .map(|target| crate::store::LeadInput {
                        target: target.clone(),
                        state: Some(crate::lead::LeadState::Blocked),
                        ..Default::default()
                    })
                    .collect();
                super::helpers::upsert_batch(tx, rows, now).await?;
            }
            let skipped: std::collections::HashSet<&str> =
                out.skipped.iter().map(|(t, _)| t.as_str()).collect();
            for target in targets {
                if skipped.contains(target.as_str()) {
                    continue;
                }
                let lead = lead_in(tx, target, false).await?;
                if lead.state != crate::lead::LeadState::Blocked && block {
                    // Added by someone else meanwhile and worked since: not blocked by
                    // the insert; nothing is written.
                    return Err(StoreError::Conflict(target.clone()));
                }
                out.leads.push(lead);
            }
            Ok(out)
        })
        .await
    }

    async fn list_leads(&self, filter: &LeadFilter) -> Result<Vec<Lead>, StoreError> {
        let found: Vec<rows::LeadRow> = sqlx::query_as(stmt!(
            "SELECT {LEAD_COLUMNS} FROM leads
             WHERE (CAST($1 AS TEXT) IS NULL OR state = $1)
               AND (CAST($2 AS TEXT) IS NULL OR {tag})
               AND id > $4
             ORDER BY id
             LIMIT $3",
            tag = D::has_tag(2)
        ))
        .bind(filter.state.map(crate::lead::LeadState::as_str))
        .bind(filter.tag.as_deref())
        .bind(filter.limit.map(i64::from).or(D::NO_LIMIT))
        .bind(filter.after.unwrap_or(0))
        .fetch_all(&self.pool)
        .await?;
        rows::all(found)
    }

    async fn runners(&self) -> Result<Vec<RunnerSeen>, StoreError> {
        let found: Vec<(String, Ts, Ts, String)> = sqlx::query_as(
            "SELECT runner_id, started_at, seen_at, holds FROM runners
             ORDER BY seen_at DESC LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await?;
        found
            .into_iter()
            .map(|(runner_id, started_at, seen_at, holds)| {
                Ok(RunnerSeen {
                    runner_id,
                    started_at: started_at.0,
                    seen_at: seen_at.0,
                    holds: serde_json::from_str(&holds).map_err(|e| {
                        StoreError::Corrupt(format!("runners.holds {holds:?}: {e}"))
                    })?,
                })
            })
            .collect()
    }

    async fn count_by_state(
        &self,
    ) -> Result<std::collections::BTreeMap<crate::lead::LeadState, u64>, StoreError> {
        let found: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM leads GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        counts_by_state(found)
    }

    async fn count_created_after(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        // One number, whatever the number of leads.
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads WHERE created_at > $1")
            .bind(Ts(at))
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn record_reply(
        &self,
        target: &str,
        at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Lead, StoreError> {
        check_reply_time(at, now)?;
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            let lead = lead_in(tx, target, true).await?;
            let to = crate::lead::next(lead.state, crate::lead::LeadEvent::Replied)?;
            // A stored reply time later than `at` is kept, unless it lies in the
            // future (a mistake, which this corrects).
            let done = sqlx::query(
                "UPDATE leads SET state = $1, follow_ups_sent = 0, updated_at = $2,
                    last_reply_at = CASE WHEN last_reply_at IS NULL OR last_reply_at < $3
                                          OR last_reply_at > $6 THEN $3 ELSE last_reply_at END
                 WHERE id = $4 AND state = $5",
            )
            .bind(to.as_str())
            .bind(Ts(now))
            .bind(Ts(at))
            .bind(lead.id)
            .bind(lead.state.as_str())
            .bind(Ts(now + FUTURE_SKEW))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(target.to_string()));
            }
            credit_reply(tx, lead.id, at).await?;
            lead_in(tx, target, false).await
        })
        .await
    }

    async fn reply_counts(
        &self,
        default_sender: Option<&str>,
    ) -> Result<Vec<crate::rates::StepCount>, StoreError> {
        self.read_reply_counts(default_sender).await
    }

    async fn apply_user_action(
        &self,
        target: &str,
        action: UserAction,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Lead, StoreError> {
        self.user_transition(target, action, now).await
    }

    async fn queue_event(&self, event: &NewEvent<'_>) -> Result<QueuedEvent, StoreError> {
        let NewEvent {
            target,
            event_type,
            context,
            now,
        } = *event;
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            // A suppressed target is added `blocked`: its event is dropped, never sent.
            sqlx::query(
                "INSERT INTO leads (target, state, created_at, updated_at, next_eligible_at)
                 VALUES ($1, CASE WHEN EXISTS (SELECT 1 FROM suppressions WHERE target = $1)
                                  THEN 'blocked' ELSE 'new' END, $2, $2, $2)
                 ON CONFLICT (target) DO NOTHING",
            )
            .bind(target)
            .bind(Ts(now))
            .execute(&mut *tx)
            .await?;
            let row: rows::EventRow = sqlx::query_as(
                "INSERT INTO events (lead_id, event_type, context, created_at)
                 SELECT id, $2, $3, $4 FROM leads WHERE target = $1
                 RETURNING id, lead_id, CAST($1 AS TEXT) AS target, event_type, context, state, created_at",
            )
            .bind(target)
            .bind(event_type)
            .bind(context)
            .bind(Ts(now))
            .fetch_one(&mut *tx)
            .await?;
            Ok(QueuedEvent::from(row))
        })
        .await
    }

    async fn lift_pauses(&self, scopes: &[PauseScope]) -> Result<Vec<Pause>, StoreError> {
        let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let found: Vec<rows::PauseRow> = sqlx::query_as(stmt!(
            "DELETE FROM pauses WHERE scope IN {scopes}
             RETURNING scope, until, reason, strikes, set_at, set_by",
            scopes = D::texts(1)
        ))
        .bind(serde_json::Value::from(scopes).to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut lifted: Vec<Pause> = rows::all(found)?;
        lifted.sort_by_key(|p| p.scope);
        Ok(lifted)
    }

    async fn lease_summary(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<LeaseSummary, StoreError> {
        let (leased, until): (i64, Option<Ts>) = sqlx::query_as(
            "SELECT COUNT(*), MAX(lease_expires_at) FROM leads
             WHERE lease_owner IS NOT NULL AND lease_expires_at > $1",
        )
        .bind(Ts(now))
        .fetch_one(&self.pool)
        .await?;
        let in_flight: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE status = 'in_flight'")
                .fetch_one(&self.pool)
                .await?;
        Ok(LeaseSummary {
            leased: leased.max(0) as u64,
            until: until.map(|t| t.0),
            in_flight: in_flight.max(0) as u64,
        })
    }

    async fn queued_event_types(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let found: Vec<(String, i64)> = sqlx::query_as(
            "SELECT event_type, COUNT(*) FROM events WHERE state = 'queued'
             GROUP BY event_type ORDER BY event_type",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(found
            .into_iter()
            .map(|(t, n)| (t, n.max(0) as u64))
            .collect())
    }

    async fn last_runs(&self) -> Result<Vec<JobRun>, StoreError> {
        let found: Vec<rows::RunRow> = sqlx::query_as(
            "SELECT id, job, runner_id, scheduled_at, started_at, finished_at, summary FROM job_runs
             WHERE id IN (SELECT MAX(id) FROM job_runs GROUP BY job) ORDER BY job",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(found.into_iter().map(JobRun::from).collect())
    }

    async fn outbox(&self, include_acked: bool) -> Result<Vec<OutboxItem>, StoreError> {
        let found: Vec<rows::OutboxRow> = sqlx::query_as(
            "SELECT o.id, o.lead_id, o.attempt_id, o.target, o.action, o.message, o.session_id,
                    o.created_at, o.acked_at, l.state AS lead_state, a.sender
             FROM outbox o JOIN leads l ON l.id = o.lead_id
             LEFT JOIN attempts a ON a.id = o.attempt_id
             WHERE $1 OR o.acked_at IS NULL ORDER BY o.id",
        )
        .bind(include_acked)
        .fetch_all(&self.pool)
        .await?;
        rows::all(found)
    }

    async fn outbox_list(
        &self,
        all: bool,
        after: i64,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let found: Vec<rows::OutboxRow> = sqlx::query_as(
            "SELECT o.id, o.lead_id, o.attempt_id, o.target, o.action, o.message, o.session_id,
                    o.created_at, o.acked_at, l.state AS lead_state, a.sender
             FROM outbox o JOIN leads l ON l.id = o.lead_id
             LEFT JOIN attempts a ON a.id = o.attempt_id
             WHERE ($1 OR (o.acked_at IS NULL AND l.state <> 'blocked')) AND o.id > $2
             ORDER BY o.id LIMIT $3",
        )
        .bind(all)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows::all(found)
    }

    async fn outbox_held_back(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox o JOIN leads l ON l.id = o.lead_id
             WHERE o.acked_at IS NULL AND l.state = 'blocked'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn ack_outbox(
        &self,
        ids: &[i64],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        // One transaction, in statements of `ACK_CHUNK` ids: a command naming 100,000 ids
        // acks all of them or none.
        let mut acked: Vec<i64> = in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            let mut acked = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(ACK_CHUNK) {
                let done: Vec<i64> = sqlx::query_scalar(stmt!(
                    "UPDATE outbox SET acked_at = $2, delivered_by = 'ack',
                            lease_owner = NULL, lease_expires_at = NULL
                     WHERE acked_at IS NULL AND id {ids}
                     RETURNING id",
                    ids = D::in_ids(1)
                ))
                .bind(Ids(chunk.to_vec()))
                .bind(Ts(now))
                .fetch_all(&mut *tx)
                .await?;
                acked.extend(done);
            }
            Ok(acked)
        })
        .await?;
        acked.sort_unstable();
        Ok(acked)
    }

    async fn ack_all_outbox(&self, now: chrono::DateTime<chrono::Utc>) -> Result<u64, StoreError> {
        // One statement, whatever the outbox holds: not the rows parked by webhook
        // delivery, nor those held back because their lead is blocked.
        let done = sqlx::query(
            "UPDATE outbox SET acked_at = $1, delivered_by = 'ack',
                    lease_owner = NULL, lease_expires_at = NULL
             WHERE acked_at IS NULL AND parked_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM leads l
                               WHERE l.id = outbox.lead_id AND l.state = 'blocked')",
        )
        .bind(Ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
