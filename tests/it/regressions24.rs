//! Defects a hostile review of issue 24's work proved, each fixed and kept here as its
//! regression test: a job removed and put back by two reloads keeps its overlap guard; a
//! send window's next opening across a spring-forward gap; a SIGHUP while the campaign
//! file is a FIFO neither blocks the daemon nor its stop.

use crate::common;
use chrono::{DateTime, TimeZone, Utc};
use common::{TEST_KEY, spawn_sim};
use fluidtalk_runner::clock::ManualClock;
use fluidtalk_runner::config;
use fluidtalk_runner::daemon::{Daemon, Tick};
use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::runner::Runner;
use fluidtalk_runner::sim::SimConfig;
use fluidtalk_runner::store::LeadInput;
use std::sync::Arc;

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, s)
        .single()
        .expect("valid")
}

async fn daemon_at(
    start: DateTime<Utc>,
    jobs: &str,
    sim: SimConfig,
    runner: &str,
    db: Option<&common::db::TestDb>,
) -> (
    Daemon,
    Arc<ManualClock>,
    Option<common::db::TestDb>,
    fluidtalk_runner::sim::Simulator,
) {
    let (url, simulator) = spawn_sim(sim).await;
    let owned = if db.is_none() {
        Some(common::db::sqlite().await)
    } else {
        None
    };
    let store = db.or(owned.as_ref()).expect("a database").store.clone();
    let text = format!("[fluidtalk]\nbase_url = \"{url}\"\n{jobs}");
    let config = Arc::new(config::parse(std::path::Path::new("jobs.toml"), &text).expect("parses"));
    let mut cc = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
    cc.base_url = url;
    let client = Client::new(cc).expect("client");
    let clock = Arc::new(ManualClock::new(start));
    let dispatcher = Runner::new(
        store.clone(),
        client,
        config.clone(),
        clock.clone(),
        runner.into(),
    );
    let daemon = Daemon::new(
        &config,
        store,
        Some(dispatcher),
        clock.clone(),
        runner.into(),
    );
    (daemon, clock, owned, simulator)
}

/// New leads with these targets, imported at `at`.
async fn import<T: AsRef<str>>(db: &common::db::TestDb, targets: &[T], at: DateTime<Utc>) {
    let mut s = db.store.begin_import(false).await.expect("import");
    s.upsert(
        targets
            .iter()
            .map(|t| LeadInput {
                target: t.as_ref().into(),
                ..Default::default()
            })
            .collect(),
        at,
    )
    .await
    .expect("upsert");
    s.finish(true).await.expect("finish");
}

/// A reload that removes a job while its run is going, then a reload that adds it back:
/// the job's overlap guard is lost (the re-added slot gets a fresh `running` flag), so a
/// second run of the same job starts while the first is still calling. `Daemon::reload`
/// promises "a removed job fires no more (a run going finishes)" and "a run going
/// finishes ... before the job runs again".
#[tokio::test(flavor = "multi_thread")]
async fn reload_remove_then_readd_keeps_the_overlap_guard() {
    let jobs = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\nmax_per_run = 3\n";
    let sim = SimConfig {
        latency: std::time::Duration::from_millis(500),
        ..Default::default()
    };
    let start = utc(2026, 11, 23, 10, 0, 0);
    let (d, clock, db, simulator) = daemon_at(start, jobs, sim, "r1", None).await;
    let db = db.expect("own db");
    import(
        &db,
        &(0..12).map(|i| format!("@o{i}")).collect::<Vec<_>>(),
        start,
    )
    .await;
    clock.set(start + chrono::Duration::seconds(1));
    let first = d.poll().await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, Tick::Started);

    let parse =
        |text: &str| config::parse(std::path::Path::new("jobs.toml"), text).expect("parses");
    // SIGHUP 1: the job removed (e.g. commented out by mistake); SIGHUP 2: put back.
    let gone = parse("[[job]]\nname = \"other\"\nkind = \"opener\"\nschedule = \"0 0 9 30 2 *\"\n");
    assert_eq!(d.reload(&gone).removed, ["openers"]);
    let back = parse(jobs);
    assert_eq!(d.reload(&back).added, ["openers"]);

    clock.set(start + chrono::Duration::seconds(2));
    let second = d.poll().await;
    let ticks: Vec<Tick> = second.iter().map(|t| t.1).collect();
    for (_, _, h) in first.into_iter().chain(second) {
        if let Some(h) = h {
            let _ = h.await;
        }
    }
    let log = simulator.log();
    assert_eq!(
        ticks,
        [Tick::SkippedOverlap],
        "the first run of \"openers\" was still calling: a second run of the same job \
         must not start (calls made: {})",
        log.len()
    );
}

