//! Storage faults under a running daemon, as an operator meets them: the disk holding the
//! SQLite file fills up, PostgreSQL is switched read-only (as in a failover) with its
//! connections cut, the SQLite file is deleted. The real binary, the simulator as a
//! process, a real file system and the real server. Each checks what users rely on:
//! nothing sent twice, every answer the API gave is recorded once writes work again, at
//! most `concurrency` leads to review, and the fault is said (`/readyz`, `status`, the
//! metric, the log).
//!
//! The full-disk test mounts a tmpfs, so it needs root (CI runs as root): without it the
//! test fails, it does not skip.

use crate::common;

use common::campaign::{Campaign, finish, signal, text};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// One test at a time: each loads the machine with processes and timing.
use crate::common::HEAVY as SERIAL;

const TOKEN: &str = "9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d1f";
const CONCURRENCY: usize = 8;
const LEADS: usize = 120;

/// Every second, batches of 20, `CONCURRENCY` calls at a time.
fn campaign_toml() -> String {
    format!(
        "[limits]\nconcurrency = {CONCURRENCY}\nper_second = 1000\n\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\nbatch_size = 20\n"
    )
}

const SIM: &[&str] = &["--latency", "300ms", "--latency-max", "1s", "--seed", "7"];
const FLUIDTALK: &str = "timeout = \"10s\"";

/// A tmpfs of `size` mounted on a temp folder for the test's life.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            text(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes zeros to `fill` until the file system is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("fill");
        let mut f = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A daemon process with the HTTP API, its log kept as it comes.
struct Daemon {
    child: tokio::process::Child,
    base: String,
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Daemon {
    async fn start(c: &Campaign) -> Daemon {
        Self::start_with(c, &[]).await
    }

    async fn start_with(c: &Campaign, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = c.command(&["daemon", "--http", "127.0.0.1:0"]);
        cmd.env("FLUIDTALK_RUNNER_TOKEN", TOKEN)
            .env("FLUIDTALK_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the daemon starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read the log") {
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(rest) = line.split("addr=").nth(1) {
                    return rest.split_whitespace().next().unwrap_or("").to_string();
                }
            }
            panic!(
                "the daemon ended before it listened: {}",
                log.lock().unwrap()
            );
        })
        .await
        .expect("the daemon listens within a minute");
        // The rest of the log, read as it comes (a full pipe would stall the daemon).
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        fluidtalk_runner::fluidtalk::install_crypto_provider();
        Daemon {
            child,
            base: format!("http://{addr}"),
            log,
            http: reqwest::Client::new(),
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `/readyz`'s status and body.
    async fn readyz(&self) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .expect("readyz answers");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// The storage gauge from `/metrics`.
    async fn storage_gauge(&self) -> Option<f64> {
        let body = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .unwrap_or_default();
        body.lines()
            .find(|l| l.starts_with("fluidtalk_runner_storage_available "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    }

    /// `GET /v1/status`'s `storage` object. A read of the store may itself meet the full
    /// disk (a connection the pool opens anew): the API then answers 503 "try again", as
    /// documented, and is asked again, as a client would, for at most 20 s.
    async fn status_storage(&self) -> serde_json::Value {
        let v: serde_json::Value = until_some(
            Duration::from_secs(20),
            "GET /v1/status answers other than 503",
            || async {
                let r = self
                    .http
                    .get(format!("{}/v1/status", self.base))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .expect("status answers");
                let code = r.status().as_u16();
                let v: serde_json::Value = r.json().await.expect("status JSON");
                if code == 503 {
                    assert_eq!(v["error"]["kind"], "unavailable", "{v}");
                    return None;
                }
                assert_eq!(code, 200, "{v}\n{}", self.log());
                Some(v)
            },
        )
        .await;
        v["storage"].clone()
    }

    /// SIGTERM, then the exit status within a minute.
    async fn stop(self) -> (Option<i32>, String) {
        signal(&self.child, libc::SIGTERM);
        let out = finish(self.child, Duration::from_secs(60)).await;
        (out.status.code(), self.log.lock().unwrap().clone())
    }
}

/// Polls `check` every 100 ms until it holds, for at most `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    until_some(limit, what, || {
        let checked = check();
        async move { checked.await.then_some(()) }
    })
    .await
}

