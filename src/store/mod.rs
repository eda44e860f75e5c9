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

/// SQL: the lead has never been worked, so an import may still set its campaign fields.
macro_rules! untouched {
    () => {
        "(leads.state = 'new' AND leads.last_contact_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = leads.id))"
    };
}

/// SQL: the attempt holds its step, so the step cannot be sent again (the same list as the
/// `attempts_once` index of migration 0003 and `AttemptStatus::holds_step`).
macro_rules! holds_step {
    () => {
        "status IN ('in_flight', 'sent', 'continued', 'ignored', 'sealed', 'failed', 'unknown')
         AND released_at IS NULL"
    };
}

mod nodelay;
mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::lead::{LeadEvent, LeadState, Refused};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Where the lead database lives when nothing else says.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://fluidtalk-runner.db";

/// The `error_kind` of an attempt found in flight after its runner's lease ran out: its
/// outcome is unknown, but a late answer from that runner is still recorded over it.
pub const RUNNER_LOST: &str = "runner_lost";

/// Whether a SQLite URL asks for an in-memory database.
fn memory_url(url: &str) -> bool {
    let url = url.to_ascii_lowercase();
    url.contains(":memory:") || url.contains("mode=memory")
}

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

/// Where an attempt stands. `in_flight` until its call returns; the rest are outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// Recorded before the call; the call has not returned (yet).
    InFlight,
    /// Answered with text to deliver.
    Sent,
    /// Answered `continued`: the lead was already in conversation.
    Continued,
    /// Answered `ignored`: another account owns the lead.
    Ignored,
    /// 400: the conversation is DONE.
    Sealed,
    /// 404: no conversation yet.
    NoConversation,
    /// 402: out of tokens; the lead is not charged for it.
    OutOfTokens,
    /// 401/403.
    Unauthorized,
    /// 429.
    RateLimited,
    /// A 5xx other than 502/504, or a refused connection: the API did not act; may be
    /// tried again.
    TransientError,
    /// A permanent error.
    Failed,
    /// The outcome will never be known: a timeout, a dropped connection, a 502/504, or
    /// found in flight after its runner died. The step stays taken unless released.
    Unknown,
    /// Recorded in flight but never called (the lead was given back first).
    Cancelled,
}

impl AttemptStatus {
    pub const ALL: [AttemptStatus; 13] = [
        AttemptStatus::InFlight,
        AttemptStatus::Sent,
        AttemptStatus::Continued,
        AttemptStatus::Ignored,
        AttemptStatus::Sealed,
        AttemptStatus::NoConversation,
        AttemptStatus::OutOfTokens,
        AttemptStatus::Unauthorized,
        AttemptStatus::RateLimited,
        AttemptStatus::TransientError,
        AttemptStatus::Failed,
        AttemptStatus::Unknown,
        AttemptStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::InFlight => "in_flight",
            AttemptStatus::Sent => "sent",
            AttemptStatus::Continued => "continued",
            AttemptStatus::Ignored => "ignored",
            AttemptStatus::Sealed => "sealed",
            AttemptStatus::NoConversation => "no_conversation",
            AttemptStatus::OutOfTokens => "out_of_tokens",
            AttemptStatus::Unauthorized => "unauthorized",
            AttemptStatus::RateLimited => "rate_limited",
            AttemptStatus::TransientError => "transient_error",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Unknown => "unknown",
            AttemptStatus::Cancelled => "cancelled",
        }
    }

    /// Whether an attempt with this status keeps its step from being sent again: it may
    /// have reached the API and been acted on. Only answers that say the API did not act,
    /// and attempts never called, leave the step free (a deliberate release aside).
    pub fn holds_step(self) -> bool {
        matches!(
            self,
            AttemptStatus::InFlight
                | AttemptStatus::Sent
                | AttemptStatus::Continued
                | AttemptStatus::Ignored
                | AttemptStatus::Sealed
                | AttemptStatus::Failed
                | AttemptStatus::Unknown
        )
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        AttemptStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown attempt status {s:?}")))
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
    /// Follow-ups since the last reply (the quiet schedule's position).
    pub follow_ups_sent: i32,
    /// Follow-ups over the lead's life: the next one is step `follow_ups_total + 1`, so a
    /// reply that restarts the schedule never makes two follow-ups share a step.
    pub follow_ups_total: i32,
    /// Times a follow-up found no conversation and sent the lead back to `new`: the next
    /// opener is step `reopens`, so it never collides with an earlier opener's step.
    pub reopens: i32,
    pub transient_failures: i32,
    pub session_id: Option<String>,
    pub last_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// An answer that arrived while the lead was blocked (a lead event's name, see
    /// `LeadEvent::pending_name`): applied when the lead is unblocked.
    pub pending_event: Option<String>,
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
        // The campaign fields were checked together, row by row: a later row that gives
        // any of them replaces them as a group, so the merge is always one checked row's.
        if later.state.is_some()
            || later.last_contact_at.is_some()
            || later.last_reply_at.is_some()
            || later.follow_ups_sent.is_some()
        {
            self.state = later.state;
            self.last_contact_at = later.last_contact_at;
            self.last_reply_at = later.last_reply_at;
            self.follow_ups_sent = later.follow_ups_sent;
        }
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
    pub status: AttemptStatus,
    pub http_status: Option<i32>,
    pub error_kind: Option<String>,
    pub error_detail: Option<String>,
    pub session_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The lease token of the claim the attempt was made under.
    pub runner_id: String,
    /// When the step was deliberately freed for another attempt, and by what (`leads
    /// retry`, a job's `on_unknown = "retry"`).
    pub released_at: Option<DateTime<Utc>>,
    pub released_by: Option<String>,
}

