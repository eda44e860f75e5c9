//! The store's data: leads, attempts, results, pauses, runs, and what callers ask for.

use super::StoreError;
use crate::lead::{LeadEvent, LeadState};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What the runner sends for a lead.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Opener,
    FollowUp,
    Event,
    /// The lead wrote to the persona; the HTTP relay asked for its answer.
    Inbound,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Opener => "opener",
            Action::FollowUp => "follow_up",
            Action::Event => "event",
            Action::Inbound => "inbound",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "opener" => Ok(Action::Opener),
            "follow_up" => Ok(Action::FollowUp),
            "event" => Ok(Action::Event),
            "inbound" => Ok(Action::Inbound),
            other => Err(StoreError::Corrupt(format!("unknown action {other:?}"))),
        }
    }
}

/// Where an attempt stands. `in_flight` until its call returns; the rest are outcomes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
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

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        AttemptStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown attempt status {s:?}")))
    }
}

/// A lead as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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

/// What `retag_leads` did: the leads as they are now, in the order named; or, when a
/// target is no lead or a lead would carry too many tags, those (and nothing written).
#[derive(Debug, Clone, Default)]
pub struct Retagged {
    pub leads: Vec<Lead>,
    pub unknown: Vec<String>,
    /// A target and why its tags cannot change so.
    pub refused: Vec<(String, String)>,
}

/// What `set_blocked` did: the leads changed, as they are now, in the order named; those
/// skipped (already blocked, or not blocked for an unblock) with the state they are in;
/// and, for an unblock, the targets that are no lead (then nothing was written).
#[derive(Debug, Clone, Default)]
pub struct BlockedAll {
    pub leads: Vec<Lead>,
    pub skipped: Vec<(String, LeadState)>,
    pub unknown: Vec<String>,
}

/// Which leads `list_leads` returns.
#[derive(Debug, Clone, Default)]
pub struct LeadFilter {
    pub state: Option<LeadState>,
    pub tag: Option<String>,
    /// `None` for all.
    pub limit: Option<u32>,
    /// Only leads with a greater id (the previous page's last), for paging.
    pub after: Option<i64>,
}

/// One API call made for a lead.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
    pub lease_token: String,
    /// When the step was deliberately freed for another attempt, and by what (`leads
    /// retry`, a job's `on_unknown = "retry"`).
    pub released_at: Option<DateTime<Utc>>,
    pub released_by: Option<String>,
    /// The `own_username` the call was made with, if known.
    pub sender: Option<String>,
}

/// An attempt about to be made.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub lead_id: i64,
    pub job: String,
    pub action: Action,
    pub step: i64,
    /// The lease token of the claim it is made under.
    pub lease_token: String,
    pub started_at: DateTime<Utc>,
    /// The state the lead was claimed in: the attempt is recorded only if the lead still
    /// has it and is still leased to `lease_token` (a person's block since the claim stops
    /// the call). `None` records it whatever the lead is like (tests, tools).
    pub claimed: Option<LeadState>,
    /// The sender the call is made with, if known (recorded as `attempts.sender`).
    pub sender: Option<SenderCall>,
}

/// The sender of a call, and the rules it is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderCall {
    /// The `own_username` of the call.
    pub username: String,
    /// Its `[[sender]]` rules (cap, warm-up, gap), checked under its lock as the attempt
    /// is recorded; `None`: not a configured sender, recorded only.
    pub rule: Option<std::sync::Arc<crate::senders::SenderRule>>,
    /// The lead names no sender and this call gives it `username`: written to the lead's
    /// `own_username` when the attempt is recorded, so every later call uses it.
    pub assign: bool,
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
    /// Not recorded: its sender is at its own daily cap (or warm-up) or within its
    /// `min_gap`. Give the lead back; other senders' leads may go on.
    SenderHeld,
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
    /// The sender (own_username) of the call that produced the text, as its attempt
    /// recorded it; null when unknown (an attempt made before senders were recorded,
    /// for a lead that named none).
    pub sender: Option<String>,
}

/// Leads held by runners, for `status`: claimed (leased) now, and calls in flight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LeaseSummary {
    pub leased: u64,
    /// When the last lease runs out.
    pub until: Option<DateTime<Utc>>,
    pub in_flight: u64,
}

/// A queued platform event.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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

/// How the database would run one statement (`AdminStore::hot_query_plans`).
#[derive(Debug, Clone, Serialize)]
pub struct QueryPlan {
    pub name: String,
    /// One step a line, as the database words it (`EXPLAIN QUERY PLAN`'s detail on
    /// SQLite, `EXPLAIN`'s text on PostgreSQL).
    pub lines: Vec<String>,
}

/// A page of due leads: oldest first, after the cursor.
#[derive(Debug, Clone)]
pub struct DueQuery {
    pub due: Due,
    pub now: DateTime<Utc>,
    pub limit: u32,
    /// The sort key and id of the last lead of the previous page.
    pub after: Option<(DateTime<Utc>, i64)>,
    /// Only leads in this segment (all of them when it has no tags).
    pub segment: Segment,
}

/// A job's segment by tag (`[[job]] tags`, `exclude_tags`): a lead is in it when it
/// carries every one of `tags` and none of `exclude_tags`. Tags compare exactly (case
/// included), as a lead stores them. No tags at all: every lead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segment {
    pub tags: Vec<String>,
    pub exclude_tags: Vec<String>,
}

impl Segment {
    /// Whether this segment is every lead (no tag asked for or refused).
    pub fn is_everyone(&self) -> bool {
        self.tags.is_empty() && self.exclude_tags.is_empty()
    }