/// The send window's next opening across a spring-forward gap: a window 02:30-05:00 in
/// Europe/Berlin on 2027-03-28 (02:00 -> 03:00). The window is open at 03:00 that day
/// (the planner sends then), but the reason says it opens the next day at 02:30,
/// because `why::next_opening` drops a day whose `from` falls in the gap.
#[tokio::test(flavor = "multi_thread")]
async fn send_window_next_opening_across_the_spring_gap() {
    let (_sim, url) = common::spawn_sim_process(&[]);
    let db = common::db::sqlite().await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("jobs.toml"),
        format!(
            "[fluidtalk]\nbase_url = \"{url}\"\n[[job]]\nname = \"openers\"\nkind = \"opener\"\n\
             schedule = \"0 */15 * * * *\"\ntimezone = \"Europe/Berlin\"\n\
             send_window = {{ days = \"mon-sun\", from = \"02:30\", to = \"05:00\" }}\n"
        ),
    )
    .expect("jobs");
    std::fs::write(dir.path().join("l.csv"), "target\n@dst1\n@dst2\n").expect("leads");
    let run = |args: &[&str]| {
        let out = common::bin()
            .args(args)
            .current_dir(dir.path())
            .env("DATABASE_URL", &db.url)
            .env("FLUIDTALK_API_KEY", TEST_KEY)
            .env_remove("FLUIDTALK_RUNNER_CONFIG")
            .env_remove("FLUIDTALK_CLOCK_OFFSET")
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v
    };
    run(&["leads", "import", "l.csv", "--json"]);
    // 01:00 local (CET) on the day of the change: closed.
    let plan = run(&[
        "run",
        "openers",
        "--dry-run",
        "--json",
        "--at",
        "2027-03-28T01:00:00+01:00",
    ]);
    let reasons = plan
        .as_array()
        .expect("array")
        .iter()
        .find_map(|e| e.get("reasons").cloned())
        .expect("a reason");
    // 03:10 local (CEST) the same day: the planner plans calls, the window is open.
    let open = run(&[
        "run",
        "openers",
        "--dry-run",
        "--json",
        "--at",
        "2027-03-28T03:10:00+02:00",
    ]);
    let calls = open
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e.get("action").is_some())
        .count();
    assert_eq!(
        calls, 2,
        "the window is open at 03:10 on the day of the change: {open}"
    );
    assert_eq!(
        reasons[0]["until"], "2027-03-28T03:00:00+02:00",
        "the window opens when the gap ends, not a day later: {reasons}"
    );
}

/// A daemon process (`daemon` with `extra` args) in `dir`, its stderr lines on a channel.
#[cfg(unix)]
fn start_daemon(
    dir: &std::path::Path,
    extra: &[&str],
) -> (common::KillOnDrop, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = common::KillOnDrop(
        common::bin()
            .arg("daemon")
            .args(extra)
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env_remove("FLUIDTALK_RUNNER_CONFIG")
            .env_remove("FLUIDTALK_LOG_FORMAT")
            .env("FLUIDTALK_LOG", "info")
            .env("FLUIDTALK_API_KEY", TEST_KEY)
            .env("FLUIDTALK_RUNNER_TOKEN", REVIEW_TOKEN)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the daemon"),
    );
    let stderr = child.0.stderr.take().expect("piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

#[cfg(unix)]
const REVIEW_TOKEN: &str = "review24-token-6f1d0c3b9a2e4d5f8a7b6c";

#[cfg(unix)]
fn wait_line(
    lines: &std::sync::mpsc::Receiver<String>,
    log: &mut String,
    what: &str,
    matches: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if matches(&line) {
                    return line;
                }
            }
            Err(_) => panic!("no line {what} within 30 s: {log}"),
        }
    }
}

#[cfg(unix)]
fn kill(child: &common::KillOnDrop, signal: i32) {
    // SAFETY: a signal to our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, signal) }, 0);
}

#[cfg(unix)]
fn folder(url: &str, jobs: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobs.toml"),
        format!("[fluidtalk]\nbase_url = \"{url}\"\n{jobs}"),
    )
    .expect("write jobs.toml");
    dir
}

/// SIGHUP when the campaign file has become a FIFO (or any file whose read blocks):
/// `reload_on_hangup` reads it with a blocking `std::fs::read_to_string` inside a tokio
/// task, so a runtime worker is stuck; SIGTERM then no longer stops the daemon.
#[cfg(unix)]
#[test]
fn sighup_on_a_fifo_campaign_file_still_stops_on_sigterm() {
    let (_sim, url) = common::spawn_sim_process(&[]);
    let dir = folder(
        &url,
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 30 2 *\"\n",
    );
    let (mut child, lines) = start_daemon(dir.path(), &[]);
    let mut log = String::new();
    wait_line(&lines, &mut log, "scheduled", |l| l.contains("never fires"));
    let path = dir.path().join("jobs.toml");
    std::fs::remove_file(&path).expect("rm");
    let c = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("cstr");
    // SAFETY: a plain mkfifo on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    kill(&child, libc::SIGHUP);
    wait_line(&lines, &mut log, "SIGHUP seen", |l| l.contains("SIGHUP"));
    // The FIFO is refused at once (not a regular file), not waited on.
    wait_line(&lines, &mut log, "the reload refused", |l| {
        l.contains("not reloaded") && l.contains("not a regular file")
    });
    kill(&child, libc::SIGTERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    while let Ok(l) = lines.try_recv() {
        log.push_str(&l);
        log.push('\n');
    }
    // Unblock the reader so the process can go (KillOnDrop kills it anyway).
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_nonblock(&path);
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "SIGTERM must stop the daemon within 20 s even with a reload reading a FIFO: {status:?}\n{log}"
    );
}

#[cfg(unix)]
trait NonBlock {
    fn custom_flags_nonblock(&mut self, path: &std::path::Path) -> std::io::Result<std::fs::File>;
}

#[cfg(unix)]
impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self, path: &std::path::Path) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK).open(path)
    }
}
