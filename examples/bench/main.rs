//! Throughput of the runner end to end: the built-in simulator on loopback (no latency, or
//! a fixed latency), a real database, the real runner. Prints a table.
//!
//!     cargo run --release --example bench                  # SQLite
//!     TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!         cargo run --release --example bench              # and PostgreSQL
//!
//! Each row imports N new leads into a fresh database and times one `run` of an opener
//! job that sends them all (claims, attempts in flight, calls, results).

use fluidtalk_runner::clock::SystemClock;
use fluidtalk_runner::config;
use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::runner::Runner;
use fluidtalk_runner::sim::{SimConfig, Simulator};
use fluidtalk_runner::store::{self, LeadInput, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Row {
    backend: &'static str,
    leads: usize,
    batch: u32,
    concurrency: usize,
    latency_ms: u64,
    seconds: f64,
}

async fn sim(latency: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sim = Simulator::new(SimConfig {
        latency,
        ..SimConfig::default()
    });
    tokio::spawn(sim.serve(listener, std::future::pending()));
    format!("http://{addr}")
}

async fn fresh(
    backend: &'static str,
    pg: Option<&str>,
    n: usize,
) -> (
    Arc<dyn Store>,
    Option<(String, String)>,
    Option<tempdir::Dir>,
) {
    match (backend, pg) {
        ("postgres", Some(admin)) => {
            let schema = format!("ft_bench_{}", std::process::id());
            let pool = sqlx::PgPool::connect(admin).await.expect("postgres");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(&pool)
            .await
            .expect("drop");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&pool)
                .await
                .expect("create");
            let sep = if admin.contains('?') { '&' } else { '?' };
            let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
            let s = store::open(&url).await.expect("open");
            import(&*s, n).await;
            // A long-lived database has statistics (autovacuum); a fresh schema has none yet.
            let raw = sqlx::PgPool::connect(&url).await.expect("postgres");
            sqlx::query("ANALYZE").execute(&raw).await.expect("analyze");
            (s, Some((admin.to_string(), schema)), None)
        }
        _ => {
            let dir = tempdir::Dir::new();
            let url = format!("sqlite://{}", dir.0.join("bench.db").display());
            let s = store::open(&url).await.expect("open");
            import(&*s, n).await;
            (s, None, Some(dir))
        }
    }
}

async fn import(s: &dyn Store, n: usize) {
    let mut session = s.begin_import(false).await.expect("import");
    let now = chrono::Utc::now() - chrono::Duration::minutes(5);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let rows = chunk
            .iter()
            .map(|i| LeadInput {
                target: format!("@bench{i:07}"),
                ..Default::default()
            })
            .collect();
        session.upsert(rows, now).await.expect("upsert");
    }
    session.finish(true).await.expect("finish");
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!(
                "ft-bench-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
            ));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn one(
    backend: &'static str,
    pg: Option<&str>,
    leads: usize,
    batch: u32,
    concurrency: usize,
    latency_ms: u64,
) -> Row {
    let url = sim(Duration::from_millis(latency_ms)).await;
    let (store, cleanup, _dir) = fresh(backend, pg, leads).await;
    let text = format!(
        "[fluidtalk]\nbase_url = \"{url}\"\n[limits]\nconcurrency = {concurrency}\nper_second = 100000.0\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\nbatch_size = {batch}\n"
    );
    let config =
        Arc::new(config::parse(std::path::Path::new("bench.toml"), &text).expect("config"));
    let mut cc = ClientConfig::new(ApiKey::new("ft_sk_bench").expect("key"));
    cc.base_url = url;
    let d = Runner::new(
        store.clone(),
        Client::new(cc).expect("client"),
        config.clone(),
        Arc::new(SystemClock),
        "bench".into(),
    );
    let started = Instant::now();
    let summary = d.run_job(&config.jobs[0], None).await.expect("run");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.sent as usize, leads, "every lead sent once");
    if let Some((admin, schema)) = cleanup {
        let pool = sqlx::PgPool::connect(&admin).await.expect("postgres");
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&pool)
            .await;
    }
    Row {
        backend,
        leads,
        batch,
        concurrency,
        latency_ms,
        seconds,
    }
}

#[tokio::main]
async fn main() {
    fluidtalk_runner::fluidtalk::install_crypto_provider();
    let pg = std::env::var("TEST_DATABASE_URL").ok();
    let n: usize = std::env::var("BENCH_LEADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut rows = Vec::new();
    for backend in ["sqlite", "postgres"] {
        if backend == "postgres" && pg.is_none() {
            eprintln!("(TEST_DATABASE_URL not set: PostgreSQL rows skipped)");
            continue;
        }
        for (batch, concurrency, latency) in [(1, 1, 0), (100, 32, 0), (500, 32, 0), (500, 128, 20)]
        {
            let leads = if batch == 1 { n / 10 } else { n };
            rows.push(one(backend, pg.as_deref(), leads, batch, concurrency, latency).await);
        }
    }
    println!(
        "{:<9} {:>7} {:>6} {:>11} {:>10} {:>9} {:>10}",
        "backend", "leads", "batch", "concurrency", "latency", "seconds", "leads/s"
    );
    for r in rows {
        println!(
            "{:<9} {:>7} {:>6} {:>11} {:>8}ms {:>9.2} {:>10.0}",
            r.backend,
            r.leads,
            r.batch,
            r.concurrency,
            r.latency_ms,
            r.seconds,
            r.leads as f64 / r.seconds
        );
    }
}
