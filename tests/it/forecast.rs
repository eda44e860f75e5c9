//! The forecast against reality: the same leads, the same campaign, the same days, once
//! forecast (read only, over a copy) and once run for real — the daemon and runner on a
//! `ManualClock` calling the simulator over HTTP — must give the same counts day by day;
//! with all rates at zero, and with a token balance that runs out. On SQLite and
//! PostgreSQL. Then the assumptions, and the command line.

use crate::common;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use common::db::TestDb;
use common::{TEST_KEY, spawn_sim};
use fluidtalk_runner::clock::{Clock, ManualClock};
use fluidtalk_runner::config::{self, Config};
use fluidtalk_runner::daemon::Daemon;
use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::forecast::{self, Assumptions, Day, Options, due_now};
use fluidtalk_runner::lead::LeadState;
use fluidtalk_runner::runner::Runner;
use fluidtalk_runner::sim::SimConfig;
use fluidtalk_runner::store::{Action, AttemptStatus, LeadInput};
use std::sync::Arc;

const ZONE: Tz = chrono_tz::Europe::Berlin;

/// Openers at 09:00 (a cap of 25 a day, weekdays 09:00-17:00 in the lead's zone, 2 calls
/// a second), follow-ups at 09:30 and 15:30 after 23 and 47 quiet hours (two at most; not a whole
/// day, so no lead is due by a millisecond: see `forecast_assumptions.rs`),
/// story reactions every hour.
const CAMPAIGN: &str = r#"
[limits]
concurrency = 4
per_second = 2

[[job]]
name = "openers"
kind = "opener"
schedule = "0 0 9 * * *"
timezone = "Europe/Berlin"
daily_cap = 25
batch_size = 10
send_window = { days = "mon-fri", from = "09:00", to = "17:00" }

[[job]]
name = "follow-ups"
kind = "follow_up"
schedule = "0 30 9,15 * * *"
timezone = "Europe/Berlin"
quiet_after = ["23h", "47h"]
max_follow_ups = 2

[[job]]
name = "reactions"
kind = "event"
event_type = "story_reaction"
schedule = "0 0 * * * *"
timezone = "Europe/Berlin"
"#;

/// Monday 2026-11-30, 06:00 UTC (07:00 in Berlin).
fn from() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0)
        .single()
        .expect("valid")
}

fn campaign_of(campaign: &str, base_url: &str) -> Config {
    let text = format!("[fluidtalk]\nbase_url = \"{base_url}\"\n{campaign}");
    config::parse(std::path::Path::new("jobs.toml"), &text).expect("the campaign parses")
}

