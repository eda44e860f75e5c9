//! What retention asks of the store: old rows removed in small statements, the hourly
//! prune claimed once across daemons, and (SQLite) free pages given back to the file
//! system. What may be removed, and why, is in docs/ARCHITECTURE.md ("Retention"); the
//! schedule and the bounds are `crate::retention`'s.

use super::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Most rows one prune statement removes.
pub const PRUNE_BATCH: u32 = 1_000;

/// A table retention prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PruneTable {
    /// Outbox messages delivered or acknowledged (`[retention] outbox`, by `acked_at`).
    Outbox,
    /// Events sent or dropped (`[retention] events`, by `processed_at`).
    Events,
    /// Claimed cron ticks (`[retention] runs`, by `claimed_at`).
    Ticks,
    /// Job runs (`[retention] runs`, by `started_at`).
    JobRuns,
    /// The hourly prunes' own claims (`[retention] runs`, by `hour`).
    Prunes,
    /// Attempts the never-send-twice rule no longer needs (`[retention] attempts`, by
    /// `started_at`).
    Attempts,
    /// Sender accounts idle that long (`[retention] attempts`, by their last call): the
    /// first opener their warm-up counts from, and their last call.
    Senders,
    /// Job pauses whose end has passed (by `until`, whatever the settings: the cutoff is
    /// now). A pause with no end stays until the job is resumed.
    JobPauses,
}

impl PruneTable {
    /// In the order a prune goes: an outbox row points at its attempt, so outbox rows go
    /// before attempts.
    pub const ALL: [PruneTable; 8] = [
        PruneTable::Outbox,
        PruneTable::Events,
        PruneTable::Ticks,
        PruneTable::JobRuns,
        PruneTable::Prunes,
        PruneTable::Attempts,
        PruneTable::Senders,
        PruneTable::JobPauses,
    ];

    /// The table's name (also the metric's `table` label).
    pub fn as_str(self) -> &'static str {
        match self {
            PruneTable::Outbox => "outbox",
            PruneTable::Events => "events",
            PruneTable::Ticks => "ticks",
            PruneTable::JobRuns => "job_runs",
            PruneTable::Prunes => "prunes",
            PruneTable::Attempts => "attempts",
            PruneTable::Senders => "senders",
            PruneTable::JobPauses => "job_pauses",
        }
    }
}

/// Retention's statements.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Claims the prune of the clock hour starting at `hour` for `runner`, like a cron
    /// tick: false if another runner has it (a claim retried after its answer was lost
    /// finds its own row and is true).
    async fn claim_prune(
        &self,
        hour: DateTime<Utc>,
        runner_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Records what the prune of `hour` removed (JSON: rows per table).
    async fn finish_prune(
        &self,
        hour: DateTime<Utc>,
        removed: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Removes up to `limit` (at most `PRUNE_BATCH`) rows of `table` older than `cutoff`
    /// that retention may remove, oldest first, in one statement; returns how many.
    async fn prune_batch(
        &self,
        table: PruneTable,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
    /// The plan of each prune statement at `cutoff` (`tests/query_plans.rs`: each reads an
    /// index on age, never scans or sorts a whole table).
    async fn prune_plans(&self, cutoff: DateTime<Utc>)
    -> Result<Vec<super::QueryPlan>, StoreError>;
    /// How many rows `prune_batch` would remove in all (a dry run).
    async fn prunable(&self, table: PruneTable, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;
    /// SQLite: gives up to `pages` free pages back to the file system
    /// (`PRAGMA incremental_vacuum`; nothing on a file without `auto_vacuum = INCREMENTAL`)
    /// and returns the free pages left. PostgreSQL: nothing (autovacuum reuses the space).
    async fn reclaim_space(&self, pages: u32) -> Result<u64, StoreError>;
}
