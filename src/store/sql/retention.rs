//! `impl RetentionStore`: the prune statements. Mounted by each backend (`sqlite.rs`,
//! `postgres.rs`) over its own types.
//!
//! Each statement removes at most `limit` rows, oldest first, read through the age indexes
//! of migration 0009 (a partial index's condition is repeated word for word, so SQLite
//! uses it). No statement removes a table's newest row: SQLite gives a new row the highest
//! id plus one, so removing the newest could hand its id to the next row, and an attempt's
//! step is an event's id (PostgreSQL's identities never reuse one either way).

use super::hot::Hot;
use super::{D, Store};
use crate::store::StoreError;
use crate::store::dialect::Dialect;
use crate::store::types::QueryPlan;
use crate::store::values::Ts;

/// SQL: rows of each table retention may remove (`$1`: the cutoff).
mod prunable {
    use const_format::concatcp;

    pub(super) const OUTBOX: &str =
        "acked_at IS NOT NULL AND acked_at < $1 AND id < (SELECT MAX(id) FROM outbox)";
    pub(super) const EVENTS: &str = "state IN ('sent', 'dropped') AND processed_at < $1
         AND id < (SELECT MAX(id) FROM events)";
    pub(super) const TICKS: &str = "claimed_at < $1";
    pub(super) const JOB_RUNS: &str = "started_at < $1 AND id < (SELECT MAX(id) FROM job_runs)";
    pub(super) const PRUNES: &str = "hour < $1";
    pub(super) const SENDERS: &str = "last_call_at < $1";
    pub(super) const JOB_PAUSES: &str = "until IS NOT NULL AND until <= $1";
    // Attempts that no rule needs any more (docs/ARCHITECTURE.md, "Retention"): never one
    // in flight, one an outbox row points at, or one of a lead an import may still treat
    // as untouched (`UNTOUCHED`); of the rest, those whose step the lead can never be
    // sent again, inbound calls (not steps), and those that hold no step and record no
    // release. In three statements, so that none reads the attempts kept for good (a
    // contacted lead's opener) again each hour:
    pub(super) const ATTEMPTS_COMMON: &str =
        "attempts.started_at < $1 AND attempts.status <> 'in_flight'
         AND attempts.id < (SELECT MAX(id) FROM attempts)
         AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.attempt_id = attempts.id)";
    // 1. Follow-ups up to the lead's follow-ups over its life, events no longer queued,
    //    inbound calls, and those holding no step (index `attempts_steps_age`).
    pub(super) const ATTEMPTS_NOT_OPENERS: &str = concatcp!(
        "attempts.action <> 'opener' AND ",
        ATTEMPTS_COMMON,
        " AND EXISTS (
                 SELECT 1 FROM leads WHERE leads.id = attempts.lead_id
                   AND NOT (leads.state = 'new' AND leads.last_contact_at IS NULL)
                   AND ((attempts.action = 'follow_up' AND attempts.step <= leads.follow_ups_total)
                     OR (attempts.action = 'event' AND NOT EXISTS (
                             SELECT 1 FROM events WHERE events.id = attempts.step
                               AND events.state NOT IN ('sent', 'dropped')))
                     OR attempts.action = 'inbound'
                     OR (attempts.released_at IS NULL
                         AND attempts.status NOT IN ('sent', 'continued', 'ignored', 'sealed',
                                                     'failed', 'unknown'))))"
    );
    // 2. Openers that hold no step and record no release (index `attempts_free_openers_age`).
    pub(super) const ATTEMPTS_FREE_OPENERS: &str = concatcp!(
        "attempts.action = 'opener' AND attempts.released_at IS NULL
             AND attempts.status NOT IN ('in_flight', 'sent', 'continued', 'ignored', 'sealed',
                                         'failed', 'unknown') AND ",
        ATTEMPTS_COMMON,
        " AND EXISTS (
                 SELECT 1 FROM leads WHERE leads.id = attempts.lead_id
                   AND NOT (leads.state = 'new' AND leads.last_contact_at IS NULL))"
    );
    // 3. Openers of a step below the lead's reopens, found from the reopened leads (index
    //    `leads_reopened`; a lead is reopened by a 404 on a follow-up, rarely).
    // (Joined with `D::JOIN_IN_ORDER` from the leads: else SQLite walks every attempt by
    // id.)
    pub(super) const ATTEMPTS_REOPENED: &str = concatcp!(
        "leads.reopens > 0 AND attempts.action = 'opener'
             AND attempts.step < leads.reopens
             AND NOT (leads.state = 'new' AND leads.last_contact_at IS NULL) AND ",
        ATTEMPTS_COMMON
    );
}

