//! A campaign in a temp folder for tests that run the real binary as a user would: a
//! `jobs.toml`, a lead database (a SQLite file, or a PostgreSQL schema), the simulator as
//! a process, and helpers to run commands, read the simulator's log and look at the
//! database.

use super::db::{Raw, TestDb};
use super::{KillOnDrop, TEST_KEY, bin, spawn_sim_process};
use fluidtalk_runner::sim::LogEntry;
use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

pub struct Campaign {
    pub dir: tempfile::TempDir,
    /// The database URL the commands get.
    pub url: String,
    /// For looking under the store.
    pub raw: Raw,
    pub sim_url: String,
    _sim: KillOnDrop,
    /// A PostgreSQL schema, dropped with the campaign.
    _db: Option<TestDb>,
}

/// A lead as the database holds it, with its attempts' (action, step, status), oldest first.
#[derive(Debug, Clone, Default)]
pub struct LeadRow {
    pub state: String,
    pub attempts: Vec<(String, i64, String)>,
}

impl Campaign {
    /// A campaign on `db` with the simulator started with `sim_args`, and `toml` after a
    /// `[fluidtalk]` table that points at it.
    pub async fn new(db: TestDb, sim_args: &[&str], fluidtalk: &str, toml: &str) -> Self {
        let (sim, sim_url, dir) = Self::folder(sim_args, fluidtalk, toml);
        let (url, raw) = match &db.raw {
            Raw::Sqlite(p) => (db.url.clone(), Raw::Sqlite(p.clone())),
            Raw::Postgres(p) => (db.url.clone(), Raw::Postgres(p.clone())),
        };
        Self {
            dir,
            url,
            raw,
            sim_url,
            _sim: sim,
            _db: Some(db),
        }
    }

    /// A campaign on a SQLite file that the binary under test creates (`migrate`), so the
    /// same test runs against an older build too.
    pub async fn on_sqlite(sim_args: &[&str], fluidtalk: &str, toml: &str) -> Self {
        Self::on_sqlite_at(None, sim_args, fluidtalk, toml).await
    }

