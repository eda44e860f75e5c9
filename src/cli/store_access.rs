//! Opening the lead database for a command, and the exit code of a store error.

use crate::config::Config;
use crate::exit::{Exit, Failure};
use crate::store::{self, Store, StoreError};
use std::sync::Arc;

/// Opens (and migrates) the database the configuration names.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, Failure> {
    let url = config.database_url();
    let store = store::open(&url).await.map_err(store_failure)?;
    tracing::debug!(backend = store.backend(), url = %store::redact_url(&url), "database open");
    Ok(store)
}

/// A store error with its exit code: the user's input (3) or the database itself (6).
pub fn store_failure(e: StoreError) -> Failure {
    let exit = match e {
        StoreError::NotFound(_)
        | StoreError::Refused(_)
        | StoreError::BadUrl { .. }
        | StoreError::InTheFuture { .. } => Exit::Config,
        _ => Exit::Database,
    };
    Failure {
        exit,
        error: anyhow::Error::new(e),
    }
}
