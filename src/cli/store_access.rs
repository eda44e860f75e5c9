//! Opening the lead database for a command, and the exit code of a store error.

use crate::config::Config;
use crate::exit::{Exit, Failure};
use crate::store::{self, Store, StoreError};
use std::sync::Arc;

/// How a command opens the lead database. Only the commands that start or feed a campaign
/// create a SQLite file that is not there: a command run in the wrong folder, or after the
/// file was deleted, must not quietly start a new, empty campaign (importing leads there
/// again would send them a second opener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// `migrate`, `leads import|add|event|block`, `run`, `daemon`: created if missing.
    Create,
    /// Commands that change an existing campaign (`leads retry|replied|unblock`,
    /// `outbox ack|redeliver`, `pause`): migrated, never created.
    Existing,
    /// Commands that only read (`status`, `leads list|show`, `outbox list`): nothing
    /// written, nothing created, no migration (an older schema asks for `migrate`).
    ReadOnly,
}

/// Opens (and, unless read only, migrates) the database the configuration names.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, Failure> {
    open_as(config, Open::Create).await
}

/// Opens the database the configuration names as `how` says.
pub async fn open_as(config: &Config, how: Open) -> Result<Arc<dyn Store>, Failure> {
    let url = config.database_url();
    let store = match how {
        Open::Create => store::open(&url).await,
        Open::Existing => store::open_existing(&url).await,
        Open::ReadOnly => store::open_read_only(&url).await,
    }
    .map_err(store_failure)?;
    tracing::debug!(backend = store.backend(), url = %store::redact_url(&url), ?how, "database open");
    Ok(store)
}

/// A store error with its exit code: the user's input or what it asked for now (3), or the
/// database itself (6).
pub fn store_failure(e: StoreError) -> Failure {
    let exit = match e {
        StoreError::NotFound(_)
        | StoreError::Refused(_)
        | StoreError::BadUrl { .. }
        | StoreError::InTheFuture { .. }
        | StoreError::Busy(_)
        | StoreError::Full(_) => Exit::Config,
        ref e if e.is_moved() => Exit::DatabaseMoved,
        _ => Exit::Database,
    };
    Failure {
        exit,
        error: anyhow::Error::new(e),
    }
}
