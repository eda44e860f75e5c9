//! The daemon's ticks with an injected clock: local time across daylight-saving changes,
//! the overlap guard, one runner per tick; and a real process stopped with SIGTERM.

use crate::common;

use chrono::{DateTime, TimeZone, Utc};
use common::{TEST_KEY, spawn_sim};
use fluidtalk_runner::clock::{Clock, ManualClock};
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

async fn ticks(d: &Daemon) -> Vec<Tick> {
    let mut out = Vec::new();
    for (_, tick, handle) in d.poll().await {
        if let Some(h) = handle {
            h.await.expect("the run task");
        }
        out.push(tick);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nine_oclock_berlin_job_fires_at_nine_local_across_the_spring_change() {
    let jobs = "[[job]]\nname = \"morning\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\ntimezone = \"Europe/Berlin\"\n";
    // Friday 2026-03-27, 12:00 UTC; the clocks go forward on Sunday the 29th.
    let (d, clock, _db, _sim) = daemon_at(
        utc(2026, 3, 27, 12, 0, 0),
        jobs,
        SimConfig::default(),
        "r1",
        None,
    )
    .await;
    assert_eq!(
        d.next_fires()[0].1,
        Some(utc(2026, 3, 28, 8, 0, 0)),
        "09:00 CET"
    );
    clock.set(utc(2026, 3, 28, 7, 59, 59));
    assert!(ticks(&d).await.is_empty(), "not a second early");
    clock.set(utc(2026, 3, 28, 8, 0, 0));
    assert_eq!(ticks(&d).await, [Tick::Started]);
    assert_eq!(
        d.next_fires()[0].1,
        Some(utc(2026, 3, 29, 7, 0, 0)),
        "09:00 CEST is 07:00 UTC"
    );
    clock.set(utc(2026, 3, 29, 7, 0, 0));
    assert_eq!(ticks(&d).await, [Tick::Started]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_during_the_jobs_own_run_is_skipped_and_missed_ticks_are_not_replayed() {
    let jobs = "[[job]]\nname = \"every-second\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\n";
    let sim = SimConfig {
        latency: std::time::Duration::from_millis(400),
        ..Default::default()
    };
    let (d, clock, db, simulator) =
        daemon_at(utc(2026, 11, 23, 10, 0, 0), jobs, sim, "r1", None).await;
    let db = db.expect("own db");
    import(&db, &["@slow"], utc(2026, 11, 23, 9, 0, 0)).await;

    clock.set(utc(2026, 11, 23, 10, 0, 1));
    let first = d.poll().await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, Tick::Started);
    clock.set(utc(2026, 11, 23, 10, 0, 2));
    let second = d.poll().await;
    assert_eq!(
        second[0].1,
        Tick::SkippedOverlap,
        "the first run is still calling"
    );
    for (_, _, h) in first {
        h.expect("a task").await.expect("run");
    }
    assert_eq!(simulator.log().len(), 1, "one call, by one run");
    // Down for an hour: one tick fires now, the 3,600 missed are not replayed.
    clock.set(utc(2026, 11, 23, 11, 0, 2));
    assert_eq!(ticks(&d).await, [Tick::Started]);
    assert_eq!(d.next_fires()[0].1, Some(utc(2026, 11, 23, 11, 0, 3)));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runners_on_one_database_never_both_run_one_tick() {
    let jobs = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n";
    let start = utc(2026, 11, 23, 10, 0, 0);
    let (a, clock_a, db, sim_a) = daemon_at(
        start + chrono::Duration::milliseconds(49),
        jobs,
        SimConfig::default(),
        "runner-a",
        None,
    )
    .await;
    let db = db.expect("db");
    let (b, clock_b, _, sim_b) = daemon_at(
        start + chrono::Duration::milliseconds(451),
        jobs,
        SimConfig::default(),
        "runner-b",
        Some(&db),
    )
    .await;
    import(
        &db,
        &(0..5).map(|i| format!("@t{i}")).collect::<Vec<_>>(),
        start,
    )
    .await;
    // The two runners started at different fractions of a second, as real ones do.
    let tick = utc(2026, 11, 23, 10, 15, 0);
    clock_a.set(tick + chrono::Duration::milliseconds(313));
    clock_b.set(tick + chrono::Duration::milliseconds(717));
    let ta = ticks(&a).await;
    let tb = ticks(&b).await;
    assert_eq!(ta, [Tick::Started]);
    assert_eq!(tb, [Tick::TakenElsewhere]);
    assert_eq!(sim_a.log().len() + sim_b.log().len(), 5, "each lead once");
    assert!(sim_b.log().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_whose_claim_loses_its_connection_is_tried_again_on_the_next_heartbeat() {
    let Some(mut db) = common::db::postgres().await else {
        return;
    };
    // The daemon's connections are tagged, so the test can find and terminate them.
    let own = sqlx::PgPool::connect(&db.url).await.expect("own pool");
    let app = format!("ftr-daemon-{}", std::process::id());
    db.store = fluidtalk_runner::store::open(&format!("{}&application_name={app}", db.url))
        .await
        .expect("tagged store");
    let jobs = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n";
    let start = utc(2026, 11, 23, 10, 0, 0);
    let (d, clock, _, sim) =
        daemon_at(start, jobs, SimConfig::default(), "runner-a", Some(&db)).await;
    import(
        &db,
        &(0..3).map(|i| format!("@t{i}")).collect::<Vec<_>>(),
        start,
    )
    .await;
    clock.set(utc(2026, 11, 23, 10, 15, 0) + chrono::Duration::milliseconds(200));

    // The tick's claim waits on a lock, and its connection is terminated while it waits.
    let mut tx = own.begin().await.expect("begin");
    sqlx::query("LOCK TABLE ticks IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .expect("lock");
    let d = Arc::new(d);
    let first = tokio::spawn({
        let d = d.clone();
        async move { ticks(&d).await }
    });
    let mut killed = 0i64;
    for _ in 0..500 {
        killed = sqlx::query_scalar(
            "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = $1 AND wait_event_type = 'Lock'",
        )
        .bind(&app)
        // Another connection: a transaction keeps its first view of pg_stat_activity.
        .fetch_one(&own)
        .await
        .expect("terminate");
        if killed > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tx.commit().await.expect("unlock");
    assert_eq!(killed, 1, "the claim was waiting, and was cut off");
    assert_eq!(first.await.expect("poll"), [Tick::Retrying]);
    assert!(sim.log().is_empty());

    // The next heartbeat claims it (on a new connection) and runs it, once.
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(ticks(&d).await, [Tick::Started]);
    assert_eq!(sim.log().len(), 3);
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(ticks(&d).await, [], "the tick ran once");
}

#[cfg(unix)]
#[test]
fn sigterm_takes_no_new_leads_lets_calls_in_flight_finish_and_exits_0() {
    let (_sim, url) = common::spawn_sim_process(&["--latency", "700ms"]);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobs.toml"),
        format!(
            "[fluidtalk]\nbase_url = \"{url}\"\n[limits]\nconcurrency = 1\n[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\nbatch_size = 1\n"
        ),
    )
    .expect("write");
    let leads: String = (0..20).map(|i| format!("@p{i}\n")).collect();
    std::fs::write(dir.path().join("l.csv"), format!("target\n{leads}")).expect("write");
    let run = |args: &[&str]| {
        common::bin()
            .args(args)
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env("FLUIDTALK_API_KEY", TEST_KEY)
            .output()
            .expect("run")
    };
    assert!(run(&["leads", "import", "l.csv"]).status.success());
    let mut daemon = common::bin()
        .arg("daemon")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("FLUIDTALK_API_KEY", TEST_KEY)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the daemon");
    // Wait (bounded) until the simulator has answered a call: the daemon is mid-run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("{url}/_sim/state")])
            .output();
        let n = out
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["requests"].as_u64())
            .unwrap_or(0);
        if n >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon made no call"
        );
        std::thread::yield_now();
    }
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let status = daemon.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let list = run(&["leads", "list", "--json"]);
    let leads: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let states: Vec<&str> = leads
        .as_array()
        .expect("array")
        .iter()
        .map(|l| l["state"].as_str().unwrap_or(""))
        .collect();
    let contacted = states.iter().filter(|s| **s == "contacted").count();
    assert!(
        (1..20).contains(&contacted),
        "it stopped taking leads: {contacted} contacted"
    );
    assert!(
        states.iter().all(|s| *s == "contacted" || *s == "new"),
        "nothing left in doubt: {states:?}"
    );
    // Every call made was recorded: no lease or attempt left in flight.
    let out = run(&["leads", "show", "@p0", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(shown["lead"]["lease_owner"].is_null());
    for a in shown["attempts"].as_array().expect("attempts") {
        assert_ne!(a["status"], "in_flight");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_daemon_logs_each_ticks_plan_and_writes_nothing() {
    let db = common::db::sqlite().await;
    import(&db, &["@p"], utc(2026, 11, 23, 9, 0, 0)).await;
    let text = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n";
    let config = config::parse(std::path::Path::new("jobs.toml"), text).expect("parses");
    let ro = fluidtalk_runner::store::open_read_only(&db.url)
        .await
        .expect("read-only");
    let clock = Arc::new(ManualClock::new(utc(2026, 11, 23, 10, 0, 0)));
    let d = Daemon::new(&config, ro, None, clock.clone(), "dry".into());
    clock.set(utc(2026, 11, 23, 10, 15, 0));
    assert_eq!(ticks(&d).await, [Tick::Planned(1)]);
    let lead = db.store.get_lead("@p").await.expect("get").expect("exists");
    assert!(
        lead.lease_owner.is_none()
            && db
                .store
                .attempts_for(lead.id)
                .await
                .expect("attempts")
                .is_empty()
    );
    // A dry tick claims nothing: a live runner can still take it.
    assert!(
        db.store
            .claim_tick(&fluidtalk_runner::store::Tick {
                job: "openers",
                scheduled_at: utc(2026, 11, 23, 10, 15, 0),
                runner_id: "x",
                now: clock.now()
            })
            .await
            .expect("claim")
    );
}

/// A stop right after start (`systemctl stop` as the unit comes up) used to kill the daemon
/// by the signal's default action (exit by SIGTERM, no "daemon stopped"): the handler was
/// installed only when the daemon first waited for it, after logging its schedule.
#[cfg(unix)]
#[test]
fn sigterm_right_after_start_is_a_clean_stop() {
    use std::io::BufRead;
    let (_sim, url) = common::spawn_sim_process(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobs.toml"),
        format!(
            "[fluidtalk]\nbase_url = \"{url}\"\n[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\n"
        ),
    )
    .expect("write");
    let mut daemon = common::KillOnDrop(
        common::bin()
            .arg("daemon")
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("FLUIDTALK_LOG")
            .env_remove("FLUIDTALK_LOG_FORMAT")
            .env("FLUIDTALK_API_KEY", TEST_KEY)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the daemon"),
    );
    let mut stderr = std::io::BufReader::new(daemon.0.stderr.take().expect("piped"));
    let mut log = String::new();
    // The last line before the daemon waits for a signal.
    while !log.contains("scheduled") {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "the daemon ended early: {log}");
        log.push_str(&line);
    }
    // SAFETY: sending a signal to our own child, not yet reaped.
    assert_eq!(
        unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) },
        0
    );
    std::io::Read::read_to_string(&mut stderr, &mut log).expect("read the rest");
    let status = daemon.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{status}: {log}");
    assert!(log.contains("daemon stopped"), "{log}");
}

/// `Daemon::reload` (what SIGHUP does with a checked file): a removed job fires no more, a
/// new one fires on its schedule, and a kept job's run going finishes under the settings
/// it started with, its overlap guard kept, before the new settings apply.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_replaces_the_jobs_and_a_run_going_finishes_as_it_started() {
    let jobs = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\nmax_per_run = 3\n[[job]]\nname = \"quarterly\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n";
    let sim = SimConfig {
        latency: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let start = utc(2026, 11, 23, 10, 0, 0);
    let (d, clock, db, simulator) = daemon_at(start, jobs, sim, "r1", None).await;
    let db = db.expect("own db");
    import(
        &db,
        &(0..6).map(|i| format!("@r{i}")).collect::<Vec<_>>(),
        start,
    )
    .await;
    clock.set(start + chrono::Duration::seconds(1));
    let first = d.poll().await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, Tick::Started);

    // The file now: "openers" one call a run, "quarterly" gone, "hourly" new.
    let new = config::parse(
        std::path::Path::new("jobs.toml"),
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\nmax_per_run = 1\n[[job]]\nname = \"hourly\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n",
    )
    .expect("parses");
    let r = d.reload(&new);
    assert_eq!(r.added, ["hourly"]);
    assert_eq!(r.removed, ["quarterly"]);
    assert_eq!(r.kept, ["openers"]);
    let names: Vec<String> = d.next_fires().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["openers", "hourly"]);

    clock.set(start + chrono::Duration::seconds(2));
    let second = d.poll().await;
    assert_eq!(
        second.iter().map(|t| t.1).collect::<Vec<_>>(),
        [Tick::SkippedOverlap],
        "the run going keeps its job's overlap guard"
    );
    for (_, _, h) in first {
        h.expect("a task").await.expect("run");
    }
    assert_eq!(simulator.log().len(), 3, "the run finished as it started");
    clock.set(start + chrono::Duration::seconds(3));
    assert_eq!(ticks(&d).await, [Tick::Started]);
    assert_eq!(
        simulator.log().len(),
        4,
        "the next run takes the new max_per_run"
    );

    // 10:15: "quarterly" was removed; 11:00: "hourly" fires (and "openers").
    clock.set(utc(2026, 11, 23, 10, 15, 0));
    let at_quarter: Vec<String> = d.poll().await.into_iter().map(|t| t.0).collect();
    assert_eq!(at_quarter, ["openers"], "the removed job does not fire");
    clock.set(utc(2026, 11, 23, 11, 0, 0));
    let at_hour: Vec<String> = d.poll().await.into_iter().map(|t| t.0).collect();
    assert_eq!(at_hour, ["openers", "hourly"]);
}

/// A daemon process with its stderr read line by line.
#[cfg(unix)]
struct Running {
    child: common::KillOnDrop,
    lines: std::sync::mpsc::Receiver<String>,
    log: String,
}

#[cfg(unix)]
impl Running {
    fn start(dir: &std::path::Path) -> Running {
        use std::io::BufRead;
        let mut child = common::KillOnDrop(
            common::bin()
                .arg("daemon")
                .current_dir(dir)
                .env_remove("DATABASE_URL")
                .env_remove("FLUIDTALK_RUNNER_CONFIG")
                .env_remove("FLUIDTALK_LOG_FORMAT")
                .env("FLUIDTALK_LOG", "info")
                .env("FLUIDTALK_API_KEY", TEST_KEY)
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
        Running {
            child,
            lines,
            log: String::new(),
        }
    }

    /// Reads the log until a line `matches` (within 30 s); returns that line.
    fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push_str(&line);
                    self.log.push('\n');
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what} within 30 s: {}", self.log),
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(self.child.0.id() as i32, signal) }, 0);
    }

    /// SIGTERM, and the exit status with the rest of the log.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let status = self.child.0.wait().expect("wait");
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(10)) {
            self.log.push_str(&line);
            self.log.push('\n');
        }
        (status, self.log)
    }
}

