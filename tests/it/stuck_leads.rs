//! Issue 19 defect 7, "no lead stuck, no loop unbounded", as a hostile operator found it,
//! with the real binary, the simulator as a process and real databases:
//! - `contacted` leads whose contact time is `0001-01-01` (a CRM's "empty date") were
//!   never followed up nor exhausted (the page cursor started at the Unix epoch);
//! - `on_unknown = "retry"` re-sent a step after every block and unblock;
//! - `leads retry` during the inbound relay's call threw its answer away;
//! - `pause clear` did not reach a running daemon (its holds only grew), and `status`
//!   could not say what a runner held;
//! - a `run` that reached no API exited 0;
//! - `FLUIDTALK_CLOCK_OFFSET=300000years` panicked.
//!
//! Each test failed on the build before the fix (`FLUIDTALK_RUNNER_BIN=old/fluidtalk-runner
//! cargo test --test it stuck_leads::` runs the process tests against another build).

use crate::common;

use common::campaign::{Campaign, finish, signal, text};
use common::db::{self, Raw, TestDb};
use common::http::serve;
use common::spawn_sim;
use fluidtalk_runner::sim::SimConfig;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// One process test at a time: each loads the machine with processes and timing.
use crate::common::HEAVY as SERIAL;

async fn calls_to(c: &Campaign, target: &str) -> usize {
    c.sim_log()
        .await
        .iter()
        .filter(|e| e.target == target)
        .count()
}

async fn lead(c: &Campaign, target: &str) -> Value {
    let out = c.ok(&["leads", "show", target, "--json"], &[]).await;
    let v: Value = serde_json::from_str(&out).expect("show JSON");
    v["lead"].clone()
}

const FOLLOW_UPS: &str = "[[job]]\nname = \"follow\"\nkind = \"follow_up\"\nschedule = \"0 0 * * * *\"\nquiet_after = [\"1d\"]\n";

