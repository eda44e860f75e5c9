//! The SQLite store: the zero-set-up default, one file with WAL and a busy timeout.
//!
//! Timestamps are stored as fixed-width UTC text (`2026-11-24T09:00:00.000000Z`), so text
//! order is time order. Writes that read first run in `BEGIN IMMEDIATE` transactions, which
//! take the write lock up front instead of failing to upgrade a read lock later.

use super::{
    Action, Attempt, AttemptEnd, AttemptStatus, Current, DailyCap, Due, DueEvent, DueLead,
    DueQuery, FUTURE_SKEW, ImportCounts, ImportSession, JobRun, Lead, LeadFilter, LeadInput,
    LeadResult, LeaseSummary, NewAttempt, Orphan, OutboxItem, Pause, PauseScope, QueuedEvent,
    RUNNER_LOST, Recorded, Store, StoreError, UserAction, already_sent, attempts_json, cap_allows,
    check_reply_time, clean, counts_by_state, ends_json, ids_in_order, in_tx, is_unique_violation,
    memory_url, merge_batch, recorded_under_cap, redact_url, rows_json, settle_json, still_claimed,
    ts, user_change,
};
use crate::lead::{self, LeadEvent, LeadState};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

macro_rules! lead_columns {
    () => {
        "id, target, own_username, state, timezone, profile_image, tags, created_at, \
         updated_at, last_contact_at, last_reply_at, next_eligible_at, follow_ups_sent, \
         follow_ups_total, reopens, transient_failures, session_id, last_error, lease_owner, lease_expires_at, \
         pending_event"
    };
}

/// When a contacted lead went quiet: the later of last contact and last reply.
macro_rules! quiet_since {
    () => {
        "MAX(COALESCE(last_contact_at, last_reply_at), COALESCE(last_reply_at, last_contact_at))"
    };
}

macro_rules! attempt_columns {
    () => {
        "id, lead_id, job, action, step, status, http_status, error_kind, error_detail, \
         session_id, started_at, finished_at, runner_id, released_at, released_by"
    };
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

fn opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.as_deref().map(parse_ts).transpose()
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url, 4, |o| {
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
        })
        .await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens an existing database file read-only, without migrating.
    pub async fn open_read_only(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url, 2, |o| {
            o.read_only(true)
                .create_if_missing(false)
                // The file is already in WAL mode; asking for another would write.
                .journal_mode(SqliteJournalMode::Wal)
        })
        .await?;
        store.check_schema().await?;
        Ok(store)
    }

    async fn connect(
        url: &str,
        max_connections: u32,
        options: impl FnOnce(SqliteConnectOptions) -> SqliteConnectOptions,
    ) -> Result<Self, StoreError> {
        let parsed = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
            url: redact_url(url),
            why: e.to_string(),
        })?;
        // An in-memory or nameless database would report success and keep nothing.
        let file = parsed.get_filename().to_string_lossy();
        if memory_url(url) || file.is_empty() || file.starts_with("file:sqlx-in-memory") {
            return Err(StoreError::BadUrl {
                url: redact_url(url),
                why: "an in-memory database keeps nothing after the command ends; \
                      name a file, e.g. sqlite://fluidtalk-runner.db"
                    .into(),
            });
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options(parsed.busy_timeout(Duration::from_secs(30))))
            .await
            .map_err(|cause| StoreError::Connect {
                url: redact_url(url),
                cause,
            })?;
        Ok(Self { pool })
    }

    async fn check_schema(&self) -> Result<(), StoreError> {
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let found: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .unwrap_or(None);
        match found.unwrap_or(0) {
            f if f > known => Err(StoreError::SchemaTooNew { found: f, known }),
            f if f < known => Err(StoreError::SchemaBehind { found: f, known }),
            _ => Ok(()),
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let has_table: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await?;
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        if has_table.is_some() {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&self.pool)
                    .await?;
            if let Some(found) = found.filter(|f| *f > known) {
                return Err(StoreError::SchemaTooNew { found, known });
            }
        }
        MIGRATOR.run(&self.pool).await.map_err(StoreError::Migrate)
    }

    /// The leads with these ids, by id (one query).
    async fn leads_by_id(
        &self,
        ids: impl Iterator<Item = i64>,
    ) -> Result<HashMap<i64, Lead>, StoreError> {
        let ids = serde_json::Value::from(ids.collect::<Vec<i64>>()).to_string();
        sqlx::query(concat!(
            "SELECT ",
            lead_columns!(),
            " FROM leads WHERE id IN (SELECT value FROM json_each(?1))"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| lead_from_row(r).map(|l| (l.id, l)))
        .collect()
    }

    async fn begin_immediate(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn lead_in(conn: &mut SqliteConnection, target: &str) -> Result<Lead, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            lead_columns!(),
            " FROM leads WHERE target = ?"
        ))
        .bind(target)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|r| lead_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(target.to_string()))
    }

    /// Applies a person's `action` to `target`, checking the lead did not change since it
    /// was read. A retry deliberately frees the steps of the lead's lost or failed
    /// attempts, recorded as such.
    async fn user_transition(
        &self,
        target: &str,
        action: UserAction,
        now: DateTime<Utc>,
    ) -> Result<Lead, StoreError> {
        let tx = self.begin_immediate().await?;
        in_tx(tx, async |tx| {
            let lead = Self::lead_in(tx, target).await?;
            let (to, pending) = user_change(action, &lead)?;
            let now_s = ts(now);
            let done = sqlx::query(
                // Retry and unblock make the lead eligible at once, with a fresh retry
                // budget; a retry starts afresh, while an unblocked lead's call may still be
                // in flight under its lease.
                "UPDATE leads SET state = ?1, pending_event = ?2, updated_at = ?3,
                    next_eligible_at = CASE WHEN ?6 THEN ?3 ELSE next_eligible_at END,
                    transient_failures = CASE WHEN ?6 THEN 0 ELSE transient_failures END,
                    lease_owner = CASE WHEN ?7 THEN NULL ELSE lease_owner END,
                    lease_expires_at = CASE WHEN ?7 THEN NULL ELSE lease_expires_at END
                 WHERE id = ?4 AND state = ?5",
            )
            .bind(to.as_str())
            .bind(pending.and_then(LeadEvent::pending_name))
            .bind(&now_s)
            .bind(lead.id)
            .bind(lead.state.as_str())
            .bind(action != UserAction::Block)
            .bind(action == UserAction::Retry)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(target.to_string()));
            }
            if action == UserAction::Retry {
                sqlx::query(
                    "UPDATE attempts SET status = CASE WHEN status = 'in_flight' THEN 'unknown' ELSE status END,
                        finished_at = COALESCE(finished_at, ?1), released_at = ?1,
                        released_by = 'leads retry'
                     WHERE lead_id = ?2 AND released_at IS NULL
                       AND status IN ('in_flight', 'unknown', 'failed')",
                )
                .bind(&now_s)
                .bind(lead.id)
                .execute(&mut *tx)
                .await?;
            }
            Self::lead_in(tx, target).await
        })
        .await
    }

    /// Records a reply at `at`: resets the quiet clock and the follow-up count. A stored
    /// reply time later than `at` is kept, unless it lies in the future (a mistake, which
    /// this corrects).
    async fn reply(
        &self,
        target: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Lead, StoreError> {
        check_reply_time(at, now)?;
        let tx = self.begin_immediate().await?;
        in_tx(tx, async |tx| {
            let lead = Self::lead_in(tx, target).await?;
            let to = lead::next(lead.state, LeadEvent::Replied)?;
            let done = sqlx::query(
                "UPDATE leads SET state = ?1, follow_ups_sent = 0, updated_at = ?2,
                    last_reply_at = CASE WHEN last_reply_at IS NULL OR last_reply_at < ?3
                                          OR last_reply_at > ?6 THEN ?3 ELSE last_reply_at END
                 WHERE id = ?4 AND state = ?5",
            )
            .bind(to.as_str())
            .bind(ts(now))
            .bind(ts(at))
            .bind(lead.id)
            .bind(lead.state.as_str())
            .bind(ts(now + FUTURE_SKEW))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(target.to_string()));
            }
            Self::lead_in(tx, target).await
        })
        .await
    }
}

