//! The soak (issue 19, item 7), run on each backend by `main.rs`, one at a time, so no
//! other work in the process counts in its RSS (but what the first soak's allocator kept).
//!
//! What it does, exactly: the library's real daemon (`Daemon::poll`, `heartbeat` and
//! `prune_if_due`, as `Daemon::serve` calls them each second) with the real runner, on a
//! manual clock, against the simulator run as a separate process (its own memory is not
//! counted), for `days()` simulated days. Three jobs fire every minute (`0 * * * * *`):
//! openers, one follow-up a day after contact (`quiet_after = ["1d"]`), and an event job.
//! Every day brings `LEADS_PER_DAY` new leads (imported in slices at each step),
//! `EVENTS_PER_DAY` events (for leads contacted the day before) and `REPLIES_PER_DAY`
//! replies (from leads contacted two days before); after each step the platform's consumer
//! acknowledges every outbox message. The clock does not move a minute at a time: it moves
//! in steps of `STEP_MINUTES`, and each step fires every job once (a daemon fires a tick
//! whose time has passed once and does not replay the ticks it missed, as after a pause of
//! the process), then heartbeats and gives the hourly prune its chance. So each job runs
//! `1440 / STEP_MINUTES` times a day, not 1,440; the bounds below are computed for that.
//!
//! After each simulated day every table is counted and checked against its bound, computed
//! from the `[retention]` settings below and the daily volume; RSS (VmRSS of this process)
//! is checked against `RSS_BOUND_MB`. At the end a table prints the rows per table (at the
//! end and the most seen), the RSS and the wall time, and the simulator's log is checked:
//! no lead got two openers.

use crate::common::db::{Raw, TestDb};
use crate::common::{TEST_KEY, spawn_sim_process};
use chrono::{DateTime, Duration, TimeZone, Utc};
use fluidtalk_runner::clock::{Clock, ManualClock};
use fluidtalk_runner::config;
use fluidtalk_runner::daemon::Daemon;
use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::runner::Runner;
use fluidtalk_runner::store::LeadInput;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The simulated days, `FLUIDTALK_SOAK_DAYS` (1 to 3650) or `DEFAULT_DAYS`. `cargo test`
/// runs a week (steady state: every retention window below is at most 3 days); CI runs 14
/// (`.ci/run`); 90 is the horizon, run by hand (minutes per backend: on PostgreSQL a
/// job run's cost grows with the leads table).
pub const DEFAULT_DAYS: i64 = 7;

fn days() -> i64 {
    match std::env::var("FLUIDTALK_SOAK_DAYS") {
        Err(_) => DEFAULT_DAYS,
        Ok(v) => match v.trim().parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => n,
            _ => panic!("FLUIDTALK_SOAK_DAYS={v:?}: expected a number of days from 1 to 3650"),
        },
    }
}
pub const LEADS_PER_DAY: i64 = 1_000;
pub const EVENTS_PER_DAY: i64 = 100;
pub const REPLIES_PER_DAY: i64 = 200;
pub const STEP_MINUTES: i64 = 30;
/// The jobs, each fired once per step.
const JOBS: i64 = 3;
/// The most this process may hold (debug build, the test harness included).
pub const RSS_BOUND_MB: f64 = 256.0;

// The retention of the soak, in days (short, so that 90 days prune many times over).
const RUNS_DAYS: i64 = 2;
const OUTBOX_DAYS: i64 = 1;
const EVENTS_DAYS: i64 = 1;
const ATTEMPTS_DAYS: i64 = 3;

const TABLES: [&str; 11] = [
    "leads",
    "attempts",
    "outbox",
    "events",
    "ticks",
    "job_runs",
    "prunes",
    "pauses",
    "runners",
    "idempotency",
    "dashboard_sessions",
];

fn campaign(sim_url: &str) -> String {
    format!(
        "[fluidtalk]\nbase_url = \"{sim_url}\"\n\
         [limits]\nconcurrency = 8\nper_second = 100000\n\
         [retention]\nruns = \"{RUNS_DAYS}d\"\noutbox = \"{OUTBOX_DAYS}d\"\nevents = \"{EVENTS_DAYS}d\"\nattempts = \"{ATTEMPTS_DAYS}d\"\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\nbatch_size = 100\n\
         [[job]]\nname = \"follow_ups\"\nkind = \"follow_up\"\nschedule = \"0 * * * * *\"\nquiet_after = [\"1d\"]\nmax_follow_ups = 1\nbatch_size = 100\n\
         [[job]]\nname = \"reactions\"\nkind = \"event\"\nevent_type = \"story_reaction\"\nschedule = \"0 * * * * *\"\nbatch_size = 100\n"
    )
}

