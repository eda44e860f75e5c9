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
    #[error(
        "there is no lead database at {url}: this command only uses an existing one (it is \
         created by `migrate`, `leads import`, `leads add`, `run` or `daemon`); check \
         --config, [database] url and DATABASE_URL"
    )]
    NoDatabase { url: String },
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
    /// A bounded list (the suppression list) would pass its limit; nothing was written.
    #[error("{0}")]
    Full(String),
    #[error("the database did not answer within {0:?}")]
    Unresponsive(std::time::Duration),
    #[error(
        "the database file {path} was {what} while this process had it open: stopping, \
         since whatever it writes now is not the campaign's database; find out what \
         happened to the file before starting again"
    )]
    Moved { path: String, what: &'static str },
}

impl StoreError {
    /// Whether trying again later may succeed: the database is in an outage, not refusing
    /// this write for good. Connections: lost or refused, the server restarting or shutting
    /// connections down, the pool run dry, no answer in time. Storage: a full disk, an I/O
    /// error, a database switched read-only (a PostgreSQL failover, a remounted file
    /// system), out of memory. Contention: SQLite's file locked past the busy timeout,
    /// PostgreSQL choosing this transaction to abort (serialization failure, deadlock), a
    /// statement cancelled or a lock timed out. A runner holds its answers and goes on
    /// trying after these; it never drops them.
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
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // The file moved away is not an outage: waiting cannot bring it back.
                    return code.parse::<i32>().is_ok_and(|c| {
                        c != SQLITE_READONLY_DBMOVED && SQLITE_OUTAGES.contains(&(c & 0xff))
                    });
                }
                // PostgreSQL: class 08 (connection exception), 57P01..57P03 (admin or
                // crash shutdown, cannot connect now), 53xxx (disk full, out of memory, too
                // many connections), 58xxx (I/O and system errors), 25006 (read-only
                // transaction: a standby, or `default_transaction_read_only`), 40001 and
                // 40P01 (serialization, deadlock), 57014 (statement cancelled) and 55P03
                // (lock timeout).
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("58")
                    || matches!(
                        &*code,
                        "57P01"
                            | "57P02"
                            | "57P03"
                            | "40001"
                            | "40P01"
                            | "25006"
                            | "57014"
                            | "55P03"
                    )
            }
            _ => false,
        }
    }

    /// Whether the SQLite file was deleted, replaced or moved while open (SQLite's own
    /// check on a write, or the store's device-and-inode check): the process is no longer
    /// writing to the campaign's database and must stop.
    pub fn is_moved(&self) -> bool {
        match self {
            StoreError::Moved { .. } => true,
            StoreError::Db(sqlx::Error::Database(db)) => {
                db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                    && db.code().and_then(|c| c.parse::<i32>().ok())
                        == Some(SQLITE_READONLY_DBMOVED)
            }
            _ => false,
        }
    }
}

/// SQLite's primary result codes that mean an outage (the extended codes carry them in
/// their low byte): BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN.
const SQLITE_OUTAGES: [i32; 7] = [5, 6, 7, 8, 10, 13, 14];

/// SQLITE_READONLY_DBMOVED: a write found that the database file was unlinked or renamed.
const SQLITE_READONLY_DBMOVED: i32 = 8 | (4 << 8);

// By hand rather than `#[from]`, which would also make the sqlx error the source: the
// message already shows it, and `{:#}` would print it twice.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e)
    }
}