fn lead_from_row(r: &SqliteRow) -> Result<Lead, StoreError> {
    let state: String = r.try_get("state")?;
    let tags: String = r.try_get("tags")?;
    Ok(Lead {
        id: r.try_get("id")?,
        target: r.try_get("target")?,
        own_username: r.try_get("own_username")?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        timezone: r.try_get("timezone")?,
        profile_image: r.try_get("profile_image")?,
        tags: serde_json::from_str(&tags)
            .map_err(|e| StoreError::Corrupt(format!("tags {tags:?}: {e}")))?,
        created_at: parse_ts(&r.try_get::<String, _>("created_at")?)?,
        updated_at: parse_ts(&r.try_get::<String, _>("updated_at")?)?,
        last_contact_at: opt_ts(r.try_get("last_contact_at")?)?,
        last_reply_at: opt_ts(r.try_get("last_reply_at")?)?,
        next_eligible_at: parse_ts(&r.try_get::<String, _>("next_eligible_at")?)?,
        follow_ups_sent: r.try_get("follow_ups_sent")?,
        follow_ups_total: r.try_get("follow_ups_total")?,
        reopens: r.try_get("reopens")?,
        transient_failures: r.try_get("transient_failures")?,
        session_id: r.try_get("session_id")?,
        last_error: r.try_get("last_error")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires_at: opt_ts(r.try_get("lease_expires_at")?)?,
        pending_event: r.try_get("pending_event")?,
    })
}

fn attempt_from_row(r: &SqliteRow) -> Result<Attempt, StoreError> {
    Ok(Attempt {
        id: r.try_get("id")?,
        lead_id: r.try_get("lead_id")?,
        job: r.try_get("job")?,
        action: Action::parse(&r.try_get::<String, _>("action")?)?,
        step: r.try_get("step")?,
        status: AttemptStatus::parse(&r.try_get::<String, _>("status")?)?,
        http_status: r.try_get("http_status")?,
        error_kind: r.try_get("error_kind")?,
        error_detail: r.try_get("error_detail")?,
        session_id: r.try_get("session_id")?,
        started_at: parse_ts(&r.try_get::<String, _>("started_at")?)?,
        finished_at: opt_ts(r.try_get("finished_at")?)?,
        runner_id: r.try_get("runner_id")?,
        released_at: opt_ts(r.try_get("released_at")?)?,
        released_by: r.try_get("released_by")?,
    })
}

fn outbox_from_row(r: &SqliteRow) -> Result<OutboxItem, StoreError> {
    Ok(OutboxItem {
        id: r.try_get("id")?,
        lead_id: r.try_get("lead_id")?,
        attempt_id: r.try_get("attempt_id")?,
        target: r.try_get("target")?,
        action: r.try_get("action")?,
        message: r.try_get("message")?,
        session_id: r.try_get("session_id")?,
        created_at: parse_ts(&r.try_get::<String, _>("created_at")?)?,
        acked_at: opt_ts(r.try_get("acked_at")?)?,
        lead_state: r
            .try_get::<String, _>("lead_state")?
            .parse()
            .map_err(StoreError::Corrupt)?,
    })
}

