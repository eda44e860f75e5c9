//! `impl ServiceStore`: what the HTTP service needs beyond people's commands (the inbound
//! relay's reply and lease, pages of leads' events and the outbox, idempotency keys).
//! Mounted by each backend (`sqlite.rs`, `postgres.rs`) over its own types.

use super::{D, Store};
use crate::store::Lead;
use crate::store::ServiceStore;
use crate::store::dialect::Dialect;
use crate::store::params::{KeyAnswer, KeyOf, NewSession};
use crate::store::rows::{ATTEMPT_COLUMNS, LEAD_COLUMNS};
use crate::store::rules::in_tx;
use crate::store::types::{
    Attempt, AttemptFilter, AttemptStatus, Bulk, BulkCounts, BulkDone, KeyClaim, LeadFilter,
    LeadSearch, OutboxItem, QueuedEvent,
};
use crate::store::values::{Ids, Ts};
use crate::store::{StoreError, rows};
use chrono::{DateTime, Utc};

/// How long an idempotency key is remembered, in hours.
pub(super) const KEY_HOURS: i64 = 24;

#[async_trait::async_trait]
impl ServiceStore for Store {
    async fn queued_events_of(
        &self,
        lead_id: i64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<(Vec<QueuedEvent>, u64), StoreError> {
        let rows = sqlx::query_as::<_, rows::EventRow>(
            "SELECT e.id, e.lead_id, l.target, e.event_type, e.context, e.state, e.created_at
             FROM events e JOIN leads l ON l.id = e.lead_id
             WHERE e.lead_id = $1 AND e.state = 'queued'
             ORDER BY e.id LIMIT $2",
        )
        .bind(lead_id)
        .bind(i64::from(limit))
        .fetch(&self.pool);
        let (events, _) = rows::within(
            rows,
            max_bytes,
            |r| Ok(QueuedEvent::from(r)),
            |e: &QueuedEvent| {
                256 + e.target.len()
                    + e.event_type.len()
                    + e.context.as_ref().map_or(0, String::len)
            },
        )
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM events WHERE lead_id = $1 AND state = 'queued'",
        )
        .bind(lead_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((events, total.max(0) as u64))
    }

    async fn outbox_page(
        &self,
        after: i64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query_as::<_, rows::OutboxRow>(
            "SELECT o.id, o.lead_id, o.attempt_id, o.target, o.action, o.message, o.session_id,
                    o.created_at, o.acked_at, l.state AS lead_state, a.sender
             FROM outbox o JOIN leads l ON l.id = o.lead_id
             LEFT JOIN attempts a ON a.id = o.attempt_id
             WHERE o.acked_at IS NULL AND o.id > $1 AND l.state <> 'blocked'
             ORDER BY o.id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch(&self.pool);
        let (items, _) = rows::within(rows, max_bytes, OutboxItem::try_from, |o: &OutboxItem| {
            256 + o.target.len() + o.message.len() + o.session_id.as_ref().map_or(0, String::len)
        })
        .await?;
        Ok(items)
    }

    async fn leads_within(
        &self,
        filter: &LeadFilter,
        max_bytes: usize,
    ) -> Result<(Vec<Lead>, bool), StoreError> {
        let rows = sqlx::query_as::<_, rows::LeadRow>(stmt!(
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
        .fetch(&self.pool);
        rows::within(rows, max_bytes, Lead::try_from, rows::lead_size).await
    }

    async fn attempts_of(
        &self,
        lead_id: i64,
        limit: u32,
    ) -> Result<(Vec<Attempt>, u64), StoreError> {
        let found: Vec<rows::AttemptRow> = sqlx::query_as(stmt!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE lead_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(lead_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE lead_id = $1")
            .bind(lead_id)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows::all(found)?, total.max(0) as u64))
    }

    async fn parked_page(
        &self,
        limit: u32,
    ) -> Result<(Vec<crate::store::ParkedItem>, u64), StoreError> {
        let found: Vec<crate::store::outbox::ParkedRow> = sqlx::query_as(
            "SELECT id, target, action, message, created_at, delivery_tries, last_error, parked_at
             FROM outbox WHERE acked_at IS NULL AND parked_at IS NOT NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL AND parked_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((rows::all(found)?, total.max(0) as u64))
    }

    async fn start_session(&self, session: &NewSession<'_>) -> Result<(), StoreError> {
        let NewSession {
            id,
            now,
            expires_at,
            keep,
        } = *session;
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
                .bind(Ts(now))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO dashboard_sessions (id, created_at, expires_at) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(Ts(now))
            .bind(Ts(expires_at))
            .execute(&mut *tx)
            .await?;
            // The newest `keep` stay; ties at the edge stay too (a bound, not a count).
            sqlx::query(
                "DELETE FROM dashboard_sessions WHERE created_at < (
                     SELECT created_at FROM dashboard_sessions
                     ORDER BY created_at DESC LIMIT 1 OFFSET $1)",
            )
            .bind(i64::from(keep))
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
    }

    async fn session_alive(
        &self,
        id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT id FROM dashboard_sessions WHERE id = $1 AND expires_at > $2",
        )
        .bind(id)
        .bind(Ts(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn end_session(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox_of_attempt(&self, attempt_id: i64) -> Result<Option<OutboxItem>, StoreError> {
        let found: Option<rows::OutboxRow> = sqlx::query_as(
            "SELECT o.id, o.lead_id, o.attempt_id, o.target, o.action, o.message, o.session_id,
                    o.created_at, o.acked_at, l.state AS lead_state, a.sender
             FROM outbox o JOIN leads l ON l.id = o.lead_id
             LEFT JOIN attempts a ON a.id = o.attempt_id
             WHERE o.attempt_id = $1",
        )
        .bind(attempt_id)
        .fetch_optional(&self.pool)
        .await?;
        found.map(OutboxItem::try_from).transpose()
    }

    async fn claim_key(
        &self,
        of: KeyOf<'_>,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<KeyClaim, StoreError> {
        let KeyOf { scope, key } = of;
        // Keys are remembered for a day: a retry comes within minutes, and the
        // table must not grow with every message relayed.
        sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(Ts(now - chrono::Duration::hours(KEY_HOURS)))
            .execute(&self.pool)
            .await?;
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO idempotency (scope, key, request_hash, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, key) DO NOTHING
             RETURNING key",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(Ts(now))
        .fetch_optional(&self.pool)
        .await?;
        if inserted.is_some() {
            return Ok(KeyClaim::New);
        }
        let found: Option<(String, Option<i32>, Option<String>, Ts)> = sqlx::query_as(
            "SELECT request_hash, status, response, created_at FROM idempotency
             WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match found {
            // Forgotten between the two statements: the caller may try again.
            None => KeyClaim::InProgress { since: now },
            Some((hash, _, _, _)) if hash != request_hash => KeyClaim::Mismatch,
            Some((_, Some(status), Some(response), _)) => KeyClaim::Done {
                status: u16::try_from(status).unwrap_or(500),
                response,
            },
            Some((_, _, _, Ts(since))) => KeyClaim::InProgress { since },
        })
    }

    async fn finish_key(
        &self,
        of: KeyOf<'_>,
        answer: KeyAnswer<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (KeyOf { scope, key }, KeyAnswer { status, response }) = (of, answer);
        sqlx::query(
            "UPDATE idempotency SET status = $3, response = $4, finished_at = $5
             WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .bind(i32::from(status))
        .bind(response)
        .bind(Ts(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn last_attempts(
        &self,
        lead_ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, Attempt>, StoreError> {
        let found: Vec<rows::AttemptRow> = sqlx::query_as(stmt!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts
             WHERE id IN (SELECT MAX(id) FROM attempts WHERE lead_id {ids} GROUP BY lead_id)",
            ids = D::in_ids(1)
        ))
        .bind(Ids(lead_ids.to_vec()))
        .fetch_all(&self.pool)
        .await?;
        let attempts: Vec<Attempt> = rows::all(found)?;
        Ok(attempts.into_iter().map(|a| (a.lead_id, a)).collect())
    }

    async fn recent_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<(Attempt, String)>, StoreError> {
        // Newest first by id (the primary key) below the cursor, filtered as it goes;
        // a target prefix asks each attempt's lead by its primary key, and the targets of
        // the page are read in one query after.
        let found: Vec<rows::AttemptRow> = sqlx::query_as(stmt!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts
             WHERE (CAST($1 AS TEXT) IS NULL OR job = $1)
               AND (CAST($2 AS TEXT) IS NULL OR status = $2)
               AND (CAST($3 AS TEXT) IS NULL
                    OR (SELECT COUNT(*) FROM leads l WHERE l.id = attempts.lead_id
                          AND {t} >= $3 AND {t} < $4) >= 1)
               AND id < $6
             ORDER BY id DESC LIMIT $5",
            t = D::bytes("l.target")
        ))
        .bind(filter.job.as_deref())
        .bind(filter.status.map(AttemptStatus::as_str))
        .bind(filter.target.as_deref())
        .bind(filter.target.as_deref().map(LeadSearch::prefix_end))
        .bind(i64::from(filter.limit))
        .bind(filter.before.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let attempts: Vec<Attempt> = rows::all(found)?;
        let leads = self.leads_by_id(attempts.iter().map(|a| a.lead_id)).await?;
        Ok(attempts
            .into_iter()
            .map(|a| {
                let target = leads
                    .get(&a.lead_id)
                    .map(|l| l.target.clone())
                    .unwrap_or_default();
                (a, target)
            })
            .collect())
    }

    async fn forget_key(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn attempts_per_hour(
        &self,
        job: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(chrono::DateTime<chrono::Utc>, AttemptStatus, u64)>, StoreError> {
        // One job at a time, so the range reads `attempts_started (job, started_at)`.
        let found: Vec<(String, String, i64)> = sqlx::query_as(stmt!(
            "SELECT {hour} AS hour, status, COUNT(*) FROM attempts
             WHERE job = $1 AND started_at >= $2
             GROUP BY 1, 2",
            hour = D::utc_hour("started_at")
        ))
        .bind(job)
        .bind(Ts(since))
        .fetch_all(&self.pool)
        .await?;
        found
            .into_iter()
            .map(|(hour, status, n)| {
                let at =
                    chrono::NaiveDateTime::parse_from_str(&format!("{hour}:00"), "%Y-%m-%dT%H:%M")
                        .map_err(|e| StoreError::Corrupt(format!("hour {hour:?}: {e}")))?;
                Ok((
                    at.and_utc(),
                    AttemptStatus::parse(&status)?,
                    n.max(0) as u64,
                ))
            })
            .collect()
    }

    async fn count_by_follow_ups(
        &self,
    ) -> Result<Vec<(crate::lead::LeadState, u32, u64)>, StoreError> {
        let found: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT state, CAST(follow_ups_sent AS BIGINT), COUNT(*) FROM leads
             WHERE state IN ('contacted', 'exhausted')
             GROUP BY state, follow_ups_sent",
        )
        .fetch_all(&self.pool)
        .await?;
        found
            .into_iter()
            .map(|(state, step, n)| {
                let state: crate::lead::LeadState = state.parse().map_err(StoreError::Corrupt)?;
                Ok((state, u32::try_from(step).unwrap_or(0), n.max(0) as u64))
            })
            .collect()
    }

    async fn leads_page(
        &self,
        search: &LeadSearch,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Lead, Option<Attempt>)>, StoreError> {
        let leads: Vec<Lead> =
            super::hot::hot_lead_page("dashboard leads page", search, after, limit)
                .fetch::<rows::LeadRow>(&self.pool)
                .await?
                .into_iter()
                .map(Lead::try_from)
                .collect::<Result<_, _>>()?;
        let ids: Vec<i64> = leads.iter().map(|l| l.id).collect();
        let mut last = self.last_attempts(&ids).await?;
        Ok(leads
            .into_iter()
            .map(|l| {
                let a = last.remove(&l.id);
                (l, a)
            })
            .collect())
    }

    async fn count_leads(&self, search: &LeadSearch, cap: u64) -> Result<u64, StoreError> {
        // The same walk as a page, stopped after `cap` rows.
        use sqlx::Row;
        let (_, args) =
            super::hot::lead_search_args(search, None, i64::try_from(cap).unwrap_or(i64::MAX));
        let n: i64 = super::hot::bind_all(
            sqlx::query(stmt!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM leads WHERE {search} LIMIT $6) AS m",
                search = super::hot::lead_search(false)
            )),
            args,
        )
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(n.max(0) as u64)
    }

    async fn bulk_leads(&self, search: &LeadSearch, bulk: Bulk) -> Result<BulkDone, StoreError> {
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            // The filter again, in the transaction that acts: at most `max + 1` targets
            // (a bounded list), so "more than confirmed" and "more than allowed" are both
            // seen without reading further.
            let cap = bulk.max.saturating_add(1);
            let (_, args) =
                super::hot::lead_search_args(search, None, i64::try_from(cap).unwrap_or(i64::MAX));
            let found: Vec<(i64, String)> = super::hot::bind_all(
                sqlx::query(stmt!(
                    "SELECT id, target FROM leads WHERE {search} ORDER BY {t} LIMIT $6",
                    search = super::hot::lead_search(false),
                    t = D::bytes("leads.target")
                )),
                args,
            )
            .try_map(|r| {
                use sqlx::Row;
                Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?))
            })
            .fetch_all(&mut *tx)
            .await?;
            let matching = found.len() as u64;
            if matching > bulk.max {
                return Ok(BulkDone::TooMany { max: bulk.max });
            }
            if matching > bulk.confirmed {
                return Ok(BulkDone::Changed { now: matching });
            }
            let mut counts = BulkCounts::default();
            for (_, target) in &found {
                let lead = super::helpers::lead_in(tx, target, true).await?;
                if search.state.is_some_and(|s| s != lead.state) {
                    // Changed by someone else between the read and the lock.
                    counts.moved += 1;
                    continue;
                }
                match super::admin::act_in(tx, &lead, bulk.action, bulk.now).await {
                    Ok(()) => counts.changed += 1,
                    Err(StoreError::Refused(_)) => counts.skipped += 1,
                    Err(StoreError::Busy(_)) => counts.busy += 1,
                    Err(e) => return Err(e),
                }
            }
            Ok(BulkDone::Done(counts))
        })
        .await
    }
}
