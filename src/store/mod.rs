//! The lead database: one `Store` trait, a SQLite and a PostgreSQL implementation.
//!
//! Every SQL statement of the project lives under this module. sqlx's Any driver cannot
//! carry timestamps or JSON, so each backend has its own SQL and migrations
//! (`migrations/sqlite`, `migrations/postgres`), applied when a store is opened. Both pass
//! one conformance suite (`tests/store_conformance.rs`). Timestamps are UTC.
//!
//! Writes that depend on a lead's state go through `lead::next` and are applied with a
//! compare-and-set on the state read, so a user's `block` and a runner's result can never
//! silently overwrite each other.

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::lead::{LeadState, Refused};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where the lead database lives when nothing else says.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://fluidtalk-runner.db";

/// The longest target accepted (platform handles are far shorter).
pub const MAX_TARGET_LEN: usize = 255;

/// What the runner sends for a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Opener,
    FollowUp,
    Event,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Opener => "opener",
            Action::FollowUp => "follow_up",
            Action::Event => "event",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "opener" => Ok(Action::Opener),
            "follow_up" => Ok(Action::FollowUp),
            "event" => Ok(Action::Event),
            other => Err(StoreError::Corrupt(format!("unknown action {other:?}"))),
        }
    }
}

/// A lead as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lead {
    pub id: i64,
    pub target: String,
    pub own_username: Option<String>,
    pub state: LeadState,
    pub timezone: Option<String>,
    pub profile_image: Option<String>,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_contact_at: Option<DateTime<Utc>>,
    pub last_reply_at: Option<DateTime<Utc>>,
    pub next_eligible_at: DateTime<Utc>,
    pub follow_ups_sent: i32,
    pub transient_failures: i32,
    pub session_id: Option<String>,
    pub last_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// A lead to add or update. `None` means "not given": a new lead takes the default, an
/// existing lead keeps what it has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadInput {
    pub target: String,
    pub own_username: Option<String>,
    pub timezone: Option<String>,
    pub profile_image: Option<String>,
    pub tags: Option<Vec<String>>,
    /// `new` or `contacted`, to move an existing campaign in. Applied to a lead that is
    /// created or still `new`; a lead the runner already worked keeps its state.
    pub state: Option<LeadState>,
    pub last_contact_at: Option<DateTime<Utc>>,
    pub last_reply_at: Option<DateTime<Utc>>,
    pub follow_ups_sent: Option<i32>,
}

impl LeadInput {
    /// Folds a later row for the same target into this one: given fields win.
    pub fn merge(&mut self, later: LeadInput) {
        fn take<T>(slot: &mut Option<T>, v: Option<T>) {
            if v.is_some() {
                *slot = v;
            }
        }
        take(&mut self.own_username, later.own_username);
        take(&mut self.timezone, later.timezone);
        take(&mut self.profile_image, later.profile_image);
        take(&mut self.tags, later.tags);
        take(&mut self.state, later.state);
        take(&mut self.last_contact_at, later.last_contact_at);
        take(&mut self.last_reply_at, later.last_reply_at);
        take(&mut self.follow_ups_sent, later.follow_ups_sent);
    }
}

/// Which leads `list_leads` returns.
#[derive(Debug, Clone, Default)]
pub struct LeadFilter {
    pub state: Option<LeadState>,
    pub tag: Option<String>,
    /// `None` for all.
    pub limit: Option<u32>,
}

/// One API call made for a lead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub lead_id: i64,
    pub job: String,
    pub action: Action,
    pub step: i64,
    /// `in_flight` until the call returns, then its outcome.
    pub status: String,
    pub http_status: Option<i32>,
    pub error_kind: Option<String>,
    pub error_detail: Option<String>,
    pub session_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub runner_id: String,
}

/// An attempt about to be made.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub lead_id: i64,
    pub job: String,
    pub action: Action,
    pub step: i64,
    pub runner_id: String,
    pub started_at: DateTime<Utc>,
}

