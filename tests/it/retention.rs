//! Retention (issue 19, item 3) on SQLite and PostgreSQL: the `[retention]` settings, prune
//! statements of at most 1,000 rows that remove only what retention may remove, attempts
//! kept while the never-send-twice rule needs them, the hourly prune claimed once across
//! daemons, SQLite's space given back, the pruned-rows metric and `prune` by hand.

use crate::common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::TEST_KEY;
use common::campaign::{Campaign, text};
use common::db::{Raw, TestDb};
use fluidtalk_runner::clock::{Clock, ManualClock};
use fluidtalk_runner::config::{self, Retention};
use fluidtalk_runner::daemon::Daemon;
use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::retention;
use fluidtalk_runner::runner::Runner;
use fluidtalk_runner::store::{
    Action, AttemptEnd, AttemptStatus, LeadInput, NewAttempt, PRUNE_BATCH, PruneTable, StoreError,
};
use std::sync::Arc;

/// A fixed start, and the leads are created at it: nothing depends on today's date.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0)
        .single()
        .expect("valid")
}

fn parse(text: &str) -> Result<config::Config, String> {
    config::parse(std::path::Path::new("jobs.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn retention_settings_have_defaults_and_ranges_and_errors_name_the_key() {
    let c = parse("").expect("an empty file");
    let day = std::time::Duration::from_secs(86_400);
    assert_eq!(
        c.retention,
        Retention {
            runs: day * 30,
            outbox: day * 30,
            events: day * 30,
            attempts: day * 365,
        }
    );
    let c = parse(
        "[retention]\nruns = \"1h\"\noutbox = \"100years\"\nevents = \"7d\"\nattempts = \"2y\"\n",
    )
    .expect("in range");
    assert_eq!(c.retention.runs, std::time::Duration::from_secs(3600));
    assert_eq!(c.retention.events, day * 7);
    for (text, key, expected) in [
        ("[retention]\nruns = \"59m\"\n", "runs", "out of range"),
        (
            "[retention]\noutbox = \"101years\"\n",
            "outbox",
            "out of range",
        ),
        (
            "[retention]\nevents = \"soon\"\n",
            "events",
            "not a duration",
        ),
        ("[retention]\nattempts = 30\n", "attempts", "invalid type"),
        ("[retention]\nticks = \"1d\"\n", "ticks", "unknown field"),
    ] {
        let e = parse(text).expect_err(text);
        assert!(
            e.contains("jobs.toml: line 2")
                && e.contains(&format!("[retention] {key}"))
                && e.contains(expected),
            "{text}: {e}"
        );
    }
    let e = parse("[retention]\nruns = \"59m\"\n").expect_err("short");
    assert!(e.contains("expected from 1h to 100years"), "{e}");
}

/// Runs one statement with no parameters and returns the count it selects.
async fn count(db: &TestDb, sql: &'static str) -> i64 {
    match &db.raw {
        Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        Raw::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Old and recent rows of every table retention prunes but attempts, written as the store
/// writes them (timestamps in the stores' own text form, which PostgreSQL reads too).
async fn old_and_recent_rows(db: &TestDb) {
    // 2,500 ticks and job runs from 2025 and 10 of each from the day before `t0`.
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)
         INSERT INTO ticks (job, scheduled_at, runner_id, claimed_at)
         SELECT 'old' || i, '2025-01-01T00:00:00.000000Z', 'r', '2025-01-01T00:00:00.000000Z' FROM n",
    )
    .await;
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
         INSERT INTO ticks (job, scheduled_at, runner_id, claimed_at)
         SELECT 'new' || i, '2026-03-01T08:00:00.000000Z', 'r', '2026-03-01T08:00:00.000000Z' FROM n",
    )
    .await;
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)
         INSERT INTO job_runs (job, runner_id, started_at, finished_at)
         SELECT 'old', 'r', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:01.000000Z' FROM n",
    )
    .await;
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
         INSERT INTO job_runs (job, runner_id, started_at) SELECT 'new', 'r', '2026-03-01T08:00:00.000000Z' FROM n",
    )
    .await;
    db.exec(
        "INSERT INTO leads (target, created_at, updated_at, next_eligible_at, state, last_contact_at)
         VALUES ('@events', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z',
                 '2025-01-01T00:00:00.000000Z', 'contacted', '2025-01-01T00:00:00.000000Z')",
    )
    .await;
    // Events: old sent and dropped (pruned), old queued (kept: not done), recent sent.
    for sql in [
        "INSERT INTO events (lead_id, event_type, state, created_at, processed_at)
         SELECT id, 'story_reaction', 'sent', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z' FROM leads",
        "INSERT INTO events (lead_id, event_type, state, created_at, processed_at)
         SELECT id, 'story_reaction', 'dropped', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z' FROM leads",
        "INSERT INTO events (lead_id, event_type, state, created_at)
         SELECT id, 'story_reaction', 'queued', '2025-01-01T00:00:00.000000Z' FROM leads",
        "INSERT INTO events (lead_id, event_type, state, created_at, processed_at)
         SELECT id, 'story_reaction', 'sent', '2026-03-01T08:00:00.000000Z', '2026-03-01T08:00:00.000000Z' FROM leads",
    ] {
        db.exec(sql).await;
    }
    // Attempts: a lead reopened once (a 404 on a follow-up), whose opener step 0 is passed
    // (pruned) and step 1 is its current one (kept); a call that held no step (pruned); a
    // recent one (kept: the newest, and within the window).
    for sql in [
        "INSERT INTO leads (target, created_at, updated_at, next_eligible_at, state, last_contact_at, reopens)
         VALUES ('@reopened', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z',
                 '2025-01-01T00:00:00.000000Z', 'contacted', '2025-01-03T00:00:00.000000Z', 1)",
        "INSERT INTO attempts (lead_id, job, action, step, status, started_at, finished_at, runner_id)
         SELECT id, 'o', 'opener', 0, 'sent', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:01.000000Z', 'r'
         FROM leads WHERE target = '@reopened'",
        "INSERT INTO attempts (lead_id, job, action, step, status, started_at, finished_at, runner_id)
         SELECT id, 'o', 'opener', 1, 'sent', '2025-01-03T00:00:00.000000Z', '2025-01-03T00:00:01.000000Z', 'r'
         FROM leads WHERE target = '@reopened'",
        "INSERT INTO attempts (lead_id, job, action, step, status, started_at, finished_at, runner_id)
         SELECT id, 'o', 'opener', 0, 'transient_error', '2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:01.000000Z', 'r'
         FROM leads WHERE target = '@events'",
        "INSERT INTO attempts (lead_id, job, action, step, status, started_at, finished_at, runner_id)
         SELECT id, 'o', 'opener', 0, 'sent', '2026-03-01T08:00:00.000000Z', '2026-03-01T08:00:01.000000Z', 'r'
         FROM leads WHERE target = '@events'",
    ] {
        db.exec(sql).await;
    }
}