/// `0001-01-01` in `last_contact_at` and `last_reply_at`: the leads are followed up at
/// once, and exhausted when quiet past the last step, on both databases.
async fn an_empty_crm_date_is_followed_up_and_then_exhausted(db: TestDb) {
    let c = Campaign::new(db, &[], "", FOLLOW_UPS).await;
    // Conversations the simulator knows (a follow-up needs one).
    for t in ["@empty_date", "@empty_both"] {
        c.ok(&["api", "opener", t, "--own-username", "@me"], &[])
            .await;
    }
    std::fs::write(
        c.dir.path().join("crm.csv"),
        "target,state,last_contact_at,last_reply_at\n\
         @empty_date,contacted,0001-01-01T00:00:00Z,\n\
         @empty_both,contacted,0001-01-01T00:00:00Z,0001-01-01T00:00:00Z\n",
    )
    .expect("write crm.csv");
    c.ok(&["leads", "import", "crm.csv"], &[]).await;
    let plan = c.ok(&["run", "--dry-run", "--json"], &[]).await;
    let plan: Value = serde_json::from_str(&plan).expect("plan JSON");
    assert_eq!(plan.as_array().map(Vec::len), Some(2), "{plan}");
    assert!(
        plan[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("since 0001-01-01 00:00 UTC"),
        "{plan}"
    );
    c.ok(&["run"], &[]).await;
    for t in ["@empty_date", "@empty_both"] {
        let l = lead(&c, t).await;
        assert_eq!(l["follow_ups_sent"], 1, "{t}: {l}");
        assert_eq!(l["state"], "contacted", "{t}: {l}");
        assert_eq!(calls_to(&c, t).await, 2, "the opener, then the follow-up");
    }
    // Quiet past the last step: exhausted, not left contacted forever.
    c.ok(&["run"], &[("FLUIDTALK_CLOCK_OFFSET", "2d")]).await;
    for t in ["@empty_date", "@empty_both"] {
        assert_eq!(lead(&c, t).await["state"], "exhausted", "{t}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn contacted_leads_dated_year_1_are_followed_up_and_exhausted_on_sqlite() {
    let _one = SERIAL.lock().await;
    an_empty_crm_date_is_followed_up_and_then_exhausted(db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn contacted_leads_dated_year_1_are_followed_up_and_exhausted_on_postgresql() {
    let _one = SERIAL.lock().await;
    let Some(pg) = db::postgres().await else {
        return;
    };
    an_empty_crm_date_is_followed_up_and_then_exhausted(pg).await;
}

/// `on_unknown = "retry"` with every answer lost: four rounds of run, block, unblock sent
/// opener step 0 four times (unblock reset the failure count the "once" was read from).
/// The step's one retry is read from its attempts now: twice in all, then review.
#[tokio::test(flavor = "multi_thread")]
async fn on_unknown_retry_resends_a_step_once_whatever_block_and_unblock_do() {
    let _one = SERIAL.lock().await;
    let c = Campaign::on_sqlite(
        &["--drop-rate", "1"],
        "timeout = \"5s\"",
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\non_unknown = \"retry\"\n",
    )
    .await;
    c.ok(&["leads", "add", "@ana"], &[]).await;
    for round in 0..4 {
        // Hours apart: the retry's back-off is long over each time.
        let later = format!("{}h", 2 * round);
        let env = [("FLUIDTALK_CLOCK_OFFSET", later.as_str())];
        c.ok(&["run"], &env).await;
        c.ok(&["leads", "block", "@ana"], &env).await;
        c.ok(&["leads", "unblock", "@ana"], &env).await;
    }
    assert_eq!(calls_to(&c, "@ana").await, 2, "the call and its one retry");
    assert_eq!(lead(&c, "@ana").await["state"], "needs_review");
    let out = c.ok(&["leads", "show", "@ana"], &[]).await;
    assert_eq!(
        out.matches("[step released by on_unknown = \"retry\"]")
            .count(),
        1,
        "{out}"
    );
}

async fn in_flight(db: &TestDb) -> i64 {
    let sql = "SELECT COUNT(*) FROM attempts WHERE status = 'in_flight'";
    match &db.raw {
        Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        Raw::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
    }
    .expect("count")
}

/// `leads retry` while the inbound relay's call was in flight marked it `unknown`, threw
/// the relay's answer away (`outbox_id: null`) and made the lead `new` (an opener would
/// follow although it had just written). It is refused as busy now: exit 3 on the command
/// line, 409 `busy` in the API; the relay's answer is kept.
#[tokio::test(flavor = "multi_thread")]
async fn leads_retry_is_refused_while_the_relays_call_is_in_flight() {
    for db in [Some(db::sqlite().await), db::postgres().await]
        .into_iter()
        .flatten()
    {
        let (sim, _) = spawn_sim(SimConfig {
            latency: Duration::from_secs(3),
            ..SimConfig::default()
        })
        .await;
        let api = serve(db, &sim, "").await;
        api.post("/v1/leads", json!({"leads": [{"target": "@ana"}]}))
            .await;
        api.db
            .exec("UPDATE leads SET state = 'needs_review' WHERE target = '@ana'")
            .await;
        let relay = {
            let req = api
                .req(reqwest::Method::POST, "/v1/leads/@ana/inbound")
                .json(&json!({"message": "hi, still there?"}));
            tokio::spawn(async move { req.send().await })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while in_flight(&api.db).await == 0 {
            assert!(Instant::now() < deadline, "the relay's call never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let out = tokio::process::Command::from(common::bin())
            .args(["leads", "retry", "@ana"])
            .env("DATABASE_URL", &api.db.url)
            .env_remove("FLUIDTALK_RUNNER_CONFIG")
            .output()
            .await
            .expect("run leads retry");
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("has a call in flight; try again once it is answered"),
            "{}",
            text(&out.stderr)
        );
        let (status, body) = api.post("/v1/leads/@ana/retry", json!({})).await;
        assert_eq!(
            (status, body["error"]["kind"].as_str()),
            (409, Some("busy"))
        );
        let answer = relay.await.expect("joined").expect("answered");
        assert_eq!(answer.status(), 200);
        let answer: Value = answer.json().await.expect("JSON");
        assert!(answer["outbox_id"].is_i64(), "the answer is kept: {answer}");
        let (_, shown) = api.get("/v1/leads/@ana").await;
        assert_eq!(shown["lead"]["state"], "needs_review", "{shown}");
        assert_eq!(shown["attempts"][0]["status"], "sent", "{shown}");
        // Answered: now a person may retry it.
        let (status, body) = api.post("/v1/leads/@ana/retry", json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// A daemon paused by a 402 with a long pause (`out_of_tokens = "1h"`) used to keep
/// holding after `pause clear` (its holds only grew), logging "new conversations paused"
/// while `status` said "pauses: none". Now it calls again within about a second, and
/// `status` shows what it holds and why, before and after.
#[tokio::test(flavor = "multi_thread")]
async fn pause_clear_reaches_a_running_daemon_within_a_second() {
    let _one = SERIAL.lock().await;
    let c = Campaign::on_sqlite(
        &["--tokens", "0"],
        "timeout = \"5s\"\n[backoff]\nout_of_tokens = \"1h\"\nout_of_tokens_max = \"6h\"",
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\n",
    )
    .await;
    c.import((0..5).map(|i| format!("@p{i}"))).await;
    let daemon = c.command(&["daemon"]).spawn().expect("start the daemon");
    let runner_holds = async || {
        let out = c.ok(&["status", "--json"], &[]).await;
        let v: Value = serde_json::from_str(&out).expect("status JSON");
        v["runners"].clone()
    };
    // Paused by the 402, and status says so per runner.
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let runners = runner_holds().await;
        if runners[0]["holds"][0]["scope"] == "new_conversations" {
            break runners;
        }
        assert!(Instant::now() < deadline, "never held: {runners}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let hold = &held[0]["holds"][0];
    assert_eq!(hold["stored"], true, "{held}");
    assert!(
        hold["reason"].as_str().unwrap_or("").contains("402"),
        "{held}"
    );
    let status = c.ok(&["status"], &[]).await;
    assert!(
        status.contains("holding new_conversations until"),
        "{status}"
    );
    let refused = c.sim_log().await.len();
    assert!(refused >= 1, "a 402 was answered");

    // Tokens bought: the pause lifted by hand reaches the running daemon.
    reqwest::Client::new()
        .post(format!("{}/_sim/tokens", c.sim_url))
        .json(&json!({"tokens": null}))
        .send()
        .await
        .expect("refill");
    c.ok(&["pause", "clear"], &[]).await;
    let cleared = Instant::now();
    loop {
        if c.sim_log().await.iter().any(|e| e.status == 200) {
            break;
        }
        assert!(
            cleared.elapsed() < Duration::from_secs(4),
            "no call within 4 s of `pause clear`"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = cleared.elapsed();
    eprintln!("calling again {took:?} after `pause clear`");
    loop {
        let runners = runner_holds().await;
        if runners[0]["holds"] == json!([]) {
            break;
        }
        assert!(
            cleared.elapsed() < Duration::from_secs(15),
            "status still shows a hold: {runners}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(&daemon, libc::SIGTERM);
    let out = finish(daemon, Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(c.states().await.get("contacted"), Some(&5));
    // Stopped cleanly: it is no longer listed.
    assert_eq!(runner_holds().await, json!([]));
}

/// A `run` whose API is unreachable (a closed port) printed "retried 2" and exited 0:
/// cron and CI saw success. Every call tried failed to connect: exit 4.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_reached_no_api_exits_4() {
    let _one = SERIAL.lock().await;
    let c = Campaign::on_sqlite(
        &[],
        "",
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n",
    )
    .await;
    // A port nobody listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let unreachable = format!("http://{closed}");
    let env = [("FLUIDTALK_BASE_URL", unreachable.as_str())];
    let out = c.output(&["run"], &env).await;
    assert_eq!(out.status.code(), Some(0), "nothing due is no failure");
    c.import(["@a".to_string(), "@b".to_string()]).await;
    let out = c.output(&["run"], &env).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "no call reached the API: every one of the 2 call(s) tried failed to connect"
        ),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("could not connect 2"));
    // The leads stay due (after back-off), not failed or lost.
    assert_eq!(c.states().await.get("new"), Some(&2));
    // With the API back, a run succeeds.
    let out = c
        .output(&["run"], &[("FLUIDTALK_CLOCK_OFFSET", "2h")])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Times and offsets outside their range are errors, never a panic: the clock offset
/// (300,000 years panicked), `run --at` and a reply's `--at` before year 1.
#[tokio::test(flavor = "multi_thread")]
async fn offsets_and_times_out_of_range_are_errors_not_panics() {
    let _one = SERIAL.lock().await;
    let c = Campaign::on_sqlite(
        &[],
        "",
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n",
    )
    .await;
    c.ok(&["leads", "add", "@a"], &[]).await;
    for offset in ["300000years", "-300000years", "36526days"] {
        for args in [&["run"][..], &["run", "--dry-run"], &["daemon"]] {
            let out = c.output(args, &[("FLUIDTALK_CLOCK_OFFSET", offset)]).await;
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {offset}: {stderr}");
            assert!(
                stderr.contains("is out of range: at most 100 years"),
                "{args:?} {offset}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    // The largest allowed offset works.
    let out = c
        .output(
            &["run", "--dry-run"],
            &[("FLUIDTALK_CLOCK_OFFSET", "36525days")],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for args in [
        &["run", "--dry-run", "--at", "0000-06-01T00:00:00Z"][..],
        &["leads", "replied", "@a", "--at", "0000-12-31T23:59:59Z"],
    ] {
        let out = c.output(args, &[]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("outside the supported range"), "{stderr}");
    }
    // The last instant of 9999 is a time like any other.
    let out = c
        .output(&["run", "--dry-run", "--at", "9999-12-31T23:59:59Z"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
