//! The schema check and migrations. Mounted by each backend (`sqlite.rs`, `postgres.rs`)
//! over its own types; the backend's module holds its `MIGRATOR` (`migrations/sqlite` or
//! `migrations/postgres`).

use super::{D, MIGRATOR, Store};
use crate::store::StoreError;
use crate::store::dialect::Dialect;

impl Store {
    /// The schema version the database holds: 0 where it was never migrated (no
    /// migrations table). Failing to ask is an error, not "version 0": a dropped
    /// connection must not read as "run migrate".
    pub(super) async fn schema_version(&self) -> Result<i64, StoreError> {
        let tables: i64 = sqlx::query_scalar(D::HAS_MIGRATIONS_TABLE)
            .fetch_one(&self.pool)
            .await?;
        if tables == 0 {
            return Ok(0);
        }
        let found: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(found.unwrap_or(0))
    }

    /// Refuses a database whose schema is not exactly this binary's (a dropped
    /// connection is tried again a few times, as in `migrate`).
    pub(super) async fn check_schema(&self) -> Result<(), StoreError> {
        let known = crate::store::known_version(&MIGRATOR);
        let found = retry_transient(|| self.schema_version()).await?;
        match found {
            found if found > known => Err(StoreError::SchemaTooNew { found, known }),
            found if found < known => Err(StoreError::SchemaBehind { found, known }),
            _ => Ok(()),
        }
    }

    /// Applies the migrations this binary has and the database lacks; refuses a
    /// schema newer than the binary.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let known = crate::store::known_version(&MIGRATOR);
        retry_transient(|| async {
            let found = self.schema_version().await?;
            if found > known {
                return Err(StoreError::SchemaTooNew { found, known });
            }
            // Another process migrating the same database at the same moment may
            // record a migration first (SQLite's migrations are not locked across
            // processes): this one's run then fails on it, and the rest is applied
            // by another pass (of this process or the other). Done when the schema
            // is what this binary needs.
            let mut first_error = None;
            for _ in 0..3 {
                match MIGRATOR.run(&self.pool).await {
                    Ok(()) => return Ok(()),
                    Err(e) if self.schema_version().await.is_ok_and(|v| v == known) => {
                        tracing::info!(error = %e, "another process migrated the database at the same time");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "a migration failed; trying once more in case another process is migrating too");
                        first_error.get_or_insert(e);
                    }
                }
            }
            Err(StoreError::Migrate(first_error.unwrap_or(
                sqlx::migrate::MigrateError::VersionMissing(known),
            )))
        })
        .await
    }
}

/// `attempt`, tried again up to five times (backon: 200 ms, doubling) when the
/// database dropped the connection under it (the server restarting, a connection
/// killer).
pub(super) async fn retry_transient<T, F, Fut>(attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    use backon::Retryable;
    attempt
        .retry(
            backon::ExponentialBuilder::default()
                .with_min_delay(std::time::Duration::from_millis(200))
                .with_max_times(5),
        )
        .when(StoreError::is_transient)
        .notify(|e, wait| {
            tracing::warn!(error = %e, ?wait, "the database dropped the connection while checking the schema; trying again");
        })
        .await
}
