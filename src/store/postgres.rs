//! The PostgreSQL store, for several runners on one database.
//!
//! Batches travel as one JSON parameter unpacked with `jsonb_to_recordset`, so a batch
//! costs one statement whatever its size. State changes lock the lead row (`FOR UPDATE`)
//! and compare-and-set on the state read.

use super::{
    Action, Attempt, AttemptEnd, AttemptStatus, Current, DailyCap, Due, DueEvent, DueLead,
    DueQuery, FUTURE_SKEW, ImportCounts, ImportSession, JobRun, Lead, LeadFilter, LeadInput,
    LeadResult, LeaseSummary, NewAttempt, Orphan, OutboxItem, Pause, PauseScope, QueuedEvent,
    RUNNER_LOST, Recorded, Store, StoreError, UserAction, already_sent, attempts_json, cap_allows,
    check_reply_time, clean, counts_by_state, ends_json, ids_in_order, in_tx, is_unique_violation,
    merge_batch, recorded_under_cap, redact_url, rows_json, settle_json, still_claimed,
    user_change,
};
use crate::lead::{self, LeadEvent, LeadState};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, Postgres, Row, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

macro_rules! lead_columns {
    () => {
        "id, target, own_username, state, timezone, profile_image, tags, created_at, \
         updated_at, last_contact_at, last_reply_at, next_eligible_at, follow_ups_sent, \
         follow_ups_total, reopens, transient_failures, session_id, last_error, lease_owner, lease_expires_at, \
         pending_event"
    };
}

macro_rules! attempt_columns {
    () => {
        "id, lead_id, job, action, step, status, http_status, error_kind, error_detail, \
         session_id, started_at, finished_at, runner_id, released_at, released_by"
    };
}

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
            url: redact_url(url),
            why: e.to_string(),
        })?;
        let connect_error = |cause| StoreError::Connect {
            url: redact_url(url),
            cause,
        };
        // One plain connection first: a pool retries a refused connection until its
        // acquire timeout, which makes a wrong URL look like a hang.
        let probe = tokio::time::timeout(
            Duration::from_secs(15),
            PgConnection::connect_with(&options),
        )
        .await
        .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
        .map_err(connect_error)?;
        let _ = probe.close().await;
        let pool = with_nodelay(&options)
            .await
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        let store = Self { pool };
        // A connection dropped under the schema check (the server restarting, a
        // connection killer) is tried again a few times; anything else is reported at once.
        let mut tries = 0;
        loop {
            match store.migrate().await {
                Err(e) if e.is_transient() && tries < 5 => {
                    tries += 1;
                    tracing::warn!(error = %e, tries, "the database dropped the connection while checking the schema; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                other => break other.map(|()| store),
            }
        }
    }

    /// Connects without migrating (dry runs write nothing).
    pub async fn open_read_only(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl {
                url: redact_url(url),
                why: e.to_string(),
            })?
            // The server itself refuses writes on these connections.
            .options([("default_transaction_read_only", "on")]);
        let pool = with_nodelay(&options)
            .await
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(|cause| StoreError::Connect {
                url: redact_url(url),
                cause,
            })?;
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let found: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&pool)
                .await
                .unwrap_or(None);
        match found.unwrap_or(0) {
            f if f > known => Err(StoreError::SchemaTooNew { found: f, known }),
            f if f < known => Err(StoreError::SchemaBehind { found: f, known }),
            _ => Ok(Self { pool }),
        }
    }

    /// The pool, for tests that need to look under the store.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The leads with these ids, by id (one query).
    async fn leads_by_id(
        &self,
        ids: impl Iterator<Item = i64>,
    ) -> Result<HashMap<i64, Lead>, StoreError> {
        let ids: Vec<i64> = ids.collect();
        sqlx::query(concat!(
            "SELECT ",
            lead_columns!(),
            " FROM leads WHERE id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| lead_from_row(r).map(|l| (l.id, l)))
        .collect()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let has_table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&self.pool)
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

    async fn lead_in(
        conn: &mut PgConnection,
        target: &str,
        lock: bool,
    ) -> Result<Lead, StoreError> {
        let sql = if lock {
            concat!(
                "SELECT ",
                lead_columns!(),
                " FROM leads WHERE target = $1 FOR UPDATE"
            )
        } else {
            concat!("SELECT ", lead_columns!(), " FROM leads WHERE target = $1")
        };
        let row = sqlx::query(sql)
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
        let tx = self.pool.begin().await?;
        in_tx(tx, async |tx| {
            let lead = Self::lead_in(tx, target, true).await?;
            let (to, pending) = user_change(action, &lead)?;
            let done = sqlx::query(
                // Retry and unblock make the lead eligible at once, with a fresh retry
                // budget; a retry starts afresh, while an unblocked lead's call may still be
                // in flight under its lease.
                "UPDATE leads SET state = $1, pending_event = $2, updated_at = $3,
                    next_eligible_at = CASE WHEN $6 THEN $3 ELSE next_eligible_at END,
                    transient_failures = CASE WHEN $6 THEN 0 ELSE transient_failures END,
                    lease_owner = CASE WHEN $7 THEN NULL ELSE lease_owner END,
                    lease_expires_at = CASE WHEN $7 THEN NULL ELSE lease_expires_at END
                 WHERE id = $4 AND state = $5",
            )
            .bind(to.as_str())
            .bind(pending.and_then(LeadEvent::pending_name))
            .bind(now)
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
                        finished_at = COALESCE(finished_at, $1), released_at = $1,
                        released_by = 'leads retry'
                     WHERE lead_id = $2 AND released_at IS NULL
                       AND status IN ('in_flight', 'unknown', 'failed')",
                )
                .bind(now)
                .bind(lead.id)
                .execute(&mut *tx)
                .await?;
            }
            Self::lead_in(tx, target, false).await
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
        let tx = self.pool.begin().await?;
        in_tx(tx, async |tx| {
            let lead = Self::lead_in(tx, target, true).await?;
            let to = lead::next(lead.state, LeadEvent::Replied)?;
            let done = sqlx::query(
                "UPDATE leads SET state = $1, follow_ups_sent = 0, updated_at = $2,
                    last_reply_at = CASE WHEN last_reply_at IS NULL OR last_reply_at < $3
                                          OR last_reply_at > $6 THEN $3 ELSE last_reply_at END
                 WHERE id = $4 AND state = $5",
            )
            .bind(to.as_str())
            .bind(now)
            .bind(at)
            .bind(lead.id)
            .bind(lead.state.as_str())
            .bind(now + FUTURE_SKEW)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(target.to_string()));
            }
            Self::lead_in(tx, target, false).await
        })
        .await
    }
}