/// An attempt about to be made.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub lead_id: i64,
    pub job: String,
    pub action: Action,
    pub step: i64,
    /// The lease token of the claim it is made under.
    pub runner_id: String,
    pub started_at: DateTime<Utc>,
    /// The state the lead was claimed in: the attempt is recorded only if the lead still
    /// has it and is still leased to `runner_id` (a person's block since the claim stops
    /// the call). `None` records it whatever the lead is like (tests, tools).
    pub claimed: Option<LeadState>,
}

/// What became of one attempt asked to start (`start_attempts_within`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded in flight, with this id: the call may go out.
    Started(i64),
    /// Not recorded: the lead changed since its claim (blocked, replied to, its lease
    /// lost). Give it back; do not call.
    Changed,
    /// Not recorded: the daily cap is reached.
    OverCap,
}

/// How an attempt ended, and the text to deliver, if any.
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    pub attempt_id: i64,
    pub status: AttemptStatus,
    pub http_status: Option<i32>,
    pub error_kind: Option<String>,
    pub error_detail: Option<String>,
    pub session_id: Option<String>,
    pub finished_at: DateTime<Utc>,
    /// Text the persona produced: becomes an outbox row.
    pub message: Option<String>,
    /// Frees the step for another attempt at once, saying why (a job's `on_unknown =
    /// "retry"`): recorded as a deliberate release.
    pub release: Option<String>,
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
    /// The lead's state now: text for a `blocked` lead is held, not delivered.
    pub lead_state: LeadState,
}

/// Leads held by runners, for `status`: claimed (leased) now, and calls in flight.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LeaseSummary {
    pub leased: u64,
    /// When the last lease runs out.
    pub until: Option<DateTime<Utc>>,
    pub in_flight: u64,
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

/// Which due leads a job wants.
#[derive(Debug, Clone)]
pub enum Due {
    /// `new` leads, eligible now.
    Opener,
    /// `contacted` leads with fewer than `max` follow-ups whose quiet time (since the later
    /// of last contact and last reply) reached the cutoff for their next step:
    /// `cutoffs[n]` is `now - quiet_before(n + 1)`.
    FollowUp {
        cutoffs: Vec<DateTime<Utc>>,
        max: u32,
    },
}

/// A page of due leads: oldest first, after the cursor.
#[derive(Debug, Clone)]
pub struct DueQuery {
    pub due: Due,
    pub now: DateTime<Utc>,
    pub limit: u32,
    /// The sort key and id of the last lead of the previous page.
    pub after: Option<(DateTime<Utc>, i64)>,
}

