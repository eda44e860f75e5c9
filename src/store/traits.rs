//! The store's interface, one role per consumer, each depending on its role only:
//! - `Reads` (with `Storage`, the storage's health): reads several roles share (pauses, a
//!   job's calls today, a lead's attempts, queued events, the outbox's counts);
//! - `RunnerStore: Reads`: the runner's hot path (`runner`, `plan`), the inbound relay's
//!   lease included, since the runner makes every call;
//! - `AdminStore: Reads`: people's commands (`cli`, `status`, `import`, the metrics' gauges);
//! - `ServiceStore: AdminStore + DeliveryStore + SuppressionStore`: the HTTP service
//!   (people's commands over HTTP, the suppression list, redelivery, pages, sessions, idempotency keys);
//! - `DeliveryStore`: the outbox's webhook delivery (`delivery`);
//! - `SnapshotStore: Reads` (`snapshot.rs`): the forecast's reads of the campaign it copies;
//! - `RetentionStore` (`retention.rs`): pruning.
//!
//! `Store` is all of them: what `store::open` returns, what the daemon assembles its parts
//! from (handing each its role), and what the forecast drives on its scratch copy (a whole
//! campaign in miniature).

use super::StoreError;
use super::outbox::{DeliveryItem, OutboxCounts, ParkedItem};
use super::params::*;
use super::snapshot::SnapshotStore;
use super::types::*;
use crate::lead::LeadState;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Reads several roles share: the pauses in force, a job's calls today, a lead's
/// attempts, the outbox's counts; the storage's own health (`Storage`) and the job
/// pauses (`JobPauseStore`), which every runner, the planner and people's commands read.
#[async_trait]
pub trait Reads: super::Storage + super::JobPauseStore {
    /// What each of `rules`' senders has used at `now`: its openers counted against
    /// today's cap (its own day), its first opener and last call. Read only.
    async fn sender_uses(
        &self,
        rules: &[std::sync::Arc<crate::senders::SenderRule>],
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::senders::SenderUse>, StoreError>;

    /// Every pause row (expired ones included; compare `until` with now).
    async fn pauses(&self) -> Result<Vec<Pause>, StoreError>;
    /// Calls of `job` started since `since` that count against a daily cap.
    async fn count_started_since(&self, job: &str, since: DateTime<Utc>)
    -> Result<u64, StoreError>;
    /// A lead's attempts, newest first.
    async fn attempts_for(&self, lead_id: i64) -> Result<Vec<Attempt>, StoreError>;
    /// Undelivered messages: pending (held ones included) and parked.
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;
    async fn queued_events(&self, event_type: Option<&str>)
    -> Result<Vec<QueuedEvent>, StoreError>;
}

/// What the runner needs: due leads and events, claims, attempts in flight, results,
/// recovery, pauses, cron ticks and run records.
#[async_trait]
pub trait RunnerStore: Reads {
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
    async fn claim_leads(&self, ids: &[i64], lease: Lease<'_>) -> Result<Vec<Lead>, StoreError>;
    /// Gives leases back without changing the leads.
    /// Only for leads not yet called: their in-flight attempts under this token (recorded
    /// by a try whose answer was lost) become `cancelled` in the same transaction.
    async fn release_leads(
        &self,
        ids: &[i64],
        lease_token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Queued events of `event_type` whose lead can be worked now, oldest first, after
    /// event id `after`.
    async fn due_events(&self, q: &EventsQuery<'_>) -> Result<Vec<DueEvent>, StoreError>;
    /// Marks queued events whose lead will never be worked again (`done`, `ignored`,
    /// `blocked`, `failed`) as dropped; returns how many.
    async fn drop_dead_events(
        &self,
        event_type: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Contacted leads quiet past the last follow-up (`cutoff`) with `max` follow-ups sent
    /// become `exhausted` (or, with `dry`, are only counted); returns how many.
    async fn exhaust(&self, q: &Exhaustion) -> Result<u64, StoreError>;
    /// Writes a batch of call outcomes: attempts, leads, outbox rows and events, in one
    /// transaction (see `LeadResult` for what applies). Returns the attempts it finished.
    async fn record_results(
        &self,
        results: &[LeadResult],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError>;
    /// Notes that a follow-up of each of `senders` was passed over for the sender's gap at
    /// `now`: openers leave the sender's next call to it (`senders::SenderHold::FollowUpFirst`).
    async fn note_follow_ups_waiting(
        &self,
        senders: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Whether `settle_and_start` is worth using on this backend (see `Dialect::GROUP_COMMIT`).
    fn group_commit(&self) -> bool;
    /// Group commit: writes a group of answers (`record_results`) and records the next
    /// group's attempts in flight (`start_attempts_within`, under `cap`) in one
    /// transaction, so the slots the answers free take new calls for one commit instead
    /// of two. All or nothing: on any error neither is written (a unique violation is the
    /// `AlreadySent` of the attempts). Returns the attempts finished and those recorded.
    async fn settle_and_start(
        &self,
        results: &[LeadResult],
        now: DateTime<Utc>,
        attempts: &[NewAttempt],
        cap: Option<DailyCap>,
    ) -> Result<(Vec<i64>, Vec<Recorded>), StoreError>;
    /// Attempts left in flight by a runner that no longer holds their lead: its lease
    /// expired (it died mid-call), or was given back or lost while an attempt it recorded
    /// after a timed-out try was committed late. Their outcome is unknown.
    async fn orphans(&self, now: DateTime<Utc>) -> Result<Vec<Orphan>, StoreError>;
    /// Whether `action` step `step` of the lead was ever released by `by` (an attempt's
    /// `released_by`): a job's `on_unknown = "retry"` re-sends a step at most once in its
    /// life, whatever a person's block, unblock or retry did to the lead since.
    async fn step_released_by(&self, step: &StepOf, by: &str) -> Result<bool, StoreError>;
    /// Clears expired leases that hold no attempt in flight.
    async fn clear_expired_leases(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Sets or extends a pause: `length(strikes)` gives its length for the number of times
    /// in a row it has now been set.
    async fn set_pause(&self, pause: &NewPause<'_>) -> Result<Pause, StoreError>;
    /// Lifts a pause, only if it had ended by `ended_by` (a pause another runner set or
    /// extended since is kept).
    async fn clear_pause(
        &self,
        scope: PauseScope,
        ended_by: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Writes this runner's heartbeat row (`runners`): when it started, now, and what it
    /// holds. Rows not written for `RUNNER_ROW_KEPT` are removed in the same call, so the
    /// table holds the runners alive now and those that died within a day.
    async fn publish_runner(&self, beat: &Heartbeat<'_>) -> Result<(), StoreError>;
    /// Removes this runner's heartbeat row (a clean stop).
    async fn forget_runner(&self, runner_id: &str) -> Result<(), StoreError>;

    /// Claims cron tick (`job`, `scheduled_at`) for `runner`; false if another runner has it.
    async fn claim_tick(&self, tick: &Tick<'_>) -> Result<bool, StoreError>;
    async fn start_run(&self, tick: &Tick<'_, Option<DateTime<Utc>>>) -> Result<i64, StoreError>;
    async fn finish_run(
        &self,
        run_id: i64,
        summary: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The lead `target` wrote to the persona (the inbound relay): records the reply as
    /// `record_reply` does (an unknown target is added as `contacted`, with
    /// `own_username`) and leases the lead to `token` until `lease_until` for the relay's
    /// call, taking the lease from a runner that only claimed it (its call is then not
    /// made). Refuses a `blocked` lead (`Refused`) and one with a call in flight (`Busy`).
    async fn begin_inbound(
        &self,
        target: &str,
        own_username: Option<&str>,
        lease: Lease<'_>,
    ) -> Result<Lead, StoreError>;
}

/// What people's commands need: imports, leads and their history, user actions, events,
/// the outbox, counts and pauses lifted by hand.
#[async_trait]
pub trait AdminStore: Reads {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// The plans the database would use at `now` for the runner's hot statements (due
    /// leads and events, claim, exhaust, daily cap, orphans, the record in flight with its
    /// suppression check) and the delivery claim, with parameters like a run's.
    async fn hot_query_plans(&self, now: DateTime<Utc>) -> Result<Vec<QueryPlan>, StoreError>;

    /// Starts an import. With `atomic`, every batch joins one transaction that `finish`
    /// commits or rolls back; without, each batch commits on its own.
    async fn begin_import(&self, atomic: bool) -> Result<Box<dyn ImportSession>, StoreError>;

    async fn get_lead(&self, target: &str) -> Result<Option<Lead>, StoreError>;
    /// Adds `add` to and removes `remove` from the tags of each lead of `targets`, in one
    /// transaction: a tag added is put last unless the lead has it, removing one it lacks
    /// is no change, and `updated_at` moves only for a lead whose tags changed. If a
    /// target is no lead, or a lead would carry more than `lead::fields::TAGS`, nothing
    /// is written and the answer names them.
    async fn retag_leads(&self, change: &Retag<'_>) -> Result<Retagged, StoreError>;
    /// Blocks (`block`) or unblocks the leads of `targets` (checked, each once) in one
    /// transaction, each as `apply_user_action` would: a lead already blocked (for an
    /// unblock, one not blocked) is skipped and named. A block adds unknown targets,
    /// blocked; an unblock with unknown targets writes nothing and names them. Any other
    /// refusal or error writes nothing.
    async fn set_blocked(
        &self,
        targets: &[String],
        block: bool,
        now: DateTime<Utc>,
    ) -> Result<BlockedAll, StoreError>;
    async fn list_leads(&self, filter: &LeadFilter) -> Result<Vec<Lead>, StoreError>;
    /// The runners' heartbeat rows, newest heartbeat first (at most 100).
    async fn runners(&self) -> Result<Vec<RunnerSeen>, StoreError>;
    /// Leads per state; every state is present, with 0 where there are none.
    async fn count_by_state(&self) -> Result<BTreeMap<LeadState, u64>, StoreError>;
    /// Leads created after `at` (a dry run at a past instant: they did not exist then).
    async fn count_created_after(&self, at: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The lead wrote back at `at`: resets the quiet clock and the follow-up count, and
    /// credits the reply to the lead's last job step sent before `at`, once
    /// (`crate::rates`).
    async fn record_reply(
        &self,
        target: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Lead, StoreError>;
    /// Steps sent, replied to, sealed and ignored per job, step and sender (the lead's
    /// `own_username`, else `default_sender`), over the attempts kept; sorted by
    /// `rates::sorted`. Reads every kept attempt of those statuses: callers that repeat
    /// it keep the result a while (`metrics::RATES_SECS`).
    async fn reply_counts(
        &self,
        default_sender: Option<&str>,
    ) -> Result<Vec<crate::rates::StepCount>, StoreError>;
    /// Block, unblock or retry a lead, as the lifecycle allows.
    async fn apply_user_action(
        &self,
        target: &str,
        action: UserAction,
        now: DateTime<Utc>,
    ) -> Result<Lead, StoreError>;

    /// Queues a platform event for `target`, adding the lead (as `new`) if it is unknown.
    async fn queue_event(&self, event: &NewEvent<'_>) -> Result<QueuedEvent, StoreError>;

    /// Lifts the stored pauses of `scopes` whatever their end (a person fixed the key or
    /// bought tokens: `pause clear`); returns those lifted.
    async fn lift_pauses(&self, scopes: &[PauseScope]) -> Result<Vec<Pause>, StoreError>;

    /// Leads leased by runners at `now`, and attempts in flight, for `status`.
    async fn lease_summary(&self, now: DateTime<Utc>) -> Result<LeaseSummary, StoreError>;

    /// Queued events per type, for `status` (which names types no job sends).
    async fn queued_event_types(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// The latest run of each job.
    async fn last_runs(&self) -> Result<Vec<JobRun>, StoreError>;

    /// Outbox rows not yet acknowledged (or all with `include_acked`), oldest first.
    async fn outbox(&self, include_acked: bool) -> Result<Vec<OutboxItem>, StoreError>;
    /// Up to `limit` outbox rows with an id above `after`, oldest first: with `all` every
    /// row, else those not yet acknowledged whose lead is not blocked (`outbox list`).
    async fn outbox_list(
        &self,
        all: bool,
        after: i64,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError>;
    /// Rows not yet acknowledged held back because their lead is blocked.
    async fn outbox_held_back(&self) -> Result<u64, StoreError>;
    /// Acknowledges delivered rows, all in one transaction; returns the ids that were
    /// pending and are now acked.
    async fn ack_outbox(&self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>, StoreError>;
    /// Acknowledges every pending row in one statement, but not parked ones nor those held
    /// back because their lead is blocked; returns how many.
    async fn ack_all_outbox(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// What the HTTP service needs beyond people's commands.
#[async_trait]
pub trait ServiceStore: AdminStore + DeliveryStore + super::SuppressionStore {
    /// A lead's oldest `limit` queued events, fewer once their text passes about
    /// `max_bytes` (at least one), and how many it has queued in all.
    async fn queued_events_of(
        &self,
        lead_id: i64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<(Vec<QueuedEvent>, u64), StoreError>;
    /// Up to `limit` messages not yet acknowledged with an id above `after`, oldest
    /// first, fewer once their text passes about `max_bytes` (at least one); messages to
    /// `blocked` leads are held back.
    async fn outbox_page(
        &self,
        after: i64,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<OutboxItem>, StoreError>;
    /// Leads as `list_leads` reads them (`filter.limit` at most), fewer once their text
    /// passes about `max_bytes` (at least one); and whether it stopped early for that.
    async fn leads_within(
        &self,
        filter: &LeadFilter,
        max_bytes: usize,
    ) -> Result<(Vec<Lead>, bool), StoreError>;
    /// A lead's newest `limit` attempts, newest first, and how many it has in all.
    async fn attempts_of(
        &self,
        lead_id: i64,
        limit: u32,
    ) -> Result<(Vec<Attempt>, u64), StoreError>;
    /// The oldest `limit` parked messages and how many are parked in all, for the
    /// dashboard.
    async fn parked_page(
        &self,
        limit: u32,
    ) -> Result<(Vec<super::outbox::ParkedItem>, u64), StoreError>;
    /// Starts a dashboard session: `id` (the hash of the cookie's secret) lives until
    /// `expires_at`. Sessions past their end are forgotten here, and the oldest beyond the
    /// newest `keep` (a table that cannot grow without bound).
    async fn start_session(&self, session: &NewSession<'_>) -> Result<(), StoreError>;
    /// Whether session `id` was started and has neither ended nor expired by `now`.
    async fn session_alive(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Ends session `id` (a logout): every daemon on the database refuses it from now.
    async fn end_session(&self, id: &str) -> Result<(), StoreError>;
    /// The outbox message an attempt's answer made, if any.
    async fn outbox_of_attempt(&self, attempt_id: i64) -> Result<Option<OutboxItem>, StoreError>;
    /// Claims an idempotency key of `scope` for a request whose body hashes to
    /// `request_hash`, or says what became of the first request that used it.
    async fn claim_key(
        &self,
        of: KeyOf<'_>,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<KeyClaim, StoreError>;
    /// Stores the answer to the request that claimed the key.
    async fn finish_key(
        &self,
        of: KeyOf<'_>,
        answer: KeyAnswer<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The last attempt of each of these leads that has one, by lead id (one query).
    async fn last_attempts(
        &self,
        lead_ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, Attempt>, StoreError>;
    /// The newest attempts (at most `filter.limit`) below `filter.before`, newest first,
    /// each with its lead's target, for the dashboard.
    async fn recent_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<(Attempt, String)>, StoreError>;
    /// A page of the dashboard's leads table: up to `limit` leads `search` matches whose
    /// target sorts after `after` (byte order), in that order, each with its last
    /// attempt. Reads along the target index (keyset paging, never an offset).
    async fn leads_page(
        &self,
        search: &LeadSearch,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Lead, Option<Attempt>)>, StoreError>;
    /// How many leads `search` matches, counting no further than `cap` (the answer is at
    /// most `cap`).
    async fn count_leads(&self, search: &LeadSearch, cap: u64) -> Result<u64, StoreError>;
    /// Applies `bulk.action` to every lead `search` matches, in one transaction, each
    /// as `apply_user_action` would (those the action does not apply to, or busy, are
    /// counted and left). Writes nothing if more than `bulk.confirmed` leads match now
    /// (`Changed`) or more than `bulk.max` (`TooMany`): never more than confirmed.
    async fn bulk_leads(&self, search: &LeadSearch, bulk: Bulk) -> Result<BulkDone, StoreError>;
    /// Forgets a key whose request had no lasting effect (the API surely did not act), so
    /// a retry with it is a new request.
    async fn forget_key(&self, scope: &str, key: &str) -> Result<(), StoreError>;
    /// Attempts of `job` started since `since`, counted per UTC hour (the start of the
    /// hour) and status, for the dashboard's chart. Reads the `attempts_started` index.
    async fn attempts_per_hour(
        &self,
        job: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, AttemptStatus, u64)>, StoreError>;
    /// `contacted` and `exhausted` leads counted per number of follow-ups sent (since the
    /// last reply), for the dashboard's funnel: (state, follow-ups sent, leads), one query.
    async fn count_by_follow_ups(&self) -> Result<Vec<(LeadState, u32, u64)>, StoreError>;
}

/// What webhook delivery needs: outbox messages claimed like leads, and their results.
///
/// A message is deliverable when it is not delivered (`acked_at`), not parked, due
/// (`next_try_at`), not leased by another daemon, its lead is not `blocked` (its text is
/// held, as `outbox list` shows), and no earlier message of its lead is undelivered: a
/// follow-up never goes out before its opener, and a parked message holds back the later
/// ones of its lead. Results are written only under the claim's lease token, so a daemon
/// whose lease ran out cannot overwrite what another daemon did since.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Leases up to `limit` deliverable messages to `token` until `lease_until`, in id
    /// order, at most one per lead. One statement; on PostgreSQL rows another daemon is
    /// claiming are skipped, not waited on. The first claim of a message sets its
    /// `first_try_at` to `now`.
    async fn claim_deliveries(
        &self,
        limit: u32,
        lease: Lease<'_>,
    ) -> Result<Vec<DeliveryItem>, StoreError>;
    /// The webhook took message `id` (2xx): it is delivered. False if `token` no longer
    /// holds it (nothing written).
    async fn delivered(&self, held: Held<'_>, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// A try failed with `error`: one more try is counted, the next is due at `next_try_at`
    /// and the lease is given back. False if `token` no longer holds the message.
    async fn delivery_failed(
        &self,
        held: Held<'_>,
        error: &str,
        next_try_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The last try failed with `error` and `max_age` has passed: the message is parked.
    /// False if `token` no longer holds it.
    async fn park_delivery(
        &self,
        held: Held<'_>,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Parked messages, oldest first.
    async fn parked(&self) -> Result<Vec<ParkedItem>, StoreError>;
    /// Unparks messages: each is due at `now`, with a fresh `max_age` (tries and first try
    /// reset). Returns the ids that were parked and are now pending.
    async fn redeliver(&self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>, StoreError>;
}

/// The lead database: everything the runner, people's commands, the HTTP service and
/// webhook delivery need.
pub trait Store:
    RunnerStore
    + AdminStore
    + ServiceStore
    + DeliveryStore
    + SnapshotStore
    + super::RetentionStore
    + super::SuppressionStore
    + super::Storage
    + std::fmt::Debug
{
}

impl<
    T: RunnerStore
        + AdminStore
        + ServiceStore
        + DeliveryStore
        + SnapshotStore
        + super::RetentionStore
        + super::SuppressionStore
        + super::Storage
        + std::fmt::Debug,
> Store for T
{
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