fn pause_from_row(r: &SqliteRow) -> Result<Pause, StoreError> {
    Ok(Pause {
        scope: PauseScope::parse(&r.try_get::<String, _>("scope")?)?,
        until: parse_ts(&r.try_get::<String, _>("until")?)?,
        reason: r.try_get("reason")?,
        strikes: r.try_get("strikes")?,
        set_at: parse_ts(&r.try_get::<String, _>("set_at")?)?,
        set_by: r.try_get("set_by")?,
    })
}

fn event_from_row(r: &SqliteRow) -> Result<QueuedEvent, StoreError> {
    Ok(QueuedEvent {
        id: r.try_get("id")?,
        lead_id: r.try_get("lead_id")?,
        target: r.try_get("target")?,
        event_type: r.try_get("event_type")?,
        context: r.try_get("context")?,
        state: r.try_get("state")?,
        created_at: parse_ts(&r.try_get::<String, _>("created_at")?)?,
    })
}

/// Upserts one merged batch inside `conn`'s transaction: one statement inserts the targets
/// that are new (skipping those that exist, even ones added a moment ago), one updates the
/// rest.
async fn upsert_batch(
    conn: &mut SqliteConnection,
    rows: Vec<LeadInput>,
    now: DateTime<Utc>,
) -> Result<ImportCounts, StoreError> {
    let (rows, duplicates) = merge_batch(rows);
    let now_s = ts(now);
    let inserted: HashSet<String> = sqlx::query_scalar(
        "INSERT INTO leads (target, own_username, timezone, profile_image, tags, state,
                            last_contact_at, last_reply_at, follow_ups_sent, follow_ups_total,
                            created_at, updated_at, next_eligible_at)
         SELECT json_extract(value, '$.target'), json_extract(value, '$.own_username'),
                json_extract(value, '$.timezone'), json_extract(value, '$.profile_image'),
                COALESCE(json_extract(value, '$.tags'), '[]'),
                COALESCE(json_extract(value, '$.state'), 'new'),
                json_extract(value, '$.last_contact_at'), json_extract(value, '$.last_reply_at'),
                COALESCE(json_extract(value, '$.follow_ups_sent'), 0),
                COALESCE(json_extract(value, '$.follow_ups_sent'), 0),
                ?2, ?2, ?2
         FROM json_each(?1) WHERE true
         ON CONFLICT (target) DO NOTHING
         RETURNING target",
    )
    .bind(rows_json(rows.iter()))
    .bind(&now_s)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let existing: Vec<&LeadInput> = rows
        .iter()
        .filter(|r| !inserted.contains(&r.target))
        .collect();
    if !existing.is_empty() {
        sqlx::query(concat!(
            "UPDATE leads SET
                own_username  = COALESCE(x.own_username, leads.own_username),
                timezone      = COALESCE(x.timezone, leads.timezone),
                profile_image = COALESCE(x.profile_image, leads.profile_image),
                tags          = COALESCE(x.tags, leads.tags),
                state           = CASE WHEN ", untouched!(), " THEN COALESCE(x.state, leads.state) ELSE leads.state END,
                last_contact_at = CASE WHEN ", untouched!(), " THEN COALESCE(x.last_contact_at, leads.last_contact_at) ELSE leads.last_contact_at END,
                last_reply_at   = CASE WHEN ", untouched!(), " THEN COALESCE(x.last_reply_at, leads.last_reply_at) ELSE leads.last_reply_at END,
                follow_ups_sent = CASE WHEN ", untouched!(), " THEN COALESCE(x.follow_ups_sent, leads.follow_ups_sent) ELSE leads.follow_ups_sent END,
                follow_ups_total = CASE WHEN ", untouched!(), " THEN COALESCE(x.follow_ups_sent, leads.follow_ups_total) ELSE leads.follow_ups_total END,
                updated_at    = ?2
             FROM (SELECT json_extract(value, '$.target') AS target,
                          json_extract(value, '$.own_username') AS own_username,
                          json_extract(value, '$.timezone') AS timezone,
                          json_extract(value, '$.profile_image') AS profile_image,
                          json_extract(value, '$.tags') AS tags,
                          json_extract(value, '$.state') AS state,
                          json_extract(value, '$.last_contact_at') AS last_contact_at,
                          json_extract(value, '$.last_reply_at') AS last_reply_at,
                          json_extract(value, '$.follow_ups_sent') AS follow_ups_sent
                   FROM json_each(?1)) AS x
             WHERE leads.target = x.target"
        ))
        .bind(rows_json(existing.iter().copied()))
        .bind(&now_s)
        .execute(&mut *conn)
        .await?;
    }
    Ok(ImportCounts {
        imported: inserted.len() as u64,
        updated: existing.len() as u64 + duplicates,
    })
}

/// Finishes attempts still in flight and writes their outbox rows; returns the ids finished.
/// Records `attempts` in flight (one statement); their ids in the same order.
async fn insert_attempts(
    conn: &mut SqliteConnection,
    attempts: &[NewAttempt],
) -> Result<Vec<Option<i64>>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    // Only for leads still as claimed: one statement, which holds the write lock, so a
    // person's block either comes first (no call) or finds the call in flight.
    let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
        "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id)
         SELECT json_extract(j.value, '$.lead_id'), json_extract(j.value, '$.job'),
                json_extract(j.value, '$.action'), json_extract(j.value, '$.step'), 'in_flight',
                json_extract(j.value, '$.started_at'), json_extract(j.value, '$.runner_id')
         FROM json_each(?1) AS j
         JOIN leads l ON l.id = json_extract(j.value, '$.lead_id')
         WHERE json_extract(j.value, '$.claimed') IS NULL
            OR (l.state = json_extract(j.value, '$.claimed')
                AND l.lease_owner = json_extract(j.value, '$.runner_id'))
         RETURNING id, lead_id, action, step",
    )
    .bind(attempts_json(attempts))
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids_in_order(attempts, &rows))
}