/// Pool options that set `TCP_NODELAY` on each new connection's socket (see `nodelay`:
/// sqlx 0.9.0 does not, and each round trip would wait ~40 ms for a delayed ACK).
async fn with_nodelay(options: &PgConnectOptions) -> PgPoolOptions {
    let host = options.get_host().to_string();
    let port = options.get_port();
    // A Unix socket (a path) has no Nagle's algorithm to turn off.
    let peers: Vec<std::net::SocketAddr> = if host.starts_with('/') {
        Vec::new()
    } else {
        tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map(|a| a.collect())
            .unwrap_or_default()
    };
    let peers = std::sync::Arc::new(peers);
    PgPoolOptions::new().after_connect(move |_conn, _meta| {
        let peers = peers.clone();
        Box::pin(async move {
            if !peers.is_empty() {
                super::nodelay::set_on_sockets_to(&peers);
            }
            Ok(())
        })
    })
}

fn pause_from_row(r: &PgRow) -> Result<Pause, StoreError> {
    Ok(Pause {
        scope: PauseScope::parse(&r.try_get::<String, _>("scope")?)?,
        until: r.try_get("until")?,
        reason: r.try_get("reason")?,
        strikes: r.try_get("strikes")?,
        set_at: r.try_get("set_at")?,
        set_by: r.try_get("set_by")?,
    })
}

fn lead_from_row(r: &PgRow) -> Result<Lead, StoreError> {
    let state: String = r.try_get("state")?;
    let Json(tags): Json<Vec<String>> = r.try_get("tags")?;
    Ok(Lead {
        id: r.try_get("id")?,
        target: r.try_get("target")?,
        own_username: r.try_get("own_username")?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        timezone: r.try_get("timezone")?,
        profile_image: r.try_get("profile_image")?,
        tags,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        last_contact_at: r.try_get("last_contact_at")?,
        last_reply_at: r.try_get("last_reply_at")?,
        next_eligible_at: r.try_get("next_eligible_at")?,
        follow_ups_sent: r.try_get("follow_ups_sent")?,
        follow_ups_total: r.try_get("follow_ups_total")?,
        reopens: r.try_get("reopens")?,
        transient_failures: r.try_get("transient_failures")?,
        session_id: r.try_get("session_id")?,
        last_error: r.try_get("last_error")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
        pending_event: r.try_get("pending_event")?,
    })
}

