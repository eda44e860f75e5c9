//! The suppression list (a global do-not-contact list), on both databases: the record
//! statement refuses a suppressed target even for a lead already claimed; `suppress add`
//! blocks leads and `remove` leaves them blocked; an import creates a suppressed target
//! blocked and counts it; the inbound relay refuses one; the CLI (`suppress add|list|
//! remove`, files plain and CSV, errors naming the line); `/v1/suppressions`; and a
//! suppression added while a batch runs stops the calls not yet made.

use crate::common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::db::TestDb;
use common::{TEST_KEY, bin, spawn_sim};
use fluidtalk_runner::clock::ManualClock;
use fluidtalk_runner::config;
use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::lead::LeadState;
use fluidtalk_runner::runner::Runner;
use fluidtalk_runner::sim::SimConfig;
use fluidtalk_runner::store::{
    Action, DailyCap, LeadInput, Lease, NewAttempt, Recorded, StoreError,
};
use serde_json::{Value, json};
use std::process::Output;
use std::sync::Arc;

/// Monday 2026-11-23 10:00 UTC.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("valid")
}

fn lead(target: &str) -> LeadInput {
    LeadInput {
        target: target.into(),
        ..Default::default()
    }
}

fn targets(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

async fn import(db: &TestDb, leads: Vec<LeadInput>) -> fluidtalk_runner::store::ImportCounts {
    let mut s = db.store.begin_import(true).await.expect("import");
    let counts = s.upsert(leads, t0()).await.expect("upsert");
    s.finish(true).await.expect("finish");
    counts
}

async fn state(db: &TestDb, target: &str) -> LeadState {
    db.store
        .get_lead(target)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{target} exists"))
        .state
}

/// Suppresses `@a` under the store, as a commit racing the runner would, without the
/// block `suppress add` also writes: only the record statement's own check can stop it.
async fn suppress_raw(db: &TestDb) {
    db.exec("INSERT INTO suppressions (target, created_at) VALUES ('@a', '2026-11-23T10:00:00.000000Z')")
        .await;
}

// ---------------------------------------------------------------- the store

async fn the_record_statement_refuses_a_suppressed_target_even_once_claimed(db: TestDb) {
    import(&db, vec![lead("@a"), lead("@b"), lead("@c")]).await;
    let ids: Vec<i64> = {
        let mut ids = Vec::new();
        for t in ["@a", "@b", "@c"] {
            ids.push(db.store.get_lead(t).await.expect("get").expect("lead").id);
        }
        ids
    };
    let token = "host-1/1";
    let claimed = db
        .store
        .claim_leads(
            &ids,
            Lease {
                lease_token: token,
                now: t0(),
                until: t0() + Duration::minutes(5),
            },
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3, "all three claimed");
    // The suppression commits after the claim, before the calls are recorded.
    suppress_raw(&db).await;
    let attempt = |lead_id: i64, claimed: Option<LeadState>| NewAttempt {
        lead_id,
        job: "openers".into(),
        action: Action::Opener,
        step: 0,
        lease_token: token.into(),
        started_at: t0(),
        claimed,
    };
    // Without a cap: the one statement.
    let recorded = db
        .store
        .start_attempts_within(
            &[
                attempt(ids[0], Some(LeadState::New)),
                attempt(ids[1], Some(LeadState::New)),
            ],
            None,
        )
        .await
        .expect("recorded");
    assert_eq!(
        recorded[0],
        Recorded::Changed,
        "@a is suppressed: {recorded:?}"
    );
    assert!(matches!(recorded[1], Recorded::Started(_)), "{recorded:?}");
    // Under a daily cap (the transaction that counts the day first), and with no claim
    // state to compare (`claimed: None` records whatever the lead is like): still refused.
    let cap = DailyCap {
        since: t0() - Duration::hours(1),
        limit: 100,
    };
    let recorded = db
        .store
        .start_attempts_within(
            &[
                attempt(ids[0], Some(LeadState::New)),
                attempt(ids[2], Some(LeadState::New)),
            ],
            Some(cap),
        )
        .await
        .expect("recorded");
    assert_eq!(recorded[0], Recorded::Changed, "{recorded:?}");
    assert!(matches!(recorded[1], Recorded::Started(_)), "{recorded:?}");
    let recorded = db
        .store
        .start_attempts_within(&[attempt(ids[0], None)], None)
        .await
        .expect("recorded");
    assert_eq!(recorded, vec![Recorded::Changed]);
    // The lead itself was not touched: the refusal is the statement's own.
    assert_eq!(state(&db, "@a").await, LeadState::New);
    assert!(
        db.store
            .attempts_for(ids[0])
            .await
            .expect("attempts")
            .is_empty()
    );
}

async fn suppress_blocks_leads_and_remove_leaves_them_blocked(db: TestDb) {
    import(
        &db,
        vec![
            lead("@n"),
            LeadInput {
                state: Some(LeadState::Contacted),
                last_contact_at: Some(t0() - Duration::days(1)),
                ..lead("@c")
            },
            lead("@free"),
        ],
    )
    .await;
    let done = db
        .store
        .suppress(&targets(&["@n", "@c", "@x"]), t0())
        .await
        .expect("suppress");
    assert_eq!((done.added, done.already, done.leads_blocked), (3, 0, 2));
    assert_eq!(state(&db, "@n").await, LeadState::Blocked);
    assert_eq!(state(&db, "@c").await, LeadState::Blocked);
    assert_eq!(state(&db, "@free").await, LeadState::New);
    // A target with no lead is not added as one.
    assert!(db.store.get_lead("@x").await.expect("get").is_none());
    let again = db
        .store
        .suppress(&targets(&["@n"]), t0())
        .await
        .expect("suppress");
    assert_eq!((again.added, again.already, again.leads_blocked), (0, 1, 0));
    // Paged in target order.
    let page = db.store.suppressions(None, 2).await.expect("list");
    let shown: Vec<&str> = page.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(shown, ["@c", "@n"]);
    assert_eq!(page[0].created_at, t0());
    let rest = db.store.suppressions(Some("@n"), 10).await.expect("list");
    assert_eq!(
        rest.iter().map(|s| s.target.as_str()).collect::<Vec<_>>(),
        ["@x"]
    );
    // Removing lifts the suppression only: the lead stays blocked until a person unblocks.
    let removed = db
        .store
        .unsuppress(&targets(&["@n", "@nobody"]))
        .await
        .expect("remove");
    assert_eq!(
        (
            removed.removed,
            removed.not_suppressed,
            removed.leads_still_blocked
        ),
        (1, 1, 1)
    );
    assert!(!db.store.is_suppressed("@n").await.expect("read"));
    assert!(db.store.is_suppressed("@c").await.expect("read"));
    assert_eq!(state(&db, "@n").await, LeadState::Blocked);
}

async fn an_import_creates_a_suppressed_target_blocked_and_counts_it(db: TestDb) {
    import(
        &db,
        vec![LeadInput {
            state: Some(LeadState::Contacted),
            last_contact_at: Some(t0() - Duration::days(1)),
            ..lead("@a")
        }],
    )
    .await;
    db.store
        .suppress(&targets(&["@s"]), t0())
        .await
        .expect("suppress");
    // `@a` suppressed under the store, its lead left contacted: the import blocks it.
    suppress_raw(&db).await;
    let counts = import(&db, vec![lead("@s"), lead("@t"), lead("@a")]).await;
    assert_eq!(
        (counts.imported, counts.updated, counts.suppressed),
        (2, 1, 2)
    );
    assert_eq!(state(&db, "@s").await, LeadState::Blocked);
    assert_eq!(state(&db, "@a").await, LeadState::Blocked);
    assert_eq!(state(&db, "@t").await, LeadState::New);
}

async fn the_inbound_relay_refuses_a_suppressed_target_and_an_event_adds_it_blocked(db: TestDb) {
    db.store
        .suppress(&targets(&["@s"]), t0())
        .await
        .expect("suppress");
    let err = db
        .store
        .begin_inbound(
            "@s",
            None,
            Lease {
                lease_token: "relay/1",
                now: t0(),
                until: t0() + Duration::minutes(5),
            },
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, StoreError::Refused(r) if r.why.contains("suppression list")),
        "{err}"
    );
    assert!(db.store.get_lead("@s").await.expect("get").is_none());
    // An event queued for it adds its lead blocked: the event is dropped, never sent.
    db.store
        .queue_event(&fluidtalk_runner::store::NewEvent {
            target: "@s",
            event_type: "story_reaction",
            context: None,
            now: t0(),
        })
        .await
        .expect("queued");
    assert_eq!(state(&db, "@s").await, LeadState::Blocked);
}

