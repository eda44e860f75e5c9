//! Statements several store methods share. Mounted by each backend (`sqlite.rs`,
//! `postgres.rs`) over its own types.

use super::hot::hot_cap;
use super::{Conn, D, Store};
use crate::store::Lead;
use crate::store::rules::{attempts_json, ends_json, ids_in_order, merge_batch};
use crate::store::types::{AttemptEnd, ImportCounts, LeadInput, NewAttempt};
use crate::store::{RUNNER_LOST, StoreError, UNTOUCHED};

use crate::store::dialect::{Col, Dialect};
use crate::store::rows::{self, LEAD_COLUMNS};
use crate::store::values::{Ids, Ts};

impl Store {
    /// The leads with these ids, by id (one query).
    pub(super) async fn leads_by_id(
        &self,
        ids: impl Iterator<Item = i64>,
    ) -> Result<std::collections::HashMap<i64, Lead>, StoreError> {
        let ids = Ids(ids.collect());
        let found: Vec<rows::LeadRow> = sqlx::query_as(stmt!(
            "SELECT {LEAD_COLUMNS} FROM leads WHERE id {ids}",
            ids = D::in_ids(1)
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        found
            .into_iter()
            .map(|r| Lead::try_from(r).map(|l| (l.id, l)))
            .collect()
    }
}

/// The lead named `target` (locked, if `lock`, until the transaction ends).
pub(super) async fn lead_in(conn: &mut Conn, target: &str, lock: bool) -> Result<Lead, StoreError> {
    let sql = if lock {
        stmt!(
            "SELECT {LEAD_COLUMNS} FROM leads WHERE target = $1{lock}",
            lock = D::FOR_UPDATE
        )
    } else {
        stmt!("SELECT {LEAD_COLUMNS} FROM leads WHERE target = $1")
    };
    let row: Option<rows::LeadRow> = sqlx::query_as(sql)
        .bind(target)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(Lead::try_from)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(target.to_string()))
}

/// Records `attempts` in flight (one statement), each only if its lead is still as
/// claimed and its target is not suppressed; their ids in the same order, `None` for one
/// not recorded.
pub(super) async fn insert_attempts(
    conn: &mut Conn,
    attempts: &[NewAttempt],
) -> Result<Vec<Option<i64>>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    // One statement: a person's block, a suppression (`suppress add`) or the HTTP
    // relay's lease either comes first (no call) or finds the call in flight. On
    // PostgreSQL the leads read are locked, so a change committed while this waits is
    // seen, not a stale snapshot (`suppress add` blocks the lead in its transaction for
    // that). A suppressed target is refused here whatever its lead's state, by the
    // suppressions' primary key.
    let found: Vec<(i64, i64, String, i64)> = sqlx::query_as(record_in_flight())
        .bind(attempts_json(attempts))
        .fetch_all(&mut *conn)
        .await?;
    Ok(ids_in_order(attempts, &found))
}

/// The record statement of `insert_attempts` (`$1`: the attempts as JSON, `attempts_json`):
/// also planned by `hot_query_plans`, where the suppression check is seen to read the
/// suppressions' primary key.
pub(super) fn record_in_flight() -> &'static str {
    stmt!(
        "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id, sender,
                               opens)
         SELECT j.lead_id, j.job, j.action, j.step, 'in_flight', j.started_at, j.lease_token,
                j.sender,
                CASE WHEN j.action = 'opener' OR (j.action = 'event' AND l.state = 'new')
                     THEN 1 ELSE 0 END
         FROM {attempts} JOIN leads l ON l.id = j.lead_id
         WHERE (j.claimed IS NULL
                OR (l.state = j.claimed AND l.lease_owner = j.lease_token))
           AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.target = l.target){lock}
         RETURNING id, lead_id, action, step",
        attempts = D::records(
            1,
            "j",
            &[
                Col::Int("lead_id"),
                Col::Text("job"),
                Col::Text("action"),
                Col::Int("step"),
                Col::Ts("started_at"),
                Col::Text("lease_token"),
                Col::Text("claimed"),
                Col::Text("sender"),
            ]
        ),
        lock = D::FOR_SHARE_LEADS
    )
}