/// 90 new leads (every tenth in New York, whose window opens six hours later), 6 leads
/// contacted two days ago, and story reactions queued for 4 leads.
async fn seed(db: &TestDb) {
    let at = from() - chrono::Duration::days(3);
    let mut rows: Vec<LeadInput> = (0..90)
        .map(|i| LeadInput {
            target: format!("@new{i:02}"),
            timezone: (i % 10 == 0).then(|| "America/New_York".to_string()),
            ..Default::default()
        })
        .collect();
    rows.extend((0..6).map(|i| LeadInput {
        target: format!("@old{i}"),
        state: Some(LeadState::Contacted),
        last_contact_at: Some(from() - chrono::Duration::hours(47)),
        ..Default::default()
    }));
    let mut s = db.store.begin_import(false).await.expect("import");
    s.upsert(rows, at).await.expect("upsert");
    s.finish(true).await.expect("finish");
    for t in ["@new85", "@new86", "@old0", "@walk_in"] {
        db.store
            .queue_event(&fluidtalk_runner::store::NewEvent {
                target: t,
                event_type: "story_reaction",
                context: Some(r#"{"emoji": "🔥"}"#),
                now: at,
            })
            .await
            .expect("queue an event");
    }
}

/// A digest of every table the forecast must not touch.
async fn fingerprint(db: &TestDb) -> String {
    let leads = db
        .store
        .list_leads(&fluidtalk_runner::store::LeadFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .expect("leads");
    let attempts = db.store.attempts_after(0, 100_000).await.expect("attempts");
    let events = db.store.queued_events(None).await.expect("events");
    let runs = db.store.last_runs().await.expect("runs");
    let pauses = db.store.pauses().await.expect("pauses");
    let outbox = db.store.outbox(true).await.expect("outbox");
    format!("{leads:?}\n{attempts:?}\n{events:?}\n{runs:?}\n{pauses:?}\n{outbox:?}")
}

/// Runs the campaign for real from `from()` for `days` days: the daemon fires each job at
/// its times on the manual clock and the runner calls the simulator. Returns one row per
/// day, counted from the database the way a person would.
async fn reality(db: &TestDb, text: &str, days: u32, tokens: Option<u64>) -> Vec<Day> {
    let (url, sim) = spawn_sim(SimConfig {
        tokens,
        ..SimConfig::default()
    })
    .await;
    // The leads contacted before the week have their conversations at the API.
    let old: Vec<String> = (0..6).map(|i| format!("@old{i}")).collect();
    sim.hold_conversations(old.iter().map(String::as_str));
    let config = campaign_of(text, &url);
    let mut cc = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
    cc.base_url = url;
    let clock = Arc::new(ManualClock::new(from()));
    let runner = Runner::new(
        db.store.clone(),
        Client::new(cc).expect("client"),
        Arc::new(config.clone()),
        clock.clone(),
        "reality".into(),
    );
    let daemon = Daemon::new(
        &config,
        db.store.clone(),
        Some(runner),
        clock.clone(),
        "reality".into(),
    );
    let first = from().with_timezone(&ZONE).date_naive();
    let dates: Vec<NaiveDate> = first.iter_days().take(days as usize).collect();
    let mut rows: Vec<Day> = dates
        .iter()
        .map(|d| Day {
            date: *d,
            ..Day::default()
        })
        .collect();
    let mut exhausted_before = exhausted(db).await;
    for row in rows.iter_mut() {
        let end = midnight_after(row.date);
        loop {
            let next = daemon.next_fires().into_iter().filter_map(|(_, t)| t).min();
            let Some(at) = next.filter(|t| *t < end) else {
                break;
            };
            clock.set(at.max(clock.now()));
            for (_, _, run) in daemon.poll().await {
                if let Some(run) = run {
                    run.await.expect("the run");
                }
            }
        }
        clock.set(end.max(clock.now()));
        for job in &config.jobs {
            let due = due_now(&*db.store, job, clock.now()).await.expect("due");
            row.due_by_job.insert(job.name.clone(), due);
            row.due_at_end += due;
        }
        let now = exhausted(db).await;
        row.exhausted = now - exhausted_before;
        exhausted_before = now;
    }
    for a in db.store.attempts_after(0, 100_000).await.expect("attempts") {
        let a = a.attempt;
        let date = a.started_at.with_timezone(&ZONE).date_naive();
        let Some(row) = rows.iter_mut().find(|r| r.date == date) else {
            continue;
        };
        let acted = !matches!(
            a.status,
            AttemptStatus::OutOfTokens | AttemptStatus::TransientError | AttemptStatus::Cancelled
        );
        match (a.action, acted) {
            (Action::Opener, true) => row.openers += 1,
            (Action::FollowUp, true) => *row.follow_ups.entry(a.step).or_default() += 1,
            (Action::Event, true) => row.events += 1,
            _ => {}
        }
        if let (Some(sender), true) = (&a.sender, acted) {
            let s = row.by_sender.entry(sender.clone()).or_default();
            match a.action {
                Action::Opener => s.openers += 1,
                Action::FollowUp => s.follow_ups += 1,
                Action::Event => s.events += 1,
                Action::Inbound => {}
            }
        }
        if a.status == AttemptStatus::Sent && a.action != Action::FollowUp {
            row.tokens += 1;
        }
        if a.status == AttemptStatus::OutOfTokens {
            row.out_of_tokens += 1;
        }
    }
    rows
}

fn midnight_after(date: NaiveDate) -> DateTime<Utc> {
    let next = date.succ_opt().expect("a next day");
    ZONE.from_local_datetime(&next.and_hms_opt(0, 0, 0).expect("midnight"))
        .single()
        .expect("Berlin has midnight")
        .with_timezone(&Utc)
}

async fn exhausted(db: &TestDb) -> u64 {
    db.store.count_by_state().await.expect("counts")[&LeadState::Exhausted]
}

/// The columns reality and forecast must agree on. The number of 402 answers in a run is
/// not one of them: calls already in flight when the first 402 arrives meet one too, and
/// how many are depends on the race between them (in a live run as much as here); whether
/// a day met 402 is.
fn comparable(days: &[Day]) -> Vec<String> {
    days.iter()
        .map(|d| {
            format!(
                "{} openers={} follow_ups={:?} events={} tokens={} met_402={} exhausted={} due={:?} by_sender={:?}",
                d.date,
                d.openers,
                d.follow_ups,
                d.events,
                d.tokens,
                d.out_of_tokens > 0,
                d.exhausted,
                d.due_by_job,
                d.by_sender
            )
        })
        .collect()
}

async fn forecast_then_reality(db: TestDb, tokens: Option<u64>) -> Vec<Day> {
    forecast_then_reality_of(db, CAMPAIGN, tokens).await
}

async fn forecast_then_reality_of(db: TestDb, text: &str, tokens: Option<u64>) -> Vec<Day> {
    seed(&db).await;
    let before = fingerprint(&db).await;
    let opts = Options {
        from: from(),
        days: 7,
        zone: ZONE,
        assumptions: Assumptions {
            tokens,
            ..Assumptions::default()
        },
    };
    // Over a read-only connection, as the command opens it; the campaign's API URL is
    // never called: the forecast has its own simulator.
    let source = fluidtalk_runner::store::open_read_only(&db.url)
        .await
        .expect("a read-only store");
    let f = forecast::forecast(&*source, &campaign_of(text, "http://127.0.0.1:9"), &opts)
        .await
        .expect("the forecast");
    assert_eq!(f.leads, 97);
    assert_eq!(
        fingerprint(&db).await,
        before,
        "the forecast wrote to the campaign's database"
    );
    let real = reality(&db, text, 7, tokens).await;
    assert_eq!(
        comparable(&f.days),
        comparable(&real),
        "forecast (left) against reality (right)"
    );
    // The forecast did something worth comparing: every kind of call, and exhaustion.
    let sum = |f: fn(&Day) -> u64| real.iter().map(f).sum::<u64>();
    assert!(sum(|d| d.openers) > 0 && sum(|d| d.follow_ups_total()) > 0 && sum(|d| d.events) > 0);
    assert!(sum(|d| d.exhausted) > 0);
    f.days
}

async fn matches_reality_with_rates_at_zero(db: TestDb) {
    let days = forecast_then_reality(db, None).await;
    // Monday: 25 openers (the cap) with the rest waiting, the New York leads included.
    assert_eq!(days[0].openers, 25);
    assert_eq!(days[0].bottleneck.as_deref(), Some("daily cap of openers"));
    // Thursday: the last Berlin leads; the New York ones wait for a window that never
    // opens at 09:00 Berlin time.
    assert_eq!(days[3].due_by_job["openers"], 9);
    assert_eq!(
        days[3].bottleneck.as_deref(),
        Some("send window of openers"),
        "{days:#?}"
    );
    // Saturday and Sunday are outside the window: no openers.
    assert_eq!((days[5].openers, days[6].openers), (0, 0), "{days:#?}");
    assert!(days.iter().all(|d| d.out_of_tokens == 0));
}

async fn matches_reality_when_tokens_run_out(db: TestDb) {
    let days = forecast_then_reality(db, Some(40)).await;
    // 40 tokens: 25 openers and the 2 events for new leads on Monday, 13 more on Tuesday,
    // then 402 and a pause.
    let tokens: u64 = days.iter().map(|d| d.tokens).sum();
    assert_eq!(tokens, 40, "{days:#?}");
    let first = days
        .iter()
        .find_map(|d| d.out_of_tokens_at)
        .expect("a 402 in the week");
    assert_eq!(
        first.with_timezone(&ZONE).date_naive(),
        NaiveDate::from_ymd_opt(2026, 12, 1).expect("date")
    );
    assert!(days[1].paused_until.is_some(), "{:#?}", days[1]);
    assert!(days.iter().any(|d| {
        d.bottleneck
            .as_deref()
            .is_some_and(|b| b.contains("out of tokens (openers)"))
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forecast_matches_a_real_run_day_by_day_on_sqlite() {
    matches_reality_with_rates_at_zero(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forecast_matches_a_real_run_day_by_day_on_postgres() {
    if let Some(db) = common::db::postgres().await {
        matches_reality_with_rates_at_zero(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forecast_matches_a_real_run_whose_tokens_run_out_on_sqlite() {
    matches_reality_when_tokens_run_out(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forecast_matches_a_real_run_whose_tokens_run_out_on_postgres() {
    if let Some(db) = common::db::postgres().await {
        matches_reality_when_tokens_run_out(db).await;
    }
}

/// `CAMPAIGN` with two sender accounts over the openers: one ramping up from 4 a day by 4,
/// one at 8 a day; the follow-ups keep each lead's sender.
fn with_senders() -> String {
    CAMPAIGN.replace("daily_cap = 25\n", "senders = [\"@anna\", \"@ben\"]\n")
        + r#"
[[sender]]
username = "@anna"
daily_cap = 20
timezone = "Europe/Berlin"
warmup = { start = 4, step = 4, every = "1d" }

[[sender]]
username = "@ben"
daily_cap = 8
timezone = "Europe/Berlin"
"#
}

async fn matches_reality_with_senders(db: TestDb) {
    let text = with_senders();
    assert!(
        text.contains("senders = ["),
        "the campaign names the senders"
    );
    let days = forecast_then_reality_of(db, &text, None).await;
    let openers = |d: &Day, s: &str| d.by_sender.get(s).map_or(0, |n| n.openers);
    // Monday to Wednesday: the ramp gives @anna 4, 8, 12; @ben keeps to 8.
    let ramp: Vec<(u64, u64)> = days[..3]
        .iter()
        .map(|d| (openers(d, "@anna"), openers(d, "@ben")))
        .collect();
    assert_eq!(ramp, vec![(4, 8), (8, 8), (12, 8)], "{days:#?}");
    // Follow-ups go out with each lead's sender.
    assert!(
        days.iter()
            .any(|d| d.by_sender.values().any(|n| n.follow_ups > 0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forecast_follows_each_senders_ramp_as_a_real_run_on_sqlite() {
    matches_reality_with_senders(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forecast_follows_each_senders_ramp_as_a_real_run_on_postgres() {
    if let Some(db) = common::db::postgres().await {
        matches_reality_with_senders(db).await;
    }
}