fn settings() -> Retention {
    let day = std::time::Duration::from_secs(86_400);
    Retention {
        runs: day * 30,
        outbox: day * 30,
        events: day * 30,
        attempts: day * 30,
    }
}

async fn prune_statements_are_bounded_and_remove_only_old_finished_rows(db: TestDb) {
    old_and_recent_rows(&db).await;
    let r = settings();
    let now = t0();
    let would = retention::would_prune(&*db.store, &r, now)
        .await
        .expect("dry");
    assert_eq!(would.rows["ticks"], 2500);
    assert_eq!(would.rows["job_runs"], 2500);
    assert_eq!(would.rows["events"], 2, "old sent and dropped, not queued");
    assert_eq!(
        would.rows["attempts"], 2,
        "the reopened lead's passed opener and the call that held no step"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM ticks").await,
        2510,
        "a dry run removes nothing"
    );
    // One statement removes at most PRUNE_BATCH rows, whatever it is asked.
    let cut = retention::cutoff(PruneTable::Ticks, &r, now);
    assert_eq!(
        db.store
            .prune_batch(PruneTable::Ticks, cut, 5_000)
            .await
            .expect("batch"),
        u64::from(PRUNE_BATCH)
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM ticks").await, 1510);
    // A run bounded to one statement per table stops with rows left, and says so.
    let bounded = retention::prune(&*db.store, &r, now, Some(1), None)
        .await
        .expect("bounded prune");
    assert!(!bounded.complete);
    assert_eq!(bounded.rows["ticks"], 1000);
    assert_eq!(bounded.rows["job_runs"], 1000);
    let rest = retention::prune(&*db.store, &r, now, None, None)
        .await
        .expect("prune");
    assert!(rest.complete);
    assert_eq!(rest.rows["ticks"], 500);
    assert_eq!(rest.rows["job_runs"], 1500);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM ticks").await, 10);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM job_runs").await, 10);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM events WHERE state = 'queued'").await,
        1,
        "a queued event is never pruned, however old"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events").await, 2);
    assert_eq!(rest.rows["attempts"] + bounded.rows["attempts"], 2);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM attempts WHERE step = 1 OR started_at > '2026-01-01'"
        )
        .await,
        2,
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM attempts").await,
        2,
        "the current opener and the recent one"
    );
    let again = retention::would_prune(&*db.store, &r, now)
        .await
        .expect("dry");
    assert_eq!(again.total(), 0, "{again:?}");
}

