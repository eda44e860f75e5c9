//! Job pauses (`job pause|resume|list`, `/v1/jobs`, the dashboard's Pause / Resume): a
//! paused job's run makes no call and says why (text and JSON, live and dry), whichever
//! process wrote the pause and whenever (before a run, between a daemon's fires, in the
//! middle of a run); a pause for a while ends by itself and retention removes it; the
//! forecast leaves a paused job's days empty; unknown jobs and bad asks are refused with
//! errors naming them. On a SQLite file and on PostgreSQL when `TEST_DATABASE_URL` is set.

use crate::common;

use chrono::{DateTime, TimeZone, Utc};
use common::campaign::{Campaign, text};
use common::db::TestDb;
use common::http::serve;
use common::{TEST_KEY, spawn_sim};
use fluidtalk_runner::clock::{Clock, ManualClock};
use fluidtalk_runner::config::{self, Config};
use fluidtalk_runner::daemon::Daemon;
use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::runner::Runner;
use fluidtalk_runner::sim::SimConfig;
use fluidtalk_runner::store::{self, JOB_PAUSES_MAX, JobPause, LeadInput, PruneTable, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;

const JOBS: &str = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n\n\
                    [[job]]\nname = \"follow-ups\"\nkind = \"follow_up\"\nschedule = \"0 30 * * * *\"\nquiet_after = [\"24h\"]\n";

/// Monday 2026-11-23 10:00 UTC.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("valid")
}

async fn campaign(db: TestDb) -> Campaign {
    let c = Campaign::new(db, &[], "", JOBS).await;
    c.import(["@a".to_string(), "@b".to_string(), "@c".to_string()])
        .await;
    c
}

/// Paused from the command line: `run` (text and JSON), the dry run, `status` and `job
/// list` say so and nothing reaches the API; resumed, the next run sends.
async fn a_paused_job_makes_no_call_and_says_why_until_resumed(db: TestDb) {
    let c = campaign(db).await;
    // A month ahead of the machine's clock, which the binary reads.
    let until = (Utc::now() + chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = c
        .ok(
            &[
                "job",
                "pause",
                "openers",
                "--until",
                &until,
                "--reason",
                "list review",
            ],
            &[],
        )
        .await;
    let why = format!("job paused until {until} (list review)");
    assert!(out.contains(&format!("openers: {why}")), "{out}");

    // Why, by one name in the text and the JSON of a run and a dry run (not "no lead due").
    let out = c.ok(&["run", "openers"], &[]).await;
    assert_eq!(
        out.trim(),
        format!("openers: nothing sent: job_paused: {why}")
    );
    let json: Value = serde_json::from_str(&c.ok(&["run", "--json"], &[]).await).expect("JSON");
    assert_eq!(json["jobs"]["openers"]["held"], why, "{json}");
    let reasons = &json["jobs"]["openers"]["reasons"];
    assert_eq!(reasons[0]["reason"], "job_paused", "{json}");
    let said = reasons[0]["until"].as_str().expect("until");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(said).expect("RFC 3339"),
        chrono::DateTime::parse_from_rfc3339(&until).expect("RFC 3339"),
        "{json}"
    );
    assert_eq!(reasons.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json["total"]["calls"], 0, "{json}");
    let dry = c.ok(&["run", "--dry-run", "openers"], &[]).await;
    assert!(
        dry.contains(&format!("note: {why}"))
            && dry.contains(&format!("why: job_paused: {why}"))
            && !dry.contains("nothing_due")
            && dry.contains("openers: 0 call(s)"),
        "{dry}"
    );
    let dry: Value =
        serde_json::from_str(&c.ok(&["run", "--dry-run", "--json", "openers"], &[]).await)
            .expect("JSON");
    assert_eq!(dry[0]["reasons"][0]["reason"], "job_paused", "{dry}");
    assert!(c.sim_log().await.is_empty(), "a paused job called the API");
    assert_eq!(c.count("SELECT COUNT(*) FROM attempts").await, 0);

    let status = c.ok(&["status"], &[]).await;
    assert!(
        status.contains(&format!("job openers: PAUSED: {why}")),
        "{status}"
    );
    let status: Value =
        serde_json::from_str(&c.ok(&["status", "--json"], &[]).await).expect("JSON");
    assert_eq!(status["jobs"][0]["paused"], true, "{status}");
    assert_eq!(
        status["jobs"][0]["pause"]["reason"], "list review",
        "{status}"
    );
    assert_eq!(status["jobs"][1]["paused"], false, "{status}");
    let list: Value =
        serde_json::from_str(&c.ok(&["job", "list", "--json"], &[]).await).expect("JSON");
    assert_eq!(
        (list[0]["name"].as_str(), list[0]["paused"].as_bool()),
        (Some("openers"), Some(true))
    );
    assert_eq!(list[1]["paused"], false);
    let list = c.ok(&["job", "list"], &[]).await;
    assert!(
        list.contains("openers")
            && list.contains("paused")
            && list.contains("follow-ups               active"),
        "{list}"
    );

    // Pausing again replaces the pause.
    let again: Value =
        serde_json::from_str(&c.ok(&["job", "pause", "openers", "--json"], &[]).await)
            .expect("JSON");
    assert_eq!(again["replaced"]["reason"], "list review", "{again}");
    assert_eq!(again["pause"]["until"], Value::Null, "{again}");

    let out = c.ok(&["job", "resume", "openers"], &[]).await;
    assert!(
        out.contains("openers: resumed (was job paused until resumed)"),
        "{out}"
    );
    let out = c.ok(&["job", "resume", "openers"], &[]).await;
    assert_eq!(out.trim(), "openers: not paused; nothing to resume");
    let json: Value =
        serde_json::from_str(&c.ok(&["job", "resume", "openers", "--json"], &[]).await)
            .expect("JSON");
    assert_eq!(json["resumed"], false);

    let out = c.ok(&["run", "openers"], &[]).await;
    assert_eq!(out.trim(), "openers: sent 3");
    assert_eq!(c.sim_log().await.len(), 3);
}