/// The state and lease holder of the leads of `attempts`, for `still_claimed`.
async fn claim_states(
    conn: &mut SqliteConnection,
    attempts: &[NewAttempt],
) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
    let ids: Vec<i64> = attempts.iter().map(|a| a.lead_id).collect();
    Ok(sqlx::query_as(
        "SELECT id, state, lease_owner FROM leads WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .bind(serde_json::Value::from(ids).to_string())
    .fetch_all(&mut *conn)
    .await?)
}

/// A job's attempts started since `since` that count against its daily cap.
async fn count_started_in(
    conn: &mut SqliteConnection,
    job: &str,
    since: DateTime<Utc>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM attempts
         WHERE job = ?1 AND started_at >= ?2
           AND status IN ('in_flight', 'sent', 'continued', 'unknown')",
    )
    .bind(job)
    .bind(ts(since))
    .fetch_one(&mut *conn)
    .await?)
}

async fn finish_in(
    conn: &mut SqliteConnection,
    ends: &[AttemptEnd],
) -> Result<Vec<i64>, StoreError> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let payload = ends_json(ends);
    // Only attempts still in flight, or found lost by another runner and not yet released
    // (a late answer is recorded as it is): a late or repeated write changes nothing else.
    let finished: Vec<i64> = sqlx::query_scalar(
        "UPDATE attempts SET status = x.status, http_status = x.http_status,
                error_kind = x.error_kind,
                error_detail = CASE WHEN attempts.status = 'in_flight' THEN x.error_detail
                    ELSE COALESCE(x.error_detail, 'answered after its runner was presumed lost') END,
                session_id = x.session_id, finished_at = x.finished_at,
                released_at = CASE WHEN x.released_by IS NULL THEN attempts.released_at
                                   ELSE x.finished_at END,
                released_by = COALESCE(x.released_by, attempts.released_by)
         FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.status') AS status,
                      json_extract(value, '$.http_status') AS http_status,
                      json_extract(value, '$.error_kind') AS error_kind,
                      json_extract(value, '$.error_detail') AS error_detail,
                      json_extract(value, '$.session_id') AS session_id,
                      json_extract(value, '$.finished_at') AS finished_at,
                      json_extract(value, '$.released_by') AS released_by
               FROM json_each(?1)) AS x
         WHERE attempts.id = x.id
           AND (attempts.status = 'in_flight'
                OR (attempts.status = 'unknown' AND attempts.error_kind = ?2
                    AND attempts.released_at IS NULL
                    AND x.status NOT IN ('in_flight', 'unknown', 'cancelled')))
         RETURNING attempts.id",
    )
    .bind(&payload)
    .bind(RUNNER_LOST)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query(
        // The batch is read once, as the outer loop (CROSS JOIN fixes SQLite's join order):
        // driven from `attempts`, the planner re-parsed the whole batch for every attempt.
        "INSERT INTO outbox (lead_id, attempt_id, target, action, message, session_id, created_at)
         SELECT a.lead_id, a.id, l.target, a.action, x.message, x.session_id, x.finished_at
         FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.message') AS message,
                      json_extract(value, '$.session_id') AS session_id,
                      json_extract(value, '$.finished_at') AS finished_at
               FROM json_each(?1)) AS x
         CROSS JOIN attempts a ON a.id = x.id
         CROSS JOIN leads l ON l.id = a.lead_id
         WHERE x.message IS NOT NULL AND x.id IN (SELECT value FROM json_each(?2))",
    )
    .bind(&payload)
    .bind(serde_json::Value::from(finished.clone()).to_string())
    .execute(&mut *conn)
    .await?;
    Ok(finished)
}

struct SqliteImport {
    store: SqliteStore,
    atomic: bool,
    tx: Option<Transaction<'static, Sqlite>>,
}

#[async_trait]
impl ImportSession for SqliteImport {
    async fn upsert(
        &mut self,
        rows: Vec<LeadInput>,
        now: DateTime<Utc>,
    ) -> Result<ImportCounts, StoreError> {
        if !self.atomic {
            let tx = self.store.begin_immediate().await?;
            return in_tx(tx, async |tx| upsert_batch(tx, rows, now).await).await;
        }
        // One transaction for the whole import: a failed batch rolls it all back, and the
        // session refuses further batches instead of committing them one by one.
        let Some(mut tx) = self.tx.take() else {
            return Err(StoreError::ImportAborted);
        };
        match upsert_batch(&mut tx, rows, now).await {
            Ok(counts) => {
                self.tx = Some(tx);
                Ok(counts)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn finish(self: Box<Self>, keep: bool) -> Result<(), StoreError> {
        if self.atomic && self.tx.is_none() {
            return Err(StoreError::ImportAborted);
        }
        if let Some(tx) = self.tx {
            if keep {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn begin_import(&self, atomic: bool) -> Result<Box<dyn ImportSession>, StoreError> {
        let tx = if atomic {
            Some(self.begin_immediate().await?)
        } else {
            None
        };
        Ok(Box::new(SqliteImport {
            store: self.clone(),
            atomic,
            tx,
        }))
    }

    async fn get_lead(&self, target: &str) -> Result<Option<Lead>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        match Self::lead_in(&mut conn, target).await {
            Ok(lead) => Ok(Some(lead)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_leads(&self, filter: &LeadFilter) -> Result<Vec<Lead>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            lead_columns!(),
            " FROM leads
              WHERE (?1 IS NULL OR state = ?1)
                AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(leads.tags) WHERE value = ?2))
              ORDER BY id
              LIMIT ?3"
        ))
        .bind(filter.state.map(LeadState::as_str))
        .bind(filter.tag.as_deref())
        .bind(filter.limit.map_or(-1, i64::from))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lead_from_row).collect()
    }

    async fn attempts_for(&self, lead_id: i64) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts WHERE lead_id = ? ORDER BY id DESC"
        ))
        .bind(lead_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    async fn count_by_state(&self) -> Result<BTreeMap<LeadState, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM leads GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        counts_by_state(rows)
    }

