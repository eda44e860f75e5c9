//! What every measurement needs: the release binary, the simulator, fresh databases filled
//! fast, and child processes measured (wall time, peak RSS).

use fluidtalk_runner::sim::{SimConfig, Simulator};
use fluidtalk_runner::store::{self, LeadInput, Store};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The release binary next to this example (`cargo build --release` run first, so the
/// numbers are for the binary a user runs).
pub fn binary() -> PathBuf {
    // A binary given (a debug build, an older release) is measured as it is.
    if let Some(bin) = std::env::var_os("FLUIDTALK_RUNNER_BIN") {
        return PathBuf::from(bin);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "fluidtalk-runner"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cargo build --release --bin fluidtalk-runner failed");
    let exe = std::env::current_exe().expect("this example's path");
    // target/release/examples/bench -> target/release/fluidtalk-runner
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/release")
        .join("fluidtalk-runner");
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// The built-in simulator on loopback, answering after `latency`; its base URL.
pub async fn sim(latency: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the simulator");
    let addr = listener.local_addr().expect("addr");
    let sim = Simulator::new(SimConfig {
        latency,
        ..SimConfig::default()
    });
    tokio::spawn(sim.serve(listener, std::future::pending()));
    format!("http://{addr}")
}

/// A fresh database: a SQLite file in a temp dir, or a schema of its own on PostgreSQL.
pub struct Db {
    pub backend: &'static str,
    pub url: String,
    pub store: Arc<dyn Store>,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Schema { admin: String, schema: String },
}

impl Db {
    pub async fn new(backend: &'static str, pg: Option<&str>) -> Db {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (url, cleanup) = match backend {
            "postgres" => {
                let admin = pg.expect("TEST_DATABASE_URL for PostgreSQL rows");
                let schema = format!("ft_bench_{}_{n}", std::process::id());
                let pool = sqlx::PgPool::connect(admin).await.expect("postgres");
                for sql in [
                    format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                    format!("CREATE SCHEMA {schema}"),
                ] {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&pool)
                        .await
                        .expect("schema");
                }
                let sep = if admin.contains('?') { '&' } else { '?' };
                (
                    format!("{admin}{sep}options=-c%20search_path%3D{schema}"),
                    Cleanup::Schema {
                        admin: admin.to_string(),
                        schema,
                    },
                )
            }
            _ => {
                let dir = std::env::temp_dir().join(format!("ft-bench-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                (
                    format!("sqlite://{}", dir.join("bench.db").display()),
                    Cleanup::Dir(dir),
                )
            }
        };
        let store = store::open(&url).await.expect("open the store");
        Db {
            backend,
            url,
            store,
            cleanup,
        }
    }

    /// Imports `n` new leads through the store, as `leads import` would.
    pub async fn import(&self, n: usize, prefix: &str) {
        let mut session = self.store.begin_import(false).await.expect("import");
        let now = chrono::Utc::now() - chrono::Duration::minutes(5);
        let mut i = 0;
        while i < n {
            let rows = (i..(i + 5_000).min(n))
                .map(|i| LeadInput {
                    target: format!("@{prefix}{i:08}"),
                    ..Default::default()
                })
                .collect();
            session.upsert(rows, now).await.expect("upsert");
            i += 5_000;
        }
        session.finish(true).await.expect("finish the import");
    }

    /// Fills `n` new leads with one statement (millions in seconds), eligible before now
    /// in groups of 100,000 sharing one time (as imports leave them); then fresh
    /// statistics, as a long-lived database has.
    pub async fn fill(&self, n: u64) {
        let sqls: Vec<String> = match self.backend {
            "postgres" => vec![
                format!(
                    "INSERT INTO leads (target, created_at, updated_at, next_eligible_at)
                     SELECT '@fill' || i, t, t, t
                     FROM (SELECT i, now() - INTERVAL '400 days' + (i / 100000) * INTERVAL '1 second' AS t
                           FROM generate_series(1, {n}) i) x"
                ),
                "ANALYZE".into(),
            ],
            _ => vec![format!(
                "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}),
                      x(i, t) AS (SELECT i, strftime('%Y-%m-%dT%H:%M:%S', 'now', '-400 days', '+' || (i / 100000) || ' seconds') || '.000000Z' FROM s)
                 INSERT INTO leads (target, created_at, updated_at, next_eligible_at)
                 SELECT '@fill' || i, t, t, t FROM x"
            )],
        };
        self.exec(&sqls).await;
    }

    pub async fn exec(&self, sqls: &[String]) {
        for sql in sqls {
            if self.backend == "postgres" {
                let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
            } else {
                let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
            }
        }
    }

    /// Leads in `state`.
    pub async fn count(&self, state: &str) -> u64 {
        self.store
            .count_by_state()
            .await
            .expect("count")
            .into_iter()
            .find(|(s, _)| s.as_str() == state)
            .map_or(0, |(_, n)| n)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(d) => {
                let _ = std::fs::remove_dir_all(d);
            }
            Cleanup::Schema { admin, schema } => {
                let (admin, schema) = (admin.clone(), schema.clone());
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                            let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// A campaign file for the binary: one opener job against `base_url`.
pub fn campaign(dir: &Path, base_url: &str, concurrency: usize, batch: u32) -> PathBuf {
    let path = dir.join(format!("bench-{concurrency}-{batch}.toml"));
    let text = format!(
        "[fluidtalk]\nbase_url = \"{base_url}\"\n[limits]\nconcurrency = {concurrency}\nper_second = 100000.0\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\nbatch_size = {batch}\n"
    );
    std::fs::write(&path, text).expect("write the campaign file");
    path
}

/// A command of the binary with the database and campaign file set, logs quiet.
pub fn command(bin: &Path, db_url: &str, campaign: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .env("DATABASE_URL", db_url)
        .env("FLUIDTALK_RUNNER_CONFIG", campaign)
        .env("FLUIDTALK_API_KEY", "ft_sk_bench")
        .env("FLUIDTALK_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// What a finished child cost.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub seconds: f64,
    pub peak_rss_mb: f64,
}

/// Starts every command at once and waits for all; the wall time until the last ends,
/// and the largest peak RSS among them. Panics (with its stderr) if one fails.
pub fn run_all(mut commands: Vec<Command>) -> Cost {
    let started = Instant::now();
    let children: Vec<_> = commands
        .iter_mut()
        .map(|c| c.spawn().expect("spawn the binary"))
        .collect();
    let mut peak = 0.0f64;
    for mut child in children {
        let (status, rss) = wait_peak(child.id());
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        assert!(status == 0, "the binary exited with status {status}: {err}");
        peak = peak.max(rss);
    }
    Cost {
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_mb: peak,
    }
}

/// Waits for child `pid`: its exit status and its peak RSS in MB. The peak is the last
/// `VmHWM` read from `/proc/PID/status` while it runs (every 5 ms): `wait4`'s `ru_maxrss`
/// would count the memory of this (large) process that the child was forked from.
pub fn wait_peak(pid: u32) -> (i32, f64) {
    let mut peak_mb = 0.0f64;
    loop {
        // A zombie (ended, not reaped) has no VmHWM: 0.
        let now = peak_now(pid);
        if now == 0.0 {
            break;
        }
        peak_mb = peak_mb.max(now);
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut status = 0;
    // SAFETY: waitpid writes the status into this local.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    assert!(r == pid as i32, "waitpid failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, peak_mb)
}

/// The peak RSS so far of running process `pid` in MB (`VmHWM`); 0 once it has ended.
pub fn peak_now(pid: u32) -> f64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0.0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