/// The first value `check` gives, asked every 100 ms; fails past `limit`.
async fn until_some<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What every fault test checks at the end, once the campaign is done: each lead was
/// called once, every call the simulator answered is recorded as sent with its message
/// kept in the outbox, nothing is left in flight, at most `CONCURRENCY` leads to review.
async fn nothing_twice_and_every_answer_recorded(c: &Campaign) {
    let log = c.sim_log().await;
    let mut per_target: HashMap<String, usize> = HashMap::new();
    for e in &log {
        *per_target.entry(e.target.clone()).or_default() += 1;
    }
    let twice: Vec<_> = per_target.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let sent = c
        .count("SELECT COUNT(*) FROM attempts WHERE status = 'sent'")
        .await as usize;
    assert_eq!(
        sent,
        log.len(),
        "every call the simulator answered is recorded as sent"
    );
    let outbox = c.count("SELECT COUNT(*) FROM outbox").await as usize;
    assert_eq!(outbox, log.len(), "every answer's message is kept");
    assert_eq!(
        c.count("SELECT COUNT(*) FROM attempts WHERE status = 'in_flight'")
            .await,
        0
    );
    let states = c.states().await;
    let review = states.get("needs_review").copied().unwrap_or(0);
    assert!(review <= CONCURRENCY, "{states:?}");
    assert_eq!(
        states.get("contacted").copied().unwrap_or(0) + review,
        LEADS,
        "{states:?}"
    );
}

/// Waits (bounded) until no lead is `new`: the campaign has worked through every lead.
async fn until_every_lead_is_worked(c: &Campaign) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = c
            .count("SELECT COUNT(*) FROM leads WHERE state = 'new'")
            .await;
        if left == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} leads still new: {:?}",
            c.states().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Defect 1 of issue 19: a full disk used to break the daemon until restart ("begin_with
/// at non-zero transaction depth") and lose 112 of 134 answers. Now the runner holds the
/// answers it has (at most `concurrency`), starts no call, says so, and writes them once
/// space is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_holds_the_answers_until_space_is_back_and_loses_none() {
    let _one = SERIAL.lock().await;
    let disk = Tmpfs::mount("16m");
    let db = disk.path().join("leads.db");
    let c = Campaign::on_sqlite_at(Some(&db), SIM, FLUIDTALK, &campaign_toml()).await;
    c.import((0..LEADS).map(|i| format!("@d{i:03}"))).await;
    let d = Daemon::start(&c).await;
    c.wait_for_calls(16).await;

    let filler = disk.fill();
    until(
        Duration::from_secs(20),
        "the daemon meets the full disk",
        || async { d.storage_gauge().await == Some(0.0) },
    )
    .await;
    let (code, body) = d.readyz().await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("storage unavailable"), "{body}");
    let storage = d.status_storage().await;
    assert_eq!(storage["available"], false, "{storage}");
    assert!(storage["outage"]["since"].is_string(), "{storage}");
    let status = c.ok(&["status"], &[]).await;
    assert!(
        status.contains("storage unavailable") && status.contains("is full"),
        "{status}"
    );
    // While the disk stays full no call starts: at most the calls then in flight end.
    let during = c.sim_log().await.len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = c.sim_log().await.len();
    assert!(
        after - during <= CONCURRENCY,
        "{} calls made with the disk full",
        after - during
    );

    std::fs::remove_file(&filler).expect("free the disk");
    until_every_lead_is_worked(&c).await;
    until(
        Duration::from_secs(20),
        "the gauge says storage is back",
        || async { d.storage_gauge().await == Some(1.0) },
    )
    .await;
    assert_eq!(d.readyz().await.0, 200);
    let log = d.log();
    assert!(log.contains("STORAGE UNAVAILABLE"), "{log}");
    assert!(log.contains("storage available again"), "{log}");
    assert!(!log.contains("non-zero transaction depth"), "{log}");
    let (code, log) = d.stop().await;
    assert_eq!(code, Some(0), "{log}");
    nothing_twice_and_every_answer_recorded(&c).await;
}