fn attempt_from_row(r: &PgRow) -> Result<Attempt, StoreError> {
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
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        runner_id: r.try_get("runner_id")?,
        released_at: r.try_get("released_at")?,
        released_by: r.try_get("released_by")?,
    })
}

fn outbox_from_row(r: &PgRow) -> Result<OutboxItem, StoreError> {
    Ok(OutboxItem {
        id: r.try_get("id")?,
        lead_id: r.try_get("lead_id")?,
        attempt_id: r.try_get("attempt_id")?,
        target: r.try_get("target")?,
        action: r.try_get("action")?,
        message: r.try_get("message")?,
        session_id: r.try_get("session_id")?,
        created_at: r.try_get("created_at")?,
        acked_at: r.try_get("acked_at")?,
        lead_state: r
            .try_get::<String, _>("lead_state")?
            .parse()
            .map_err(StoreError::Corrupt)?,
    })
}

fn event_from_row(r: &PgRow) -> Result<QueuedEvent, StoreError> {
    Ok(QueuedEvent {
        id: r.try_get("id")?,
        lead_id: r.try_get("lead_id")?,
        target: r.try_get("target")?,
        event_type: r.try_get("event_type")?,
        context: r.try_get("context")?,
        state: r.try_get("state")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Upserts one merged batch: one statement inserts the new targets (skipping any that
/// exist, even one another session added a moment ago), one updates the rest.
async fn upsert_batch(
    conn: &mut PgConnection,
    rows: Vec<LeadInput>,
    now: DateTime<Utc>,
) -> Result<ImportCounts, StoreError> {
    let (rows, duplicates) = merge_batch(rows);
    let inserted: HashSet<String> = sqlx::query_scalar(
        "INSERT INTO leads (target, own_username, timezone, profile_image, tags, state,
                            last_contact_at, last_reply_at, follow_ups_sent, follow_ups_total,
                            created_at, updated_at, next_eligible_at)
         SELECT x.target, x.own_username, x.timezone, x.profile_image,
                COALESCE(x.tags::jsonb, '[]'::jsonb), COALESCE(x.state, 'new'),
                x.last_contact_at, x.last_reply_at, COALESCE(x.follow_ups_sent, 0),
                COALESCE(x.follow_ups_sent, 0),
                $2, $2, $2
         FROM jsonb_to_recordset($1::jsonb) AS x(target text, own_username text,
              timezone text, profile_image text, tags text, state text,
              last_contact_at timestamptz, last_reply_at timestamptz, follow_ups_sent int)
         ON CONFLICT (target) DO NOTHING
         RETURNING target",
    )
    .bind(rows_json(rows.iter()))
    .bind(now)
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
                tags          = COALESCE(x.tags::jsonb, leads.tags),
                state           = CASE WHEN ", untouched!(), " THEN COALESCE(x.state, leads.state) ELSE leads.state END,
                last_contact_at = CASE WHEN ", untouched!(), " THEN COALESCE(x.last_contact_at, leads.last_contact_at) ELSE leads.last_contact_at END,
                last_reply_at   = CASE WHEN ", untouched!(), " THEN COALESCE(x.last_reply_at, leads.last_reply_at) ELSE leads.last_reply_at END,
                follow_ups_sent = CASE WHEN ", untouched!(), " THEN COALESCE(x.follow_ups_sent, leads.follow_ups_sent) ELSE leads.follow_ups_sent END,
                follow_ups_total = CASE WHEN ", untouched!(), " THEN COALESCE(x.follow_ups_sent, leads.follow_ups_total) ELSE leads.follow_ups_total END,
                updated_at    = $2
             FROM jsonb_to_recordset($1::jsonb) AS x(target text, own_username text,
                  timezone text, profile_image text, tags text, state text,
                  last_contact_at timestamptz, last_reply_at timestamptz, follow_ups_sent int)
             WHERE leads.target = x.target"
        ))
        .bind(rows_json(existing.iter().copied()))
        .bind(now)
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
    conn: &mut PgConnection,
    attempts: &[NewAttempt],
) -> Result<Vec<Option<i64>>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    // Only for leads still as claimed (a block committed before this statement stops the
    // call; one committed after it finds the call in flight).
    let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
        "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id)
         SELECT x.lead_id, x.job, x.action, x.step, 'in_flight', x.started_at, x.runner_id
         FROM jsonb_to_recordset($1::jsonb) AS x(lead_id bigint, job text, action text,
              step bigint, started_at timestamptz, runner_id text, claimed text)
         JOIN leads l ON l.id = x.lead_id
         WHERE x.claimed IS NULL OR (l.state = x.claimed AND l.lease_owner = x.runner_id)
         RETURNING id, lead_id, action, step",
    )
    .bind(attempts_json(attempts))
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids_in_order(attempts, &rows))
}