/// `--for 2h` ends by itself: two hours later (the runner's clock moved by
/// FLUIDTALK_CLOCK_OFFSET, and the dry run's `--at`) the job sends, and the prune removes
/// the ended pause (and not one still in force).
async fn a_pause_for_a_while_ends_by_itself_and_is_pruned(db: TestDb) {
    let c = campaign(db).await;
    c.ok(&["job", "pause", "openers", "--for", "2h"], &[]).await;
    c.ok(&["job", "pause", "follow-ups"], &[]).await;
    let out = c.ok(&["run", "openers"], &[]).await;
    assert!(
        out.starts_with("openers: nothing sent: job_paused: job paused until "),
        "{out}"
    );
    assert!(c.sim_log().await.is_empty());
    let at = (Utc::now() + chrono::Duration::hours(3)).to_rfc3339();
    let dry = c
        .ok(&["run", "--dry-run", "openers", "--at", &at], &[])
        .await;
    assert!(dry.contains("openers: 3 call(s)"), "{dry}");
    assert_eq!(c.count("SELECT COUNT(*) FROM job_pauses").await, 2);

    let later = [("FLUIDTALK_CLOCK_OFFSET", "3h")];
    let list = c.ok(&["job", "list"], &later).await;
    assert!(list.contains("openers                  active"), "{list}");
    let out = c.ok(&["run", "openers"], &later).await;
    assert_eq!(out.trim(), "openers: sent 3");
    assert_eq!(c.sim_log().await.len(), 3);

    let out = c.ok(&["prune", "--json"], &later).await;
    let pruned: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(pruned["removed"]["job_pauses"], 1, "{pruned}");
    let left: i64 = c
        .count("SELECT COUNT(*) FROM job_pauses WHERE job = 'follow-ups'")
        .await;
    assert_eq!(
        (c.count("SELECT COUNT(*) FROM job_pauses").await, left),
        (1, 1),
        "the ended pause went, the one with no end stayed"
    );
}

