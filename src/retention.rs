//! Retention: old rows pruned so that no table grows without bound (`[retention]`).
//!
//! A prune goes table by table (`PruneTable::ALL`: the outbox before the attempts its
//! rows point at) in statements of at most `PRUNE_BATCH` rows, yielding between them, so
//! the runner's own writes go between (on SQLite each statement holds the write lock only
//! for itself). The daemon prunes at most once per clock hour, claimed in the database
//! like a cron tick (`RetentionStore::claim_prune`), so of several daemons on one database
//! one prunes; its run is bounded (`DAEMON_STATEMENTS` per table) and what is left waits
//! for the next hour. `fluidtalk-runner prune` goes until nothing is left.
//!
//! The cutoff of each table is `now` minus its setting; attempts are also kept for
//! `ATTEMPTS_KEPT_AT_LEAST` whatever the setting, since the daily cap counts the calls
//! started in the job's day.

use crate::config::Retention;
use crate::store::{PRUNE_BATCH, PruneTable, RetentionStore, StoreError};
use chrono::{DateTime, DurationRound, Utc};
use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;

/// Statements per table in one of the daemon's hourly prunes: at most
/// `DAEMON_STATEMENTS * PRUNE_BATCH` rows per table per hour (with every-second schedules a
/// job adds 3,600 ticks and runs an hour, far below).
pub const DAEMON_STATEMENTS: u32 = 100;

/// Attempts started this recently are never pruned: a daily cap counts the calls started
/// since the start of the job's day (at most 26 hours ago in any time zone).
pub const ATTEMPTS_KEPT_AT_LEAST: chrono::Duration = chrono::Duration::days(2);

/// A sender account idle this recently is never forgotten: its gap (at most a day) and
/// its warm-up ramp (day 0 is its first opener) hold whatever `[retention] attempts` says.
pub const SENDERS_KEPT_AT_LEAST: chrono::Duration = chrono::Duration::days(30);

/// SQLite pages given back to the file system after a prune (`reclaim_space`): 4 KiB each,
/// so at most 40 MB per hour; free pages left over are reused by new rows meanwhile.
pub const RECLAIM_PAGES: u32 = 10_000;

/// What a prune removed (or, dry, would remove), per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Rows per table, every table named.
    pub rows: BTreeMap<&'static str, u64>,
    /// False when the run stopped at its bound (or was stopped) with rows left to prune.
    pub complete: bool,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.rows.values().sum()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!(self.rows)
    }

    /// `attempts 3, events 0, …`.
    pub fn describe(&self) -> String {
        self.rows
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The oldest time a row of `table` may have and be kept, at `now`.
pub fn cutoff(table: PruneTable, r: &Retention, now: DateTime<Utc>) -> DateTime<Utc> {
    let kept = match table {
        // A job pause is kept until its end, not for a setting's while after it.
        PruneTable::JobPauses => return now,
        PruneTable::Outbox => r.outbox,
        PruneTable::Events => r.events,
        PruneTable::Ticks | PruneTable::JobRuns | PruneTable::Prunes => r.runs,
        PruneTable::Attempts | PruneTable::Senders => r.attempts,
    };
    let cut = crate::clock::earlier(now, kept);
    match table {
        PruneTable::Attempts => cut.min(now - ATTEMPTS_KEPT_AT_LEAST),
        PruneTable::Senders => cut.min(now - SENDERS_KEPT_AT_LEAST),
        _ => cut,
    }
}

/// The start of `now`'s clock hour (UTC): the key of the daemon's hourly prune.
pub fn hour_of(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(chrono::Duration::hours(1))
        .unwrap_or(now)
}

/// Prunes every table at `now`: at most `max_statements` statements per table (`None`: until
/// nothing is left), stopping between statements once `stop` is cancelled. Each statement's
/// rows are counted in the `PRUNED_ROWS` metric as they go.
pub async fn prune(
    store: &dyn RetentionStore,
    r: &Retention,
    now: DateTime<Utc>,
    max_statements: Option<u32>,
    stop: Option<&CancellationToken>,
) -> Result<Pruned, StoreError> {
    let mut out = Pruned {
        complete: true,
        ..Pruned::default()
    };
    for table in PruneTable::ALL {
        let cut = cutoff(table, r, now);
        let mut removed = 0;
        let mut statements = 0;
        loop {
            if stop.is_some_and(CancellationToken::is_cancelled)
                || max_statements.is_some_and(|m| statements >= m)
            {
                out.complete = false;
                break;
            }
            let n = store.prune_batch(table, cut, PRUNE_BATCH).await?;
            statements += 1;
            removed += n;
            crate::metrics::pruned(table.as_str(), n);
            if n < u64::from(PRUNE_BATCH) {
                break;
            }
            // Other tasks (the runner's writes) go between two statements.
            tokio::task::yield_now().await;
        }
        out.rows.insert(table.as_str(), removed);
    }
    Ok(out)
}

/// What `prune` would remove at `now`, removing nothing.
pub async fn would_prune(
    store: &dyn RetentionStore,
    r: &Retention,
    now: DateTime<Utc>,
) -> Result<Pruned, StoreError> {
    let mut out = Pruned {
        complete: true,
        ..Pruned::default()
    };
    for table in PruneTable::ALL {
        let n = store.prunable(table, cutoff(table, r, now)).await?;
        out.rows.insert(table.as_str(), n);
    }
    Ok(out)
}

/// The daemon's hourly prune at `now`, as runner `runner`: claims the hour, prunes within
/// `DAEMON_STATEMENTS` per table, records what it removed and gives SQLite's free pages
/// back. `None` when another daemon has this hour.
pub async fn hourly(
    store: &dyn RetentionStore,
    r: &Retention,
    runner: &str,
    now: DateTime<Utc>,
    stop: &CancellationToken,
) -> Result<Option<Pruned>, StoreError> {
    let hour = hour_of(now);
    if !store.claim_prune(hour, runner, now).await? {
        return Ok(None);
    }
    let pruned = prune(store, r, now, Some(DAEMON_STATEMENTS), Some(stop)).await?;
    store.finish_prune(hour, &pruned.to_json(), now).await?;
    if pruned.total() > 0 {
        store.reclaim_space(RECLAIM_PAGES).await?;
    }
    Ok(Some(pruned))
}