/// The state and lease holder of the leads of `attempts` (locked where the backend
/// locks rows), for `still_claimed`.
pub(super) async fn claim_states(
    conn: &mut Conn,
    attempts: &[NewAttempt],
) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
    let ids: Vec<i64> = attempts.iter().map(|a| a.lead_id).collect();
    Ok(sqlx::query_as(stmt!(
        "SELECT id, state, lease_owner FROM leads WHERE id {ids} ORDER BY id{lock}",
        ids = D::in_ids(1),
        lock = D::FOR_UPDATE
    ))
    .bind(Ids(ids))
    .fetch_all(&mut *conn)
    .await?)
}

/// A job's attempts started since `since` that count against its daily cap.
pub(super) async fn count_started_in(
    conn: &mut Conn,
    job: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<i64, StoreError> {
    hot_cap(job, since).count(conn).await
}

/// Finishes attempts still in flight (or found lost by another runner and not yet
/// released: a late answer is recorded as it is) and writes their outbox rows;
/// returns the ids finished. A late or repeated write changes nothing else.
pub(super) async fn finish_in(
    conn: &mut Conn,
    ends: &[AttemptEnd],
) -> Result<Vec<i64>, StoreError> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let payload = ends_json(ends);
    if D::WRITES_IN_WITH {
        // PostgreSQL: both writes in one statement, one round trip.
        return Ok(sqlx::query_scalar(stmt!(
            "WITH finished AS ({finish} RETURNING attempts.id, attempts.lead_id, attempts.action),
                  texts AS ({texts} FROM finished a JOIN {y} ON y.id = a.id
                                    JOIN leads l ON l.id = a.lead_id
                            WHERE y.message IS NOT NULL)
             SELECT id FROM finished",
            finish = &*FINISH,
            texts = TEXTS,
            y = D::records(1, "y", TEXT_COLUMNS),
        ))
        .bind(&payload)
        .bind(RUNNER_LOST)
        .fetch_all(&mut *conn)
        .await?);
    }
    let finished: Vec<i64> =
        sqlx::query_scalar(stmt!("{finish} RETURNING attempts.id", finish = &*FINISH))
            .bind(&payload)
            .bind(RUNNER_LOST)
            .fetch_all(&mut *conn)
            .await?;
    if finished.is_empty() || ends.iter().all(|e| e.message.is_none()) {
        return Ok(finished);
    }
    // The batch drives the join (SQLite's CROSS JOIN fixes the order: driven from
    // `attempts`, it re-parsed the whole batch per attempt).
    sqlx::query(stmt!(
        "{texts} FROM {y} {join} attempts a ON a.id = y.id {join} leads l ON l.id = a.lead_id
         WHERE y.message IS NOT NULL AND y.id {finished}",
        texts = TEXTS,
        y = D::records(1, "y", TEXT_COLUMNS),
        join = D::JOIN_IN_ORDER,
        finished = D::in_ids(2)
    ))
    .bind(&payload)
    .bind(Ids(finished.clone()))
    .execute(&mut *conn)
    .await?;
    Ok(finished)
}

/// How attempts end (`$1`: their ends as JSON, `$2`: `RUNNER_LOST`): only those still in
/// flight, or presumed lost with a real outcome now, and not released.
static FINISH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE attempts SET status = x.status, http_status = x.http_status,
                error_kind = x.error_kind,
                error_detail = CASE WHEN attempts.status = 'in_flight' THEN x.error_detail
                    ELSE COALESCE(x.error_detail, 'answered after its runner was presumed lost') END,
                session_id = x.session_id, finished_at = x.finished_at,
                released_at = CASE WHEN x.released_by IS NULL THEN attempts.released_at
                                   ELSE x.finished_at END,
                released_by = COALESCE(x.released_by, attempts.released_by)
         FROM {ends}
         WHERE attempts.id = x.id
           AND (attempts.status = 'in_flight'
                OR (attempts.status = 'unknown' AND attempts.error_kind = $2
                    AND attempts.released_at IS NULL
                    AND x.status NOT IN ('in_flight', 'unknown', 'cancelled')))",
        ends = D::records(1, "x", &[
            Col::Int("id"), Col::Text("status"), Col::Int("http_status"),
            Col::Text("error_kind"), Col::Text("error_detail"), Col::Text("session_id"),
            Col::Ts("finished_at"), Col::Text("released_by"),
        ])
    )
});