/// The state and lease holder of the leads of `attempts`, locked, for `still_claimed`.
async fn claim_states(
    conn: &mut PgConnection,
    attempts: &[NewAttempt],
) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
    let ids: Vec<i64> = attempts.iter().map(|a| a.lead_id).collect();
    Ok(sqlx::query_as(
        "SELECT id, state, lease_owner FROM leads WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?)
}

/// A job's attempts started since `since` that count against its daily cap.
async fn count_started_in(
    conn: &mut PgConnection,
    job: &str,
    since: DateTime<Utc>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM attempts
         WHERE job = $1 AND started_at >= $2
           AND status IN ('in_flight', 'sent', 'continued', 'unknown')",
    )
    .bind(job)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?)
}

async fn finish_in(conn: &mut PgConnection, ends: &[AttemptEnd]) -> Result<Vec<i64>, StoreError> {
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
         FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, status text, http_status int,
              error_kind text, error_detail text, session_id text, finished_at timestamptz,
              released_by text)
         WHERE attempts.id = x.id
           AND (attempts.status = 'in_flight'
                OR (attempts.status = 'unknown' AND attempts.error_kind = $2
                    AND attempts.released_at IS NULL
                    AND x.status NOT IN ('in_flight', 'unknown', 'cancelled')))
         RETURNING attempts.id",
    )
    .bind(&payload)
    .bind(RUNNER_LOST)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO outbox (lead_id, attempt_id, target, action, message, session_id, created_at)
         SELECT a.lead_id, a.id, l.target, a.action, x.message, x.session_id, x.finished_at
         FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, message text, session_id text,
              finished_at timestamptz)
         JOIN attempts a ON a.id = x.id
         JOIN leads l ON l.id = a.lead_id
         WHERE x.message IS NOT NULL AND a.id = ANY($2)",
    )
    .bind(&payload)
    .bind(&finished)
    .execute(&mut *conn)
    .await?;
    Ok(finished)
}

struct PgImport {
    pool: PgPool,
    atomic: bool,
    tx: Option<Transaction<'static, Postgres>>,
}