/// How an attempt ended, and the text to deliver, if any.
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    pub attempt_id: i64,
    pub status: String,
    pub http_status: Option<i32>,
    pub error_kind: Option<String>,
    pub error_detail: Option<String>,
    pub session_id: Option<String>,
    pub finished_at: DateTime<Utc>,
    /// Text the persona produced: becomes an outbox row.
    pub message: Option<String>,
}

/// Text for the platform to deliver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub lead_id: i64,
    pub attempt_id: i64,
    pub target: String,
    pub action: String,
    pub message: String,
    pub session_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub acked_at: Option<DateTime<Utc>>,
}

/// A queued platform event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuedEvent {
    pub id: i64,
    pub lead_id: i64,
    pub target: String,
    pub event_type: String,
    /// The context object's JSON text, key order as given.
    pub context: Option<String>,
    pub state: String,
    pub created_at: DateTime<Utc>,
}

/// A change a person asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    Block,
    Unblock,
    Retry,
}

/// What one batch of an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    pub imported: u64,
    pub updated: u64,
}

impl std::ops::AddAssign for ImportCounts {
    fn add_assign(&mut self, o: Self) {
        self.imported += o.imported;
        self.updated += o.updated;
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("no lead with target {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("lead {0:?} changed while it was being updated; nothing was written, try again")]
    Conflict(String),
    #[error("{action} step {step} of lead {lead_id} is already in flight or sent")]
    AlreadySent {
        lead_id: i64,
        action: &'static str,
        step: i64,
    },
    #[error(
        "the database's schema (version {found}) is newer than this fluidtalk-runner knows \
         (up to {known}); upgrade fluidtalk-runner before using this database"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("bad database URL {url}: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot open the database at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the database failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the import was rolled back after an earlier error; nothing from it was kept")]
    ImportAborted,
    #[error("stored data is not as expected: {0}")]
    Corrupt(String),
}

/// The lead database.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Starts an import. With `atomic`, every batch joins one transaction that `finish`
    /// commits or rolls back; without, each batch commits on its own.
    async fn begin_import(&self, atomic: bool) -> Result<Box<dyn ImportSession>, StoreError>;

    async fn get_lead(&self, target: &str) -> Result<Option<Lead>, StoreError>;
    async fn list_leads(&self, filter: &LeadFilter) -> Result<Vec<Lead>, StoreError>;
    /// A lead's attempts, newest first.
    async fn attempts_for(&self, lead_id: i64) -> Result<Vec<Attempt>, StoreError>;
    /// Leads per state; every state is present, with 0 where there are none.
    async fn count_by_state(&self) -> Result<BTreeMap<LeadState, u64>, StoreError>;

    /// The lead wrote back at `at`: resets the quiet clock and the follow-up count.
    async fn record_reply(
        &self,
        target: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Lead, StoreError>;
    /// Block, unblock or retry a lead, as the lifecycle allows.
    async fn apply_user_action(
        &self,
        target: &str,
        action: UserAction,
        now: DateTime<Utc>,
    ) -> Result<Lead, StoreError>;

    /// Queues a platform event for `target`, adding the lead (as `new`) if it is unknown.
    async fn queue_event(
        &self,
        target: &str,
        event_type: &str,
        context: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<QueuedEvent, StoreError>;
    async fn queued_events(&self, event_type: Option<&str>)
    -> Result<Vec<QueuedEvent>, StoreError>;

    /// Records attempts as in flight, all or none, before their calls are made. A step
    /// already in flight or sent is refused (`AlreadySent`) by the database's unique index.
    async fn start_attempts(&self, attempts: &[NewAttempt]) -> Result<Vec<i64>, StoreError>;
    /// Records how attempts ended; those with a message get an outbox row.
    async fn finish_attempts(&self, ends: &[AttemptEnd]) -> Result<(), StoreError>;

    /// Outbox rows not yet acknowledged (or all with `include_acked`), oldest first.
    async fn outbox(&self, include_acked: bool) -> Result<Vec<OutboxItem>, StoreError>;
    /// Acknowledges delivered rows; returns the ids that were pending and are now acked.
    async fn ack_outbox(&self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>, StoreError>;
}

/// An import in progress.
#[async_trait]
pub trait ImportSession: Send {
    /// Upserts one batch. Rows for the same target are merged first, later fields winning.
    async fn upsert(
        &mut self,
        rows: Vec<LeadInput>,
        now: DateTime<Utc>,
    ) -> Result<ImportCounts, StoreError>;
    /// Ends the import: commits what is pending if `keep`, else rolls it back (atomic only).
    async fn finish(self: Box<Self>, keep: bool) -> Result<(), StoreError>;
}

/// Opens the store at `url` (`sqlite://PATH` or `postgres://...`) and applies migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::BadUrl {
            url: redact_url(url),
            why: "expected sqlite://PATH or postgres://USER@HOST/DB".into(),
        })
    }
}

