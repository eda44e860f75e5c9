//! The store's statements and their Rust, written once for both backends.
//!
//! The statements use `$N` placeholders (sqlx's SQLite driver reads them too) and take
//! what differs from a `Dialect` (`D` at the expansion site). The Rust around them is the
//! same for both backends but for the concrete sqlx types, so it is written here once, as
//! macros each backend's module expands with its own `DB` (`sqlx::Sqlite`,
//! `sqlx::Postgres`), `Conn` (its connection) and `D` (its dialect); sqlx binds and reads
//! every value through types that know both backends (`Ts`, `Tags`, `#[derive(FromRow)]`).
//!
//! - `helpers`: statements used by several methods (leads by id, one lead, attempts in
//!   flight, finishing attempts, counting the cap, an import batch);
//! - `hot`: the statements on the runner's hot path (due leads and events, claim,
//!   exhaust, cap, orphans) with their parameters, to run or to explain;
//! - `runner`: `impl RunnerStore`; `admin`: `impl AdminStore`; `import`: `ImportSession`;
//!   `delivery`: `impl DeliveryStore` (the outbox's webhook delivery);
//!   `service`: `impl ServiceStore` (the HTTP service); `snapshot`: `impl SnapshotStore`
//!   (the forecast's copy of a campaign); `retention`: `impl RetentionStore` (pruning);
//! - `schema`: the schema check and migrations.

#[macro_use]
mod helpers;
#[macro_use]
mod hot;
#[macro_use]
mod runner;
#[macro_use]
mod admin;
#[macro_use]
mod import;
#[macro_use]
mod schema;
#[macro_use]
mod service;
#[macro_use]
mod delivery;
#[macro_use]
mod snapshot;
#[macro_use]
mod retention;

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

/// The whole store for the backend of the expansion site, whose module defines `DB`,
/// `Conn`, `D` and the store type `$store` (with a `pool: sqlx::Pool<DB>` field).
macro_rules! sql_store {
    ($store:ident) => {
        sql_helpers!($store);
        sql_hot!($store);
        sql_runner!($store);
        sql_admin!($store);
        sql_import!($store);
        sql_schema!($store);
        sql_service!($store);
        sql_delivery!($store);
        sql_snapshot!($store);
        sql_retention!($store);
    };
}
