//! An import in progress (`ImportSession`). Mounted by each backend (`sqlite.rs`,
//! `postgres.rs`) over its own types.

use super::helpers::upsert_batch;
use super::{D, DB};
use crate::store::ImportSession;
use crate::store::StoreError;
use crate::store::dialect::Dialect;
use crate::store::rules::in_tx;
use crate::store::types::{ImportCounts, LeadInput};
use crate::store::values::ts;

pub(super) struct Import {
    pub(super) pool: sqlx::Pool<DB>,
    pub(super) atomic: bool,
    /// The atomic import's connection, inside the transaction it began with
    /// `D::BEGIN_WRITE` (a plain statement, so that the connection can be closed
    /// rather than pooled whenever the transaction's end is in doubt).
    pub(super) tx: Option<sqlx::pool::PoolConnection<DB>>,
    /// Rows imported or updated so far.
    pub(super) written: u64,
}

/// Begins the atomic import's transaction on a connection of its own.
pub(super) async fn begin_import_tx(
    pool: &sqlx::Pool<DB>,
) -> Result<sqlx::pool::PoolConnection<DB>, StoreError> {
    let mut conn = pool.acquire().await?;
    if let Err(e) = sqlx::query(D::BEGIN_WRITE).execute(&mut *conn).await {
        conn.close_on_drop();
        return Err(e.into());
    }
    Ok(conn)
}

/// Ends the atomic import's transaction with `end` (COMMIT or ROLLBACK); if that
/// fails, the transaction's state is unknown and the connection is closed.
pub(super) async fn end_import_tx(
    mut conn: sqlx::pool::PoolConnection<DB>,
    end: &'static str,
) -> Result<(), StoreError> {
    match sqlx::query(end).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, end, "ending the import's transaction failed; the connection is closed, not reused");
            conn.close_on_drop();
            Err(e.into())
        }
    }
}

impl Drop for Import {
    /// An atomic import dropped unfinished (an error, a panic, a stop) still holds
    /// its transaction: the connection is closed, which rolls it back.
    fn drop(&mut self) {
        if let Some(conn) = self.tx.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// An import that wrote at least this many rows refreshes the planner's statistics
/// (where the dialect needs it): a run right after a big import should not plan
/// with the statistics of an empty table.
pub(super) const REFRESH_STATS_AFTER: u64 = 1_000;

#[async_trait::async_trait]
impl ImportSession for Import {
    async fn upsert(
        &mut self,
        rows: Vec<LeadInput>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<ImportCounts, StoreError> {
        if !self.atomic {
            let counts = in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
                upsert_batch(tx, rows, now).await
            })
            .await?;
            self.written += counts.imported + counts.updated;
            return Ok(counts);
        }
        // One transaction for the whole import: a failed batch rolls it all back,
        // and the session refuses further batches instead of committing them one
        // by one.
        let Some(mut tx) = self.tx.take() else {
            return Err(StoreError::ImportAborted);
        };
        match upsert_batch(&mut tx, rows, now).await {
            Ok(counts) => {
                self.tx = Some(tx);
                self.written += counts.imported + counts.updated;
                Ok(counts)
            }
            Err(e) => {
                end_import_tx(tx, "ROLLBACK").await?;
                Err(e)
            }
        }
    }

    async fn finish(mut self: Box<Self>, keep: bool) -> Result<(), StoreError> {
        if self.atomic && self.tx.is_none() {
            return Err(StoreError::ImportAborted);
        }
        if let Some(tx) = self.tx.take() {
            end_import_tx(tx, if keep { "COMMIT" } else { "ROLLBACK" }).await?;
            if !keep {
                return Ok(());
            }
        }
        if let Some(sql) = D::REFRESH_STATS.filter(|_| self.written >= REFRESH_STATS_AFTER) {
            // The rows are stored; statistics are only a help to the planner.
            if let Err(e) = sqlx::query(sql).execute(&self.pool).await {
                tracing::warn!(error = %e, "could not refresh the planner's statistics after the import");
            }
        }
        Ok(())
    }
}

/// One import row as `D::records` reads it: the keys of fields not given are left out
/// (both backends read a missing key as NULL), so a sparse row is short to write and to
/// parse. Written straight from the row, with no `serde_json::Value` tree in between.
#[derive(serde::Serialize)]
struct RowJson<'a> {
    target: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    own_username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_image: Option<&'a str>,
    /// The tags' JSON text (both backends take the text for the `tags` column).
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_contact_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_reply_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    follow_ups_sent: Option<i32>,
}

impl<'a> From<&'a LeadInput> for RowJson<'a> {
    fn from(r: &'a LeadInput) -> Self {
        RowJson {
            target: &r.target,
            own_username: r.own_username.as_deref(),
            timezone: r.timezone.as_deref(),
            profile_image: r.profile_image.as_deref(),
            tags: r
                .tags
                .as_ref()
                .map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into())),
            state: r.state.map(crate::lead::LeadState::as_str),
            last_contact_at: r.last_contact_at.map(ts),
            last_reply_at: r.last_reply_at.map(ts),
            follow_ups_sent: r.follow_ups_sent,
        }
    }
}

/// Rows of an import batch as the JSON array parameter of `D::records`.
pub(super) fn batch_json<'a>(rows: impl ExactSizeIterator<Item = &'a LeadInput>) -> String {
    let mut out = Vec::with_capacity(rows.len() * 96 + 2);
    out.push(b'[');
    for (i, row) in rows.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing plain strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &RowJson::from(row));
    }
    out.push(b']');
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// What an `INSERT` tells of the rows it inserted, where the backend tells it without
/// returning them: SQLite gives the last rowid, and the rows one statement inserts in a
/// write transaction take consecutive rowids after the table's largest (`id` is the
/// rowid, without AUTOINCREMENT).
pub(super) trait Inserted {
    fn last_rowid(&self) -> Option<i64>;
}

impl Inserted for sqlx::sqlite::SqliteQueryResult {
    fn last_rowid(&self) -> Option<i64> {
        Some(self.last_insert_rowid())
    }
}

impl Inserted for sqlx::postgres::PgQueryResult {
    fn last_rowid(&self) -> Option<i64> {
        None
    }
}