#[tokio::test]
async fn prune_statements_are_bounded_and_remove_only_old_finished_rows_sqlite() {
    prune_statements_are_bounded_and_remove_only_old_finished_rows(common::db::sqlite().await)
        .await;
}

#[tokio::test]
async fn prune_statements_are_bounded_and_remove_only_old_finished_rows_postgres() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    prune_statements_are_bounded_and_remove_only_old_finished_rows(db).await;
}

/// A daemon on `db` with the simulator, the campaign `toml` and a manual clock at `t0`.
async fn daemon_on(
    db: &TestDb,
    toml: &str,
    runner: &str,
    clock: Arc<ManualClock>,
) -> (Daemon, fluidtalk_runner::sim::Simulator) {
    let (url, sim) = common::spawn_sim(fluidtalk_runner::sim::SimConfig::default()).await;
    let text = format!("[fluidtalk]\nbase_url = \"{url}\"\n[limits]\nper_second = 100000\n{toml}");
    let config = Arc::new(config::parse(std::path::Path::new("jobs.toml"), &text).expect("parses"));
    let mut cc = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
    cc.base_url = url;
    let client = Client::new(cc).expect("client");
    let r = Runner::new(
        db.store.clone(),
        client,
        config.clone(),
        clock.clone(),
        runner.into(),
    );
    let d = Daemon::new(&config, db.store.clone(), Some(r), clock, runner.into());
    (d, sim)
}

async fn import(db: &TestDb, targets: &[String], at: DateTime<Utc>) {
    let mut s = db.store.begin_import(false).await.expect("import");
    let rows = targets
        .iter()
        .map(|t| LeadInput {
            target: t.clone(),
            ..Default::default()
        })
        .collect();
    s.upsert(rows, at).await.expect("upsert");
    s.finish(true).await.expect("finish");
}

/// Polls once and waits for the runs it started.
async fn tick(d: &Daemon) -> usize {
    let mut n = 0;
    for (_, _, handle) in d.poll().await {
        if let Some(h) = handle {
            h.await.expect("run");
            n += 1;
        }
    }
    n
}

const CAMPAIGN: &str = "[retention]\nruns = \"1h\"\noutbox = \"1h\"\nevents = \"1h\"\nattempts = \"1h\"\n\
[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\n\
[[job]]\nname = \"follow_ups\"\nkind = \"follow_up\"\nschedule = \"0 * * * * *\"\nquiet_after = [\"1h\"]\nmax_follow_ups = 2\n";

async fn starts(db: &TestDb, lead_id: i64, action: Action, step: i64) -> Result<i64, StoreError> {
    db.store
        .start_attempts(&[NewAttempt {
            lead_id,
            job: "again".into(),
            action,
            step,
            lease_token: "again/1".into(),
            started_at: Utc::now(),
            claimed: None,
            sender: None,
        }])
        .await
        .map(|ids| ids[0])
}