/// A crash while the disk is full loses only the answers held then: at most `concurrency`
/// leads go to review once their leases run out, none is called again, and a new daemon
/// works the rest once space is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_during_a_full_disk_sends_at_most_concurrency_leads_to_review() {
    let _one = SERIAL.lock().await;
    let disk = Tmpfs::mount("16m");
    let db = disk.path().join("leads.db");
    let c = Campaign::on_sqlite_at(Some(&db), SIM, FLUIDTALK, &campaign_toml()).await;
    c.import((0..LEADS).map(|i| format!("@k{i:03}"))).await;
    let mut d = Daemon::start(&c).await;
    c.wait_for_calls(16).await;
    let filler = disk.fill();
    until(
        Duration::from_secs(20),
        "the daemon meets the full disk",
        || async { d.storage_gauge().await == Some(0.0) },
    )
    .await;
    // Let the calls then in flight come back and be held.
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.child.kill().await.expect("SIGKILL");
    std::fs::remove_file(&filler).expect("free the disk");
    // Hours later every lease has run out: recovery settles what the crash cut off.
    let later = Daemon::start_with(&c, &[("FLUIDTALK_CLOCK_OFFSET", "3h")]).await;
    until_every_lead_is_worked(&c).await;
    let (code, log) = later.stop().await;
    assert_eq!(code, Some(0), "{log}");

    let log = c.sim_log().await;
    let mut per_target: HashMap<String, usize> = HashMap::new();
    for e in &log {
        *per_target.entry(e.target.clone()).or_default() += 1;
    }
    let twice: Vec<_> = per_target.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let states = c.states().await;
    let review = states.get("needs_review").copied().unwrap_or(0);
    assert!(review <= CONCURRENCY, "{states:?}");
    assert_eq!(
        states.get("contacted").copied().unwrap_or(0) + review,
        LEADS,
        "{states:?}"
    );
    assert_eq!(
        c.count("SELECT COUNT(*) FROM attempts WHERE status = 'in_flight'")
            .await,
        0
    );
    // Every answer not lost with the process is recorded.
    let sent = c
        .count("SELECT COUNT(*) FROM attempts WHERE status = 'sent'")
        .await as usize;
    assert!(
        sent + review >= log.len(),
        "{sent} sent + {review} to review < {} answered",
        log.len()
    );
}

