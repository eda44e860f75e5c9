//! The soak (issue 19): weeks of the real daemon on each backend (`run.rs` says exactly what
//! it does and checks). One test binary, the two backends one after the other
//! (`ONE_AT_A_TIME`): each checks this process's resident memory (VmRSS) day by day against
//! a bound, so no other test may run beside it (so not in `tests/it`). Memory the first soak
//! freed but the allocator kept still counts in the second's reading: the bound (256 MB) is
//! far above what either reaches (under 45 MB).

#[path = "../common/mod.rs"]
mod common;
mod run;

/// One soak at a time in this process.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soak_on_sqlite_stays_within_the_retention_bounds() {
    let _one = ONE_AT_A_TIME.lock().await;
    run::soak(common::db::sqlite().await, "sqlite").await;
}

/// On PostgreSQL (`TEST_DATABASE_URL`, which CI sets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soak_on_postgres_stays_within_the_retention_bounds() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = common::db::postgres().await else {
        return;
    };
    run::soak(db, "postgres").await;
}