/// The attempts pruning removes are those of steps the lead can never be sent again; the
/// one that proves the opener was sent stays, so the database still refuses a second
/// opener, and a follow-up whose outcome is unknown keeps its step.
async fn pruning_never_lets_a_step_be_sent_twice(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t0()));
    let (d, sim) = daemon_on(&db, CAMPAIGN, "r1", clock.clone()).await;
    let targets: Vec<String> = (0..5).map(|i| format!("@twice{i}")).collect();
    import(&db, &targets, t0()).await;
    // Openers, then two follow-ups an hour apart, then the leads are exhausted.
    for _ in 0..5 {
        clock.advance(Duration::minutes(61));
        tick(&d).await;
    }
    let calls = |action: &str| sim.log().iter().filter(|e| e.action == action).count();
    assert_eq!(calls("OUTREACH"), 5);
    assert_eq!(calls("FOLLOW_UP"), 10);
    let lead = db
        .store
        .get_lead("@twice0")
        .await
        .expect("get")
        .expect("lead");
    assert_eq!(lead.state.as_str(), "exhausted");
    assert_eq!(lead.follow_ups_total, 2);
    // A follow-up of another lead whose answer never came: its step is held.
    let held = db
        .store
        .get_lead("@twice1")
        .await
        .expect("get")
        .expect("lead");
    let unknown = starts(&db, held.id, Action::FollowUp, 3)
        .await
        .expect("start");
    db.store
        .finish_attempts(&[AttemptEnd {
            attempt_id: unknown,
            status: AttemptStatus::Unknown,
            http_status: None,
            error_kind: None,
            error_detail: None,
            session_id: None,
            finished_at: Utc::now(),
            message: None,
            release: None,
        }])
        .await
        .expect("unknown");
    // Acknowledge the messages, so their outbox rows (which point at attempts) may go.
    let ids: Vec<i64> = db
        .store
        .outbox(false)
        .await
        .expect("outbox")
        .iter()
        .map(|o| o.id)
        .collect();
    db.store.ack_outbox(&ids, clock.now()).await.expect("ack");
    // A year later everything is past every setting.
    clock.advance(Duration::days(365));
    let pruned = retention::prune(&*db.store, &config_retention(), clock.now(), None, None)
        .await
        .expect("prune");
    assert!(pruned.rows["attempts"] > 0, "{pruned:?}");
    assert!(pruned.rows["outbox"] > 0, "{pruned:?}");
    let left = count(
        &db,
        "SELECT COUNT(*) FROM attempts WHERE action = 'opener' AND status = 'sent'",
    )
    .await;
    assert_eq!(
        left, 5,
        "every lead keeps the attempt that proves its opener was sent"
    );
    // Follow-up steps up to the lead's follow-ups over its life are never planned again:
    // all ten go, but for one the newest outbox row still points at (a table's newest row
    // is kept, so SQLite never hands its id out again).
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM attempts WHERE action = 'follow_up' AND step <= 2
             AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.attempt_id = attempts.id)"
        )
        .await,
        0
    );
    assert!(
        count(
            &db,
            "SELECT COUNT(*) FROM attempts WHERE action = 'follow_up' AND step <= 2"
        )
        .await
            <= 1
    );
    for t in &targets {
        let lead = db.store.get_lead(t).await.expect("get").expect("lead");
        assert!(
            matches!(
                starts(&db, lead.id, Action::Opener, i64::from(lead.reopens)).await,
                Err(StoreError::AlreadySent { .. })
            ),
            "{t}: a second opener is refused after the prune"
        );
    }
    assert!(
        matches!(
            starts(&db, held.id, Action::FollowUp, 3).await,
            Err(StoreError::AlreadySent { .. })
        ),
        "the unknown follow-up still holds its step"
    );
    // And the daemon, on for another day, sends nothing again.
    let before = sim.log().len();
    for _ in 0..24 {
        clock.advance(Duration::hours(1));
        tick(&d).await;
    }
    assert_eq!(sim.log().len(), before, "nothing sent again");
}

fn config_retention() -> Retention {
    parse(CAMPAIGN).expect("parses").retention
}

