//! `impl SnapshotStore`: copying a campaign's working set between databases, for the
//! forecast. Mounted by each backend (`sqlite.rs`, `postgres.rs`) over its own types.

use super::hot::{FollowUpDue, hot_due_events, hot_due_follow_ups, hot_due_openers};
use super::{D, Store};
use crate::store::Lead;
use crate::store::dialect::Col;
use crate::store::dialect::Dialect;
use crate::store::rows::{ATTEMPT_COLUMNS, LEAD_COLUMNS};
use crate::store::rules::{clean, in_tx};
use crate::store::types::{Attempt, Due, DueQuery, Pause, QueuedEvent};
use crate::store::values::{Ts, ts};
use crate::store::{StoreError, rows};

#[async_trait::async_trait]
impl crate::store::SnapshotStore for Store {
    async fn leads_page(&self, after: i64, limit: u32) -> Result<Vec<Lead>, StoreError> {
        let found: Vec<rows::LeadRow> = sqlx::query_as(stmt!(
            "SELECT {LEAD_COLUMNS} FROM leads WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        found.into_iter().map(Lead::try_from).collect()
    }

    async fn attempts_since(
        &self,
        jobs: &[String],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Attempt>, StoreError> {
        let mut all = std::collections::BTreeMap::new();
        // Per job, so each read is a range of `attempts_started (job, started_at)`.
        for job in jobs {
            let found: Vec<rows::AttemptRow> = sqlx::query_as(stmt!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job = $1 AND started_at >= $2
                 AND status IN ('in_flight', 'sent', 'continued', 'unknown')"
            ))
            .bind(job)
            .bind(Ts(since))
            .fetch_all(&self.pool)
            .await?;
            for r in found {
                let a = Attempt::try_from(r)?;
                all.insert(a.id, a);
            }
        }
        let flying: Vec<rows::AttemptRow> = sqlx::query_as(stmt!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE status = 'in_flight'"
        ))
        .fetch_all(&self.pool)
        .await?;
        for r in flying {
            let a = Attempt::try_from(r)?;
            all.insert(a.id, a);
        }
        Ok(all.into_values().collect())
    }

    async fn count_due(&self, q: &DueQuery) -> Result<u64, StoreError> {
        // No cursor: before every stored time (a lead contacted in year 1, a CRM's
        // "empty date", is due like any other).
        let after = q
            .after
            .unwrap_or((chrono::DateTime::<chrono::Utc>::MIN_UTC, 0));
        let hot = match &q.due {
            Due::Opener => hot_due_openers(q.now, after, u32::MAX, &q.segment),
            Due::FollowUp { cutoffs, max } => hot_due_follow_ups(
                q.now,
                after,
                u32::MAX,
                &FollowUpDue {
                    cutoffs,
                    max: *max,
                    segment: &q.segment,
                },
            ),
        };
        Ok(u64::try_from(hot.count_rows(&self.pool).await?).unwrap_or(0))
    }

    async fn count_due_events(
        &self,
        event_type: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let hot = hot_due_events(event_type, now, u32::MAX, 0);
        Ok(u64::try_from(hot.count_rows(&self.pool).await?).unwrap_or(0))
    }

    async fn attempts_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<crate::store::AttemptOf>, StoreError> {
        let found: Vec<rows::AttemptOfRow> = sqlx::query_as(stmt!(
            "SELECT a.id, a.lead_id, a.job, a.action, a.step, a.status, a.http_status,
                    a.error_kind, a.error_detail, a.session_id, a.started_at, a.finished_at,
                    a.runner_id AS lease_token, a.released_at, a.released_by, a.sender, l.target
             FROM attempts a JOIN leads l ON l.id = a.lead_id
             WHERE a.id > $1 ORDER BY a.id LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        found.into_iter().map(TryInto::try_into).collect()
    }

    async fn restore_leads(&self, leads: &[Lead]) -> Result<(), StoreError> {
        if leads.is_empty() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = leads
            .iter()
            .map(|l| {
                serde_json::json!({
                    "id": l.id, "target": clean(&l.target), "own_username": l.own_username,
                    "state": l.state.as_str(), "timezone": l.timezone,
                    "profile_image": l.profile_image,
                    "tags": serde_json::Value::from(l.tags.clone()).to_string(),
                    "created_at": ts(l.created_at), "updated_at": ts(l.updated_at),
                    "last_contact_at": l.last_contact_at.map(ts),
                    "last_reply_at": l.last_reply_at.map(ts),
                    "next_eligible_at": ts(l.next_eligible_at),
                    "follow_ups_sent": l.follow_ups_sent, "follow_ups_total": l.follow_ups_total,
                    "reopens": l.reopens, "transient_failures": l.transient_failures,
                    "session_id": l.session_id, "last_error": l.last_error,
                    "lease_owner": l.lease_owner, "lease_expires_at": l.lease_expires_at.map(ts),
                    "pending_event": l.pending_event,
                })
            })
            .collect();
        sqlx::query(stmt!(
            "INSERT INTO leads ({LEAD_COLUMNS})
             SELECT x.id, x.target, x.own_username, x.state, x.timezone, x.profile_image,
                    {tags}, x.created_at, x.updated_at, x.last_contact_at, x.last_reply_at,
                    x.next_eligible_at, x.follow_ups_sent, x.follow_ups_total, x.reopens,
                    x.transient_failures, x.session_id, x.last_error, x.lease_owner,
                    x.lease_expires_at, x.pending_event
             FROM {rows} WHERE true",
            tags = D::tags_from("x.tags"),
            rows = D::records(
                1,
                "x",
                &[
                    Col::Int("id"),
                    Col::Text("target"),
                    Col::Text("own_username"),
                    Col::Text("state"),
                    Col::Text("timezone"),
                    Col::Text("profile_image"),
                    Col::Text("tags"),
                    Col::Ts("created_at"),
                    Col::Ts("updated_at"),
                    Col::Ts("last_contact_at"),
                    Col::Ts("last_reply_at"),
                    Col::Ts("next_eligible_at"),
                    Col::Int("follow_ups_sent"),
                    Col::Int("follow_ups_total"),
                    Col::Int("reopens"),
                    Col::Int("transient_failures"),
                    Col::Text("session_id"),
                    Col::Text("last_error"),
                    Col::Text("lease_owner"),
                    Col::Ts("lease_expires_at"),
                    Col::Text("pending_event"),
                ]
            )
        ))
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn sender_rows(&self) -> Result<Vec<crate::senders::SenderUse>, StoreError> {
        // One row per sender that ever called (pruned with the attempts): a few.
        let found: Vec<(String, Option<Ts>, Option<Ts>, Option<Ts>)> = sqlx::query_as(
            "SELECT username, first_opener_at, last_call_at, follow_up_waiting_at
             FROM senders ORDER BY username LIMIT 100000",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(found
            .into_iter()
            .map(
                |(username, first, last, waiting)| crate::senders::SenderUse {
                    username,
                    openers_today: 0,
                    first_opener_at: first.map(|t| t.0),
                    last_call_at: last.map(|t| t.0),
                    follow_up_waiting_at: waiting.map(|t| t.0),
                },
            )
            .collect())
    }

    async fn restore_rest(
        &self,
        events: &[QueuedEvent],
        attempts: &[Attempt],
        pauses: &[Pause],
        senders: &[crate::senders::SenderUse],
    ) -> Result<(), StoreError> {
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            for s in senders {
                sqlx::query(
                    "INSERT INTO senders (username, first_opener_at, last_call_at, follow_up_waiting_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&s.username)
                .bind(s.first_opener_at.map(Ts))
                .bind(s.last_call_at.map(Ts))
                .bind(s.follow_up_waiting_at.map(Ts))
                .execute(&mut *tx)
                .await?;
            }
            for chunk in events.chunks(1_000) {
                let rows: Vec<serde_json::Value> = chunk
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "id": e.id, "lead_id": e.lead_id, "event_type": e.event_type,
                            "context": e.context, "state": e.state, "created_at": ts(e.created_at),
                        })
                    })
                    .collect();
                sqlx::query(stmt!(
                    "INSERT INTO events (id, lead_id, event_type, context, state, created_at)
                     SELECT x.id, x.lead_id, x.event_type, x.context, x.state, x.created_at
                     FROM {rows} WHERE true",
                    rows = D::records(
                        1,
                        "x",
                        &[
                            Col::Int("id"),
                            Col::Int("lead_id"),
                            Col::Text("event_type"),
                            Col::Text("context"),
                            Col::Text("state"),
                            Col::Ts("created_at"),
                        ]
                    )
                ))
                .bind(serde_json::Value::Array(rows).to_string())
                .execute(&mut *tx)
                .await?;
            }
            for chunk in attempts.chunks(1_000) {
                let rows: Vec<serde_json::Value> = chunk
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "id": a.id, "lead_id": a.lead_id, "job": a.job,
                            "action": a.action.as_str(), "step": a.step,
                            "status": a.status.as_str(), "http_status": a.http_status,
                            "error_kind": a.error_kind, "error_detail": a.error_detail,
                            "session_id": a.session_id, "started_at": ts(a.started_at),
                            "finished_at": a.finished_at.map(ts), "runner_id": a.lease_token,
                            "released_at": a.released_at.map(ts), "released_by": a.released_by,
                            "sender": a.sender,
                        })
                    })
                    .collect();
                sqlx::query(stmt!(
                    "INSERT INTO attempts (id, lead_id, job, action, step, status, http_status,
                         error_kind, error_detail, session_id, started_at, finished_at,
                         runner_id, released_at, released_by, sender, opens)
                     SELECT x.id, x.lead_id, x.job, x.action, x.step, x.status, x.http_status,
                         x.error_kind, x.error_detail, x.session_id, x.started_at,
                         x.finished_at, x.runner_id, x.released_at, x.released_by, x.sender,
                         CASE WHEN x.action = 'opener' THEN 1 ELSE 0 END
                     FROM {rows} WHERE true",
                    rows = D::records(
                        1,
                        "x",
                        &[
                            Col::Int("id"),
                            Col::Int("lead_id"),
                            Col::Text("job"),
                            Col::Text("action"),
                            Col::Int("step"),
                            Col::Text("status"),
                            Col::Int("http_status"),
                            Col::Text("error_kind"),
                            Col::Text("error_detail"),
                            Col::Text("session_id"),
                            Col::Ts("started_at"),
                            Col::Ts("finished_at"),
                            Col::Text("runner_id"),
                            Col::Ts("released_at"),
                            Col::Text("released_by"),
                            Col::Text("sender"),
                        ]
                    )
                ))
                .bind(serde_json::Value::Array(rows).to_string())
                .execute(&mut *tx)
                .await?;
            }
            for p in pauses {
                sqlx::query(
                    "INSERT INTO pauses (scope, until, reason, strikes, set_at, set_by)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(p.scope.as_str())
                .bind(Ts(p.until))
                .bind(&p.reason)
                .bind(p.strikes)
                .bind(Ts(p.set_at))
                .bind(p.set_by.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })
        .await
    }
}
