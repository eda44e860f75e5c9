//! What can go wrong in the store, and which of it a runner waits out.

use crate::lead::Refused;
use chrono::{DateTime, Utc};

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
    #[error("lead {0:?} has a call in flight; try again once it is answered")]
    Busy(String),
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
