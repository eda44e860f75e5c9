//! The lead database: one SQL store over sqlx, with a SQLite and a PostgreSQL dialect.
//!
//! Every SQL statement of the project lives under this module, written once (`sql/`) with
//! `$N` placeholders; what truly differs between the backends is a `Dialect` (`dialect`).
//! sqlx's Any driver cannot carry timestamps or JSON, so each backend is its own sqlx
//! driver: `sqlite` and `postgres` hold only how to connect, and each mounts the files of
//! `sql/` as its own modules (`#[path]`) over its types: `DB` (`sqlx::Sqlite`,
//! `sqlx::Postgres`), `Conn` (its connection), `D` (its dialect) and `Store` (its store);
//! sqlx binds and reads every value through types that know both backends (`Ts`, `Tags`,
//! `#[derive(FromRow)]`). Each backend has its own migrations (`migrations/sqlite`,
//! `migrations/postgres`), applied when a store is opened. Both pass one conformance suite
//! (`tests/it/store_conformance.rs`). Timestamps are UTC.
//!
//! The files of `sql/`, each a module of both backends:
//!   - `helpers`: statements used by several methods (leads by id, one lead, attempts in
//!     flight, finishing attempts, counting the cap, an import batch);
//!   - `hot`: the statements on the runner's hot path (due leads and events, claim,
//!     exhaust, cap, orphans) with their parameters, to run or to explain;
//!   - `reads`: `impl Reads`; `runner`: `impl RunnerStore`; `admin`: `impl AdminStore`; `import`: `ImportSession`;
//!     `delivery`: `impl DeliveryStore`; `service`: `impl ServiceStore` (the HTTP
//!     service); `snapshot`: `impl SnapshotStore` (the forecast's copy of a campaign);
//!     `retention`: `impl RetentionStore` (pruning); `suppress`: `impl SuppressionStore`
//!     (the suppression list, `suppressions`); `job_pauses`: `impl JobPauseStore` (job
//!     pauses, `job_pauses`); `schema`: the schema check and migrations.
//!
//! The other modules:
//! - `types`: the data; `traits`: the roles, one per consumer (`Reads`, `RunnerStore`,
//!   `AdminStore`, `ServiceStore`, `DeliveryStore`; delivery's types in `outbox`), and
//!   `Store` (all of them); `error`: `StoreError`;
//! - `rules`: what the store decides, once for both backends (how a result meets the lead
//!   as it is now, what a person's action does, the daily cap, batch JSON);
//! - `values`, `rows`: how values and rows are read and written (`Ts`, `Tags`, `FromRow`);
//! - `nodelay`: `TCP_NODELAY` on PostgreSQL sockets.
//!
//! Writes that depend on a lead's state go through `lead::next` and are applied with a
//! compare-and-set on the state read, so a user's `block` and a runner's result can never
//! silently overwrite each other.

/// SQL: the lead has never been worked, so an import may still set its campaign fields.
const UNTOUCHED: &str = "(leads.state = 'new' AND leads.last_contact_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = leads.id))";

/// SQL: the attempt holds its step, so the step cannot be sent again (the same list as the
/// `attempts_once` index of migration 0003 and `AttemptStatus::holds_step`).
const HOLDS_STEP: &str =
    "status IN ('in_flight', 'sent', 'continued', 'ignored', 'sealed', 'failed', 'unknown')
         AND released_at IS NULL";

/// A statement's text, built once per backend from its dialect's pieces (`format!`
/// arguments) and kept for the life of the process, so sqlx's prepared-statement cache
/// sees the same text each time.
macro_rules! stmt {
    ($($arg:tt)*) => {{
        static STMT: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| format!($($arg)*));
        STMT.as_str()
    }};
}

mod dialect;
mod error;
mod job_pauses;
mod nodelay;
mod outbox;
mod params;
mod postgres;
mod retention;
mod rows;
mod rules;
mod snapshot;
mod sqlite;
mod storage;
mod suppressions;
mod traits;
mod types;
mod values;