#[tokio::test(flavor = "multi_thread")]
async fn pruning_never_lets_a_step_be_sent_twice_sqlite() {
    pruning_never_lets_a_step_be_sent_twice(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pruning_never_lets_a_step_be_sent_twice_postgres() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    pruning_never_lets_a_step_be_sent_twice(db).await;
}

/// Two daemons on one database: each hour's prune is claimed by one of them; a daemon
/// prunes at most once an hour, on its clock, and counts what it removed in the metric.
async fn the_hourly_prune_is_claimed_once_across_daemons(db: TestDb) {
    let handle = fluidtalk_runner::metrics::install();
    old_and_recent_rows(&db).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (d1, _s1) = daemon_on(&db, "[retention]\nruns = \"30d\"\n", "r1", clock.clone()).await;
    let (d2, _s2) = daemon_on(&db, "[retention]\nruns = \"30d\"\n", "r2", clock.clone()).await;
    let first = d1.prune_if_due().expect("due at the first heartbeat");
    let second = d2.prune_if_due().expect("due at its first heartbeat too");
    first.await.expect("prune");
    second.await.expect("prune");
    assert!(d1.prune_if_due().is_none(), "not again within the hour");
    let claims = count(&db, "SELECT COUNT(*) FROM prunes").await;
    assert_eq!(claims, 1, "one claim for the hour");
    let owner: String = match &db.raw {
        Raw::Sqlite(p) => {
            sqlx::query_scalar("SELECT runner_id FROM prunes")
                .fetch_one(p)
                .await
        }
        Raw::Postgres(p) => {
            sqlx::query_scalar("SELECT runner_id FROM prunes")
                .fetch_one(p)
                .await
        }
    }
    .expect("owner");
    assert!(owner == "r1" || owner == "r2", "{owner}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM ticks").await,
        10,
        "pruned once, fully"
    );
    let removed: String = match &db.raw {
        Raw::Sqlite(p) => {
            sqlx::query_scalar("SELECT removed FROM prunes")
                .fetch_one(p)
                .await
        }
        Raw::Postgres(p) => {
            sqlx::query_scalar("SELECT removed FROM prunes")
                .fetch_one(p)
                .await
        }
    }
    .expect("removed");
    let removed: serde_json::Value = serde_json::from_str(&removed).expect("json");
    assert_eq!(removed["ticks"], 2500, "{removed}");
    let metrics = handle.render();
    assert!(
        metrics.contains("fluidtalk_runner_pruned_rows_total{table=\"ticks\"}"),
        "{metrics}"
    );
    // The next clock hour: one of them prunes again (nothing left but its claim stays).
    clock.advance(Duration::minutes(61));
    let h1 = d1.prune_if_due().expect("due in the next hour");
    let h2 = d2.prune_if_due().expect("due in the next hour");
    h1.await.expect("prune");
    h2.await.expect("prune");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM prunes").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hourly_prune_is_claimed_once_across_daemons_sqlite() {
    the_hourly_prune_is_claimed_once_across_daemons(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hourly_prune_is_claimed_once_across_daemons_postgres() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    the_hourly_prune_is_claimed_once_across_daemons(db).await;
}

#[tokio::test]
async fn a_claim_retried_after_its_answer_was_lost_is_its_own() {
    let db = common::db::sqlite().await;
    let hour = retention::hour_of(t0());
    assert!(db.store.claim_prune(hour, "r1", t0()).await.expect("claim"));
    assert!(
        db.store.claim_prune(hour, "r1", t0()).await.expect("again"),
        "its own"
    );
    assert!(!db.store.claim_prune(hour, "r2", t0()).await.expect("other"));
    let r = settings();
    let other = retention::hourly(
        &*db.store,
        &r,
        "r2",
        t0(),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("hourly");
    assert!(other.is_none(), "another runner's hour is not pruned twice");
}

async fn sqlite_page_count(db: &TestDb, pragma: &'static str) -> i64 {
    let Raw::Sqlite(p) = &db.raw else {
        panic!("sqlite")
    };
    sqlx::query_scalar(pragma).fetch_one(p).await.expect(pragma)
}

/// A new SQLite file is made with `auto_vacuum = INCREMENTAL`, so a prune gives the pages
/// it freed back to the file system.
#[tokio::test]
async fn a_new_sqlite_file_gives_pruned_space_back() {
    let db = common::db::sqlite().await;
    assert_eq!(
        sqlite_page_count(&db, "PRAGMA auto_vacuum").await,
        2,
        "incremental"
    );
    old_and_recent_rows(&db).await;
    let pages = sqlite_page_count(&db, "PRAGMA page_count").await;
    let pruned = retention::prune(&*db.store, &settings(), t0(), None, None)
        .await
        .expect("prune");
    assert_eq!(pruned.rows["ticks"], 2500);
    let free = db.store.reclaim_space(u32::MAX).await.expect("reclaim");
    assert_eq!(free, 0, "every free page given back");
    let after = sqlite_page_count(&db, "PRAGMA page_count").await;
    assert!(after < pages, "the file shrank: {pages} -> {after} pages");
}

/// A file made before this version keeps `auto_vacuum = NONE` (changing it needs a VACUUM,
/// left to the operator): pruning works, and the freed pages stay in the file for reuse.
#[tokio::test]
async fn an_older_sqlite_file_keeps_its_free_pages_for_reuse() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        use sqlx::ConnectOptions;
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("url");
        let mut c = opts
            .create_if_missing(true)
            .connect()
            .await
            .expect("create");
        sqlx::query("CREATE TABLE made_before (x INTEGER)")
            .execute(&mut c)
            .await
            .expect("a table: the file's auto_vacuum is fixed from here");
    }
    let store = fluidtalk_runner::store::open(&url).await.expect("open");
    let raw = sqlx::SqlitePool::connect(&url).await.expect("raw");
    let av: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&raw)
        .await
        .expect("av");
    assert_eq!(av, 0, "left as it was");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO ticks (job, scheduled_at, runner_id, claimed_at)
         SELECT 'old' || i, '2025-01-01T00:00:00.000000Z', 'r', '2025-01-01T00:00:00.000000Z' FROM n",
    )
    .execute(&raw)
    .await
    .expect("ticks");
    let pruned = retention::prune(&*store, &settings(), t0(), None, None)
        .await
        .expect("prune");
    assert_eq!(pruned.rows["ticks"], 3000);
    let free = store.reclaim_space(u32::MAX).await.expect("reclaim");
    assert!(free > 0, "free pages stay in the file (reused by new rows)");
}

