//! `impl Reads`: reads several roles share. Mounted by each backend (`sqlite.rs`,
//! `postgres.rs`) over its own types.

use super::Store;
use super::helpers::count_started_in;
use crate::store::rows::{self, ATTEMPT_COLUMNS};
use crate::store::{Attempt, Pause, QueuedEvent, StoreError};
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
impl crate::store::Reads for Store {
    async fn sender_uses(
        &self,
        rules: &[std::sync::Arc<crate::senders::SenderRule>],
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::senders::SenderUse>, StoreError> {
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        super::runner::sender_uses_in(&mut *self.pool.acquire().await?, rules, now).await
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        let found: Vec<rows::PauseRow> = sqlx::query_as(
            "SELECT scope, until, reason, strikes, set_at, set_by FROM pauses ORDER BY scope",
        )
        .fetch_all(&self.pool)
        .await?;
        rows::all(found)
    }
    async fn count_started_since(
        &self,
        job: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(count_started_in(&mut conn, job, since).await?.max(0) as u64)
    }
    async fn attempts_for(&self, lead_id: i64) -> Result<Vec<Attempt>, StoreError> {
        let found: Vec<rows::AttemptRow> = sqlx::query_as(stmt!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE lead_id = $1 ORDER BY id DESC"
        ))
        .bind(lead_id)
        .fetch_all(&self.pool)
        .await?;
        rows::all(found)
    }
    async fn outbox_counts(&self) -> Result<crate::store::OutboxCounts, StoreError> {
        let (pending, parked): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN parked_at IS NULL THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN parked_at IS NULL THEN 0 ELSE 1 END), 0)
             FROM outbox WHERE acked_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(crate::store::OutboxCounts {
            pending: pending.max(0) as u64,
            parked: parked.max(0) as u64,
        })
    }
    async fn queued_events(
        &self,
        event_type: Option<&str>,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        let found: Vec<rows::EventRow> = sqlx::query_as(
            "SELECT e.id, e.lead_id, l.target, e.event_type, e.context, e.state, e.created_at
             FROM events e JOIN leads l ON l.id = e.lead_id
             WHERE e.state = 'queued' AND (CAST($1 AS TEXT) IS NULL OR e.event_type = $1)
             ORDER BY e.id",
        )
        .bind(event_type)
        .fetch_all(&self.pool)
        .await?;
        Ok(found.into_iter().map(QueuedEvent::from).collect())
    }
}
