//! The soak on PostgreSQL (CI sets `TEST_DATABASE_URL`): a week (CI: 90 days) of the real
//! daemon (see `soak/mod.rs` for exactly what it does and what it checks).

mod common;
mod soak;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soak_on_postgres_stays_within_the_retention_bounds() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    soak::soak(db, "postgres").await;
}
