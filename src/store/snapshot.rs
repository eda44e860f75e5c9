//! `SnapshotStore`: a campaign's working set read from one database and written into
//! another (a scratch SQLite file), so the forecast can run the real runner over a copy
//! and never touch the campaign's own database.

use super::StoreError;
use super::types::{Attempt, DueQuery, Lead, Pause, QueuedEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// An attempt with its lead's target.
#[derive(Debug, Clone)]
pub struct AttemptOf {
    pub attempt: Attempt,
    pub target: String,
}

#[async_trait]
pub trait SnapshotStore: super::Reads {
    /// Leads with an id above `after`, in id order, at most `limit`.
    async fn leads_page(&self, after: i64, limit: u32) -> Result<Vec<Lead>, StoreError>;

    /// The attempts that still matter to a run from `since` on: those of `jobs` started
    /// since then that count against daily caps (in flight, sent, continued, unknown), and
    /// every attempt in flight. In id order.
    async fn attempts_since(
        &self,
        jobs: &[String],
        since: DateTime<Utc>,
    ) -> Result<Vec<Attempt>, StoreError>;

    /// How many leads `due_leads` would return for `q` from its cursor on, whatever its
    /// limit: the same statement, counted by the database.
    async fn count_due(&self, q: &DueQuery) -> Result<u64, StoreError>;

    /// How many queued events `due_events` would return at `now`, whatever the limit.
    async fn count_due_events(
        &self,
        event_type: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Attempts with an id above `after`, in id order, at most `limit`, with their targets.
    async fn attempts_after(&self, after: i64, limit: u32) -> Result<Vec<AttemptOf>, StoreError>;

    /// Writes leads as they are (ids, states, counters, leases), into a database that does
    /// not hold them yet.
    async fn restore_leads(&self, leads: &[Lead]) -> Result<(), StoreError>;

    /// Each sender's first opener and last call (`senders`; `openers_today` is 0).
    async fn sender_rows(&self) -> Result<Vec<crate::senders::SenderUse>, StoreError>;

    /// Writes queued events, attempts, pauses and senders as they are, after their leads.
    async fn restore_rest(
        &self,
        events: &[QueuedEvent],
        attempts: &[Attempt],
        pauses: &[Pause],
        senders: &[crate::senders::SenderUse],
    ) -> Result<(), StoreError>;
}