    /// `on_sqlite`, with the database file at `db` (default: `leads.db` in the folder).
    pub async fn on_sqlite_at(
        db: Option<&std::path::Path>,
        sim_args: &[&str],
        fluidtalk: &str,
        toml: &str,
    ) -> Self {
        let (sim, sim_url, dir) = Self::folder(sim_args, fluidtalk, toml);
        let file = db.map_or_else(|| dir.path().join("leads.db"), std::path::Path::to_path_buf);
        let url = format!("sqlite://{}", file.display());
        // An empty campaign file: the real one may be wrong on purpose.
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, "").expect("write empty.toml");
        let out = bin()
            .arg("migrate")
            .arg("--config")
            .arg(&empty)
            .current_dir(dir.path())
            .env("DATABASE_URL", &url)
            .output()
            .expect("run migrate");
        assert!(out.status.success(), "migrate: {}", text(&out.stderr));
        let raw = sqlx::SqlitePool::connect(&url)
            .await
            .expect("raw sqlite pool");
        Self {
            dir,
            url,
            raw: Raw::Sqlite(raw),
            sim_url,
            _sim: sim,
            _db: None,
        }
    }

    /// A campaign on the PostgreSQL database at `url` (a database of the test's own, made
    /// and dropped by the test), migrated by the binary under test.
    pub async fn on_postgres_url(
        url: &str,
        sim_args: &[&str],
        fluidtalk: &str,
        toml: &str,
    ) -> Self {
        let (sim, sim_url, dir) = Self::folder(sim_args, fluidtalk, toml);
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, "").expect("write empty.toml");
        let out = bin()
            .arg("migrate")
            .arg("--config")
            .arg(&empty)
            .env("DATABASE_URL", url)
            .output()
            .expect("run migrate");
        assert!(out.status.success(), "migrate: {}", text(&out.stderr));
        let raw = sqlx::PgPool::connect(url).await.expect("raw postgres pool");
        Self {
            dir,
            url: url.to_string(),
            raw: Raw::Postgres(raw),
            sim_url,
            _sim: sim,
            _db: None,
        }
    }

    fn folder(
        sim_args: &[&str],
        fluidtalk: &str,
        toml: &str,
    ) -> (KillOnDrop, String, tempfile::TempDir) {
        let (sim, sim_url) = spawn_sim_process(sim_args);
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("jobs.toml"),
            format!("[fluidtalk]\nbase_url = \"{sim_url}\"\n{fluidtalk}\n\n{toml}\n"),
        )
        .expect("write jobs.toml");
        (sim, sim_url, dir)
    }

    /// `fluidtalk-runner ARGS` in the campaign's folder, on its database.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::from(bin());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", &self.url)
            .env("FLUIDTALK_API_KEY", TEST_KEY)
            .env("FLUIDTALK_LOG", "warn")
            .env_remove("FLUIDTALK_BASE_URL")
            .env_remove("FLUIDTALK_CLOCK_OFFSET")
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }

    /// Runs a command to its end (within two minutes) and returns its output.
    pub async fn output(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.output_within(args, env, Duration::from_secs(120))
            .await
    }

    /// Runs a command to its end (within `limit`) and returns its output.
    pub async fn output_within(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::time::timeout(limit, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("`{}` did not end within {limit:?}", args.join(" ")))
            .expect("run the binary")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub async fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        self.ok_within(args, env, Duration::from_secs(120)).await
    }

    /// `ok`, within `limit`.
    pub async fn ok_within(&self, args: &[&str], env: &[(&str, &str)], limit: Duration) -> String {
        let out = self.output_within(args, env, limit).await;
        assert!(
            out.status.success(),
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Writes `rows` (after a `target` header) as `leads.csv` and imports it.
    pub async fn import(&self, rows: impl IntoIterator<Item = String>) {
        let body: String = rows.into_iter().map(|r| r + "\n").collect();
        std::fs::write(self.dir.path().join("leads.csv"), format!("target\n{body}"))
            .expect("write leads");
        self.ok(&["leads", "import", "leads.csv"], &[]).await;
    }

    pub async fn sim_log(&self) -> Vec<LogEntry> {
        fluidtalk_runner::fluidtalk::install_crypto_provider();
        reqwest::get(format!("{}/_sim/log", self.sim_url))
            .await
            .expect("GET /_sim/log")
            .json()
            .await
            .expect("log JSON")
    }

    /// Waits (bounded) until the simulator has answered `n` requests.
    pub async fn wait_for_calls(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.sim_log().await.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the run never got going"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until `n` attempts are in flight: calls under way, not answered.
    pub async fn wait_in_flight(&self, n: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .count("SELECT COUNT(*) FROM attempts WHERE status = 'in_flight'")
                .await;
            if found >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no call got under way"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One number from the database.
    pub async fn count(&self, sql: &'static str) -> i64 {
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Raw::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every lead by target, with its attempts.
    pub async fn leads(&self) -> BTreeMap<String, LeadRow> {
        let sql_leads = "SELECT target, state FROM leads";
        let sql_attempts = "SELECT l.target, a.action, a.step, a.status
                            FROM attempts a JOIN leads l ON l.id = a.lead_id ORDER BY a.id";
        type Attempts = Vec<(String, String, i64, String)>;
        let (leads, attempts): (Vec<(String, String)>, Attempts) = match &self.raw {
            Raw::Sqlite(p) => (
                sqlx::query_as(sql_leads).fetch_all(p).await.expect("leads"),
                sqlx::query_as(sql_attempts)
                    .fetch_all(p)
                    .await
                    .expect("attempts"),
            ),
            Raw::Postgres(p) => (
                sqlx::query_as(sql_leads).fetch_all(p).await.expect("leads"),
                sqlx::query_as(sql_attempts)
                    .fetch_all(p)
                    .await
                    .expect("attempts"),
            ),
        };
        let mut out: BTreeMap<String, LeadRow> = leads
            .into_iter()
            .map(|(t, state)| {
                (
                    t,
                    LeadRow {
                        state,
                        ..Default::default()
                    },
                )
            })
            .collect();
        for (t, action, step, status) in attempts {
            if let Some(l) = out.get_mut(&t) {
                l.attempts.push((action, step, status));
            }
        }
        out
    }

    /// Leads per state.
    pub async fn states(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for l in self.leads().await.into_values() {
            *out.entry(l.state).or_default() += 1;
        }
        out
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends `signal` to a child process.
pub fn signal(child: &tokio::process::Child, signal: i32) {
    let pid = child.id().expect("the child is running") as i32;
    // SAFETY: kill(2) with a pid this test started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
}

/// Waits (bounded) for a child to end; returns its output.
pub async fn finish(child: tokio::process::Child, limit: Duration) -> Output {
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .expect("the process ended in time")
        .expect("its output")
}
