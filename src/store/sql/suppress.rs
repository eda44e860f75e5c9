//! `impl SuppressionStore`: the suppression list. Mounted by each backend (`sqlite.rs`,
//! `postgres.rs`) over its own types. The check that keeps a suppressed target from being
//! called is in `helpers::insert_attempts`.

use super::helpers::block_suppressed;
use super::{Conn, D, Store};
use crate::store::StoreError;
use crate::store::dialect::Dialect;
use crate::store::rules::in_tx;
use crate::store::suppressions::{
    SUPPRESSIONS_MAX, Suppressed, Suppression, SuppressionStore, Unsuppressed,
};
use crate::store::values::Ts;
use chrono::{DateTime, Utc};

/// Targets as the JSON array the dialect's `texts` reads.
fn texts(targets: &[String]) -> String {
    serde_json::Value::from(targets.to_vec()).to_string()
}

/// Whether `target` is suppressed (read inside `conn`'s transaction).
pub(super) async fn suppressed_in(conn: &mut Conn, target: &str) -> Result<bool, StoreError> {
    let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM suppressions WHERE target = $1")
        .bind(target)
        .fetch_one(&mut *conn)
        .await?;
    Ok(found > 0)
}

#[async_trait::async_trait]
impl SuppressionStore for Store {
    async fn suppress(
        &self,
        targets: &[String],
        now: DateTime<Utc>,
    ) -> Result<Suppressed, StoreError> {
        if targets.is_empty() {
            return Ok(Suppressed::default());
        }
        let list = texts(targets);
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            let added = sqlx::query(stmt!(
                "INSERT INTO suppressions (target, created_at)
                 SELECT x.value, $2 FROM {targets} AS x WHERE true
                 ON CONFLICT (target) DO NOTHING",
                targets = D::texts(1)
            ))
            .bind(&list)
            .bind(Ts(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if added > 0 {
                let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM suppressions")
                    .fetch_one(&mut *tx)
                    .await?;
                if held.max(0) as u64 > SUPPRESSIONS_MAX {
                    return Err(StoreError::Full(format!(
                        "the suppression list would hold {held} targets, more than its limit \
                         of {SUPPRESSIONS_MAX}; nothing was added"
                    )));
                }
            }
            let (_, leads_blocked) = block_suppressed(tx, &list, now).await?;
            Ok(Suppressed {
                added,
                already: targets.len() as u64 - added,
                leads_blocked,
            })
        })
        .await
    }

    async fn unsuppress(&self, targets: &[String]) -> Result<Unsuppressed, StoreError> {
        if targets.is_empty() {
            return Ok(Unsuppressed::default());
        }
        let list = texts(targets);
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            let removed: Vec<String> = sqlx::query_scalar(stmt!(
                "DELETE FROM suppressions WHERE target IN {targets} RETURNING target",
                targets = D::texts(1)
            ))
            .bind(&list)
            .fetch_all(&mut *tx)
            .await?;
            let still_blocked: i64 = if removed.is_empty() {
                0
            } else {
                sqlx::query_scalar(stmt!(
                    "SELECT COUNT(*) FROM leads WHERE target IN {targets} AND state = 'blocked'",
                    targets = D::texts(1)
                ))
                .bind(texts(&removed))
                .fetch_one(&mut *tx)
                .await?
            };
            Ok(Unsuppressed {
                removed: removed.len() as u64,
                not_suppressed: (targets.len() - removed.len()) as u64,
                leads_still_blocked: still_blocked.max(0) as u64,
            })
        })
        .await
    }

    async fn suppressions(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Suppression>, StoreError> {
        // Every target is at least one character: "" is before them all.
        let found: Vec<(String, Ts)> = sqlx::query_as(
            "SELECT target, created_at FROM suppressions WHERE target > $1
             ORDER BY target LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(found
            .into_iter()
            .map(|(target, at)| Suppression {
                target,
                created_at: at.0,
            })
            .collect())
    }

    async fn is_suppressed(&self, target: &str) -> Result<bool, StoreError> {
        suppressed_in(&mut *self.pool.acquire().await?, target).await
    }
}