/// The most rows each table may hold at any day's end: its retention window (plus the
/// hour a prune may wait, plus two steps) times its daily volume, plus what retention
/// keeps on purpose. Openers and first follow-ups come evenly through the day (a slice of
/// leads each step); events and replies (so the follow-ups replies lead to) come at the
/// start of a day, so a window holds those of every day start it spans.
fn bounds(leads_so_far: i64) -> BTreeMap<&'static str, i64> {
    let day_minutes = 1440.0;
    let lag = (60.0 + 2.0 * STEP_MINUTES as f64) / day_minutes;
    let steps_per_day = day_minutes / STEP_MINUTES as f64;
    let window = |days: i64| days as f64 + lag;
    // Day starts a window of `days` (and the lag) can span.
    let starts = |days: i64| window(days).floor() + 1.0;
    // Calls (and so messages, one per answered call at most) in a window: an opener and a
    // follow-up per new lead, evenly; at each day start, an event call per event and a
    // follow-up per reply.
    let calls = |days: i64| {
        (2.0 * LEADS_PER_DAY as f64 * window(days)
            + (EVENTS_PER_DAY + REPLIES_PER_DAY) as f64 * starts(days))
        .ceil() as i64
    };
    let runs = (JOBS as f64 * steps_per_day * window(RUNS_DAYS)).ceil() as i64;
    BTreeMap::from([
        ("leads", leads_so_far),
        // Kept for good: the attempt proving each lead's opener was sent (never send
        // twice), one per lead at most; the rest only within the window (at least the two
        // days the daily cap counts).
        ("attempts", leads_so_far + calls(ATTEMPTS_DAYS.max(2)) + 1),
        // Acknowledged rows within the window, and the newest row.
        ("outbox", calls(OUTBOX_DAYS) + 1),
        // Sent or dropped within the window, those still queued (a day's), the newest.
        (
            "events",
            (EVENTS_PER_DAY as f64 * starts(EVENTS_DAYS)) as i64 + EVENTS_PER_DAY + 1,
        ),
        ("ticks", runs),
        ("job_runs", runs + 1),
        ("prunes", 24 * RUNS_DAYS + 2),
        ("pauses", 3),
        ("runners", 1),
        ("idempotency", 0),
        ("dashboard_sessions", 0),
    ])
}

async fn count(db: &TestDb, table: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
    match &db.raw {
        Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        Raw::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
    }
    .unwrap_or_else(|e| panic!("count {table}: {e}"))
}

/// This process's resident set, in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

fn target(day: i64, n: i64) -> String {
    format!("@soak{day}n{n}")
}

/// A fixed start (the leads are created on the manual clock): nothing depends on today.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
        .single()
        .expect("valid")
}