#[async_trait]
impl ImportSession for PgImport {
    async fn upsert(
        &mut self,
        rows: Vec<LeadInput>,
        now: DateTime<Utc>,
    ) -> Result<ImportCounts, StoreError> {
        if !self.atomic {
            let tx = self.pool.begin().await?;
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
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn begin_import(&self, atomic: bool) -> Result<Box<dyn ImportSession>, StoreError> {
        let tx = if atomic {
            Some(self.pool.begin().await?)
        } else {
            None
        };
        Ok(Box::new(PgImport {
            pool: self.pool.clone(),
            atomic,
            tx,
        }))
    }

    async fn get_lead(&self, target: &str) -> Result<Option<Lead>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        match Self::lead_in(&mut conn, target, false).await {
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
              WHERE ($1::text IS NULL OR state = $1)
                AND ($2::text IS NULL OR tags ? $2)
              ORDER BY id
              LIMIT $3"
        ))
        .bind(filter.state.map(LeadState::as_str))
        .bind(filter.tag.as_deref())
        .bind(filter.limit.map(i64::from))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lead_from_row).collect()
    }

    async fn attempts_for(&self, lead_id: i64) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts WHERE lead_id = $1 ORDER BY id DESC"
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
        let tx = self.pool.begin().await?;
        in_tx(tx, async |tx| {
            sqlx::query(
                "INSERT INTO leads (target, created_at, updated_at, next_eligible_at)
                 VALUES ($1, $2, $2, $2) ON CONFLICT (target) DO NOTHING",
            )
            .bind(target)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(
                "INSERT INTO events (lead_id, event_type, context, created_at)
                 SELECT id, $2, $3, $4 FROM leads WHERE target = $1
                 RETURNING id, lead_id, $1::text AS target, event_type, context, state, created_at",
            )
            .bind(target)
            .bind(event_type)
            .bind(context)
            .bind(now)
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
             WHERE e.state = 'queued' AND ($1::text IS NULL OR e.event_type = $1)
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
            // One statement, one round trip: the common case stays as cheap as it was.
            None => insert_attempts(&mut *self.pool.acquire().await?, attempts)
                .await
                .map(|ids| {
                    ids.into_iter()
                        .map(|id| id.map_or(Recorded::Changed, Recorded::Started))
                        .collect()
                }),
            Some(cap) => {
                let tx = self.pool.begin().await?;
                in_tx(tx, async |tx| {
                    // Runners count and add to a job's day one at a time: the lock is the
                    // transaction's, held until the attempts are committed, so N runners
                    // together never pass the cap.
                    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                        .bind(format!("fluidtalk-runner daily cap: {}", attempts[0].job))
                        .execute(&mut *tx)
                        .await?;
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
                     JOIN jsonb_to_recordset($1::jsonb) AS x(lead_id bigint, action text, step bigint)
                       ON a.lead_id = x.lead_id AND a.action = x.action AND a.step = x.step
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
        let tx = self.pool.begin().await?;
        in_tx(tx, async |tx| finish_in(tx, ends).await).await
    }

    async fn due_leads(&self, q: &DueQuery) -> Result<Vec<DueLead>, StoreError> {
        // No cursor is the beginning of time, not NULL: `x IS NULL OR (a, id) > (x, y)` keeps
        // the planner from using the (state, next_eligible_at, id) index.
        let (after_t, after_id) = q.after.unwrap_or((DateTime::UNIX_EPOCH, 0));

        let rows = match &q.due {
            Due::Opener => sqlx::query(concat!(
                "SELECT ", lead_columns!(), ", next_eligible_at AS since FROM leads
                 WHERE state = 'new' AND next_eligible_at <= $1
                   AND NOT EXISTS (SELECT 1 FROM events WHERE events.lead_id = leads.id AND events.state = 'queued')
                   AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = leads.id AND attempts.status = 'in_flight')
                   AND (lease_owner IS NULL OR lease_expires_at <= $1)
                   AND (next_eligible_at, id) > ($2, $3)
                 ORDER BY next_eligible_at, id LIMIT $4"
            ))
            .bind(q.now)
            .bind(after_t)
            .bind(after_id)
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?,
            Due::FollowUp { cutoffs, max } => sqlx::query(concat!(
                "SELECT ", lead_columns!(), ", GREATEST(last_contact_at, last_reply_at) AS since
                 FROM leads
                 WHERE state = 'contacted' AND follow_ups_sent < $5 AND next_eligible_at <= $1
                   AND COALESCE(last_contact_at, last_reply_at) IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = leads.id AND attempts.status = 'in_flight')
                   AND (lease_owner IS NULL OR lease_expires_at <= $1)
                   AND GREATEST(last_contact_at, last_reply_at) <= ($6::timestamptz[])[follow_ups_sent + 1]
                   AND (GREATEST(last_contact_at, last_reply_at), id) > ($2, $3)
                 ORDER BY since, id LIMIT $4"
            ))
            .bind(q.now)
            .bind(after_t)
            .bind(after_id)
            .bind(i64::from(q.limit))
            .bind(i64::from(*max))
            .bind(cutoffs)
            .fetch_all(&self.pool)
            .await?,
        };
        rows.iter()
            .map(|r| {
                Ok(DueLead {
                    lead: lead_from_row(r)?,
                    since: r.try_get("since")?,
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
        // One statement; rows another runner is claiming right now are skipped, not waited on.
        let rows = sqlx::query(concat!(
            "UPDATE leads SET lease_owner = $2, lease_expires_at = $4
             WHERE id IN (SELECT id FROM leads
                          WHERE id = ANY($1) AND state IN ('new', 'contacted', 'exhausted')
                            AND (lease_owner IS NULL OR lease_expires_at <= $3 OR lease_owner = $2)
                          FOR UPDATE SKIP LOCKED)
             RETURNING ",
            lead_columns!()
        ))
        .bind(ids)
        .bind(runner)
        .bind(now)
        .bind(lease_until)
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
        let tx = self.pool.begin().await?;
        in_tx(tx, async |tx| {
            sqlx::query(
                "UPDATE attempts SET status = 'cancelled', finished_at = $3,
                        error_detail = 'not called: the lead was given back'
                 WHERE lead_id = ANY($1) AND runner_id = $2 AND status = 'in_flight'",
            )
            .bind(ids)
            .bind(runner)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE leads SET lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = ANY($1) AND lease_owner = $2",
            )
            .bind(ids)
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
        let rows = sqlx::query(
            "SELECT e.id, e.lead_id, l.target, e.event_type, e.context, e.state, e.created_at
             FROM events e JOIN leads l ON l.id = e.lead_id
             WHERE e.state = 'queued' AND e.event_type = $1 AND e.id > $3
               AND e.id = (SELECT MIN(e2.id) FROM events e2
                           WHERE e2.lead_id = e.lead_id AND e2.state = 'queued'
                             AND e2.event_type = e.event_type)
               AND l.state IN ('new', 'contacted', 'exhausted') AND l.next_eligible_at <= $2
               AND (l.lease_owner IS NULL OR l.lease_expires_at <= $2)
               AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = l.id AND attempts.status = 'in_flight')
             ORDER BY e.id LIMIT $4",
        )
        .bind(event_type)
        .bind(now)
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
            "UPDATE events SET state = 'dropped', processed_at = $2
             WHERE state = 'queued' AND event_type = $1
               AND lead_id IN (SELECT id FROM leads
                               WHERE state IN ('done', 'ignored', 'blocked', 'failed'))",
        )
        .bind(event_type)
        .bind(now)
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
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM leads
                 WHERE state = 'contacted' AND follow_ups_sent >= $1
                   AND GREATEST(last_contact_at, last_reply_at) <= $2
                   AND (lease_owner IS NULL OR lease_expires_at <= $3)",
            )
            .bind(i64::from(max))
            .bind(cutoff)
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
            return Ok(n.max(0) as u64);
        }
        let done = sqlx::query(
            "UPDATE leads SET state = 'exhausted', updated_at = $3
             WHERE state = 'contacted' AND follow_ups_sent >= $1
               AND GREATEST(last_contact_at, last_reply_at) <= $2
               AND (lease_owner IS NULL OR lease_expires_at <= $3)",
        )
        .bind(i64::from(max))
        .bind(cutoff)
        .bind(now)
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
        let ids: Vec<i64> = results.iter().map(|r| r.lead_id).collect();
        let tx = self.pool.begin().await?;
        in_tx(tx, async |tx| {
            // The leads first, locked in id order, then their attempts: the order a
            // person's block, unblock or retry takes too, so the two cannot deadlock.
            let rows: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT id, state, pending_event, lease_owner FROM leads
                 WHERE id = ANY($1) ORDER BY id FOR UPDATE",
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
                    updated_at = $2
                 FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, token text, state text,
                      pending text, contacted_at timestamptz, follow_up_inc int,
                      reset_follow_ups boolean, reopen_inc int, transient_failures int,
                      next_eligible_at timestamptz, session_id text, set_error boolean,
                      last_error text)
                 WHERE leads.id = x.id",
            )
            .bind(&leads)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE events SET state = x.state, processed_at = $2
                 FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, state text)
                 WHERE events.id = x.id",
            )
            .bind(&events)
            .bind(now)
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
                            AND (l.lease_owner IS NULL OR l.lease_expires_at <= $1
                                 OR l.lease_owner <> a.runner_id))
             ORDER BY id"
        ))
        .bind(now)
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
             WHERE lease_owner IS NOT NULL AND lease_expires_at <= $1
               AND NOT EXISTS (SELECT 1 FROM attempts
                               WHERE attempts.lead_id = leads.id AND attempts.status = 'in_flight')",
        )
        .bind(now)
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
        let tx = self.pool.begin().await?;
        in_tx(tx, async |tx| {
            // The row lock makes concurrent 402s from several runners settle one by one.
            sqlx::query("INSERT INTO pauses (scope, until, reason, strikes, set_at) VALUES ($1, $2, '', 0, $2)
                         ON CONFLICT (scope) DO NOTHING")
                .bind(scope.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let held = sqlx::query("SELECT until, reason, strikes, set_at, set_by FROM pauses WHERE scope = $1 FOR UPDATE")
                .bind(scope.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let (held_until, strikes): (DateTime<Utc>, i32) = (held.try_get("until")?, held.try_get("strikes")?);
            // A pause in force already answers this 402 (another runner, or a call already
            // in flight, heard the same news): it is not a further strike.
            if strikes > 0 && held_until > now {
                return Ok(Pause {
                    scope,
                    until: held_until,
                    reason: held.try_get("reason")?,
                    strikes,
                    set_at: held.try_get("set_at")?,
                    set_by: held.try_get("set_by")?,
                });
            }
            let strikes = strikes.max(0) + 1;
            let until = now + chrono::Duration::from_std(length(strikes as u32)).unwrap_or(chrono::Duration::hours(1));
            sqlx::query(
                "UPDATE pauses SET until = $2, reason = $3, strikes = $4, set_at = $5, set_by = $6
                 WHERE scope = $1",
            )
            .bind(scope.as_str())
            .bind(until)
            .bind(clean(reason))
            .bind(strikes)
            .bind(now)
            .bind(runner)
            .execute(&mut *tx)
            .await?;
            Ok(Pause { scope, until, reason: clean(reason), strikes, set_at: now, set_by: Some(runner.to_string()) })
        })
        .await
    }

    async fn clear_pause(
        &self,
        scope: PauseScope,
        ended_by: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM pauses WHERE scope = $1 AND until <= $2")
            .bind(scope.as_str())
            .bind(ended_by)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn lift_pauses(&self, scopes: &[PauseScope]) -> Result<Vec<Pause>, StoreError> {
        let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let rows = sqlx::query(
            "DELETE FROM pauses WHERE scope = ANY($1)
             RETURNING scope, until, reason, strikes, set_at, set_by",
        )
        .bind(&scopes)
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
        let (leased, until): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT COUNT(*), MAX(lease_expires_at) FROM leads
             WHERE lease_owner IS NOT NULL AND lease_expires_at > $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let in_flight: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE status = 'in_flight'")
                .fetch_one(&self.pool)
                .await?;
        Ok(LeaseSummary {
            leased: leased.max(0) as u64,
            until,
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
        // The owner either way: a claim retried after its answer was lost finds its own row.
        let owner: String = sqlx::query_scalar(
            "WITH ins AS (
                 INSERT INTO ticks (job, scheduled_at, runner_id, claimed_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (job, scheduled_at) DO NOTHING RETURNING runner_id)
             SELECT runner_id FROM ins
             UNION ALL
             SELECT runner_id FROM ticks WHERE job = $1 AND scheduled_at = $2
             LIMIT 1",
        )
        .bind(job)
        .bind(scheduled_at)
        .bind(runner)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(owner == runner)
    }

    async fn start_run(
        &self,
        job: &str,
        runner: &str,
        scheduled_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO job_runs (job, runner_id, scheduled_at, started_at) VALUES ($1, $2, $3, $4)
             RETURNING id",
        )
        .bind(job)
        .bind(runner)
        .bind(scheduled_at)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn finish_run(
        &self,
        run_id: i64,
        summary: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE job_runs SET finished_at = $2, summary = $3 WHERE id = $1")
            .bind(run_id)
            .bind(now)
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
                    scheduled_at: r.try_get("scheduled_at")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
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
             WHERE $1 OR o.acked_at IS NULL ORDER BY o.id",
        )
        .bind(include_acked)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn ack_outbox(&self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
        let mut acked: Vec<i64> = sqlx::query_scalar(
            "UPDATE outbox SET acked_at = $2
             WHERE acked_at IS NULL AND id = ANY($1)
             RETURNING id",
        )
        .bind(ids)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        acked.sort_unstable();
        Ok(acked)
    }
}
