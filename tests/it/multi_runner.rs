//! Several runners on one database, as real processes of the built binary against the
//! simulator (also a real process) and the real PostgreSQL (a schema per test) or one
//! SQLite file, through the faults that really happen: a runner killed with SIGKILL,
//! PostgreSQL dropping connections, the API failing in bursts, running out of tokens.
//!
//! The guarantee these check: each step of each lead is sent at most once, and every lead
//! ends in a known state with every call recorded.
//!
//! The tests of this file run one at a time (they load both cores, and one of them kills
//! database connections).

use crate::common;

use common::db::{Raw, TestDb};
use common::{KillOnDrop, TEST_KEY, bin, spawn_sim_process};
use fluidtalk_runner::sim::LogEntry;
use std::collections::{BTreeMap, HashMap};
use std::process::Output;
use std::time::Duration;

/// One test at a time.
use crate::common::HEAVY as SERIAL;

/// How long any one runner process may take before the test fails.
const RUNNER_LIMIT: Duration = Duration::from_secs(120);

struct Campaign {
    dir: tempfile::TempDir,
    db: TestDb,
    sim_url: String,
    _sim: KillOnDrop,
    leads: usize,
}

/// What one lead ended as, and what the database says was tried.
#[derive(Debug, Default, Clone)]
struct LeadView {
    state: String,
    /// (action, status, runner token) of each attempt, in order.
    attempts: Vec<(String, String, String)>,
}