/// The URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host/...
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _password)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

/// Runs `work` in `tx` and ends the transaction explicitly: commit on success, rollback on
/// error. (A transaction merely dropped only queues its rollback, leaving the connection
/// holding its locks, a PostgreSQL row lock or SQLite's write lock, until it is reused.)
async fn in_tx<DB: sqlx::Database, T>(
    mut tx: sqlx::Transaction<'static, DB>,
    work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match work(&mut tx).await {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed; the connection is closed instead");
            }
            Err(e)
        }
    }
}

/// UTC text in one fixed-width format: SQLite stores timestamps so (text order is time
/// order), and both backends pass them inside JSON batches.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Groups rows by target, merging duplicates in order. Returns (row, first occurrence in
/// this batch?) pairs in first-seen order, and how many rows were duplicates.
fn merge_batch(rows: Vec<LeadInput>) -> (Vec<LeadInput>, u64) {
    let mut order: Vec<LeadInput> = Vec::with_capacity(rows.len());
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut duplicates = 0;
    for row in rows {
        match index.get(&row.target) {
            Some(&i) => {
                order[i].merge(row);
                duplicates += 1;
            }
            None => {
                index.insert(row.target.clone(), order.len());
                order.push(row);
            }
        }
    }
    (order, duplicates)
}

/// Maps a unique-index violation on `attempts_once` to `AlreadySent`.
fn already_sent(err: sqlx::Error, attempts: &[NewAttempt]) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
    {
        let first = attempts.first();
        return StoreError::AlreadySent {
            lead_id: first.map_or(0, |a| a.lead_id),
            action: first.map_or("?", |a| a.action.as_str()),
            step: first.map_or(0, |a| a.step),
        };
    }
    StoreError::Db(err)
}

/// The row for an attempt batch or import batch, as JSON for `json_each` / `jsonb_to_recordset`.
fn lead_input_json(
    row: &LeadInput,
    now: &str,
    ts: impl Fn(DateTime<Utc>) -> String,
) -> serde_json::Value {
    serde_json::json!({
        "target": row.target,
        "own_username": row.own_username,
        "timezone": row.timezone,
        "profile_image": row.profile_image,
        "tags": row.tags.as_ref().map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into())),
        "state": row.state.map(LeadState::as_str),
        "last_contact_at": row.last_contact_at.map(&ts),
        "last_reply_at": row.last_reply_at.map(&ts),
        "follow_ups_sent": row.follow_ups_sent,
        "now": now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/leads"),
            "postgres://app:***@db:5432/leads"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_url("postgres://postgres@h/db"),
            "postgres://postgres@h/db"
        );
    }

    #[test]
    fn duplicate_targets_in_a_batch_merge_with_later_fields_winning() {
        let a = LeadInput {
            target: "@a".into(),
            timezone: Some("Europe/Berlin".into()),
            tags: Some(vec!["x".into()]),
            ..Default::default()
        };
        let a2 = LeadInput {
            target: "@a".into(),
            tags: Some(vec!["y".into()]),
            ..Default::default()
        };
        let b = LeadInput {
            target: "@b".into(),
            ..Default::default()
        };
        let (rows, dups) = merge_batch(vec![a, b, a2]);
        assert_eq!(dups, 1);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(rows[0].tags, Some(vec!["y".to_string()]));
        assert_eq!(rows[1].target, "@b");
    }
}