    async fn record_reply(
        &self,
        target: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Lead, StoreError> {
        self.reply(target, at, now).await
    }

    async fn apply_user_action(
        &self,
        target: &str,
        action: UserAction,
        now: DateTime<Utc>,
    ) -> Result<Lead, StoreError> {
        self.user_transition(target, action, now).await
    }

    async fn queue_event(
        &self,
        target: &str,
        event_type: &str,
        context: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<QueuedEvent, StoreError> {
        let now_s = ts(now);
        let tx = self.begin_immediate().await?;
        in_tx(tx, async |tx| {
            sqlx::query(
                "INSERT INTO leads (target, created_at, updated_at, next_eligible_at)
                 VALUES (?1, ?2, ?2, ?2) ON CONFLICT (target) DO NOTHING",
            )
            .bind(target)
            .bind(&now_s)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(
                "INSERT INTO events (lead_id, event_type, context, created_at)
                 SELECT id, ?2, ?3, ?4 FROM leads WHERE target = ?1
                 RETURNING id, lead_id, ?1 AS target, event_type, context, state, created_at",
            )
            .bind(target)
            .bind(event_type)
            .bind(context)
            .bind(&now_s)
            .fetch_one(&mut *tx)
            .await?;
            let event = event_from_row(&row)?;
            Ok(event)
        })
        .await
    }

    async fn queued_events(
        &self,
        event_type: Option<&str>,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.lead_id, l.target, e.event_type, e.context, e.state, e.created_at
             FROM events e JOIN leads l ON l.id = e.lead_id
             WHERE e.state = 'queued' AND (?1 IS NULL OR e.event_type = ?1)
             ORDER BY e.id",
        )
        .bind(event_type)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn start_attempts_within(
        &self,
        attempts: &[NewAttempt],
        cap: Option<DailyCap>,
    ) -> Result<Vec<Recorded>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let started = match cap {
            None => insert_attempts(&mut *self.pool.acquire().await?, attempts)
                .await
                .map(|ids| {
                    ids.into_iter()
                        .map(|id| id.map_or(Recorded::Changed, Recorded::Started))
                        .collect()
                }),
            Some(cap) => {
                // The write lock, taken up front, makes check, count and insert atomic
                // across processes.
                let tx = self.begin_immediate().await?;
                in_tx(tx, async |tx| {
                    let kept = still_claimed(attempts, &claim_states(tx, attempts).await?);
                    let used = count_started_in(tx, &attempts[0].job, cap.since).await?;
                    let allowed = cap_allows(Some(cap), used, kept.iter().filter(|k| **k).count());
                    let chosen: Vec<NewAttempt> = attempts
                        .iter()
                        .zip(&kept)
                        .filter(|(_, k)| **k)
                        .take(allowed)
                        .map(|(a, _)| a.clone())
                        .collect();
                    let ids = insert_attempts(tx, &chosen).await?;
                    Ok(recorded_under_cap(&kept, allowed, &ids))
                })
                .await
            }
        };
        match started {
            Err(StoreError::Db(e)) if is_unique_violation(&e) => {
                let held: Vec<(i64, String, i64)> = sqlx::query_as(concat!(
                    "SELECT a.lead_id, a.action, a.step FROM attempts a
                     JOIN json_each(?1) j
                       ON a.lead_id = json_extract(j.value, '$.lead_id')
                      AND a.action = json_extract(j.value, '$.action')
                      AND a.step = json_extract(j.value, '$.step')
                     WHERE a.",
                    holds_step!()
                ))
                .bind(attempts_json(attempts))
                .fetch_all(&self.pool)
                .await?;
                Err(already_sent(attempts, &held))
            }
            other => other,
        }
    }

    async fn finish_attempts(&self, ends: &[AttemptEnd]) -> Result<Vec<i64>, StoreError> {
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.begin_immediate().await?;
        in_tx(tx, async |tx| finish_in(tx, ends).await).await
    }

    async fn due_leads(&self, q: &DueQuery) -> Result<Vec<DueLead>, StoreError> {
        let now = ts(q.now);
        // No cursor is the beginning of time, not NULL: `x IS NULL OR (a, id) > (x, y)` keeps
        // the planner from using the (state, next_eligible_at, id) index.
        let (after_t, after_id) = q.after.unwrap_or((DateTime::UNIX_EPOCH, 0));
        let after_t = ts(after_t);
        let rows = match &q.due {
            Due::Opener => {
                sqlx::query(concat!(
                    "SELECT ",
                    lead_columns!(),
                    ", next_eligible_at AS since FROM leads
                 WHERE state = 'new' AND next_eligible_at <= ?1
                   AND NOT EXISTS (SELECT 1 FROM events WHERE events.lead_id = leads.id AND events.state = 'queued')
                   AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = leads.id AND attempts.status = 'in_flight')
                   AND (lease_owner IS NULL OR lease_expires_at <= ?1)
                   AND (next_eligible_at, id) > (?2, ?3)
                 ORDER BY next_eligible_at, id LIMIT ?4"
                ))
                .bind(&now)
                .bind(after_t)
                .bind(after_id)
                .bind(i64::from(q.limit))
                .fetch_all(&self.pool)
                .await?
            }
            Due::FollowUp { cutoffs, max } => {
                let cutoffs: Vec<String> = cutoffs.iter().map(|t| ts(*t)).collect();
                sqlx::query(concat!(
                    "SELECT ",
                    lead_columns!(),
                    ", ",
                    quiet_since!(),
                    " AS since FROM leads
                     WHERE state = 'contacted' AND follow_ups_sent < ?5 AND next_eligible_at <= ?1
                       AND COALESCE(last_contact_at, last_reply_at) IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = leads.id AND attempts.status = 'in_flight')
                       AND (lease_owner IS NULL OR lease_expires_at <= ?1)
                       AND ",
                    quiet_since!(),
                    " <= json_extract(?6, '$[' || follow_ups_sent || ']')
                       AND (",
                    quiet_since!(),
                    ", id) > (?2, ?3)
                     ORDER BY since, id LIMIT ?4"
                ))
                .bind(&now)
                .bind(after_t)
                .bind(after_id)
                .bind(i64::from(q.limit))
                .bind(i64::from(*max))
                .bind(serde_json::Value::from(cutoffs).to_string())
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(DueLead {
                    lead: lead_from_row(r)?,
                    since: parse_ts(&r.try_get::<String, _>("since")?)?,
                })
            })
            .collect()
    }