/// The outbox rows of finished attempts `a` (with their leads `l`) whose end `y` has text.
const TEXTS: &str =
    "INSERT INTO outbox (lead_id, attempt_id, target, action, message, session_id, created_at)
         SELECT a.lead_id, a.id, l.target, a.action, y.message, y.session_id, y.finished_at";

const TEXT_COLUMNS: &[Col] = &[
    Col::Int("id"),
    Col::Text("message"),
    Col::Text("session_id"),
    Col::Ts("finished_at"),
];

/// Upserts one merged import batch inside `conn`'s transaction. The batch is sent once,
/// as JSON; one statement inserts the targets that are new (skipping those that exist,
/// even ones added a moment ago) and returns no row for them, so a batch of new leads is
/// one statement and nothing comes back. Only when some targets exist does a second
/// statement update them. (Not one `ON CONFLICT DO UPDATE`: its `excluded` row cannot
/// tell a field not given, which keeps the stored value, from `tags` given empty or
/// `follow_ups_sent` given 0, which replace it.)
///
/// Which rows exist: on SQLite, the insert's count and last rowid give the ids it took
/// (consecutive in the write transaction: see `import::Inserted`), and the update skips
/// them; on PostgreSQL, the insert statement returns the targets it did not insert.
pub(super) async fn upsert_batch(
    conn: &mut Conn,
    rows: Vec<LeadInput>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ImportCounts, StoreError> {
    use super::import::{Inserted, batch_json};
    const COLS: [Col; 9] = [
        Col::Text("target"),
        Col::Text("own_username"),
        Col::Text("timezone"),
        Col::Text("profile_image"),
        Col::Text("tags"),
        Col::Text("state"),
        Col::Ts("last_contact_at"),
        Col::Ts("last_reply_at"),
        Col::Int("follow_ups_sent"),
    ];
    macro_rules! insert {
        ($from:expr) => {
            concat!(
                "INSERT INTO leads (target, own_username, timezone, profile_image, tags, state,
                                    last_contact_at, last_reply_at, follow_ups_sent,
                                    follow_ups_total, created_at, updated_at, next_eligible_at)
                 SELECT x.target, x.own_username, x.timezone, x.profile_image, {tags},
                        COALESCE(x.state, 'new'), x.last_contact_at, x.last_reply_at,
                        COALESCE(x.follow_ups_sent, 0), COALESCE(x.follow_ups_sent, 0),
                        $2, $2, $2
                 FROM ",
                $from,
                " WHERE true
                 ON CONFLICT (target) DO NOTHING"
            )
        };
    }
    let (rows, duplicates) = merge_batch(rows);
    let all = rows.len() as u64;
    let payload = batch_json(rows.iter());
    // The ids the insert took, which the update skips; an empty range on PostgreSQL,
    // whose update is given only the rows that exist.
    let (imported, skip, existing) = if D::NAME == "sqlite" {
        let done = sqlx::query(stmt!(
            insert!("{rows}"),
            tags = D::tags_from("COALESCE(x.tags, '[]')"),
            rows = D::records(1, "x", &COLS)
        ))
        .bind(&payload)
        .bind(Ts(now))
        .execute(&mut *conn)
        .await?;
        let imported = done.rows_affected();
        let skip = match done.last_rowid() {
            Some(last) if imported > 0 => (last - imported as i64 + 1, last),
            _ => (1, 0),
        };
        (imported, skip, payload)
    } else {
        let existing: std::collections::HashSet<String> = sqlx::query_scalar(stmt!(
            "WITH x AS MATERIALIZED (SELECT * FROM {rows}),
                  inserted AS ({insert} RETURNING target)
             SELECT x.target FROM x
             WHERE NOT EXISTS (SELECT 1 FROM inserted i WHERE i.target = x.target)",
            insert = format_args!(insert!("x"), tags = D::tags_from("COALESCE(x.tags, '[]')")),
            rows = D::records(1, "x", &COLS)
        ))
        .bind(&payload)
        .bind(Ts(now))
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let payload = if existing.is_empty() {
            String::new()
        } else {
            batch_json(
                rows.iter()
                    .filter(|r| existing.contains(&r.target))
                    .collect::<Vec<_>>()
                    .into_iter(),
            )
        };
        (all - existing.len() as u64, (1, 0), payload)
    };
    if imported < all {
        let updated = sqlx::query(stmt!(
            "UPDATE leads SET
                own_username  = COALESCE(x.own_username, leads.own_username),
                timezone      = COALESCE(x.timezone, leads.timezone),
                profile_image = COALESCE(x.profile_image, leads.profile_image),
                tags          = COALESCE({tags}, leads.tags),
                state           = CASE WHEN {u} THEN COALESCE(x.state, leads.state) ELSE leads.state END,
                last_contact_at = CASE WHEN {u} THEN COALESCE(x.last_contact_at, leads.last_contact_at) ELSE leads.last_contact_at END,
                last_reply_at   = CASE WHEN {u} THEN COALESCE(x.last_reply_at, leads.last_reply_at) ELSE leads.last_reply_at END,
                follow_ups_sent = CASE WHEN {u} THEN COALESCE(x.follow_ups_sent, leads.follow_ups_sent) ELSE leads.follow_ups_sent END,
                follow_ups_total = CASE WHEN {u} THEN COALESCE(x.follow_ups_sent, leads.follow_ups_total) ELSE leads.follow_ups_total END,
                updated_at    = $2
             FROM {rows}
             WHERE leads.target = x.target AND leads.id NOT BETWEEN $3 AND $4",
            tags = D::tags_from("x.tags"),
            u = UNTOUCHED,
            rows = D::records(1, "x", &COLS)
        ))
        .bind(&existing)
        .bind(Ts(now))
        .bind(skip.0)
        .bind(skip.1)
        .execute(&mut *conn)
        .await?;
        if D::NAME == "sqlite" && updated.rows_affected() != all - imported {
            // The rowids were not as `Inserted` says: stop rather than leave rows
            // neither inserted nor updated.
            return Err(StoreError::Corrupt(format!(
                "an import batch of {all} found {imported} new and updated {} of the rest",
                updated.rows_affected()
            )));
        }
    }
    // A suppressed target is never worked: created or left `blocked` (the record
    // statement refuses its calls in any case).
    let targets = serde_json::Value::from(
        rows.iter()
            .map(|r| r.target.as_str())
            .collect::<Vec<&str>>(),
    )
    .to_string();
    let (suppressed, _) = block_suppressed(conn, &targets, now).await?;
    Ok(ImportCounts {
        imported,
        updated: all - imported + duplicates,
        suppressed,
    })
}