#[async_trait::async_trait]
impl crate::store::RetentionStore for Store {
    async fn claim_prune(
        &self,
        hour: chrono::DateTime<chrono::Utc>,
        runner_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO prunes (hour, runner_id, claimed_at) VALUES ($1, $2, $3)
             ON CONFLICT (hour) DO NOTHING",
        )
        .bind(Ts(hour))
        .bind(runner_id)
        .bind(Ts(now))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        let owner: Option<String> =
            sqlx::query_scalar("SELECT runner_id FROM prunes WHERE hour = $1")
                .bind(Ts(hour))
                .fetch_optional(&self.pool)
                .await?;
        Ok(owner.as_deref() == Some(runner_id))
    }

    async fn finish_prune(
        &self,
        hour: chrono::DateTime<chrono::Utc>,
        removed: &serde_json::Value,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE prunes SET finished_at = $2, removed = $3 WHERE hour = $1")
            .bind(Ts(hour))
            .bind(Ts(now))
            .bind(removed.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn prune_batch(
        &self,
        table: crate::store::PruneTable,
        cutoff: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let limit = i64::from(limit.min(crate::store::PRUNE_BATCH));
        // Attempts take up to three statements, each within what is left of `limit`.
        let mut removed = 0u64;
        for sql in prune_statements(table) {
            let left = limit - removed as i64;
            if left <= 0 {
                break;
            }
            removed += sqlx::query(sql)
                .bind(Ts(cutoff))
                .bind(left)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }

    async fn prune_plans(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<QueryPlan>, StoreError> {
        use crate::store::values::Arg;
        let mut plans = Vec::new();
        for table in crate::store::PruneTable::ALL {
            for (i, sql) in prune_statements(table).iter().enumerate() {
                let hot = Hot {
                    name: if i == 0 {
                        table.as_str()
                    } else {
                        ["attempts", "attempts (free openers)", "attempts (reopened)"][i]
                    },
                    sql,
                    args: vec![
                        Arg::Ts(Ts(cutoff)),
                        Arg::Int(i64::from(crate::store::PRUNE_BATCH)),
                    ],
                };
                plans.push(hot.plan(&self.pool).await?);
            }
        }
        Ok(plans)
    }

    async fn prunable(
        &self,
        table: crate::store::PruneTable,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        use crate::store::PruneTable as T;
        let sql = match table {
            T::Outbox => {
                const_format::concatcp!("SELECT COUNT(*) FROM outbox WHERE ", prunable::OUTBOX)
            }
            T::Events => {
                const_format::concatcp!("SELECT COUNT(*) FROM events WHERE ", prunable::EVENTS)
            }
            T::Ticks => {
                const_format::concatcp!("SELECT COUNT(*) FROM ticks WHERE ", prunable::TICKS)
            }
            T::JobRuns => {
                const_format::concatcp!("SELECT COUNT(*) FROM job_runs WHERE ", prunable::JOB_RUNS)
            }
            T::Prunes => {
                const_format::concatcp!("SELECT COUNT(*) FROM prunes WHERE ", prunable::PRUNES)
            }
            T::Senders => {
                const_format::concatcp!("SELECT COUNT(*) FROM senders WHERE ", prunable::SENDERS)
            }
            T::JobPauses => const_format::concatcp!(
                "SELECT COUNT(*) FROM job_pauses WHERE ",
                prunable::JOB_PAUSES
            ),
            T::Attempts => const_format::concatcp!(
                "SELECT (SELECT COUNT(*) FROM attempts WHERE ",
                prunable::ATTEMPTS_NOT_OPENERS,
                ") + (SELECT COUNT(*) FROM attempts WHERE ",
                prunable::ATTEMPTS_FREE_OPENERS,
                ") + (SELECT COUNT(*) FROM leads JOIN attempts ON attempts.lead_id = leads.id WHERE ",
                prunable::ATTEMPTS_REOPENED,
                ")"
            ),
        };
        let n: i64 = sqlx::query_scalar(sql)
            .bind(Ts(cutoff))
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn reclaim_space(&self, pages: u32) -> Result<u64, StoreError> {
        if D::NAME != "sqlite" {
            return Ok(0);
        }
        // Stepped to its end (`fetch_all`): the pragma frees a page per step.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA incremental_vacuum({pages})"
        )))
        .fetch_all(&self.pool)
        .await?;
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&self.pool)
            .await?;
        Ok(free.max(0) as u64)
    }
}
/// The statements that prune `table` (`$1` the cutoff, `$2` the most rows).
pub(super) fn prune_statements(table: crate::store::PruneTable) -> Vec<&'static str> {
    use crate::store::PruneTable as T;
    match table {
        T::Outbox => vec![const_format::concatcp!(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE ",
            prunable::OUTBOX,
            " ORDER BY acked_at LIMIT $2)"
        )],
        T::Events => vec![const_format::concatcp!(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ",
            prunable::EVENTS,
            " ORDER BY processed_at LIMIT $2)"
        )],
        T::Ticks => vec![const_format::concatcp!(
            "DELETE FROM ticks WHERE (job, scheduled_at) IN
             (SELECT job, scheduled_at FROM ticks WHERE ",
            prunable::TICKS,
            " ORDER BY claimed_at LIMIT $2)"
        )],
        T::JobRuns => vec![const_format::concatcp!(
            "DELETE FROM job_runs WHERE id IN (SELECT id FROM job_runs WHERE ",
            prunable::JOB_RUNS,
            " ORDER BY started_at LIMIT $2)"
        )],
        T::Prunes => vec![const_format::concatcp!(
            "DELETE FROM prunes WHERE hour IN (SELECT hour FROM prunes WHERE ",
            prunable::PRUNES,
            " ORDER BY hour LIMIT $2)"
        )],
        T::Senders => vec![const_format::concatcp!(
            "DELETE FROM senders WHERE username IN (SELECT username FROM senders WHERE ",
            prunable::SENDERS,
            " ORDER BY last_call_at LIMIT $2)"
        )],
        T::JobPauses => vec![const_format::concatcp!(
            "DELETE FROM job_pauses WHERE job IN (SELECT job FROM job_pauses WHERE ",
            prunable::JOB_PAUSES,
            " ORDER BY until LIMIT $2)"
        )],
        T::Attempts => vec![
            const_format::concatcp!(
                "DELETE FROM attempts WHERE id IN (SELECT attempts.id FROM attempts WHERE ",
                prunable::ATTEMPTS_NOT_OPENERS,
                " ORDER BY attempts.started_at LIMIT $2)"
            ),
            const_format::concatcp!(
                "DELETE FROM attempts WHERE id IN (SELECT attempts.id FROM attempts WHERE ",
                prunable::ATTEMPTS_FREE_OPENERS,
                " ORDER BY attempts.started_at LIMIT $2)"
            ),
            stmt!(
                "DELETE FROM attempts WHERE id IN (SELECT attempts.id FROM leads {join} attempts
                 ON attempts.lead_id = leads.id WHERE {cond} LIMIT $2)",
                join = D::JOIN_IN_ORDER,
                cond = prunable::ATTEMPTS_REOPENED
            ),
        ],
    }
}