// ---------------------------------------------------------------- the CLI

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A folder with an empty campaign file, the CLI run in it against `db`.
struct Cli<'a> {
    dir: tempfile::TempDir,
    db: &'a TestDb,
}

impl<'a> Cli<'a> {
    fn new(db: &'a TestDb) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("jobs.toml"), "").expect("write jobs.toml");
        Cli { dir, db }
    }

    fn file(&self, name: &str, body: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).expect("write file");
        path.display().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        bin()
            .args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", &self.db.url)
            .env_remove("FLUIDTALK_RUNNER_CONFIG")
            .output()
            .expect("run the cli")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
    }

    /// Every suppressed target, read with `suppress list --json`.
    fn listed(&self) -> Vec<String> {
        let page = self.json(&["suppress", "list", "--json", "--limit", "1000"]);
        page["suppressions"]
            .as_array()
            .expect("an array")
            .iter()
            .map(|s| s["target"].as_str().expect("target").to_string())
            .collect()
    }

    /// A command that must fail with exit 3 and say `wants` on stderr.
    fn refused(&self, args: &[&str], wants: &[&str]) {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        for w in wants {
            assert!(stderr.contains(w), "{args:?}: missing {w:?} in:\n{stderr}");
        }
    }
}

async fn the_cli_adds_lists_pages_and_removes(db: TestDb) {
    let cli = Cli::new(&db);
    import(&db, vec![lead("@a")]).await;
    let out = cli.ok(&["suppress", "add", "@a", " @b "]);
    assert_eq!(
        text(&out.stdout).trim(),
        "suppressed 2 target(s): 2 added, 0 already on the list; 1 lead(s) blocked"
    );
    assert_eq!(state(&db, "@a").await, LeadState::Blocked);
    // A plain file: one target a line, blank lines skipped.
    let plain = cli.file("plain.txt", "@c\n\n@a\r\n");
    let done = cli.json(&["suppress", "add", "--file", &plain, "--json"]);
    assert_eq!(done, json!({"added": 1, "already": 1, "leads_blocked": 0}));
    // A CSV with a `target` column among others, a quoted field holding a comma.
    let csv = cli.file("list.csv", "name,Target\nAnn,@d\n\"Smith, J\",@e\n");
    let done = cli.json(&["suppress", "add", "--file", &csv, "--json"]);
    assert_eq!(done["added"], 2);
    assert_eq!(cli.listed(), ["@a", "@b", "@c", "@d", "@e"]);
    // A cut list says so, and how to see the next page.
    let out = cli.ok(&["suppress", "list", "--limit", "2"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("@a") && stdout.contains("@b") && !stdout.contains("@c"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("`suppress list --after @b`"),
        "{}",
        text(&out.stderr)
    );
    let page = cli.json(&[
        "suppress", "list", "--json", "--limit", "2", "--after", "@b",
    ]);
    assert_eq!(page["next_after"], "@d");
    assert_eq!(page["suppressions"][0]["target"], "@c");
    let last = cli.json(&["suppress", "list", "--json", "--after", "@d"]);
    assert_eq!(last["next_after"], Value::Null);
    assert_eq!(last["suppressions"].as_array().map(Vec::len), Some(1));
    let out = cli.run(&["suppress", "list", "--limit", "0"]);
    assert_eq!(out.status.code(), Some(2), "--limit 0 is a usage error");
    // Remove: the lead stays blocked, and the output says how to resume it.
    let out = cli.ok(&["suppress", "remove", "@a", "@zz"]);
    assert!(
        text(&out.stdout).contains("removed 1 of 2 target(s)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("leads unblock"),
        "{}",
        text(&out.stderr)
    );
    let removed = cli.json(&["suppress", "remove", "--file", &csv, "--json"]);
    assert_eq!(
        removed,
        json!({"removed": 2, "not_suppressed": 0, "leads_still_blocked": 0})
    );
    assert_eq!(cli.listed(), ["@b", "@c"]);
    assert_eq!(state(&db, "@a").await, LeadState::Blocked);
}

async fn a_bad_file_names_its_line_and_writes_nothing(db: TestDb) {
    let cli = Cli::new(&db);
    let spaced = cli.file("spaced.txt", "@ok\n@two words\n");
    cli.refused(
        &["suppress", "add", "--file", &spaced],
        &[&format!("{spaced}:2:"), "expected one target per line"],
    );
    let long = format!("@ok\n\n@{}\n", "x".repeat(300));
    let long = cli.file("long.txt", &long);
    cli.refused(
        &["suppress", "add", "--file", &long],
        &[&format!("{long}:3:"), "the limit is 255"],
    );
    let header = cli.file("header.csv", "name,email\nAnn,a@b\n");
    cli.refused(
        &["suppress", "add", "--file", &header],
        &[&format!("{header}:1:"), "needs a `target` column"],
    );
    let fields = cli.file("fields.csv", "target,name\n@ok,Ann\n@short\n");
    cli.refused(
        &["suppress", "add", "--file", &fields],
        &[&format!("{fields}:3:"), "expected 2 fields"],
    );
    let empty = cli.file("empty.csv", "target,name\n@ok,Ann\n,Bob\n");
    cli.refused(
        &["suppress", "add", "--file", &empty],
        &[&format!("{empty}:3:"), "target is empty"],
    );
    let many: String = (0..10_001).map(|i| format!("@t{i}\n")).collect();
    let many = cli.file("many.txt", &many);
    cli.refused(
        &["suppress", "add", "--file", &many],
        &[&format!("{many}:10001:"), "more than 10000 targets"],
    );
    cli.refused(&["suppress", "add", "@ok", "\u{7}"], &["target 2"]);
    // Nothing of any of them was written (`@ok` came first in each).
    assert!(
        db.store
            .suppressions(None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

async fn the_import_summary_counts_suppressed_targets(db: TestDb) {
    let cli = Cli::new(&db);
    cli.ok(&["suppress", "add", "@s"]);
    let csv = cli.file("leads.csv", "target\n@s\n@t\n");
    let out = cli.ok(&["leads", "import", &csv]);
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 2, updated 0, rejected 0, suppressed 1 (blocked)"
    );
    assert_eq!(state(&db, "@s").await, LeadState::Blocked);
    assert_eq!(state(&db, "@t").await, LeadState::New);
    let report = cli.json(&["leads", "import", &csv, "--json"]);
    assert_eq!(
        (&report["updated"], &report["suppressed"]),
        (&json!(2), &json!(1)),
        "{report}"
    );
}

// ---------------------------------------------------------------- the HTTP API

async fn the_api_adds_pages_and_removes_suppressions(db: TestDb) {
    let (sim, _) = spawn_sim(SimConfig::default()).await;
    let api = common::http::serve(db, &sim, "[http]\nauth_failures_per_minute = 1000\n").await;
    import(&api.db, vec![lead("@a")]).await;
    let (status, body) = api
        .post("/v1/suppressions", json!({"targets": ["@a", " @b ", "@a"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"added": 2, "already": 0, "leads_blocked": 1}));
    assert_eq!(state(&api.db, "@a").await, LeadState::Blocked);
    let (status, page) = api.get("/v1/suppressions?limit=1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["suppressions"][0]["target"], "@a");
    assert_eq!(page["next_after"], "@a");
    let (_, rest) = api.get("/v1/suppressions?after=@a").await;
    assert_eq!(rest["suppressions"][0]["target"], "@b");
    assert_eq!(rest["next_after"], Value::Null);
    // A bad target refuses the whole request, naming its index; nothing written.
    let (status, err) = api
        .post("/v1/suppressions", json!({"targets": ["@c", "  "]}))
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        (&err["error"]["field"], &err["error"]["index"]),
        (&json!("targets"), &json!(1)),
        "{err}"
    );
    let too_many: Vec<String> = (0..10_001).map(|i| format!("@t{i}")).collect();
    let (status, err) = api
        .post("/v1/suppressions", json!({ "targets": too_many }))
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 10000")),
        "{err}"
    );
    let (status, err) = api.get("/v1/suppressions?limit=1001").await;
    assert_eq!((status, &err["error"]["field"]), (400, &json!("limit")));
    let (_, all) = api.get("/v1/suppressions").await;
    assert_eq!(
        all["suppressions"].as_array().map(Vec::len),
        Some(2),
        "{all}"
    );
    // DELETE takes them off; the lead stays blocked.
    let (status, body) = common::http::answer(
        api.req(reqwest::Method::DELETE, "/v1/suppressions")
            .json(&json!({"targets": ["@a", "@none"]}))
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"removed": 1, "not_suppressed": 1, "leads_still_blocked": 1})
    );
    let (_, all) = api.get("/v1/suppressions").await;
    assert_eq!(all["suppressions"][0]["target"], "@b");
    assert_eq!(state(&api.db, "@a").await, LeadState::Blocked);
    // The same token as every /v1 route.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        let (status, body) = common::http::answer(
            api.http
                .request(method.clone(), api.url("/v1/suppressions"))
                .json(&json!({"targets": ["@q"]}))
                .send()
                .await
                .expect("answered"),
        )
        .await;
        assert_eq!(status, 401, "{method}: {body}");
    }
    assert!(!api.db.store.is_suppressed("@q").await.expect("read"));
}

// ---------------------------------------------------------------- a running batch

/// One call at a time, each answered after 150 ms: the test suppresses the last five
/// targets once the first call was made, and none of them is called.
async fn a_suppression_added_while_a_batch_runs_stops_the_calls_not_yet_made(db: TestDb) {
    let (url, sim) = spawn_sim(SimConfig {
        latency: std::time::Duration::from_millis(150),
        ..SimConfig::default()
    })
    .await;
    let toml = format!(
        "[fluidtalk]\nbase_url = \"{url}\"\ntimeout = \"5s\"\n[limits]\nconcurrency = 1\nper_second = 1000.0\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\nbatch_size = 10\n"
    );
    let config = Arc::new(config::parse(std::path::Path::new("jobs.toml"), &toml).expect("parses"));
    let mut cc = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
    cc.base_url = url;
    cc.timeout = config.fluidtalk.timeout;
    let clock = Arc::new(ManualClock::new(t0()));
    let mut s = db.store.begin_import(true).await.expect("import");
    s.upsert(
        (0..10).map(|i| lead(&format!("@l{i}"))).collect(),
        t0() - Duration::minutes(1),
    )
    .await
    .expect("upsert");
    s.finish(true).await.expect("finish");
    let runner = Runner::new(
        db.store.clone(),
        Client::new(cc).expect("client"),
        config.clone(),
        clock,
        "runner-suppress".into(),
    );
    let job = config.jobs[0].clone();
    let run = tokio::spawn(async move { runner.run_job(&job, None).await });
    // The batch is under way: its first call reached the API.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sim.log().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the run never called");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let late: Vec<String> = (5..10).map(|i| format!("@l{i}")).collect();
    db.store.suppress(&late, t0()).await.expect("suppress");
    let called_by_then = sim.log().len();
    let summary = run.await.expect("joined").expect("the run");
    assert!(
        called_by_then < 5,
        "the run was not mid-batch when the suppression committed ({called_by_then} calls)"
    );
    let called: Vec<String> = sim.log().into_iter().map(|e| e.target).collect();
    for t in &late {
        assert!(
            !called.contains(t),
            "{t} was called after its suppression: {called:?}"
        );
        let lead = db.store.get_lead(t).await.expect("get").expect("lead");
        assert_eq!(lead.state, LeadState::Blocked, "{t}");
        assert!(
            db.store
                .attempts_for(lead.id)
                .await
                .expect("attempts")
                .is_empty(),
            "{t} has an attempt"
        );
    }
    assert_eq!(summary.sent, 5, "the others were all called: {called:?}");
    assert_eq!(called.len(), 5, "{called:?}");
}

common::conformance!(
    the_record_statement_refuses_a_suppressed_target_even_once_claimed,
    suppress_blocks_leads_and_remove_leaves_them_blocked,
    an_import_creates_a_suppressed_target_blocked_and_counts_it,
    the_inbound_relay_refuses_a_suppressed_target_and_an_event_adds_it_blocked,
    the_cli_adds_lists_pages_and_removes,
    a_bad_file_names_its_line_and_writes_nothing,
    the_import_summary_counts_suppressed_targets,
    the_api_adds_pages_and_removes_suppressions,
    a_suppression_added_while_a_batch_runs_stops_the_calls_not_yet_made,
);
