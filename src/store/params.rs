//! The parameters of store methods that take more than three: named fields instead of
//! positions, so two times or two names cannot be swapped unseen. A lease's token is
//! `lease_token` everywhere (the claim's `host-pid-random/N`); the process that acts is
//! `runner_id` (`host-pid-random`).

use super::types::{Action, HeldPause, PauseScope};
use chrono::{DateTime, Utc};

/// A lease asked for: rows held by `lease_token` from `now` until `until`.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub lease_token: &'a str,
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// A row held under a lease: its id and the lease's token.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub id: i64,
    pub lease_token: &'a str,
}

/// Queued events of `event_type` whose lead is workable at `now`, after event id `after`,
/// at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct EventsQuery<'a> {
    pub event_type: &'a str,
    pub now: DateTime<Utc>,
    pub limit: u32,
    pub after: i64,
}

/// Contacted leads that had their last follow-up (`max`), quiet since before `cutoff` and
/// not leased at `now`: counted (`dry`) or marked exhausted.
#[derive(Debug, Clone, Copy)]
pub struct Exhaustion {
    pub max: u32,
    pub cutoff: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub dry: bool,
}

/// One step of one lead: its `action` number `step`.
#[derive(Debug, Clone, Copy)]
pub struct StepOf {
    pub lead_id: i64,
    pub action: Action,
    pub step: i64,
}

/// A pause to set or extend: `length(strikes)` gives its length for the number of times
/// in a row it has now been set.
#[derive(Clone, Copy)]
pub struct NewPause<'a> {
    pub scope: PauseScope,
    pub reason: &'a str,
    pub set_by: &'a str,
    pub now: DateTime<Utc>,
    pub length: &'a (dyn Fn(u32) -> std::time::Duration + Send + Sync),
}

/// A runner's heartbeat: alive since `started_at`, holding these pauses in memory.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat<'a> {
    pub runner_id: &'a str,
    pub started_at: DateTime<Utc>,
    pub holds: &'a [HeldPause],
    pub now: DateTime<Utc>,
}

/// A cron tick of `job` due at `scheduled_at` (none for a run by hand), taken by
/// `runner_id` at `now`.
#[derive(Debug, Clone, Copy)]
pub struct Tick<'a, At = DateTime<Utc>> {
    pub job: &'a str,
    pub scheduled_at: At,
    pub runner_id: &'a str,
    pub now: DateTime<Utc>,
}

/// A platform event for `target` (`context`: the event's text for the persona).
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub target: &'a str,
    pub event_type: &'a str,
    pub context: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// A dashboard session `id` (the hash of its cookie's secret) living until `expires_at`;
/// the newest `keep` are kept.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    pub id: &'a str,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub keep: u32,
}

/// An idempotency key of a `scope` (the route).
#[derive(Debug, Clone, Copy)]
pub struct KeyOf<'a> {
    pub scope: &'a str,
    pub key: &'a str,
}

/// What the first request under an idempotency key was answered.
#[derive(Debug, Clone, Copy)]
pub struct KeyAnswer<'a> {
    pub status: u16,
    pub response: &'a str,
}

/// Tags to add to and remove from the leads `targets` (`AdminStore::retag_leads`), at
/// `now`.
#[derive(Debug, Clone, Copy)]
pub struct Retag<'a> {
    pub targets: &'a [String],
    pub add: &'a [String],
    pub remove: &'a [String],
    pub now: DateTime<Utc>,
}