/// A lead that is due, with the time it is ordered by (eligible, or quiet since).
#[derive(Debug, Clone)]
pub struct DueLead {
    pub lead: Lead,
    pub since: DateTime<Utc>,
}

/// A queued event whose lead can be worked, oldest first.
#[derive(Debug, Clone)]
pub struct DueEvent {
    pub event: QueuedEvent,
    pub lead: Lead,
}

/// How one call's outcome changes its lead and attempt, written with the rest of a batch.
///
/// The result applies to the lead only if this write finishes its attempt (still in flight,
/// or found lost by another runner and not yet released), or, without an attempt, if the
/// lead is still leased to `token`: so a late or repeated write changes nothing. The event
/// is applied to the state the lead has *then* (`lead::settle`): a person may have changed
/// it meanwhile, and a blocked lead keeps the effect pending until it is unblocked.
#[derive(Debug, Clone)]
pub struct LeadResult {
    pub lead_id: i64,
    /// The lease token the lead was claimed with; its lease is given back.
    pub token: String,
    pub attempt: Option<AttemptEnd>,
    /// The lifecycle event, if the answer moves the lead.
    pub event: Option<LeadEvent>,
    /// Set `last_contact_at` to the attempt's end.
    pub contacted: bool,
    /// Add one to `follow_ups_sent` and `follow_ups_total`.
    pub follow_up_sent: bool,
    /// Start the follow-up count again and count a reopen (a lead sent back to `new`).
    pub reopened: bool,
    pub transient_failures: i32,
    pub next_eligible_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The queued event this call answered, and its new state (`sent`, `failed`, ...).
    pub queued_event: Option<(i64, &'static str)>,
}

impl LeadResult {
    /// A result that changes nothing but gives the lease back.
    pub fn new(lead: &Lead, token: &str) -> Self {
        LeadResult {
            lead_id: lead.id,
            token: token.to_string(),
            attempt: None,
            event: None,
            contacted: false,
            follow_up_sent: false,
            reopened: false,
            transient_failures: lead.transient_failures,
            next_eligible_at: None,
            last_error: lead.last_error.clone(),
            queued_event: None,
        }
    }
}

/// A lead as `record_results` finds it, locked, before writing.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub state: LeadState,
    pub pending: Option<LeadEvent>,
    pub lease_owner: Option<String>,
}

impl Current {
    pub(crate) fn new(
        state: &str,
        pending: Option<String>,
        lease_owner: Option<String>,
    ) -> Result<Self, StoreError> {
        Ok(Current {
            state: state.parse().map_err(StoreError::Corrupt)?,
            pending: pending.as_deref().and_then(LeadEvent::from_pending_name),
            lease_owner,
        })
    }
}

/// The lead and queued-event updates of `record_results`, as two JSON batches (one row per
/// lead): which results apply, and the state each lead ends in (see `LeadResult`).
pub(crate) fn settle_json(
    results: &[LeadResult],
    mut current: HashMap<i64, Current>,
    finished: &HashSet<i64>,
    now: DateTime<Utc>,
) -> (String, String) {
    let mut rows: BTreeMap<i64, serde_json::Value> = BTreeMap::new();
    let mut events = Vec::new();
    for r in results {
        let Some(cur) = current.get_mut(&r.lead_id) else {
            continue;
        };
        let applies = match &r.attempt {
            Some(a) => finished.contains(&a.attempt_id),
            None => cur.lease_owner.as_deref() == Some(r.token.as_str()),
        };
        if applies && let Some(ev) = r.event {
            (cur.state, cur.pending) = crate::lead::settle(cur.state, cur.pending, ev);
        }
        let ended = r.attempt.as_ref().map_or(now, |a| a.finished_at);
        let row = rows.entry(r.lead_id).or_insert_with(|| {
            serde_json::json!({
                "id": r.lead_id, "token": clean(&r.token), "contacted_at": null,
                "follow_up_inc": 0, "reset_follow_ups": false, "reopen_inc": 0,
                "transient_failures": null, "next_eligible_at": null, "session_id": null,
                "set_error": false, "last_error": null,
            })
        });
        row["state"] = cur.state.as_str().into();
        row["pending"] = cur.pending.and_then(LeadEvent::pending_name).into();
        if !applies {
            continue;
        }
        if r.contacted {
            row["contacted_at"] = ts(ended).into();
        }
        if r.follow_up_sent {
            row["follow_up_inc"] = (row["follow_up_inc"].as_i64().unwrap_or(0) + 1).into();
        }
        if r.reopened {
            row["reset_follow_ups"] = true.into();
            row["reopen_inc"] = (row["reopen_inc"].as_i64().unwrap_or(0) + 1).into();
        }
        row["transient_failures"] = r.transient_failures.into();
        if let Some(t) = r.next_eligible_at {
            row["next_eligible_at"] = ts(t).into();
        }
        if let Some(sid) = r.attempt.as_ref().and_then(|a| a.session_id.as_deref()) {
            row["session_id"] = clean(sid).into();
        }
        row["set_error"] = true.into();
        row["last_error"] = r.last_error.as_deref().map(clean).into();
        if let Some((id, state)) = r.queued_event {
            events.push(serde_json::json!({"id": id, "state": state}));
        }
    }
    let rows: Vec<serde_json::Value> = rows.into_values().collect();
    (
        serde_json::Value::Array(rows).to_string(),
        serde_json::Value::Array(events).to_string(),
    )
}

