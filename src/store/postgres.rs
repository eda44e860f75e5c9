//! The PostgreSQL store, for several runners on one database.
//!
//! Only how to connect lives here; the store itself is `sql/`, mounted with
//! PostgreSQL's types and dialect (`Pg`: `jsonb_to_recordset`, `FOR UPDATE SKIP LOCKED`,
//! an advisory lock per job for the daily cap).

use super::dialect::Pg;
use super::storage::Storage;
use super::{StoreError, redact_url};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

type DB = sqlx::Postgres;
type Conn = PgConnection;
type D = Pg;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// How to open a plain connection (not this pool's, which may be read-only on
    /// purpose) to ask the server whether it takes writes.
    probe: Probe,
}

/// Connection options, kept out of `Debug` output: they hold the password.
#[derive(Clone)]
struct Probe(PgConnectOptions);

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe(..)")
    }
}

impl PgStore {
    /// Connects and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = parse(url)?;
        let connect_error = |cause| StoreError::Connect {
            url: redact_url(url),
            cause,
        };
        // One plain connection first: a pool retries a refused connection until its
        // acquire timeout, which makes a wrong URL look like a hang.
        let probe = tokio::time::timeout(
            Duration::from_secs(15),
            PgConnection::connect_with(&options),
        )
        .await
        .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
        .map_err(connect_error)?;
        let _ = probe.close().await;
        let pool = with_nodelay(&options)
            .await
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(connect_error)?;
        let store = Self {
            pool,
            probe: Probe(options),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating (dry runs write nothing).
    pub async fn open_read_only(url: &str) -> Result<Self, StoreError> {
        // The server itself refuses writes on these connections.
        let plain = parse(url)?;
        let options = plain
            .clone()
            .options([("default_transaction_read_only", "on")]);
        let pool = with_nodelay(&options)
            .await
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(|cause| StoreError::Connect {
                url: redact_url(url),
                cause,
            })?;
        let store = Self {
            pool,
            probe: Probe(plain),
        };
        store.check_schema().await?;
        Ok(store)
    }

    /// The pool, for tests that need to look under the store.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn parse(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
        url: redact_url(url),
        why: e.to_string(),
    })
}

/// Pool options that set `TCP_NODELAY` on each new connection's socket (see `nodelay`:
/// sqlx 0.9.0 does not, and each round trip would wait ~40 ms for a delayed ACK).
async fn with_nodelay(options: &PgConnectOptions) -> PgPoolOptions {
    let host = options.get_host().to_string();
    let port = options.get_port();
    // A Unix socket (a path) has no Nagle's algorithm to turn off.
    let peers: Vec<std::net::SocketAddr> = if host.starts_with('/') {
        Vec::new()
    } else {
        tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map(|a| a.collect())
            .unwrap_or_default()
    };
    let peers = std::sync::Arc::new(peers);
    super::no_reaper(PgPoolOptions::new()).after_connect(move |_conn, _meta| {
        let peers = peers.clone();
        Box::pin(async move {
            if !peers.is_empty() {
                super::nodelay::set_on_sockets_to(&peers);
            }
            Ok(())
        })
    })
}

#[async_trait::async_trait]
impl Storage for PgStore {
    fn check_file(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn write_problem(&self) -> Option<String> {
        let asked = async {
            let mut conn = PgConnection::connect_with(&self.probe.0).await?;
            let answer: (String, bool) = sqlx::query_as(
                "SELECT current_setting('transaction_read_only'), pg_is_in_recovery()",
            )
            .fetch_one(&mut conn)
            .await?;
            let _ = conn.close().await;
            Ok::<_, sqlx::Error>(answer)
        };
        match tokio::time::timeout(Duration::from_secs(5), asked).await {
            Err(_) => Some("the database server did not answer within 5 s".into()),
            Ok(Err(e)) => Some(format!("cannot reach the database server: {e}")),
            Ok(Ok((_, true))) => Some("the database server is a standby (in recovery): it takes no writes".into()),
            Ok(Ok((read_only, false))) if read_only == "on" => Some(
                "the database server takes no writes: new sessions are read-only (default_transaction_read_only)"
                    .into(),
            ),
            Ok(Ok(_)) => None,
        }
    }
}

// The store's statements and their Rust, written once in `sql/` for both backends and
// mounted here over this backend's types: each file names what it takes from here (`DB`,
// `Conn`, `D`, `Store`) in its first lines; postgres.rs/sqlite.rs mount the same files.
// (Why files mounted twice, not generic functions: docs/ARCHITECTURE.md, "The store".)
type Store = PgStore;
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