/// A campaign folder against a simulator process: `jobs` after its `[fluidtalk]` table,
/// `leads` new leads imported.
#[cfg(unix)]
fn daemon_folder(
    url: &str,
    jobs: &str,
    leads: usize,
) -> (tempfile::TempDir, impl Fn(&str) -> std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.toml");
    let head = format!("[fluidtalk]\nbase_url = \"{url}\"\n");
    let write = {
        let path = path.clone();
        move |jobs: &str| {
            std::fs::write(&path, format!("{head}{jobs}")).expect("write jobs.toml");
            path.clone()
        }
    };
    write(jobs);
    let rows: String = (0..leads).map(|i| format!("@h{i}\n")).collect();
    std::fs::write(dir.path().join("l.csv"), format!("target\n{rows}")).expect("write");
    let out = common::bin()
        .args(["leads", "import", "l.csv"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, write)
}

/// SIGHUP with a changed, valid file: a job that could not fire (February 30) now fires
/// every second and calls; a changed `[limits]` is logged as needing a restart.
#[cfg(unix)]
#[test]
fn sighup_with_a_changed_file_makes_the_daemon_run_the_new_jobs() {
    let (_sim, url) = common::spawn_sim_process(&[]);
    let (dir, write) = daemon_folder(
        &url,
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 30 2 *\"\n",
        3,
    );
    let mut d = Running::start(dir.path());
    d.wait_for("scheduled", |l| l.contains("never fires"));
    write(
        "[limits]\nconcurrency = 2\n[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\n[[job]]\nname = \"later\"\nkind = \"follow_up\"\nschedule = \"0 0 9 30 2 *\"\nquiet_after = [\"3d\"]\n",
    );
    d.signal(libc::SIGHUP);
    let reloaded = d.wait_for("reloaded", |l| l.contains("campaign file reloaded"));
    assert!(
        reloaded.contains("added=later") && reloaded.contains("kept=openers"),
        "{reloaded}"
    );
    assert!(
        d.log.contains("setting=\"[limits]\"") || d.log.contains("setting=[limits]"),
        "the ignored setting is named: {}",
        d.log
    );
    assert!(
        d.log.contains("ignored until the daemon restarts"),
        "{}",
        d.log
    );
    let run = d.wait_for("a run", |l| l.contains("run finished"));
    assert!(run.contains("openers") && run.contains("sent 3"), "{run}");
    let (status, log) = d.stop();
    assert_eq!(status.code(), Some(0), "{log}");
}

/// SIGHUP with a broken file: the error names the file and its line, and the old jobs keep
/// running (a run finishes after it); the daemon keeps going and stops cleanly.
#[cfg(unix)]
#[test]
fn sighup_with_a_broken_file_logs_its_line_and_the_old_jobs_keep_working() {
    let (_sim, url) = common::spawn_sim_process(&[]);
    // One call a second, 40 leads: the job has work all through the test.
    let job = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\nmax_per_run = 1\n";
    let (dir, write) = daemon_folder(&url, job, 40);
    let mut d = Running::start(dir.path());
    d.wait_for("a first run", |l| l.contains("run finished"));
    // Line 8: two of [fluidtalk], five of the job, then the mistake.
    write(&format!("{job}batch_size = \"ten\"\n"));
    d.signal(libc::SIGHUP);
    let error = d.wait_for("the error", |l| l.contains("was not reloaded"));
    assert!(
        error.contains("jobs.toml: line 8"),
        "names the file and the line: {error}"
    );
    assert!(error.contains("batch_size"), "{error}");
    let run = d.wait_for("a run after the error", |l| l.contains("run finished"));
    assert!(run.contains("openers"), "{run}");
    let (status, log) = d.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("campaign file reloaded"), "{log}");
}