/// What a pause stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum PauseScope {
    /// Openers and events (402).
    NewConversations,
    /// Follow-ups (402 on a follow-up).
    FollowUps,
    /// Every call (401).
    All,
}

impl PauseScope {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseScope::NewConversations => "new_conversations",
            PauseScope::FollowUps => "follow_ups",
            PauseScope::All => "all",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "new_conversations" => Ok(PauseScope::NewConversations),
            "follow_ups" => Ok(PauseScope::FollowUps),
            "all" => Ok(PauseScope::All),
            other => Err(StoreError::Corrupt(format!(
                "unknown pause scope {other:?}"
            ))),
        }
    }
}

/// An account pause every runner honours.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pause {
    pub scope: PauseScope,
    pub until: DateTime<Utc>,
    pub reason: String,
    /// How many times in a row it was set (a 402 pause doubles each time).
    pub strikes: i32,
    pub set_at: DateTime<Utc>,
    pub set_by: Option<String>,
}

/// A job run, for `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRun {
    pub id: i64,
    pub job: String,
    pub runner_id: String,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub summary: Option<serde_json::Value>,
}

/// An attempt left in flight by a runner whose lease expired: its outcome is unknown.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub lead: Lead,
    pub attempt: Attempt,
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
    #[error("{action} step {step} of lead {lead_id} is already in flight or answered")]
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
    #[error("cannot open the database at {url}: {cause}")]
    Connect { url: String, cause: sqlx::Error },
    #[error("migrating the database failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error(
        "the database's schema (version {found}) is older than this fluidtalk-runner's ({known}): \
         run `fluidtalk-runner migrate` first"
    )]
    SchemaBehind { found: i64, known: i64 },
    #[error("the import was rolled back after an earlier error; nothing from it was kept")]
    ImportAborted,
    #[error("stored data is not as expected: {0}")]
    Corrupt(String),
    #[error(
        "{what} {at} is in the future (more than 5 minutes ahead of this machine's clock); \
         give the time it happened"
    )]
    InTheFuture {
        what: &'static str,
        at: DateTime<Utc>,
    },
    #[error("the database did not answer within {0:?}")]
    Unresponsive(std::time::Duration),
}

impl StoreError {
    /// Whether trying again later may succeed: the connection was lost or refused, the
    /// server is restarting or shutting connections down, the pool ran dry, SQLite's file
    /// stayed locked past the busy timeout, or PostgreSQL chose this transaction to abort
    /// (serialization failure, deadlock). A runner backs off and goes on after these.
    pub fn is_transient(&self) -> bool {
        let e = match self {
            StoreError::Db(e) | StoreError::Connect { cause: e, .. } => e,
            StoreError::Unresponsive(_) => return true,
            _ => return false,
        };
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
            sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL: class 08 (connection exception), 57P01..57P03 (admin or crash
                // shutdown, cannot connect now), 40001 and 40P01 (serialization, deadlock),
                // 53300 (too many connections). SQLite: 5 and 6 (busy, locked) with their
                // extended codes.
                code.starts_with("08")
                    || matches!(
                        &*code,
                        "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300"
                    )
                    || matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6))
                        && db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
            }
            _ => false,
        }
    }
}