pub use error::StoreError;
pub use job_pauses::{
    JOB_PAUSE_REASON_MAX, JOB_PAUSES_MAX, JobPause, JobPauseStore,
    check_reason as check_job_pause_reason,
};
pub use outbox::{DeliveryItem, LAST_ERROR_MAX, OutboxCounts, ParkedItem};
pub use params::{
    EventsQuery, Exhaustion, Heartbeat, Held, KeyAnswer, KeyOf, Lease, NewEvent, NewPause,
    NewSession, Retag, StepOf, Tick,
};
pub use postgres::PgStore;
pub use retention::{PRUNE_BATCH, PruneTable, RetentionStore};
pub use rules::FUTURE_SKEW;
pub use snapshot::{AttemptOf, SnapshotStore};
pub use sqlite::SqliteStore;
pub use storage::{MIN_FREE_BYTES, Storage};
pub use suppressions::{
    SUPPRESS_BATCH_MAX, SUPPRESSIONS_MAX, SUPPRESSIONS_PAGE_MAX, Suppressed, Suppression,
    SuppressionStore, Unsuppressed,
};
pub use traits::{
    AdminStore, DeliveryStore, ImportSession, Reads, RunnerStore, ServiceStore, Store,
};
pub use types::*;

use std::sync::Arc;

/// Where the lead database lives when nothing else says.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://fluidtalk-runner.db";

/// The `error_kind` of an attempt found in flight after its runner's lease ran out: its
/// outcome is unknown, but a late answer from that runner is still recorded over it.
pub const RUNNER_LOST: &str = "runner_lost";

/// How long a runner's heartbeat row is kept after its last heartbeat (a runner that
/// stopped cleanly removes its own at once).
pub const RUNNER_ROW_KEPT: chrono::Duration = chrono::Duration::days(1);

/// What an attempt's `released_by` says when a job's `on_unknown = "retry"` freed its step:
/// it does so once per step, ever (`RunnerStore::step_released_by`).
pub const ON_UNKNOWN_RELEASE: &str = "on_unknown = \"retry\"";

/// The longest target accepted (`lead::fields`, where every field's limit is).
pub const MAX_TARGET_LEN: usize = crate::lead::fields::TARGET_CHARS;

/// No idle timeout and no maximum lifetime, so sqlx starts no maintenance task: in sqlx
/// 0.9.0 that task can spin a core forever on an underflowed idle count and hang the
/// process at exit (sqlx issue #3645, fixed by PR #4289, not released). Connections are
/// still tested before use (`test_before_acquire`), so dead ones are replaced, and a
/// failed transaction end closes its connection (`rules::in_tx`).
pub(crate) fn no_reaper<DB: sqlx::Database>(
    options: sqlx::pool::PoolOptions<DB>,
) -> sqlx::pool::PoolOptions<DB> {
    options.idle_timeout(None).max_lifetime(None)
}

/// Whether a SQLite URL asks for an in-memory database.
fn memory_url(url: &str) -> bool {
    let url = url.to_ascii_lowercase();
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The newest schema version a migrator knows.
fn known_version(migrator: &sqlx::migrate::Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
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

/// Opens the store at `url` and applies migrations, but never creates a SQLite file: for
/// commands that change an existing campaign (a missing file is `NoDatabase`).
pub async fn open_existing(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open_existing(url).await?))
    } else {
        open(url).await
    }
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

/// Blocks `target` (a checked target), adding it first if unknown: a do-not-contact list
/// may name people not imported yet (`leads block`, `POST /v1/leads/{target}/block`).
pub async fn block_adding(
    store: &dyn AdminStore,
    target: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Lead, StoreError> {
    if store.get_lead(target).await?.is_none() {
        // Added blocked, in one transaction: no runner ever sees the person as `new`. (A
        // lead added meanwhile by someone else is blocked too if never worked, else below.)
        let mut session = store.begin_import(false).await?;
        let input = LeadInput {
            target: target.to_string(),
            state: Some(crate::lead::LeadState::Blocked),
            ..Default::default()
        };
        session.upsert(vec![input], now).await?;
        session.finish(true).await?;
        if let Some(lead) = store.get_lead(target).await?
            && lead.state == crate::lead::LeadState::Blocked
        {
            return Ok(lead);
        }
    }
    store
        .apply_user_action(target, UserAction::Block, now)
        .await
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
}
