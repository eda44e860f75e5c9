//! Fresh databases for tests: a SQLite file in a temp dir, or a schema of its own on the
//! PostgreSQL server named by `TEST_DATABASE_URL` (dropped when the test ends).

use fluidtalk_runner::store::{self, Store};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

pub const PG_ENV: &str = "TEST_DATABASE_URL";

pub struct TestDb {
    pub url: String,
    pub store: Arc<dyn Store>,
    /// For test setup that the store does not offer (and for looking under it).
    pub raw: Raw,
    _cleanup: Cleanup,
}

pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl TestDb {
    /// Runs one statement with no parameters.
    pub async fn exec(&self, sql: &'static str) {
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
            Raw::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Schema { admin_url: String, schema: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::Schema { admin_url, schema } = self {
            let (url, schema) = (admin_url.clone(), schema.clone());
            // Drop runs outside any runtime the test may still be shutting down.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        use sqlx::Connection;
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                            // Never wait forever on a lock a broken test left behind.
                            let _ = sqlx::query("SET lock_timeout = '10s'")
                                .execute(&mut conn)
                                .await;
                            let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                            let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                                .execute(&mut conn)
                                .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// A fresh SQLite database file.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("leads.db").display());
    let store = store::open(&url).await.expect("open sqlite store");
    let raw = sqlx::SqlitePool::connect(&url)
        .await
        .expect("raw sqlite pool");
    TestDb {
        url,
        store,
        raw: Raw::Sqlite(raw),
        _cleanup: Cleanup::Dir(dir),
    }
}

/// A fresh schema on the test PostgreSQL server, or `None` (said once on stderr) when
/// `TEST_DATABASE_URL` is not set. When it is set the server must answer: a test fails
/// rather than skips.
pub async fn postgres() -> Option<TestDb> {
    let Ok(admin_url) = std::env::var(PG_ENV) else {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            // Written past the test harness's capture, so a local run shows it.
            let _ = writeln!(
                std::io::stderr(),
                "\nNOTE: {PG_ENV} is not set: the PostgreSQL half of these tests was skipped \
                 (CI sets it; e.g. {PG_ENV}=postgres://postgres@127.0.0.1:5432/test)"
            );
        });
        return None;
    };
    static N: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "ft_test_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    );
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create a test schema");
    admin.close().await;
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    let url = format!("{admin_url}{sep}options=-c%20search_path%3D{schema}");
    let store = store::open(&url).await.expect("open postgres store");
    let raw = sqlx::PgPool::connect(&url)
        .await
        .expect("raw postgres pool");
    Some(TestDb {
        url,
        store,
        raw: Raw::Postgres(raw),
        _cleanup: Cleanup::Schema { admin_url, schema },
    })
}