const PRUNE_CAMPAIGN: &str = "[retention]\nruns = \"1d\"\n";

/// `prune` by hand: what it would remove, then what it removed, per table; a file that is
/// not there is not created; a setting out of range is refused naming the key.
#[tokio::test(flavor = "multi_thread")]
async fn the_prune_command_says_what_it_removes() {
    let c = Campaign::on_sqlite(&[], "", PRUNE_CAMPAIGN).await;
    let Raw::Sqlite(p) = &c.raw else {
        panic!("sqlite")
    };
    let now = Utc::now();
    for i in 0..1500 {
        let at = (now - Duration::days(2))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        sqlx::query(
            "INSERT INTO ticks (job, scheduled_at, runner_id, claimed_at) VALUES ($1, $2, 'r', $2)",
        )
        .bind(format!("j{i}"))
        .bind(at)
        .execute(p)
        .await
        .expect("tick");
    }
    let dry = c.ok(&["prune", "--dry-run", "--json"], &[]).await;
    let dry: serde_json::Value = serde_json::from_str(&dry).expect("json");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["would_remove"]["ticks"], 1500, "{dry}");
    assert_eq!(dry["would_remove"]["attempts"], 0, "{dry}");
    let ticks = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ticks")
            .fetch_one(p)
            .await
            .expect("count")
    };
    assert_eq!(ticks().await, 1500, "a dry run removes nothing");
    let out = c.ok(&["prune"], &[]).await;
    assert!(out.starts_with("removed 1500 rows"), "{out}");
    assert!(out.contains("ticks") && out.contains("1500"), "{out}");
    assert_eq!(ticks().await, 0);
    let again = c.ok(&["prune", "--json"], &[]).await;
    let again: serde_json::Value = serde_json::from_str(&again).expect("json");
    assert_eq!(again["total"], 0, "{again}");
    // The clock the runner runs on decides what is old (FLUIDTALK_CLOCK_OFFSET, as tests
    // move a real process's time).
    let later = c
        .ok(
            &["prune", "--dry-run", "--json"],
            &[("FLUIDTALK_CLOCK_OFFSET", "3d")],
        )
        .await;
    let later: serde_json::Value = serde_json::from_str(&later).expect("json");
    assert_eq!(later["dry_run"], true);

    // No database there: nothing created, exit 6.
    let gone = c.dir.path().join("nowhere.db");
    let out = c
        .output(
            &["prune"],
            &[("DATABASE_URL", &format!("sqlite://{}", gone.display()))],
        )
        .await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(!gone.exists(), "prune never creates a database");
    // A setting out of range: exit 3, naming the file, line and key.
    std::fs::write(
        c.dir.path().join("bad.toml"),
        "[retention]\nattempts = \"30m\"\n",
    )
    .expect("write");
    let out = c.output(&["prune", "--config", "bad.toml"], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 2") && err.contains("[retention] attempts"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prune_command_works_on_postgres() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    old_and_recent_rows(&db).await;
    // Only the rows from 2025 stay: past 30 days on any date this test can run.
    db.exec("DELETE FROM ticks WHERE job LIKE 'new%'").await;
    db.exec("DELETE FROM job_runs WHERE job = 'new'").await;
    let c = Campaign::new(db, &[], "", "[retention]\nruns = \"30d\"\n").await;
    let out = c.ok(&["prune", "--json"], &[]).await;
    let out: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(out["removed"]["ticks"], 2500, "{out}");
    // A table's newest row is kept (ids are never handed out again): one of the old runs.
    assert_eq!(out["removed"]["job_runs"], 2499, "{out}");
    assert!(out.get("sqlite_free_pages").is_none(), "{out}");
}