/// Two SIGHUPs at once, then more: the daemon reloads, keeps running and stops cleanly.
#[cfg(unix)]
#[test]
fn sighup_twice_quickly_is_safe() {
    let (_sim, url) = common::spawn_sim_process(&[]);
    let (dir, write) = daemon_folder(
        &url,
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 30 2 *\"\n",
        2,
    );
    let mut d = Running::start(dir.path());
    d.wait_for("scheduled", |l| l.contains("never fires"));
    write("[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\n");
    d.signal(libc::SIGHUP);
    d.signal(libc::SIGHUP);
    d.wait_for("reloaded", |l| l.contains("campaign file reloaded"));
    let run = d.wait_for("a run", |l| l.contains("run finished"));
    assert!(run.contains("sent 2"), "{run}");
    d.signal(libc::SIGHUP);
    d.wait_for("reloaded again", |l| l.contains("campaign file reloaded"));
    let (status, log) = d.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("daemon stopped"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// What a reload cannot change is named, table by table; a file whose only changes are
/// its jobs, senders and calendars needs no restart.
#[test]
fn a_reload_names_each_setting_that_needs_a_restart() {
    let parse =
        |text: &str| config::parse(std::path::Path::new("jobs.toml"), text).expect("parses");
    let job = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\n";
    let running = parse(job);
    let jobs_only = parse(
        "[[job]]\nname = \"nudges\"\nkind = \"follow_up\"\nschedule = \"0 0 10 * * *\"\nquiet_after = [\"2d\"]\n",
    );
    assert_eq!(
        fluidtalk_runner::service::reload::needs_restart(&running, &jobs_only),
        []
    );
    for (table, text) in [
        (
            "[database] url",
            "[database]\nurl = \"sqlite://other.db\"\n",
        ),
        ("[fluidtalk]", "[fluidtalk]\ntimeout = \"20s\"\n"),
        ("[limits]", "[limits]\nconcurrency = 3\n"),
        ("[backoff]", "[backoff]\nretry_base = \"10s\"\n"),
        ("[http]", "[http]\nlisten = \"127.0.0.1:9\"\n"),
        ("[forecast]", "[forecast]\nmax_calls = 10\n"),
        ("[retention]", "[retention]\nevents = \"60d\"\n"),
    ] {
        let new = parse(&format!("{text}{job}"));
        let named: Vec<&str> = fluidtalk_runner::service::reload::needs_restart(&running, &new)
            .into_iter()
            .map(|(setting, _)| setting)
            .collect();
        assert_eq!(named, [table], "{text}");
    }
}