    async fn claim_leads(
        &self,
        ids: &[i64],
        runner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Lead>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "UPDATE leads SET lease_owner = ?2, lease_expires_at = ?4
             WHERE id IN (SELECT value FROM json_each(?1))
               AND state IN ('new', 'contacted', 'exhausted')
               AND (lease_owner IS NULL OR lease_expires_at <= ?3 OR lease_owner = ?2)
             RETURNING ",
            lead_columns!()
        ))
        .bind(serde_json::Value::from(ids.to_vec()).to_string())
        .bind(runner)
        .bind(ts(now))
        .bind(ts(lease_until))
        .fetch_all(&self.pool)
        .await?;
        let mut leads = rows
            .iter()
            .map(lead_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        leads.sort_by_key(|l| ids.iter().position(|id| *id == l.id));
        Ok(leads)
    }

    async fn release_leads(
        &self,
        ids: &[i64],
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = serde_json::Value::from(ids.to_vec()).to_string();
        let tx = self.begin_immediate().await?;
        in_tx(tx, async |tx| {
            sqlx::query(
                "UPDATE attempts SET status = 'cancelled', finished_at = ?3,
                        error_detail = 'not called: the lead was given back'
                 WHERE lead_id IN (SELECT value FROM json_each(?1)) AND runner_id = ?2
                   AND status = 'in_flight'",
            )
            .bind(&ids)
            .bind(runner)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE leads SET lease_owner = NULL, lease_expires_at = NULL
                 WHERE id IN (SELECT value FROM json_each(?1)) AND lease_owner = ?2",
            )
            .bind(&ids)
            .bind(runner)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
    }

    async fn due_events(
        &self,
        event_type: &str,
        now: DateTime<Utc>,
        limit: u32,
        after: i64,
    ) -> Result<Vec<DueEvent>, StoreError> {
        let now = ts(now);
        // The oldest queued event of the type per lead: one call per lead at a time.
        let rows = sqlx::query(
            "SELECT e.id, e.lead_id, l.target, e.event_type, e.context, e.state, e.created_at
             FROM events e JOIN leads l ON l.id = e.lead_id
             WHERE e.state = 'queued' AND e.event_type = ?1 AND e.id > ?3
               AND e.id = (SELECT MIN(e2.id) FROM events e2
                           WHERE e2.lead_id = e.lead_id AND e2.state = 'queued'
                             AND e2.event_type = e.event_type)
               AND l.state IN ('new', 'contacted', 'exhausted') AND l.next_eligible_at <= ?2
               AND (l.lease_owner IS NULL OR l.lease_expires_at <= ?2)
               AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = l.id AND attempts.status = 'in_flight')
             ORDER BY e.id LIMIT ?4",
        )
        .bind(event_type)
        .bind(&now)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let leads = self.leads_by_id(events.iter().map(|e| e.lead_id)).await?;
        Ok(events
            .into_iter()
            .filter_map(|event| {
                let lead = leads.get(&event.lead_id)?.clone();
                Some(DueEvent { event, lead })
            })
            .collect())
    }

    async fn drop_dead_events(
        &self,
        event_type: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE events SET state = 'dropped', processed_at = ?2
             WHERE state = 'queued' AND event_type = ?1
               AND lead_id IN (SELECT id FROM leads
                               WHERE state IN ('done', 'ignored', 'blocked', 'failed'))",
        )
        .bind(event_type)
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn exhaust(
        &self,
        max: u32,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        dry: bool,
    ) -> Result<u64, StoreError> {
        if dry {
            let n: i64 = sqlx::query_scalar(concat!(
                "SELECT COUNT(*) FROM leads
                 WHERE state = 'contacted' AND follow_ups_sent >= ?1
                   AND ",
                quiet_since!(),
                " <= ?2
                   AND (lease_owner IS NULL OR lease_expires_at <= ?3)"
            ))
            .bind(i64::from(max))
            .bind(ts(cutoff))
            .bind(ts(now))
            .fetch_one(&self.pool)
            .await?;
            return Ok(n.max(0) as u64);
        }
        let done = sqlx::query(concat!(
            "UPDATE leads SET state = 'exhausted', updated_at = ?3
             WHERE state = 'contacted' AND follow_ups_sent >= ?1
               AND ",
            quiet_since!(),
            " <= ?2
               AND (lease_owner IS NULL OR lease_expires_at <= ?3)"
        ))
        .bind(i64::from(max))
        .bind(ts(cutoff))
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn record_results(
        &self,
        results: &[LeadResult],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let ends: Vec<AttemptEnd> = results.iter().filter_map(|r| r.attempt.clone()).collect();
        let ids = serde_json::Value::from(results.iter().map(|r| r.lead_id).collect::<Vec<_>>())
            .to_string();
        let tx = self.begin_immediate().await?;
        in_tx(tx, async |tx| {
            // The leads, then their attempts (the order PostgreSQL's locks need).
            let rows: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT id, state, pending_event, lease_owner FROM leads
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            let finished: HashSet<i64> = finish_in(tx, &ends).await?.into_iter().collect();
            let current = rows
                .into_iter()
                .map(|(id, state, pending, owner)| Ok((id, Current::new(&state, pending, owner)?)))
                .collect::<Result<HashMap<_, _>, StoreError>>()?;
            let (leads, events) = settle_json(results, current, &finished, now);
            sqlx::query(
                "UPDATE leads SET
                    state = x.state, pending_event = x.pending,
                    last_contact_at = COALESCE(x.contacted_at, leads.last_contact_at),
                    follow_ups_sent = CASE WHEN x.reset_follow_ups THEN 0
                                           ELSE leads.follow_ups_sent + x.follow_up_inc END,
                    follow_ups_total = leads.follow_ups_total + x.follow_up_inc,
                    reopens = leads.reopens + x.reopen_inc,
                    transient_failures = COALESCE(x.transient_failures, leads.transient_failures),
                    next_eligible_at = COALESCE(x.next_eligible_at, leads.next_eligible_at),
                    session_id = COALESCE(x.session_id, leads.session_id),
                    last_error = CASE WHEN x.set_error THEN x.last_error ELSE leads.last_error END,
                    lease_owner = CASE WHEN leads.lease_owner = x.token THEN NULL
                                       ELSE leads.lease_owner END,
                    lease_expires_at = CASE WHEN leads.lease_owner = x.token THEN NULL
                                            ELSE leads.lease_expires_at END,
                    updated_at = ?2
                 FROM (SELECT json_extract(value, '$.id') AS id,
                              json_extract(value, '$.token') AS token,
                              json_extract(value, '$.state') AS state,
                              json_extract(value, '$.pending') AS pending,
                              json_extract(value, '$.contacted_at') AS contacted_at,
                              json_extract(value, '$.follow_up_inc') AS follow_up_inc,
                              json_extract(value, '$.reset_follow_ups') AS reset_follow_ups,
                              json_extract(value, '$.reopen_inc') AS reopen_inc,
                              json_extract(value, '$.transient_failures') AS transient_failures,
                              json_extract(value, '$.next_eligible_at') AS next_eligible_at,
                              json_extract(value, '$.session_id') AS session_id,
                              json_extract(value, '$.set_error') AS set_error,
                              json_extract(value, '$.last_error') AS last_error
                       FROM json_each(?1)) AS x
                 WHERE leads.id = x.id",
            )
            .bind(&leads)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE events SET state = json_extract(j.value, '$.state'), processed_at = ?2
                 FROM json_each(?1) AS j
                 WHERE events.id = json_extract(j.value, '$.id')",
            )
            .bind(&events)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
            let mut finished: Vec<i64> = finished.into_iter().collect();
            finished.sort_unstable();
            Ok(finished)
        })
        .await
    }

    async fn orphans(&self, now: DateTime<Utc>) -> Result<Vec<Orphan>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts
             WHERE status = 'in_flight'
               AND id IN (SELECT a.id FROM attempts a JOIN leads l ON l.id = a.lead_id
                          WHERE a.status = 'in_flight'
                            AND (l.lease_owner IS NULL OR l.lease_expires_at <= ?1
                                 OR l.lease_owner <> a.runner_id))
             ORDER BY id"
        ))
        .bind(ts(now))
        .fetch_all(&self.pool)
        .await?;
        let attempts = rows
            .iter()
            .map(attempt_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let leads = self.leads_by_id(attempts.iter().map(|a| a.lead_id)).await?;
        let out: Vec<Orphan> = attempts
            .into_iter()
            .filter_map(|attempt| {
                let lead = leads.get(&attempt.lead_id)?.clone();
                Some(Orphan { lead, attempt })
            })
            .collect();
        Ok(out)
    }

    async fn clear_expired_leases(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE leads SET lease_owner = NULL, lease_expires_at = NULL
             WHERE lease_owner IS NOT NULL AND lease_expires_at <= ?1
               AND NOT EXISTS (SELECT 1 FROM attempts
                               WHERE attempts.lead_id = leads.id AND attempts.status = 'in_flight')",
        )
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn count_started_since(
        &self,
        job: &str,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(count_started_in(&mut conn, job, since).await?.max(0) as u64)
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope, until, reason, strikes, set_at, set_by FROM pauses ORDER BY scope",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pause_from_row).collect()
    }

    async fn set_pause(
        &self,
        scope: PauseScope,
        reason: &str,
        runner: &str,
        now: DateTime<Utc>,
        length: &(dyn Fn(u32) -> std::time::Duration + Send + Sync),
    ) -> Result<Pause, StoreError> {
        let tx = self.begin_immediate().await?;
        in_tx(tx, async |tx| {
            let held = sqlx::query(
                "SELECT until, reason, strikes, set_at, set_by FROM pauses WHERE scope = ?1",
            )
            .bind(scope.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let mut strikes = 0;
            if let Some(held) = held {
                strikes = held.try_get::<i32, _>("strikes")?.max(0);
                let until = parse_ts(&held.try_get::<String, _>("until")?)?;
                // A pause in force already answers this 402 (another runner, or a call
                // already in flight, heard the same news): it is not a further strike.
                if until > now {
                    return Ok(Pause {
                        scope,
                        until,
                        reason: held.try_get("reason")?,
                        strikes,
                        set_at: parse_ts(&held.try_get::<String, _>("set_at")?)?,
                        set_by: held.try_get("set_by")?,
                    });
                }
            }
            let strikes = strikes + 1;
            let until = now
                + chrono::Duration::from_std(length(strikes as u32))
                    .unwrap_or(chrono::Duration::hours(1));
            sqlx::query(
                "INSERT INTO pauses (scope, until, reason, strikes, set_at, set_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (scope) DO UPDATE SET until = excluded.until, reason = excluded.reason,
                    strikes = excluded.strikes, set_at = excluded.set_at, set_by = excluded.set_by",
            )
            .bind(scope.as_str())
            .bind(ts(until))
            .bind(clean(reason))
            .bind(strikes)
            .bind(ts(now))
            .bind(runner)
            .execute(&mut *tx)
            .await?;
            Ok(Pause {
                scope,
                until,
                reason: clean(reason),
                strikes,
                set_at: now,
                set_by: Some(runner.to_string()),
            })
        })
        .await
    }

    async fn clear_pause(
        &self,
        scope: PauseScope,
        ended_by: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM pauses WHERE scope = ?1 AND until <= ?2")
            .bind(scope.as_str())
            .bind(ts(ended_by))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn lift_pauses(&self, scopes: &[PauseScope]) -> Result<Vec<Pause>, StoreError> {
        let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let rows = sqlx::query(
            "DELETE FROM pauses WHERE scope IN (SELECT value FROM json_each(?1))
             RETURNING scope, until, reason, strikes, set_at, set_by",
        )
        .bind(serde_json::Value::from(scopes).to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut lifted = rows
            .iter()
            .map(pause_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        lifted.sort_by_key(|p| p.scope);
        Ok(lifted)
    }

    async fn lease_summary(&self, now: DateTime<Utc>) -> Result<LeaseSummary, StoreError> {
        let (leased, until): (i64, Option<String>) = sqlx::query_as(
            "SELECT COUNT(*), MAX(lease_expires_at) FROM leads
             WHERE lease_owner IS NOT NULL AND lease_expires_at > ?1",
        )
        .bind(ts(now))
        .fetch_one(&self.pool)
        .await?;
        let in_flight: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE status = 'in_flight'")
                .fetch_one(&self.pool)
                .await?;
        Ok(LeaseSummary {
            leased: leased.max(0) as u64,
            until: opt_ts(until)?,
            in_flight: in_flight.max(0) as u64,
        })
    }

    async fn queued_event_types(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT event_type, COUNT(*) FROM events WHERE state = 'queued'
             GROUP BY event_type ORDER BY event_type",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(t, n)| (t, n.max(0) as u64))
            .collect())
    }

    async fn claim_tick(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO ticks (job, scheduled_at, runner_id, claimed_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (job, scheduled_at) DO NOTHING",
        )
        .bind(job)
        .bind(ts(scheduled_at))
        .bind(runner)
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        // A claim retried after its answer was lost finds its own row.
        let owner: Option<String> =
            sqlx::query_scalar("SELECT runner_id FROM ticks WHERE job = ?1 AND scheduled_at = ?2")
                .bind(job)
                .bind(ts(scheduled_at))
                .fetch_optional(&self.pool)
                .await?;
        Ok(owner.as_deref() == Some(runner))
    }

    async fn start_run(
        &self,
        job: &str,
        runner: &str,
        scheduled_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO job_runs (job, runner_id, scheduled_at, started_at) VALUES (?1, ?2, ?3, ?4)
             RETURNING id",
        )
        .bind(job)
        .bind(runner)
        .bind(scheduled_at.map(ts))
        .bind(ts(now))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn finish_run(
        &self,
        run_id: i64,
        summary: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE job_runs SET finished_at = ?2, summary = ?3 WHERE id = ?1")
            .bind(run_id)
            .bind(ts(now))
            .bind(summary.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn last_runs(&self) -> Result<Vec<JobRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, job, runner_id, scheduled_at, started_at, finished_at, summary FROM job_runs
             WHERE id IN (SELECT MAX(id) FROM job_runs GROUP BY job) ORDER BY job",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobRun {
                    id: r.try_get("id")?,
                    job: r.try_get("job")?,
                    runner_id: r.try_get("runner_id")?,
                    scheduled_at: opt_ts(r.try_get("scheduled_at")?)?,
                    started_at: parse_ts(&r.try_get::<String, _>("started_at")?)?,
                    finished_at: opt_ts(r.try_get("finished_at")?)?,
                    summary: r
                        .try_get::<Option<String>, _>("summary")?
                        .and_then(|t| serde_json::from_str(&t).ok()),
                })
            })
            .collect()
    }

    async fn outbox(&self, include_acked: bool) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.lead_id, o.attempt_id, o.target, o.action, o.message, o.session_id,
                    o.created_at, o.acked_at, l.state AS lead_state
             FROM outbox o JOIN leads l ON l.id = o.lead_id
             WHERE ?1 OR o.acked_at IS NULL ORDER BY o.id",
        )
        .bind(include_acked)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn ack_outbox(&self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
        let mut acked: Vec<i64> = sqlx::query_scalar(
            "UPDATE outbox SET acked_at = ?2
             WHERE acked_at IS NULL AND id IN (SELECT value FROM json_each(?1))
             RETURNING id",
        )
        .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
        .bind(ts(now))
        .fetch_all(&self.pool)
        .await?;
        acked.sort_unstable();
        Ok(acked)
    }
}