/// Blocks the leads of `targets` (a JSON array of text) that are on the suppression list
/// and may be blocked (as `leads block` does: not `done` or `ignored`, which are never
/// contacted again anyway; what a lead needing review or failed was is kept pending for an
/// unblock). Returns how many of `targets` are suppressed, and how many leads it blocked.
pub(super) async fn block_suppressed(
    conn: &mut Conn,
    targets: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(u64, u64), StoreError> {
    let suppressed: i64 = sqlx::query_scalar(stmt!(
        "SELECT COUNT(*) FROM suppressions WHERE target IN {targets}",
        targets = D::texts(1)
    ))
    .bind(targets)
    .fetch_one(&mut *conn)
    .await?;
    if suppressed == 0 {
        return Ok((0, 0));
    }
    let blocked = sqlx::query(stmt!(
        "UPDATE leads SET state = 'blocked', updated_at = $2,
            pending_event = COALESCE(pending_event, CASE state WHEN 'needs_review' THEN 'outcome_unknown'
                                                          WHEN 'failed' THEN 'failed' END)
         WHERE target IN {targets} AND state NOT IN ('blocked', 'done', 'ignored')
           AND EXISTS (SELECT 1 FROM suppressions s WHERE s.target = leads.target)",
        targets = D::texts(1)
    ))
    .bind(targets)
    .bind(Ts(now))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((suppressed.max(0) as u64, blocked))
}
