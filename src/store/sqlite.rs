//! The SQLite store: the zero-set-up default, one file with WAL and a busy timeout.
//!
//! Only how to open the file lives here; the store itself is `sql/`, mounted with
//! SQLite's types and dialect (`Lite`: `json_each`, `BEGIN IMMEDIATE`, which takes the
//! write lock up front instead of failing to upgrade a read lock later).

use super::dialect::Lite;
use super::storage::{FileIdentity, Storage};
use super::{StoreError, memory_url, redact_url};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

type DB = sqlx::Sqlite;
type Conn = sqlx::SqliteConnection;
type D = Lite;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// The file as it was opened: a file deleted, replaced or moved since is noticed.
    file: std::sync::Arc<FileIdentity>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_as(url, true).await
    }

    /// Opens the database file and applies migrations; a missing file is an error (for
    /// commands that have no business starting a new campaign).
    pub async fn open_existing(url: &str) -> Result<Self, StoreError> {
        Self::open_as(url, false).await
    }

    async fn open_as(url: &str, create: bool) -> Result<Self, StoreError> {
        // A new file is made with `auto_vacuum = INCREMENTAL` (it must be set before the
        // first table), so the pages a prune frees can be given back to the file system
        // (`RetentionStore::reclaim_space`). On a file made before, the pragma changes
        // nothing without a VACUUM, which is left to the operator (docs/operations.md, "Retention"):
        // its free pages are still reused by new rows.
        let options = move |o: SqliteConnectOptions| {
            o.create_if_missing(create)
                .auto_vacuum(SqliteAutoVacuum::Incremental)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
        };
        // Migrations run on a connection of their own, closed before the store's pool
        // opens: a migration that runs its own transaction and pragmas (0006) and fails
        // halfway cannot leave them on a connection the store then uses.
        let migrating = Self::connect(url, 1, !create, options).await?;
        // One process migrates at a time: sqlx takes no lock on SQLite, and a second
        // process running 0006 (no transaction) after the first had run later migrations
        // would rebuild `attempts` without the columns they added. An exclusive `flock`
        // on the database file itself (independent of SQLite's own POSIX locks), held
        // until the migrations are done; the second process then finds nothing to do.
        let lock = migration_lock(url, &migrating.file.path).await?;
        let migrated = migrating.migrate().await;
        drop(lock);
        migrating.pool.close().await;
        migrated?;
        Self::connect(url, 4, !create, options).await
    }

    /// Opens an existing database file read-only, without migrating.
    pub async fn open_read_only(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url, 2, true, |o| {
            o.read_only(true)
                .create_if_missing(false)
                // The file is already in WAL mode; asking for another would write.
                .journal_mode(SqliteJournalMode::Wal)
        })
        .await?;
        store.check_schema().await?;
        Ok(store)
    }

    async fn connect(
        url: &str,
        max_connections: u32,
        must_exist: bool,
        options: impl FnOnce(SqliteConnectOptions) -> SqliteConnectOptions,
    ) -> Result<Self, StoreError> {
        let parsed = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
            url: redact_url(url),
            why: e.to_string(),
        })?;
        let path = parsed.get_filename().to_path_buf();
        // An in-memory or nameless database would report success and keep nothing.
        let file = parsed.get_filename().to_string_lossy();
        if memory_url(url) || file.is_empty() || file.starts_with("file:sqlx-in-memory") {
            return Err(StoreError::BadUrl {
                url: redact_url(url),
                why: "an in-memory database keeps nothing after the command ends; \
                      name a file, e.g. sqlite://fluidtalk-runner.db"
                    .into(),
            });
        }
        let options = options(parsed.busy_timeout(Duration::from_secs(30)));
        if must_exist && !path.exists() {
            return Err(StoreError::NoDatabase {
                url: redact_url(url),
            });
        }
        let pool = super::no_reaper(SqlitePoolOptions::new())
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .map_err(|cause| StoreError::Connect {
                url: redact_url(url),
                cause,
            })?;
        let file = FileIdentity::of(&path).map_err(|e| StoreError::Connect {
            url: redact_url(url),
            cause: sqlx::Error::Io(e),
        })?;
        Ok(Self {
            pool,
            file: std::sync::Arc::new(file),
        })
    }
}

#[async_trait::async_trait]
impl Storage for SqliteStore {
    fn check_file(&self) -> Result<(), StoreError> {
        self.file.check()
    }

    async fn write_problem(&self) -> Option<String> {
        self.file.write_problem()
    }
}

// The store's statements and their Rust, written once in `sql/` for both backends and
// mounted here over this backend's types: each file names what it takes from here (`DB`,
// `Conn`, `D`, `Store`) in its first lines; postgres.rs/sqlite.rs mount the same files.
// (Why files mounted twice, not generic functions: docs/ARCHITECTURE.md, "The store".)
type Store = SqliteStore;
#[allow(clippy::duplicate_mod)]
#[path = "sql/admin.rs"]
mod admin;
#[allow(clippy::duplicate_mod)]
#[path = "sql/delivery.rs"]
mod delivery;
#[allow(clippy::duplicate_mod)]
#[path = "sql/helpers.rs"]
mod helpers;
#[allow(clippy::duplicate_mod)]
#[path = "sql/hot.rs"]
mod hot;
#[allow(clippy::duplicate_mod)]
#[path = "sql/import.rs"]
mod import;
#[allow(clippy::duplicate_mod)]
#[path = "sql/inbound.rs"]
mod inbound;
#[allow(clippy::duplicate_mod)]
#[path = "sql/job_pauses.rs"]
mod job_pauses;
#[allow(clippy::duplicate_mod)]
#[path = "sql/reads.rs"]
mod reads;
#[allow(clippy::duplicate_mod)]
#[path = "sql/replies.rs"]
mod replies;
#[allow(clippy::duplicate_mod)]
#[path = "sql/retention.rs"]
mod retention;
#[allow(clippy::duplicate_mod)]
#[path = "sql/runner.rs"]
mod runner;
#[allow(clippy::duplicate_mod)]
#[path = "sql/schema.rs"]
mod schema;
#[allow(clippy::duplicate_mod)]
#[path = "sql/service.rs"]
mod service;
#[allow(clippy::duplicate_mod)]
#[path = "sql/snapshot.rs"]
mod snapshot;
#[allow(clippy::duplicate_mod)]
#[path = "sql/suppress.rs"]
mod suppress;

/// Takes an exclusive `flock` on the database file at `path` (waiting for another process
/// that holds it), released when the returned file is dropped.
async fn migration_lock(url: &str, path: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let path = path.to_path_buf();
    let locked = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().read(true).open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| StoreError::Connect {
        url: redact_url(url),
        cause: sqlx::Error::Io(std::io::Error::other(e.to_string())),
    })?;
    locked.map_err(|e| StoreError::Connect {
        url: redact_url(url),
        cause: sqlx::Error::Io(e),
    })
}