impl Campaign {
    /// `leads` new leads in `db`, a simulator started with `sim_args`, and a campaign file
    /// with one opener job (`job` adds keys to it) and `extra` tables.
    async fn new(db: TestDb, leads: usize, sim_args: &[&str], job: &str, extra: &str) -> Self {
        let (sim, sim_url) = spawn_sim_process(sim_args);
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("jobs.toml"),
            format!(
                "[fluidtalk]\nbase_url = \"{sim_url}\"\ntimeout = \"10s\"\n\n\
                 [limits]\nconcurrency = 4\nper_second = 10000\n\n{extra}\n\n\
                 [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n\
                 {batch}{job}\n",
                batch = if job.contains("batch_size") {
                    ""
                } else {
                    "batch_size = 25\n"
                }
            ),
        )
        .expect("write jobs.toml");
        let rows: String = (0..leads).map(|i| format!("@lead{i:05}\n")).collect();
        std::fs::write(dir.path().join("leads.csv"), format!("target\n{rows}"))
            .expect("write leads");
        let c = Self {
            dir,
            db,
            sim_url,
            _sim: sim,
            leads,
        };
        let out = c
            .command(&["leads", "import", "leads.csv"], &[])
            .output()
            .await
            .expect("import");
        assert!(out.status.success(), "{}", text(&out.stderr));
        c
    }

    /// `fluidtalk-runner ARGS` in the campaign's folder, on its database.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::from(bin());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", &self.db.url)
            .env("FLUIDTALK_API_KEY", TEST_KEY)
            .env_remove("FLUIDTALK_BASE_URL")
            .env_remove("FLUIDTALK_CLOCK_OFFSET")
            .kill_on_drop(true)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `n` runners of the opener job at once.
    fn runners(&self, n: usize, env: &[(&str, &str)]) -> Vec<tokio::process::Child> {
        (0..n)
            .map(|_| {
                self.command(&["run", "openers", "--json"], env)
                    .spawn()
                    .expect("start a runner")
            })
            .collect()
    }

    /// Waits (bounded) until the simulator has seen `n` requests: the run is under way.
    async fn wait_for_calls(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.sim_log().await.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the run never got going"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn sim_log(&self) -> Vec<LogEntry> {
        fluidtalk_runner::fluidtalk::install_crypto_provider();
        reqwest::get(format!("{}/_sim/log", self.sim_url))
            .await
            .expect("GET /_sim/log")
            .json()
            .await
            .expect("log JSON")
    }

    /// Every lead by target, with its attempts.
    async fn leads(&self) -> BTreeMap<String, LeadView> {
        let sql_leads = "SELECT target, state FROM leads";
        let sql_attempts = "SELECT l.target, a.action, a.status, a.runner_id
                            FROM attempts a JOIN leads l ON l.id = a.lead_id ORDER BY a.id";
        type Attempts = Vec<(String, String, String, String)>;
        let (leads, attempts): (Vec<(String, String)>, Attempts) = match &self.db.raw {
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
        let mut out: BTreeMap<String, LeadView> = leads
            .into_iter()
            .map(|(t, state)| {
                (
                    t,
                    LeadView {
                        state,
                        ..Default::default()
                    },
                )
            })
            .collect();
        for (t, action, status, runner) in attempts {
            out.get_mut(&t)
                .expect("an attempt's lead")
                .attempts
                .push((action, status, runner));
        }
        assert_eq!(out.len(), self.leads, "no lead was lost or added");
        out
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits for a runner (bounded), and returns its output.
async fn finish(child: tokio::process::Child) -> Output {
    tokio::time::timeout(RUNNER_LIMIT, child.wait_with_output())
        .await
        .expect("a runner finished in time")
        .expect("runner output")
}

async fn finish_ok(children: Vec<tokio::process::Child>) -> Vec<Output> {
    let mut outs = Vec::new();
    for child in children {
        let out = finish(child).await;
        assert!(
            out.status.success(),
            "runner failed ({}): {}",
            out.status,
            text(&out.stderr)
        );
        outs.push(out);
    }
    outs
}

/// Answered openers (200: a conversation opened or continued) per target.
fn openers_answered(log: &[LogEntry]) -> HashMap<&str, usize> {
    let mut n = HashMap::new();
    for e in log {
        if e.action == "OUTREACH" && e.status == 200 {
            *n.entry(e.target.as_str()).or_default() += 1;
        }
    }
    n
}

/// No target was ever sent two openers.
fn assert_no_repeat(log: &[LogEntry]) {
    let repeated: Vec<_> = openers_answered(log)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(repeated.is_empty(), "targets sent twice: {repeated:?}");
}

fn count_states(leads: &BTreeMap<String, LeadView>) -> BTreeMap<&str, usize> {
    let mut n = BTreeMap::new();
    for l in leads.values() {
        *n.entry(l.state.as_str()).or_default() += 1;
    }
    n
}

/// Tokens of the runners whose attempts are recorded.
fn runners_seen(leads: &BTreeMap<String, LeadView>) -> std::collections::BTreeSet<String> {
    leads
        .values()
        .flat_map(|l| l.attempts.iter())
        .map(|(_, _, token)| token.split('/').next().unwrap_or_default().to_string())
        .collect()
}

async fn pg() -> Option<TestDb> {
    common::db::postgres().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runners_send_each_of_2000_leads_exactly_one_opener() {
    let _one = SERIAL.lock().await;
    let Some(db) = pg().await else { return };
    let c = Campaign::new(
        db,
        2000,
        &["--latency", "0ms", "--latency-max", "20ms"],
        "",
        "",
    )
    .await;
    finish_ok(c.runners(3, &[])).await;

    let log = c.sim_log().await;
    assert_no_repeat(&log);
    let answered = openers_answered(&log);
    let leads = c.leads().await;
    assert_eq!(count_states(&leads), BTreeMap::from([("contacted", 2000)]));
    for (target, lead) in &leads {
        assert_eq!(answered.get(target.as_str()), Some(&1), "{target}");
        assert_eq!(lead.attempts.len(), 1, "{target}: {:?}", lead.attempts);
        assert_eq!(lead.attempts[0].1, "sent");
    }
    assert_eq!(log.len(), 2000, "no call beyond one per lead");
    // (All three usually do; a runner that starts late on a loaded machine may find the
    // others done, which is no fault.)
    assert!(
        runners_seen(&leads).len() >= 2,
        "the runners shared the work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_run_leaves_its_calls_in_flight_for_review_and_nothing_twice() {
    let _one = SERIAL.lock().await;
    let Some(db) = pg().await else { return };
    // Slower calls, so the victim is mid-call when it dies.
    let c = Campaign::new(
        db,
        1500,
        &["--latency", "20ms", "--latency-max", "40ms"],
        "",
        "",
    )
    .await;
    let mut runners = c.runners(3, &[]);
    let victim = runners.remove(0);
    let victim_pid = victim.id().expect("pid");
    // Kill it once the run is well under way and it has calls in flight.
    c.wait_for_calls(300).await;
    let Raw::Postgres(pool) = &c.db.raw else {
        unreachable!("a PostgreSQL test")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mine: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM attempts WHERE status = 'in_flight' AND runner_id LIKE $1",
        )
        .bind(format!("%-{victim_pid}-%"))
        .fetch_one(pool)
        .await
        .expect("look");
        if mine > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the victim never had calls in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL: no chance to record anything.
    unsafe { libc::kill(victim_pid as i32, libc::SIGKILL) };
    let killed = finish(victim).await;
    assert!(!killed.status.success());
    finish_ok(runners).await;

    // The victim's leases still hold: its leads are neither worked nor lost.
    let victim_tag = format!("-{victim_pid}-");
    let before = c.leads().await;
    let in_flight: Vec<&String> = before
        .iter()
        .filter(|(_, l)| {
            l.attempts
                .iter()
                .any(|(_, s, r)| s == "in_flight" && r.contains(&victim_tag))
        })
        .map(|(t, _)| t)
        .collect();
    assert!(
        !in_flight.is_empty(),
        "the victim died with calls in flight"
    );
    assert!(before.values().all(|l| l.state != "needs_review"));

    // Later (its leases run out), any runner settles what the dead one left.
    let later = c
        .command(
            &["run", "openers", "--json"],
            &[("FLUIDTALK_CLOCK_OFFSET", "2h")],
        )
        .spawn()
        .expect("later run");
    finish_ok(vec![later]).await;
    let log = c.sim_log().await;
    assert_no_repeat(&log);
    let answered = openers_answered(&log);
    let after = c.leads().await;
    for (target, lead) in &after {
        let victims = lead
            .attempts
            .iter()
            .filter(|(_, _, r)| r.contains(&victim_tag))
            .count();
        match lead.state.as_str() {
            "needs_review" => {
                assert!(in_flight.contains(&target), "{target} was not in flight");
                assert_eq!(lead.attempts.len(), 1, "{target}: never tried again");
                assert_eq!(lead.attempts[0].1, "unknown");
                assert!(answered.get(target.as_str()).copied().unwrap_or(0) <= 1);
            }
            "contacted" => {
                assert_eq!(answered.get(target.as_str()), Some(&1), "{target}");
                assert_eq!(
                    victims.min(1),
                    usize::from(lead.attempts[0].2.contains(&victim_tag))
                );
            }
            other => panic!("{target} ended {other}"),
        }
    }
    assert_eq!(
        count_states(&after)
            .get("needs_review")
            .copied()
            .unwrap_or(0),
        in_flight.len(),
        "exactly the victim's in-flight leads need review"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_ride_out_postgresql_terminating_their_connections() {
    let _one = SERIAL.lock().await;
    let Some(mut db) = pg().await else { return };
    // The test's own connections keep the plain URL; the runners' are tagged, so only
    // theirs are terminated.
    let own_url = db.url.clone();
    let app = format!("ftr-fault-{}", std::process::id());
    db.url = format!("{}&application_name={app}", db.url);
    let c = Campaign::new(
        db,
        2000,
        &["--latency", "10ms", "--latency-max", "30ms"],
        "",
        "",
    )
    .await;
    let admin = sqlx::PgPool::connect(&own_url).await.expect("admin pool");
    let runners = c.runners(3, &[]);
    // Mid-run: once calls are going out.
    c.wait_for_calls(100).await;
    // Rounds of: lock the tables so the runners' next statements wait on live
    // connections, terminate every runner connection (those waiting fail mid-statement,
    // idle ones die in the pool), let go; between rounds, terminate idle ones now and then.
    let (mut terminated, mut mid_statement) = (0i64, 0i64);
    for round in 0..6usize {
        let mut tx = admin.begin().await.expect("begin");
        // One table: locking two could deadlock with a runner's transaction.
        sqlx::query("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .expect("lock");
        // Until a runner's statement is waiting on the lock (bounded). Read on other
        // connections: a transaction keeps its first view of pg_stat_activity.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
            )
            .bind(&app)
            .fetch_one(&admin)
            .await
            .expect("look");
            if waiting > 0 || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (n, active): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)),
                    COUNT(*) FILTER (WHERE state = 'active')
             FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&app)
        .fetch_one(&admin)
        .await
        .expect("terminate");
        tx.commit().await.expect("unlock");
        terminated += n;
        mid_statement += active;
        // Let the runners make progress (reconnected) before the next round.
        c.wait_for_calls(100 * (round + 2)).await;
    }
    assert!(
        terminated >= 6 && mid_statement >= 1,
        "connections were terminated ({terminated}, {mid_statement} mid-statement)"
    );
    let outs = finish_ok(runners).await;
    let warned = outs
        .iter()
        .any(|o| text(&o.stderr).contains("the database is unreachable"));
    assert!(warned, "a runner logged the lost connection and backed off");

    let log = c.sim_log().await;
    assert_no_repeat(&log);
    let answered = openers_answered(&log);
    let leads = c.leads().await;
    assert_eq!(count_states(&leads), BTreeMap::from([("contacted", 2000)]));
    for (target, lead) in &leads {
        assert_eq!(answered.get(target.as_str()), Some(&1), "{target}");
        assert!(
            lead.attempts.iter().all(|(_, s, _)| s == "sent"),
            "{target}: {:?}",
            lead.attempts
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_on_one_sqlite_file_send_nothing_twice() {
    let _one = SERIAL.lock().await;
    let db = common::db::sqlite().await;
    let c = Campaign::new(
        db,
        800,
        &["--latency", "5ms", "--latency-max", "15ms"],
        "",
        "",
    )
    .await;
    finish_ok(c.runners(2, &[])).await;
    let log = c.sim_log().await;
    assert_no_repeat(&log);
    let leads = c.leads().await;
    assert_eq!(count_states(&leads), BTreeMap::from([("contacted", 800)]));
    assert_eq!(log.len(), 800);
    assert_eq!(runners_seen(&leads).len(), 2, "both runners took a share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_leave_every_lead_settled_and_every_call_recorded_without_a_retry_storm() {
    let _one = SERIAL.lock().await;
    let Some(db) = pg().await else { return };
    let c = Campaign::new(
        db,
        1000,
        &[
            "--latency-max",
            "10ms",
            "--fail-rate",
            "0.05",
            "--drop-rate",
            "0.02",
            "--rate-limit",
            "15/250:1",
            "--seed",
            "7",
        ],
        "",
        "[backoff]\nretry_base = \"200ms\"\nretry_max = \"1s\"\n",
    )
    .await;
    finish_ok(c.runners(3, &[])).await;

    let log = c.sim_log().await;
    assert_no_repeat(&log);
    let leads = c.leads().await;
    // Every request the API saw is an attempt the database recorded, per target.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for e in &log {
        *seen.entry(e.target.as_str()).or_default() += 1;
    }
    for (target, lead) in &leads {
        let made = lead
            .attempts
            .iter()
            .filter(|(_, s, _)| s != "cancelled")
            .count();
        assert_eq!(
            seen.get(target.as_str()).copied().unwrap_or(0),
            made,
            "{target}: {:?}",
            lead.attempts
        );
        assert!(
            lead.attempts.iter().all(|(_, s, _)| s != "in_flight"),
            "{target}: an attempt was left in flight"
        );
        let ok = match lead.state.as_str() {
            "contacted" => true,
            // A dropped connection: the outcome is unknown, so a person decides.
            "needs_review" => lead.attempts.last().is_some_and(|a| a.1 == "unknown"),
            // Retryable: a 500 or a 429 put it back with a delay.
            "new" => lead
                .attempts
                .last()
                .is_some_and(|a| matches!(a.1.as_str(), "transient_error" | "rate_limited")),
            "failed" => true,
            _ => false,
        };
        assert!(
            ok,
            "{target} ended {} after {:?}",
            lead.state, lead.attempts
        );
    }
    let dropped = log.iter().filter(|e| e.dropped).count();
    let states = count_states(&leads);
    assert_eq!(states.get("needs_review").copied().unwrap_or(0), dropped);
    assert!(
        dropped > 0 && log.iter().any(|e| e.status == 500) && log.iter().any(|e| e.status == 429)
    );
    // No retry storm: each failure costs at most a few more calls, not a loop.
    assert!(
        log.len() <= 1000 + 1000 / 4,
        "{} calls for 1000 leads",
        log.len()
    );
    assert!(
        states.get("contacted").copied().unwrap_or(0) >= 850,
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_402_on_one_runner_stops_every_runner_until_the_pause_ends() {
    let _one = SERIAL.lock().await;
    let Some(db) = pg().await else { return };
    let c = Campaign::new(
        db,
        1000,
        &["--tokens", "300", "--latency-max", "10ms"],
        "",
        "[backoff]\nout_of_tokens = \"10m\"\nout_of_tokens_max = \"1h\"\n",
    )
    .await;
    let outs = finish_ok(c.runners(3, &[])).await;
    let log = c.sim_log().await;
    assert_no_repeat(&log);
    let answered: usize = openers_answered(&log).values().sum();
    let refused = log.iter().filter(|e| e.status == 402).count();
    assert_eq!(answered, 300);
    // Each runner stops on the first 402 it hears of, its own or another's: at most the
    // calls each had in flight (concurrency 4) are refused.
    assert!((1..=12).contains(&refused), "{refused} calls answered 402");
    for out in &outs {
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert!(
            summary["total"]["held"].is_string() || summary["total"]["paused"].as_u64() > Some(0),
            "each runner says it was held: {summary}"
        );
    }

    // While the pause holds, no runner starts a conversation, even with tokens again.
    fluidtalk_runner::fluidtalk::install_crypto_provider();
    reqwest::Client::new()
        .post(format!("{}/_sim/tokens", c.sim_url))
        .json(&serde_json::json!({"tokens": null}))
        .send()
        .await
        .expect("refill");
    let held = c.runners(2, &[("FLUIDTALK_CLOCK_OFFSET", "5m")]);
    for out in finish_ok(held).await {
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert!(summary["total"]["held"].is_string(), "{summary}");
    }
    assert_eq!(c.sim_log().await.len(), log.len(), "no call while paused");

    // Once it ends, they go on, and every lead is contacted once.
    finish_ok(c.runners(3, &[("FLUIDTALK_CLOCK_OFFSET", "11m")])).await;
    let log = c.sim_log().await;
    assert_no_repeat(&log);
    let leads = c.leads().await;
    let states = count_states(&leads);
    assert_eq!(
        states.get("contacted").copied().unwrap_or(0),
        1000,
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_cap_of_100_holds_across_three_runners() {
    let _one = SERIAL.lock().await;
    let Some(db) = pg().await else { return };
    let c = Campaign::new(db, 600, &["--latency-max", "10ms"], "daily_cap = 100", "").await;
    finish_ok(c.runners(3, &[])).await;
    let log = c.sim_log().await;
    assert_no_repeat(&log);
    assert_eq!(openers_answered(&log).len(), 100);
    assert_eq!(log.len(), 100, "no call was made past the cap");
    let leads = c.leads().await;
    assert_eq!(
        count_states(&leads),
        BTreeMap::from([("contacted", 100), ("new", 500)])
    );
    // The same day again: nothing more.
    finish_ok(c.runners(3, &[])).await;
    assert_eq!(c.sim_log().await.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_stored_by_another_runner_stops_calls_within_about_a_second() {
    let _one = SERIAL.lock().await;
    let Some(db) = pg().await else { return };
    // One long batch (500 calls, about 5 s): without re-reading the pauses while calling,
    // the runner would make them all.
    let c = Campaign::new(db, 600, &["--latency", "40ms"], "batch_size = 500", "").await;
    let runner = c.runners(1, &[]).remove(0);
    c.wait_for_calls(40).await;
    // Another runner hears 402 and stores the pause.
    c.db.store
        .set_pause(&fluidtalk_runner::store::NewPause {
            scope: fluidtalk_runner::store::PauseScope::NewConversations,
            reason: "out of tokens (402), heard by another runner",
            set_by: "other-runner",
            now: chrono::Utc::now(),
            length: &|_| Duration::from_secs(600),
        })
        .await
        .expect("pause");
    let at_pause = c.sim_log().await.len();
    let out = finish_ok(vec![runner]).await.remove(0);
    let after = c.sim_log().await.len() - at_pause;
    // About a second of calls (4 at a time, 40 ms each: ~100/s) plus those in flight.
    assert!(
        after <= 150,
        "{after} calls after the pause was stored (the batch had {} left)",
        500 - at_pause
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        summary["total"]["cancelled"].as_u64() > Some(100),
        "the rest of the batch was recorded cancelled: {summary}"
    );
    let leads = c.leads().await;
    assert!(
        leads
            .values()
            .flat_map(|l| l.attempts.iter())
            .all(|(_, s, _)| s != "in_flight")
    );
}