common::conformance!(
    a_paused_job_makes_no_call_and_says_why_until_resumed,
    a_pause_for_a_while_ends_by_itself_and_is_pruned,
    a_pause_written_between_fires_holds_the_daemons_next_fire,
    the_api_pauses_and_resumes_a_job_and_refuses_bad_asks,
    the_dashboard_buttons_pause_and_resume_with_the_sessions_csrf_token,
    the_job_pauses_table_is_bounded,
);

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_written_by_another_handle_stops_a_run_at_its_next_batch_on_sqlite() {
    a_pause_written_by_another_handle_stops_a_run_at_its_next_batch(common::db::sqlite().await)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_written_by_another_handle_stops_a_run_at_its_next_batch_on_postgres() {
    if let Some(db) = common::db::postgres().await {
        a_pause_written_by_another_handle_stops_a_run_at_its_next_batch(db).await;
    }
}

/// Names not in the campaign file, both ends at once, an end in the past and a reason
/// too long are refused, each naming what is wrong, and nothing is written.
#[tokio::test]
async fn bad_asks_are_refused_naming_the_job_or_the_argument() {
    let c = campaign(common::db::sqlite().await).await;
    let out = c.output(&["job", "pause", "opener"], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("no job named \"opener\"") && err.contains("jobs: openers, follow-ups"),
        "{err}"
    );
    let out = c.output(&["job", "resume", "nope"], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no job named \"nope\""));
    let out = c
        .output(
            &[
                "job",
                "pause",
                "openers",
                "--for",
                "2h",
                "--until",
                "2099-01-01T00:00:00Z",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = c
        .output(&["job", "pause", "openers", "--for", "soon"], &[])
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--for"), "{}", text(&out.stderr));
    let out = c
        .output(
            &["job", "pause", "openers", "--until", "2020-01-01T00:00:00Z"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("--until (2020-01-01T00:00:00+00:00) is not after now"),
        "{}",
        text(&out.stderr)
    );
    let long = "x".repeat(201);
    let out = c
        .output(&["job", "pause", "openers", "--reason", &long], &[])
        .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("--reason: the reason is 201 characters long"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(c.count("SELECT COUNT(*) FROM job_pauses").await, 0);
}

fn client(url: &str) -> Client {
    let mut cc = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
    cc.base_url = url.to_string();
    Client::new(cc).expect("client")
}

fn config_of(url: &str, jobs: &str) -> Config {
    let text = format!(
        "[fluidtalk]\nbase_url = \"{url}\"\n[limits]\nconcurrency = 1\nper_second = 1000.0\n{jobs}"
    );
    config::parse(std::path::Path::new("jobs.toml"), &text).expect("config parses")
}

async fn leads(db: &TestDb, n: usize) {
    let mut s = db.store.begin_import(false).await.expect("import");
    let rows = (0..n)
        .map(|i| LeadInput {
            target: format!("@l{i}"),
            ..Default::default()
        })
        .collect();
    s.upsert(rows, t0() - chrono::Duration::days(1))
        .await
        .expect("upsert");
    s.finish(true).await.expect("finish");
}

fn pause(job: &str, reason: &str) -> JobPause {
    JobPause {
        job: job.into(),
        paused_at: t0(),
        until: None,
        reason: Some(reason.into()),
    }
}

/// A pause written through another store handle (another process's) while a run is under
/// way stops the run at its next batch: the batch's calls under way finish and are
/// recorded, the leads not called are given back (not leased, still `new`).
async fn a_pause_written_by_another_handle_stops_a_run_at_its_next_batch(db: TestDb) {
    let (url, sim) = spawn_sim(SimConfig::default()).await;
    let config = Arc::new(config_of(
        &url,
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\nbatch_size = 2\n",
    ));
    leads(&db, 6).await;
    let other = store::open(&db.url).await.expect("a second handle");
    let clock = Arc::new(ManualClock::new(t0()));
    let runner = Runner::new(
        db.store.clone(),
        client(&url),
        config.clone(),
        clock,
        "r1".into(),
    );
    let written = std::sync::atomic::AtomicBool::new(false);
    let handle = tokio::runtime::Handle::current();
    let summary = runner
        .run_job_reporting(&config.jobs[0], None, &|| {
            // After the first answer: another process pauses the job.
            if !written.swap(true, std::sync::atomic::Ordering::SeqCst) {
                tokio::task::block_in_place(|| {
                    handle
                        .block_on(other.pause_job(&pause("openers", "stop now")))
                        .expect("pause written")
                });
            }
        })
        .await
        .expect("the run");
    assert_eq!(
        summary.held.as_deref(),
        Some("job paused until resumed (stop now)")
    );
    assert_eq!((summary.calls, summary.sent), (2, 2), "{summary:?}");
    assert_eq!(sim.requests(), 2, "only the batch under way was called");
    let states = db.store.count_by_state().await.expect("states");
    assert_eq!(states[&fluidtalk_runner::lead::LeadState::New], 4);
    let leased = db.store.lease_summary(t0()).await.expect("leases");
    assert_eq!(
        (leased.leased, leased.in_flight),
        (0, 0),
        "the rest was given back"
    );
}

/// A daemon's scheduled fire reads the pause from the store: one written between two
/// fires by another handle holds the next fire (recorded with why), and a resume written
/// the same way lets the fire after it send.
async fn a_pause_written_between_fires_holds_the_daemons_next_fire(db: TestDb) {
    let (url, sim) = spawn_sim(SimConfig::default()).await;
    let config = config_of(
        &url,
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\n",
    );
    leads(&db, 3).await;
    let other = store::open(&db.url).await.expect("a second handle");
    let clock = Arc::new(ManualClock::new(t0()));
    let runner = Runner::new(
        db.store.clone(),
        client(&url),
        Arc::new(config.clone()),
        clock.clone(),
        "d1".into(),
    );
    let daemon = Daemon::new(
        &config,
        db.store.clone(),
        Some(runner),
        clock.clone(),
        "d1".into(),
    );
    let fire = async || {
        let next = daemon
            .next_fires()
            .into_iter()
            .filter_map(|(_, t)| t)
            .min()
            .expect("a fire");
        clock.set(next.max(clock.now()));
        let mut ran = 0;
        for (_, _, run) in daemon.poll().await {
            if let Some(run) = run {
                run.await.expect("the run");
                ran += 1;
            }
        }
        assert_eq!(ran, 1, "the job fired");
    };
    other
        .pause_job(&pause("openers", "other team"))
        .await
        .expect("pause");
    fire().await;
    assert_eq!(sim.requests(), 0, "the paused job's fire called the API");
    let runs = db.store.last_runs().await.expect("runs");
    let summary = runs[0].summary.as_ref().expect("a summary");
    assert_eq!(
        summary["held"], "job paused until resumed (other team)",
        "{summary}"
    );
    assert!(
        other
            .resume_job("openers", clock.now())
            .await
            .expect("resume")
            .is_some()
    );
    fire().await;
    assert_eq!(sim.requests(), 3);
}

/// `/v1/jobs`: the list with each job's pause, pause and resume, 404 for a job not in the
/// campaign file (naming it), 400 and 422 for bad bodies, 401 without the token.
async fn the_api_pauses_and_resumes_a_job_and_refuses_bad_asks(db: TestDb) {
    let (sim, _) = spawn_sim(SimConfig::default()).await;
    let api = serve(db, &sim, JOBS).await;
    let (status, body) = api.get("/v1/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["jobs"][0]["name"].as_str(),
            body["jobs"][0]["paused"].as_bool()
        ),
        (Some("openers"), Some(false))
    );
    let (status, body) = api
        .post(
            "/v1/jobs/openers/pause",
            json!({"for": "2h", "reason": "audit"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let until = api.clock.now() + chrono::Duration::hours(2);
    assert_eq!(body["pause"]["until"], json!(until), "{body}");
    assert_eq!(body["replaced"], Value::Null);
    let (_, body) = api.get("/v1/jobs").await;
    assert_eq!(body["jobs"][0]["paused"], true, "{body}");
    assert_eq!(body["jobs"][0]["pause"]["reason"], "audit");
    assert_eq!(body["jobs"][1]["paused"], false);
    let paused = api
        .db
        .store
        .job_pause("openers", api.clock.now())
        .await
        .expect("read");
    assert_eq!(paused.and_then(|p| p.reason), Some("audit".into()));

    let (status, body) = api.post("/v1/jobs/nope/pause", json!({})).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no job named \"nope\""),
        "{body}"
    );
    let (status, _) = api.post("/v1/jobs/nope/resume", json!({})).await;
    assert_eq!(status, 404);
    let (status, body) = api
        .post("/v1/jobs/openers/pause", json!({"for": "soon"}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("for")),
        "{body}"
    );
    let (status, body) = api
        .post(
            "/v1/jobs/openers/pause",
            json!({"for": "1h", "until": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api
        .post(
            "/v1/jobs/openers/pause",
            json!({"until": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("until")),
        "{body}"
    );
    let (status, body) = api
        .post("/v1/jobs/openers/pause", json!({"bogus": 1}))
        .await;
    assert!(status == 400 || status == 422, "{status} {body}");
    let (status, body) = api
        .post("/v1/jobs/openers/pause", json!({"reason": "x".repeat(201)}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("reason")),
        "{body}"
    );
    let r = api
        .http
        .get(api.url("/v1/jobs"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 401);
    let r = api
        .http
        .post(api.url("/v1/jobs/openers/resume"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 401);
    assert!(
        api.db
            .store
            .job_pause("openers", api.clock.now())
            .await
            .expect("read")
            .is_some(),
        "refused asks changed nothing"
    );

    let (status, body) = api.post("/v1/jobs/openers/resume", json!({})).await;
    assert_eq!(
        (status, body["resumed"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert_eq!(body["was"]["reason"], "audit");
    let (status, body) = api.post("/v1/jobs/openers/resume", json!({})).await;
    assert_eq!(
        (status, body["resumed"].as_bool()),
        (200, Some(false)),
        "{body}"
    );
}

/// The value of the first hidden `csrf` field.
fn csrf(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a csrf field")
        .to_string()
}

/// The jobs table shows each job active or paused with a Pause / Resume button; the
/// button pauses with the session's CSRF token (a forged one is refused, nothing written).
async fn the_dashboard_buttons_pause_and_resume_with_the_sessions_csrf_token(db: TestDb) {
    let (sim, _) = spawn_sim(SimConfig::default()).await;
    let api = serve(db, &sim, JOBS).await;
    let cookie = api.session().await;
    let (status, html) = api.page(&cookie).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("data-job=\"openers\" data-paused=\"false\""),
        "{html}"
    );
    assert!(
        html.contains("action=\"/ui/jobs/openers/pause\""),
        "a Pause button"
    );
    let token = csrf(&html);
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let post = async |path: &str, csrf: &str| {
        no_redirect
            .post(api.url(path))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf)])
            .send()
            .await
            .expect("answered")
            .status()
            .as_u16()
    };
    assert_eq!(post("/ui/jobs/openers/pause", "forged").await, 403);
    assert!(api.db.store.job_pauses().await.expect("read").is_empty());
    assert_eq!(post("/ui/jobs/nope/pause", &token).await, 404);
    assert_eq!(post("/ui/jobs/openers/pause", &token).await, 303);
    let p = api
        .db
        .store
        .job_pause("openers", api.clock.now())
        .await
        .expect("read");
    assert_eq!(p.map(|p| p.until), Some(None), "paused until resumed");
    let (_, html) = api.page(&cookie).await;
    assert!(
        html.contains("data-job=\"openers\" data-paused=\"true\""),
        "{html}"
    );
    assert!(
        html.contains("action=\"/ui/jobs/openers/resume\""),
        "a Resume button"
    );
    // Another site's form is refused, whatever it sends.
    let r = no_redirect
        .post(api.url("/ui/jobs/openers/resume"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 403);
    assert_eq!(post("/ui/jobs/openers/resume", &token).await, 303);
    assert!(
        api.db
            .store
            .job_pause("openers", api.clock.now())
            .await
            .expect("read")
            .is_none()
    );
}

/// At most one row per job, and at most `JOB_PAUSES_MAX` rows: a new one past it is
/// refused (nothing written), a paused job's pause can still be replaced, and the list
/// read returns no more.
async fn the_job_pauses_table_is_bounded(db: TestDb) {
    for i in 0..JOB_PAUSES_MAX {
        db.store
            .pause_job(&pause(&format!("job{i:04}"), "r"))
            .await
            .expect("pause");
    }
    let refused = db.store.pause_job(&pause("one-more", "r")).await;
    assert!(
        matches!(refused, Err(StoreError::Full(ref m)) if m.contains("\"one-more\"")),
        "{refused:?}"
    );
    let replaced = db
        .store
        .pause_job(&pause("job0007", "again"))
        .await
        .expect("replace");
    assert_eq!(replaced.and_then(|p| p.reason), Some("r".into()));
    let all = db.store.job_pauses().await.expect("read");
    assert_eq!(all.len(), JOB_PAUSES_MAX as usize);
    assert!(!all.iter().any(|p| p.job == "one-more"));
    // Retention removes ended pauses only.
    let mut ended = pause("job0001", "ended");
    ended.until = Some(t0() + chrono::Duration::hours(1));
    db.store.pause_job(&ended).await.expect("pause with an end");
    let cut = t0() + chrono::Duration::hours(2);
    assert_eq!(
        db.store
            .prune_batch(PruneTable::JobPauses, cut, 1_000)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        db.store.job_pauses().await.expect("read").len(),
        JOB_PAUSES_MAX as usize - 1
    );
}

/// The forecast copies the job pauses: a job paused until the third day makes no call on
/// the first two, and calls from the third.
#[tokio::test]
async fn the_forecast_leaves_a_paused_jobs_days_empty() {
    let db = common::db::sqlite().await;
    leads(&db, 30).await;
    let from = t0();
    let mut p = pause("openers", "holidays");
    p.until = Some(from + chrono::Duration::days(2));
    db.store.pause_job(&p).await.expect("pause");
    let config = config_of(
        "http://127.0.0.1:9",
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\nmax_per_run = 5\n",
    );
    let source = store::open_read_only(&db.url).await.expect("read only");
    let opts = fluidtalk_runner::forecast::Options {
        from,
        days: 4,
        zone: chrono_tz::UTC,
        assumptions: fluidtalk_runner::forecast::Assumptions::default(),
    };
    let f = fluidtalk_runner::forecast::forecast(&*source, &config, &opts)
        .await
        .expect("the forecast");
    let openers: Vec<u64> = f.days.iter().map(|d| d.openers).collect();
    assert_eq!(&openers[..2], &[0, 0], "{openers:?}");
    assert!(openers[2] > 0, "{openers:?}");
    assert!(
        f.days[0]
            .bottleneck
            .as_deref()
            .unwrap_or("")
            .contains("job openers paused"),
        "{:?}",
        f.days[0].bottleneck
    );
}