/// Defect 2 of issue 19: PostgreSQL switched read-only for a while, as in a failover
/// (sessions cut, new ones read-only, then cut again once the new primary takes writes),
/// used to lose the answers in hand. Now they are held and written afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn postgresql_switched_read_only_holds_the_answers_until_writes_work_again() {
    let Ok(admin_url) = std::env::var(common::db::PG_ENV) else {
        eprintln!("NOTE: {} is not set: skipped", common::db::PG_ENV);
        return;
    };
    let _one = SERIAL.lock().await;
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("PostgreSQL answers");
    let name = format!(
        "ft_readonly_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    );
    let exec = |sql: String| {
        let admin = admin.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&admin)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    };
    exec(format!("CREATE DATABASE {name}")).await;
    let url = {
        let mut u = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        u.set_path(&name);
        u.to_string()
    };
    let cut = || {
        exec(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
    };
    {
        let c = Campaign::on_postgres_url(&url, SIM, FLUIDTALK, &campaign_toml()).await;
        c.import((0..LEADS).map(|i| format!("@p{i:03}"))).await;
        let d = Daemon::start(&c).await;
        c.wait_for_calls(16).await;

        exec(format!(
            "ALTER DATABASE {name} SET default_transaction_read_only = on"
        ))
        .await;
        cut().await;
        until(
            Duration::from_secs(20),
            "the daemon meets the read-only server",
            || async { d.storage_gauge().await == Some(0.0) },
        )
        .await;
        let (code, body) = d.readyz().await;
        assert_eq!(code, 503, "{body}");
        let status = c.ok(&["status"], &[]).await;
        assert!(
            status.contains("storage unavailable") && status.contains("read-only"),
            "{status}"
        );
        let during = c.sim_log().await.len();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = c.sim_log().await.len();
        assert!(
            after - during <= CONCURRENCY,
            "{} calls made while the server took no writes",
            after - during
        );

        exec(format!(
            "ALTER DATABASE {name} RESET default_transaction_read_only"
        ))
        .await;
        cut().await;
        until_every_lead_is_worked(&c).await;
        until(
            Duration::from_secs(20),
            "the gauge says storage is back",
            || async { d.storage_gauge().await == Some(1.0) },
        )
        .await;
        let log = d.log();
        assert!(log.contains("STORAGE UNAVAILABLE"), "{log}");
        let (code, log) = d.stop().await;
        assert_eq!(code, Some(0), "{log}");
        nothing_twice_and_every_answer_recorded(&c).await;
        if let common::db::Raw::Postgres(p) = &c.raw {
            p.close().await;
        }
    }
    cut().await;
    exec(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// Defect 3 of issue 19: the SQLite file deleted under a running daemon went unnoticed (75
/// calls made, every record lost). Now the daemon notices before its next call, stops
/// calling and exits 8; `status` does not create a new, empty database in its place.
#[tokio::test(flavor = "multi_thread")]
async fn the_sqlite_file_deleted_under_a_running_daemon_stops_it_with_exit_8() {
    let _one = SERIAL.lock().await;
    let c = Campaign::on_sqlite(SIM, FLUIDTALK, &campaign_toml()).await;
    c.import((0..LEADS).map(|i| format!("@x{i:03}"))).await;
    let d = Daemon::start(&c).await;
    c.wait_for_calls(16).await;
    let db = c.dir.path().join("leads.db");
    std::fs::remove_file(&db).expect("delete the database file");
    let before = c.sim_log().await.len();
    let (code, log) = tokio::time::timeout(Duration::from_secs(60), d.stop_on_its_own())
        .await
        .expect("the daemon stops by itself");
    assert_eq!(code, Some(8), "{log}");
    assert!(log.contains("was deleted or moved"), "{log}");
    let after = c.sim_log().await.len();
    assert!(
        after - before <= CONCURRENCY,
        "{} calls made after the file was deleted",
        after - before
    );
    let out = c.output(&["status"], &[]).await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("there is no lead database"),
        "{}",
        text(&out.stderr)
    );
    assert!(!db.exists(), "status created a new database");
}

impl Daemon {
    /// Waits for the daemon to exit by itself; its exit code and log.
    async fn stop_on_its_own(self) -> (Option<i32>, String) {
        let out = self.child.wait_with_output().await.expect("its output");
        (out.status.code(), self.log.lock().unwrap().clone())
    }
}

/// Commands that only read, or that only change an existing campaign, never create a
/// database where there is none (run in the wrong folder, or after the file was lost).
#[tokio::test(flavor = "multi_thread")]
async fn commands_that_read_never_create_a_database() {
    let c = Campaign::on_sqlite(&[], "", &campaign_toml()).await;
    let db = c.dir.path().join("missing.db");
    let url = format!("sqlite://{}", db.display());
    for args in [
        &["status"][..],
        &["leads", "list"],
        &["leads", "show", "@ana"],
        &["outbox", "list"],
        &["forecast", "--days", "1"],
        &["pause", "list"],
        &["leads", "retry", "@ana"],
        &["outbox", "ack", "1"],
    ] {
        let out = c.output(args, &[("DATABASE_URL", &url)]).await;
        assert_eq!(
            out.status.code(),
            Some(6),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("there is no lead database"),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
    // A command that starts a campaign does create it.
    c.ok(&["leads", "add", "@ana"], &[("DATABASE_URL", &url)])
        .await;
    assert!(db.exists());
}