// By hand rather than `#[from]`, which would also make the sqlx error the source: the
// message already shows it, and `{:#}` would print it twice.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e)
    }
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
    /// that may already have reached the API is refused (`AlreadySent`) by the database's
    /// unique index; an attempt whose lead changed since its claim is an error here.
    async fn start_attempts(&self, attempts: &[NewAttempt]) -> Result<Vec<i64>, StoreError> {
        self.start_attempts_within(attempts, None)
            .await?
            .into_iter()
            .map(|r| match r {
                Recorded::Started(id) => Ok(id),
                _ => Err(StoreError::Conflict(
                    "a lead changed since it was claimed".into(),
                )),
            })
            .collect()
    }
    /// Records attempts in flight just before their calls: each only if its lead is still
    /// as claimed (`NewAttempt::claimed`), and, under a daily cap shared by every runner,
    /// only as many, from the front, as the cap still allows. With a cap, one transaction
    /// holds the job's cap lock (PostgreSQL: an advisory lock; SQLite: the write lock) and
    /// counts the job's attempts started since `cap.since`. All attempts must be of one job.
    async fn start_attempts_within(
        &self,
        attempts: &[NewAttempt],
        cap: Option<DailyCap>,
    ) -> Result<Vec<Recorded>, StoreError>;
    /// Records how attempts ended; those with a message get an outbox row. Only attempts
    /// still `in_flight` are finished (a late answer for an attempt a person has since
    /// retried changes nothing); returns the ids finished.
    async fn finish_attempts(&self, ends: &[AttemptEnd]) -> Result<Vec<i64>, StoreError>;

    /// Due leads, read only: the same selection a claim makes (dry runs use this).
    async fn due_leads(&self, q: &DueQuery) -> Result<Vec<DueLead>, StoreError>;
    /// Leases leads picked from `due_leads` to `runner` until `lease_until`, if they are
    /// still workable and not leased by another runner; returns those it leased. One
    /// statement; on PostgreSQL rows another runner is claiming are skipped, not waited on.
    /// `runner` is a lease token, unique per claim: claiming again with the same token
    /// (after a lost connection) returns the same leads, so a retry is safe.
    async fn claim_leads(
        &self,
        ids: &[i64],
        runner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Lead>, StoreError>;
    /// Gives leases back without changing the leads.
    /// Only for leads not yet called: their in-flight attempts under this token (recorded
    /// by a try whose answer was lost) become `cancelled` in the same transaction.
    async fn release_leads(
        &self,
        ids: &[i64],
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Queued events of `event_type` whose lead can be worked now, oldest first, after
    /// event id `after`.
    async fn due_events(
        &self,
        event_type: &str,
        now: DateTime<Utc>,
        limit: u32,
        after: i64,
    ) -> Result<Vec<DueEvent>, StoreError>;
    /// Marks queued events whose lead will never be worked again (`done`, `ignored`,
    /// `blocked`, `failed`) as dropped; returns how many.
    async fn drop_dead_events(
        &self,
        event_type: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Contacted leads quiet past the last follow-up (`cutoff`) with `max` follow-ups sent
    /// become `exhausted` (or, with `dry`, are only counted); returns how many.
    async fn exhaust(
        &self,
        max: u32,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        dry: bool,
    ) -> Result<u64, StoreError>;
    /// Writes a batch of call outcomes: attempts, leads, outbox rows and events, in one
    /// transaction (see `LeadResult` for what applies). Returns the attempts it finished.
    async fn record_results(
        &self,
        results: &[LeadResult],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError>;
    /// Attempts left in flight by a runner that no longer holds their lead: its lease
    /// expired (it died mid-call), or was given back or lost while an attempt it recorded
    /// after a timed-out try was committed late. Their outcome is unknown.
    async fn orphans(&self, now: DateTime<Utc>) -> Result<Vec<Orphan>, StoreError>;
    /// Clears expired leases that hold no attempt in flight.
    async fn clear_expired_leases(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Calls of `job` started since `since` that count against a daily cap.
    async fn count_started_since(&self, job: &str, since: DateTime<Utc>)
    -> Result<u64, StoreError>;

    /// Every pause row (expired ones included; compare `until` with now).
    async fn pauses(&self) -> Result<Vec<Pause>, StoreError>;
    /// Sets or extends a pause: `length(strikes)` gives its length for the number of times
    /// in a row it has now been set.
    async fn set_pause(
        &self,
        scope: PauseScope,
        reason: &str,
        runner: &str,
        now: DateTime<Utc>,
        length: &(dyn Fn(u32) -> std::time::Duration + Send + Sync),
    ) -> Result<Pause, StoreError>;
    /// Lifts a pause, only if it had ended by `ended_by` (a pause another runner set or
    /// extended since is kept).
    async fn clear_pause(
        &self,
        scope: PauseScope,
        ended_by: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Lifts the stored pauses of `scopes` whatever their end (a person fixed the key or
    /// bought tokens: `pause clear`); returns those lifted.
    async fn lift_pauses(&self, scopes: &[PauseScope]) -> Result<Vec<Pause>, StoreError>;

    /// Leads leased by runners at `now`, and attempts in flight, for `status`.
    async fn lease_summary(&self, now: DateTime<Utc>) -> Result<LeaseSummary, StoreError>;

    /// Queued events per type, for `status` (which names types no job sends).
    async fn queued_event_types(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Claims cron tick (`job`, `scheduled_at`) for `runner`; false if another runner has it.
    async fn claim_tick(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn start_run(
        &self,
        job: &str,
        runner: &str,
        scheduled_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError>;
    async fn finish_run(
        &self,
        run_id: i64,
        summary: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The latest run of each job.
    async fn last_runs(&self) -> Result<Vec<JobRun>, StoreError>;

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

/// The lifecycle event for a person's action on `lead`.
fn user_event(action: UserAction, lead: &Lead) -> LeadEvent {
    let contacted = lead.last_contact_at.is_some();
    match action {
        UserAction::Block => LeadEvent::Block,
        UserAction::Unblock => LeadEvent::Unblock { contacted },
        UserAction::Retry => LeadEvent::Retry { contacted },
    }
}

/// What a person's action does to `lead`: its new state and pending event. Checked by the
/// lifecycle (`lead::next`); unblocking applies what arrived while the lead was blocked, and
/// blocking remembers a review or failure to return to.
fn user_change(action: UserAction, lead: &Lead) -> Result<(LeadState, Option<LeadEvent>), Refused> {
    let event = user_event(action, lead);
    let to = crate::lead::next(lead.state, event)?;
    let pending = lead
        .pending_event
        .as_deref()
        .and_then(LeadEvent::from_pending_name);
    Ok(match action {
        UserAction::Block => (to, crate::lead::pending_on_block(lead.state, pending)),
        UserAction::Unblock => (
            crate::lead::unblocked(lead.last_contact_at.is_some(), pending),
            None,
        ),
        UserAction::Retry => (to, None),
    })
}

/// How far ahead of the clock a time a person gives (a reply's time) may be: more is a
/// mistake that would stall the lead, and is refused.
pub const FUTURE_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Refuses a reply time further in the future than `FUTURE_SKEW`.
fn check_reply_time(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), StoreError> {
    if at > now + FUTURE_SKEW {
        return Err(StoreError::InTheFuture {
            what: "the reply time",
            at,
        });
    }
    Ok(())
}

/// Leads per state from `(state, count)` rows, with every state present.
fn counts_by_state(rows: Vec<(String, i64)>) -> Result<BTreeMap<LeadState, u64>, StoreError> {
    let mut counts: BTreeMap<LeadState, u64> = LeadState::ALL.iter().map(|s| (*s, 0)).collect();
    for (state, n) in rows {
        let state: LeadState = state.parse().map_err(StoreError::Corrupt)?;
        counts.insert(state, n.max(0) as u64);
    }
    Ok(counts)
}

/// Opens the store at `url` for reading only: no migration, no file created, nothing
/// written (dry runs). The schema must be the binary's own.
pub async fn open_read_only(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open_read_only(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open_read_only(url).await?))
    } else {
        Err(StoreError::BadUrl {
            url: redact_url(url),
            why: "expected sqlite://PATH or postgres://USER@HOST/DB".into(),
        })
    }
}

/// The URL with any password (in the user part or a `password` query parameter) replaced,
/// for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if parsed
                .query_pairs()
                .any(|(k, _)| k.eq_ignore_ascii_case("password"))
            {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            "***".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        // Not a URL we can read: show nothing after the scheme that could be a secret.
        Err(_) => match url.split_once("://") {
            Some((scheme, rest)) if rest.contains('@') || rest.contains('?') => {
                format!("{scheme}://***")
            }
            _ => url.to_string(),
        },
    }
}

/// Text bound into a statement: PostgreSQL text and jsonb cannot hold NUL, so it becomes
/// U+FFFD on both backends alike.
pub(crate) fn clean(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
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

/// Whether `err` is the unique index refusing an attempt.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The `AlreadySent` error for the attempt of `attempts` that conflicts: one the database
/// already holds (`held`), else one repeated within the batch itself.
fn already_sent(attempts: &[NewAttempt], held: &[(i64, String, i64)]) -> StoreError {
    let key = |a: &NewAttempt| (a.lead_id, a.action.as_str().to_string(), a.step);
    let conflict = attempts
        .iter()
        .find(|a| held.contains(&key(a)))
        .or_else(|| {
            attempts
                .iter()
                .enumerate()
                .find(|(i, a)| attempts[..*i].iter().any(|b| key(b) == key(a)))
                .map(|(_, a)| a)
        });
    match conflict {
        Some(a) => StoreError::AlreadySent {
            lead_id: a.lead_id,
            action: a.action.as_str(),
            step: a.step,
        },
        None => StoreError::Corrupt("the attempts index refused a batch without a conflict".into()),
    }
}

/// A job's daily cap: at most `limit` attempts started since `since` (in flight or sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyCap {
    pub since: DateTime<Utc>,
    pub limit: u32,
}

/// How many of `wanted` attempts a cap with `used` already taken lets through.
fn cap_allows(cap: Option<DailyCap>, used: i64, wanted: usize) -> usize {
    match cap {
        None => wanted,
        Some(cap) => (i64::from(cap.limit) - used).clamp(0, wanted as i64) as usize,
    }
}

/// The JSON batch for `start_attempts`.
fn attempts_json(attempts: &[NewAttempt]) -> String {
    let rows: Vec<_> = attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "lead_id": a.lead_id, "job": clean(&a.job), "action": a.action.as_str(),
                "step": a.step, "runner_id": clean(&a.runner_id), "started_at": ts(a.started_at),
                "claimed": a.claimed.map(LeadState::as_str),
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// The JSON batch for `finish_attempts`.
fn ends_json(ends: &[AttemptEnd]) -> String {
    let rows: Vec<_> = ends
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e.attempt_id, "status": e.status.as_str(), "http_status": e.http_status,
                "error_kind": e.error_kind.as_deref().map(clean),
                "error_detail": e.error_detail.as_deref().map(clean),
                "session_id": e.session_id.as_deref().map(clean),
                "finished_at": ts(e.finished_at),
                "message": e.message.as_deref().filter(|m| !m.is_empty()).map(clean),
                "released_by": e.release.as_deref().map(clean),
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// Ids returned by a batch insert, in the order of `attempts` (RETURNING promises none);
/// `None` for an attempt not inserted (its lead changed since its claim).
fn ids_in_order(attempts: &[NewAttempt], rows: &[(i64, i64, String, i64)]) -> Vec<Option<i64>> {
    attempts
        .iter()
        .map(|a| {
            rows.iter()
                .find(|(_, lead, action, step)| {
                    *lead == a.lead_id && action == a.action.as_str() && *step == a.step
                })
                .map(|r| r.0)
        })
        .collect()
}

/// Which of `attempts` may still be recorded: their lead, as read now (`leads`: id,
/// state, lease owner), is still in the state it was claimed in and leased to the token.
fn still_claimed(attempts: &[NewAttempt], leads: &[(i64, String, Option<String>)]) -> Vec<bool> {
    attempts
        .iter()
        .map(|a| match a.claimed {
            None => true,
            Some(state) => leads.iter().any(|(id, s, owner)| {
                *id == a.lead_id
                    && s == state.as_str()
                    && owner.as_deref() == Some(a.runner_id.as_str())
            }),
        })
        .collect()
}

/// `start_attempts_within`'s answer under a cap: the first `allowed` of the attempts
/// still claimed were inserted (`ids`, aligned with them).
fn recorded_under_cap(kept: &[bool], allowed: usize, ids: &[Option<i64>]) -> Vec<Recorded> {
    let mut chosen = ids.iter();
    let mut n = 0;
    kept.iter()
        .map(|&k| {
            if !k {
                Recorded::Changed
            } else if n < allowed {
                n += 1;
                chosen
                    .next()
                    .copied()
                    .flatten()
                    .map_or(Recorded::Changed, Recorded::Started)
            } else {
                Recorded::OverCap
            }
        })
        .collect()
}

/// An import row as JSON, for `json_each` / `jsonb_to_recordset`.
fn lead_input_json(row: &LeadInput) -> serde_json::Value {
    serde_json::json!({
        "target": row.target,
        "own_username": row.own_username,
        "timezone": row.timezone,
        "profile_image": row.profile_image,
        "tags": row.tags.as_ref().map(|t| serde_json::Value::from(t.clone()).to_string()),
        "state": row.state.map(LeadState::as_str),
        "last_contact_at": row.last_contact_at.map(ts),
        "last_reply_at": row.last_reply_at.map(ts),
        "follow_ups_sent": row.follow_ups_sent,
    })
}

fn rows_json<'a>(rows: impl Iterator<Item = &'a LeadInput>) -> String {
    serde_json::Value::Array(rows.map(lead_input_json).collect()).to_string()
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
        // The password may itself hold an `@`: the host starts after the last one.
        let shown = redact_url("postgres://app:p@ss@db/x");
        assert!(!shown.contains("p@ss") && !shown.contains("ss@"), "{shown}");
        let shown = redact_url("postgres://db/x?user=app&password=s3cret&sslmode=require");
        assert!(
            !shown.contains("s3cret") && shown.contains("sslmode=require"),
            "{shown}"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_url("postgres://postgres@h/db"),
            "postgres://postgres@h/db"
        );
        assert_eq!(redact_url("postgres://a:b c@[bad"), "postgres://***");
    }

    #[test]
    fn a_later_row_replaces_the_campaign_fields_as_a_group() {
        let mut contacted = LeadInput {
            target: "@a".into(),
            state: Some(LeadState::Contacted),
            last_contact_at: Some(Utc::now()),
            follow_ups_sent: Some(2),
            ..Default::default()
        };
        contacted.merge(LeadInput {
            target: "@a".into(),
            state: Some(LeadState::New),
            ..Default::default()
        });
        assert_eq!(contacted.state, Some(LeadState::New));
        assert_eq!(contacted.last_contact_at, None);
        assert_eq!(contacted.follow_ups_sent, None);
    }

    #[test]
    fn nul_cannot_reach_the_database() {
        assert_eq!(clean("a\0b"), "a\u{fffd}b");
    }

    #[test]
    fn already_sent_names_the_conflicting_attempt() {
        let a = |lead_id, step| NewAttempt {
            lead_id,
            job: "j".into(),
            action: Action::Opener,
            step,
            runner_id: "r".into(),
            claimed: None,
            started_at: Utc::now(),
        };
        let batch = [a(1, 0), a(2, 0), a(3, 0)];
        let held = [(2, "opener".to_string(), 0)];
        assert!(matches!(
            already_sent(&batch, &held),
            StoreError::AlreadySent { lead_id: 2, .. }
        ));
        let repeated = [a(1, 0), a(5, 0), a(5, 0)];
        assert!(matches!(
            already_sent(&repeated, &[]),
            StoreError::AlreadySent { lead_id: 5, .. }
        ));
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