    /// Whether a lead carrying `tags` is in the segment (what the due queries select,
    /// checked again on a claimed lead).
    pub fn admits(&self, tags: &[String]) -> bool {
        self.tags.iter().all(|t| tags.contains(t))
            && !self.exclude_tags.iter().any(|t| tags.contains(t))
    }
}

impl std::fmt::Display for Segment {
    /// `all leads`, or e.g. `tagged all of ["vip"], tagged none of ["competitor"]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_everyone() {
            return f.write_str("all leads");
        }
        let mut parts = Vec::new();
        if !self.tags.is_empty() {
            parts.push(format!("tagged all of {:?}", self.tags));
        }
        if !self.exclude_tags.is_empty() {
            parts.push(format!("tagged none of {:?}", self.exclude_tags));
        }
        f.write_str(&parts.join(", "))
    }
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
    pub lease_token: String,
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
    pub fn new(lead: &Lead, lease_token: &str) -> Self {
        LeadResult {
            lead_id: lead.id,
            lease_token: lease_token.to_string(),
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

/// What a pause stops.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    serde::Deserialize,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
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

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Pause {
    pub scope: PauseScope,
    pub until: DateTime<Utc>,
    pub reason: String,
    /// How many times in a row it was set (a 402 pause doubles each time).
    pub strikes: i32,
    pub set_at: DateTime<Utc>,
    pub set_by: Option<String>,
}

/// A pause one runner holds in memory, and why (`runner::holds`): what it publishes with
/// its heartbeat for `status`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct HeldPause {
    pub scope: PauseScope,
    pub until: DateTime<Utc>,
    pub reason: String,
    /// Whether it is a stored pause (`pause clear` lifts it), or one this runner set from
    /// an answer and could not store (yet): it holds only this runner, until it ends.
    pub stored: bool,
}

/// A running daemon as it last said (`runners` table, one row per runner, written with
/// its heartbeat), for `status`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunnerSeen {
    pub runner_id: String,
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub seen_at: DateTime<Utc>,
    /// What it holds back, and why.
    pub holds: Vec<HeldPause>,
}

/// A job run, for `status`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobRun {
    pub id: i64,
    pub job: String,
    pub runner_id: String,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
}

/// An attempt left in flight by a runner whose lease expired: its outcome is unknown.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub lead: Lead,
    pub attempt: Attempt,
}

/// Which recent attempts to list (`ServiceStore::recent_attempts`); `None` is any.
#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    pub job: Option<String>,
    pub status: Option<AttemptStatus>,
    /// Attempts of leads whose target starts with this (case as stored).
    pub target: Option<String>,
    pub limit: u32,
    /// Only attempts with a smaller id (the previous page's last), for paging.
    pub before: Option<i64>,
}

/// Which leads the dashboard's leads table and its bulk actions mean
/// (`ServiceStore::leads_page`, `count_leads`, `bulk_leads`); `None` is any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadSearch {
    /// Targets starting with this, case as stored (a range of the target index: `%` and
    /// `_` are plain characters).
    pub prefix: Option<String>,
    pub state: Option<LeadState>,
    /// Leads carrying this tag.
    pub tag: Option<String>,
    /// Leads whose last attempt was made by this job (as the table's "Last attempt"
    /// column shows).
    pub job: Option<String>,
}

impl LeadSearch {
    /// The upper end of the prefix's range: every text starting with `prefix` sorts
    /// (byte by byte) at or after it and before this.
    pub fn prefix_end(prefix: &str) -> String {
        format!("{prefix}\u{10FFFF}")
    }
}

/// A bulk action's bounds (`ServiceStore::bulk_leads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bulk {
    pub action: UserAction,
    /// The count the person confirmed: more matching leads now is `BulkDone::Changed`.
    pub confirmed: u64,
    /// The most leads one bulk action may touch.
    pub max: u64,
    pub now: DateTime<Utc>,
}

/// What a bulk action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkDone {
    /// Nothing written: more leads match now than were confirmed (`now` of them, counted
    /// up to `max + 1`).
    Changed { now: u64 },
    /// Nothing written: more than `max` leads match.
    TooMany { max: u64 },
    /// Written, in one transaction.
    Done(BulkCounts),
}

/// The leads a bulk action changed and those it left as they were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkCounts {
    /// Leads changed.
    pub changed: u64,
    /// Leads whose state does not allow the action (a retry of a `new` lead, a block of
    /// a `blocked` one): left as they were.
    pub skipped: u64,
    /// Leads with a call in flight (a retry waits for its answer): left as they were.
    pub busy: u64,
    /// Leads that matched the filter's state when counted but no longer did when locked.
    pub moved: u64,
}

/// What became of an idempotency key asked for (`ServiceStore::claim_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is new: this request is the first and must be answered, then stored.
    New,
    /// The first request with this key is still being answered (since then).
    InProgress { since: DateTime<Utc> },
    /// The key was used with another request body.
    Mismatch,
    /// The first request's answer.
    Done { status: u16, response: String },
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
    /// Of those, targets on the suppression list: created or left `blocked`.
    pub suppressed: u64,
}

impl std::ops::AddAssign for ImportCounts {
    fn add_assign(&mut self, o: Self) {
        self.imported += o.imported;
        self.updated += o.updated;
        self.suppressed += o.suppressed;
    }
}

/// A job's daily cap: at most `limit` attempts started since `since` (in flight or sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyCap {
    pub since: DateTime<Utc>,
    pub limit: u32,
}