pub async fn soak(db: TestDb, backend: &str) {
    let wall = std::time::Instant::now();
    let (_sim, sim_url) = spawn_sim_process(&[]);
    let text = campaign(&sim_url);
    let config = Arc::new(config::parse(std::path::Path::new("jobs.toml"), &text).expect("parses"));
    let mut cc = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
    cc.base_url = sim_url.clone();
    let client = Client::new(cc).expect("client");
    let clock = Arc::new(ManualClock::new(start()));
    let runner = Runner::new(
        db.store.clone(),
        client,
        config.clone(),
        clock.clone(),
        "soak".into(),
    );
    let daemon = Daemon::new(
        &config,
        db.store.clone(),
        Some(runner),
        clock.clone(),
        "soak".into(),
    );
    let days = days();
    let steps_per_day = 1440 / STEP_MINUTES;
    let mut max_seen: BTreeMap<&str, i64> = BTreeMap::new();
    let mut max_rss: f64 = 0.0;
    let (mut replies, mut events, mut runs) = (0u64, 0u64, 0u64);
    // Wall time in the daemon's runs and in its prunes.
    let (mut in_runs, mut in_prunes) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for day in 0..days {
        for step in 0..steps_per_day {
            let now = clock.now();
            // This step's slice of the day's leads.
            let from = step * LEADS_PER_DAY / steps_per_day;
            let to = (step + 1) * LEADS_PER_DAY / steps_per_day;
            let mut import = db.store.begin_import(false).await.expect("import");
            let rows = (from..to)
                .map(|n| LeadInput {
                    target: target(day, n),
                    ..Default::default()
                })
                .collect();
            import.upsert(rows, now).await.expect("upsert");
            import.finish(true).await.expect("finish");
            if step == 0 && day >= 1 {
                for n in 0..EVENTS_PER_DAY {
                    db.store
                        .queue_event(&fluidtalk_runner::store::NewEvent {
                            target: &target(day - 1, n),
                            event_type: "story_reaction",
                            context: None,
                            now,
                        })
                        .await
                        .expect("queue an event");
                    events += 1;
                }
            }
            if step == 0 && day >= 2 {
                for n in EVENTS_PER_DAY..EVENTS_PER_DAY + REPLIES_PER_DAY {
                    // Leads contacted two days ago write back.
                    if db
                        .store
                        .record_reply(&target(day - 2, n), now, now)
                        .await
                        .is_ok()
                    {
                        replies += 1;
                    }
                }
            }
            clock.advance(Duration::minutes(STEP_MINUTES));
            let t = std::time::Instant::now();
            for (_, _, handle) in daemon.poll().await {
                if let Some(h) = handle {
                    h.await.expect("a run");
                    runs += 1;
                }
            }
            daemon.heartbeat().await;
            in_runs += t.elapsed();
            let t = std::time::Instant::now();
            if let Some(h) = daemon.prune_if_due() {
                h.await.expect("the prune");
            }
            in_prunes += t.elapsed();
            // The platform's consumer takes every message, a page at a time, as a pull
            // consumer of the HTTP API does (`GET /v1/outbox`, then ack).
            let mut after = 0;
            loop {
                let page = db
                    .store
                    .outbox_page(after, 500, 4 << 20)
                    .await
                    .expect("outbox page");
                let Some(last) = page.last() else { break };
                after = last.id;
                let ids: Vec<i64> = page.iter().map(|o| o.id).collect();
                db.store.ack_outbox(&ids, clock.now()).await.expect("ack");
            }
        }
        let leads_so_far = (day + 1) * LEADS_PER_DAY;
        let bound = bounds(leads_so_far);
        for table in TABLES {
            let n = count(&db, table).await;
            let seen = max_seen.entry(table).or_insert(0);
            *seen = (*seen).max(n);
            assert!(
                n <= bound[table],
                "{backend}, day {}: {table} holds {n} rows, over its bound {}",
                day + 1,
                bound[table]
            );
        }
        let rss = rss_mb();
        max_rss = max_rss.max(rss);
        if (day + 1) % 10 == 0 {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "soak {backend}: day {}, {:.0} s, RSS {rss:.0} MB",
                day + 1,
                wall.elapsed().as_secs_f64()
            );
        }
        assert!(
            rss < RSS_BOUND_MB,
            "{backend}, day {}: RSS {rss:.0} MB, over {RSS_BOUND_MB} MB",
            day + 1
        );
    }
    let took = wall.elapsed();
    let log: Vec<fluidtalk_runner::sim::LogEntry> = reqwest::get(format!("{sim_url}/_sim/log"))
        .await
        .expect("GET /_sim/log")
        .json()
        .await
        .expect("log JSON");
    let mut openers: BTreeMap<&str, u32> = BTreeMap::new();
    for e in log.iter().filter(|e| e.action == "OUTREACH") {
        *openers.entry(e.target.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = openers.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "openers sent twice: {twice:?}");
    let calls = |a: &str| log.iter().filter(|e| e.action == a).count();
    let final_bound = bounds(days * LEADS_PER_DAY);
    let mut table = format!(
        "\nSOAK {backend}: {days} simulated days, {LEADS_PER_DAY} leads/day, steps of \
         {STEP_MINUTES} min ({runs} job runs), {} openers, {} follow-ups, {} event calls, \
         {replies} replies, {events} events\n{:<20} {:>10} {:>10} {:>10}\n",
        calls("OUTREACH"),
        calls("FOLLOW_UP"),
        calls("ENTRY_POINT"),
        "table",
        "at end",
        "max seen",
        "bound"
    );
    for t in TABLES {
        table += &format!(
            "{t:<20} {:>10} {:>10} {:>10}\n",
            count(&db, t).await,
            max_seen[t],
            final_bound[t]
        );
    }
    table += &format!(
        "RSS at end {:.0} MB, max seen {max_rss:.0} MB (bound {RSS_BOUND_MB} MB); wall time {:.1} s \
         ({:.1} s in job runs, {:.1} s in prunes)\n",
        rss_mb(),
        took.as_secs_f64(),
        in_runs.as_secs_f64(),
        in_prunes.as_secs_f64()
    );
    // Past the test harness's capture, so the numbers show in CI's log.
    use std::io::Write;
    let _ = std::io::stderr().write_all(table.as_bytes());
    // The soak did what it says: every lead contacted, and pruning went on.
    assert_eq!(
        calls("OUTREACH") as i64,
        days * LEADS_PER_DAY,
        "every lead got an opener"
    );
    assert!(calls("FOLLOW_UP") > 0 && calls("ENTRY_POINT") > 0);
    assert!(replies > 0);
    assert!(count(&db, "ticks").await < runs as i64, "ticks were pruned");
}
