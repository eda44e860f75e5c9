//! `impl DeliveryStore`: the outbox's webhook delivery. Mounted by each backend
//! (`sqlite.rs`, `postgres.rs`) over its own types.

use super::hot::hot_claim_deliveries;
use super::{D, Store};
use crate::store::dialect::Dialect;
use crate::store::params::{Held, Lease};
use crate::store::values::{Ids, Ts};
use crate::store::{StoreError, rows};
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
impl crate::store::DeliveryStore for Store {
    async fn claim_deliveries(
        &self,
        limit: u32,
        lease: Lease<'_>,
    ) -> Result<Vec<crate::store::DeliveryItem>, StoreError> {
        let Lease {
            lease_token,
            now,
            until: lease_until,
        } = lease;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let found: Vec<crate::store::outbox::DeliveryRow> =
            hot_claim_deliveries(limit, lease_token, now, lease_until)
                .fetch(&self.pool)
                .await?;
        let mut items: Vec<crate::store::DeliveryItem> = rows::all(found)?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    async fn delivered(&self, held: Held<'_>, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let Held { id, lease_token } = held;
        let done = sqlx::query(
            "UPDATE outbox SET acked_at = $3, delivered_by = 'webhook', last_error = NULL,
                    lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_owner = $2 AND acked_at IS NULL",
        )
        .bind(id)
        .bind(lease_token)
        .bind(Ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delivery_failed(
        &self,
        held: Held<'_>,
        error: &str,
        next_try_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Held { id, lease_token } = held;
        let done = sqlx::query(
            "UPDATE outbox SET delivery_tries = delivery_tries + 1, next_try_at = $4,
                    last_error = $3, lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_owner = $2 AND acked_at IS NULL",
        )
        .bind(id)
        .bind(lease_token)
        .bind(crate::store::outbox::short_error(error))
        .bind(Ts(next_try_at))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn park_delivery(
        &self,
        held: Held<'_>,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Held { id, lease_token } = held;
        let done = sqlx::query(
            "UPDATE outbox SET delivery_tries = delivery_tries + 1, parked_at = $4,
                    next_try_at = NULL, last_error = $3,
                    lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_owner = $2 AND acked_at IS NULL",
        )
        .bind(id)
        .bind(lease_token)
        .bind(crate::store::outbox::short_error(error))
        .bind(Ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn parked(&self) -> Result<Vec<crate::store::ParkedItem>, StoreError> {
        let found: Vec<crate::store::outbox::ParkedRow> = sqlx::query_as(
            "SELECT id, target, action, message, created_at, delivery_tries, last_error, parked_at
             FROM outbox WHERE acked_at IS NULL AND parked_at IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows::all(found)
    }

    async fn redeliver(
        &self,
        ids: &[i64],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut unparked: Vec<i64> = sqlx::query_scalar(stmt!(
            "UPDATE outbox SET parked_at = NULL, next_try_at = $2, delivery_tries = 0,
                    first_try_at = NULL
             WHERE id {ids} AND parked_at IS NOT NULL AND acked_at IS NULL
             RETURNING id",
            ids = D::in_ids(1)
        ))
        .bind(Ids(ids.to_vec()))
        .bind(Ts(now))
        .fetch_all(&self.pool)
        .await?;
        unparked.sort_unstable();
        Ok(unparked)
    }
}
