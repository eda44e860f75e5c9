//! Replies credited to steps, and the counts the reply rates are made of (`crate::rates`).
//! Mounted by each backend (`sqlite.rs`, `postgres.rs`) over its own types.

use super::{Conn, Store};
use crate::rates::StepCount;
use crate::store::StoreError;
use crate::store::values::Ts;

/// Credits a reply of the lead `lead_id` at `at` to its last job step sent (answered
/// `sent` or `continued`) that started at or before `at`, unless that step was credited
/// already: a second reply to the same step does not count twice, nor is it passed on to
/// an earlier step. The inbound relay's own calls are no job's step and are passed over.
/// Run in the transaction that records the reply.
pub(super) async fn credit_reply(
    conn: &mut Conn,
    lead_id: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE attempts SET replied_at = $2
         WHERE id = (SELECT id FROM attempts
                     WHERE lead_id = $1 AND status IN ('sent', 'continued')
                       AND action <> 'inbound' AND started_at <= $2
                     ORDER BY started_at DESC, id DESC LIMIT 1)
           AND replied_at IS NULL",
    )
    .bind(lead_id)
    .bind(Ts(at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The counts per job, step and sender (`AdminStore::reply_counts`). One statement, on
/// SQLite over the covering index `attempts_rates` (migration 0012), joined to each
/// attempt's lead for its sender. (The WHERE repeats the index's, term by term.)
const COUNTS: &str = "SELECT a.job, a.action, CASE WHEN a.action = 'event' THEN 0 ELSE a.step END,
        COALESCE(l.own_username, $1),
        SUM(CASE WHEN a.status IN ('sent', 'continued') THEN 1 ELSE 0 END),
        SUM(CASE WHEN a.status IN ('sent', 'continued') AND a.replied_at IS NOT NULL
                 THEN 1 ELSE 0 END),
        SUM(CASE WHEN a.status = 'sealed' THEN 1 ELSE 0 END),
        SUM(CASE WHEN a.status = 'ignored' THEN 1 ELSE 0 END)
 FROM attempts a JOIN leads l ON l.id = a.lead_id
 WHERE a.status IN ('sent', 'continued', 'sealed', 'ignored') AND a.action <> 'inbound'
 GROUP BY 1, 2, 3, 4";

type CountRow = (String, String, i64, Option<String>, i64, i64, i64, i64);

impl Store {
    pub(super) async fn read_reply_counts(
        &self,
        default_sender: Option<&str>,
    ) -> Result<Vec<StepCount>, StoreError> {
        let found: Vec<CountRow> = sqlx::query_as(COUNTS)
            .bind(default_sender)
            .fetch_all(&self.pool)
            .await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(crate::rates::sorted(
            found
                .into_iter()
                .map(
                    |(job, action, step, sender, sent, replied, sealed, ignored)| StepCount {
                        job,
                        action,
                        step,
                        sender,
                        sent: n(sent),
                        replied: n(replied),
                        sealed: n(sealed),
                        ignored: n(ignored),
                    },
                )
                .collect(),
        ))
    }
}
