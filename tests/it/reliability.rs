//! Issue 9's defects 1-3, reproduced as a hostile user would, with the real binary, the
//! simulator as a process and a real SQLite file: a step sent twice after block and
//! unblock, answers lost on SIGTERM, a crash that sends a whole batch to review. Each test
//! failed on main before issue 9 (run them against an old build with
//! `FLUIDTALK_RUNNER_BIN=path/to/old/fluidtalk-runner cargo test --test it reliability::`).

use crate::common;

use common::campaign::{Campaign, finish, signal, text};
use std::collections::HashMap;
use std::time::Duration;

/// One test at a time: each loads the machine with processes and timing.
use crate::common::HEAVY as SERIAL;

const OPENERS: &str =
    "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n";

async fn campaign(sim: &[&str], fluidtalk: &str, rest: &str) -> Campaign {
    Campaign::on_sqlite(sim, fluidtalk, rest).await
}

/// The simulator's requests per target.
async fn calls_per_target(c: &Campaign) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for e in c.sim_log().await {
        *seen.entry(e.target).or_default() += 1;
    }
    seen
}

async fn state(c: &Campaign, target: &str) -> String {
    let out = c.ok(&["leads", "show", target, "--json"], &[]).await;
    let v: serde_json::Value = serde_json::from_str(&out).expect("show JSON");
    v["lead"]["state"].as_str().expect("a state").to_string()
}

/// Defect 1: the answer is lost while the lead is blocked; unblocking used to bring it
/// back as `new`, and the next run sent opener step 0 again.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_lost_while_blocked_is_never_sent_again_after_unblock() {
    let _one = SERIAL.lock().await;
    let c = campaign(
        &["--drop-rate", "1", "--latency", "1s"],
        "timeout = \"5s\"",
        OPENERS,
    )
    .await;
    c.ok(&["leads", "add", "@ana"], &[]).await;
    let run = c.command(&["run"]).spawn().expect("start a run");
    c.wait_in_flight(1).await;
    c.ok(&["leads", "block", "@ana"], &[]).await;
    let out = finish(run, Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        state(&c, "@ana").await,
        "blocked",
        "a block is never undone"
    );
    c.ok(&["leads", "unblock", "@ana"], &[]).await;
    assert_eq!(
        state(&c, "@ana").await,
        "needs_review",
        "the call may have reached the API: a person decides"
    );
    c.ok(&["run"], &[]).await;
    assert_eq!(
        calls_per_target(&c).await.get("@ana"),
        Some(&1),
        "sent once"
    );
}

/// Defect 1, after a crash: the runner dies mid-call, a person blocks the lead, the lease
/// runs out, the lead is unblocked. Its step must not be sent again.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_cut_off_by_a_crash_is_not_sent_again_after_block_and_unblock() {
    let _one = SERIAL.lock().await;
    let c = campaign(&["--latency", "3s"], "timeout = \"10s\"", OPENERS).await;
    c.ok(&["leads", "add", "@bo"], &[]).await;
    let mut run = c.command(&["run"]).spawn().expect("start a run");
    c.wait_in_flight(1).await;
    run.kill().await.expect("SIGKILL");
    c.ok(&["leads", "block", "@bo"], &[]).await;
    // Hours later the lease has run out: recovery finds the call cut off.
    let later = [("FLUIDTALK_CLOCK_OFFSET", "3h")];
    c.ok(&["run"], &later).await;
    assert_eq!(state(&c, "@bo").await, "blocked");
    c.ok(&["leads", "unblock", "@bo"], &later).await;
    assert_eq!(state(&c, "@bo").await, "needs_review");
    c.ok(&["run"], &later).await;
    assert_eq!(
        calls_per_target(&c).await.get("@bo"),
        None,
        "the cut-off call never reached the simulator's log, and nothing was sent after it"
    );
}

/// Defect 2: SIGTERM used to kill `run` at once (exit 143): no answer recorded, the whole
/// batch left for review.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_records_every_answer_received_and_gives_the_rest_back() {
    let _one = SERIAL.lock().await;
    let c = campaign(
        &["--latency", "400ms"],
        "timeout = \"5s\"\n[limits]\nconcurrency = 2\nper_second = 1000",
        &format!("{OPENERS}batch_size = 20\n"),
    )
    .await;
    c.import((0..20).map(|i| format!("@t{i:02}"))).await;
    let run = c.command(&["run"]).spawn().expect("start a run");
    c.wait_for_calls(3).await;
    signal(&run, libc::SIGTERM);
    let out = finish(run, Duration::from_secs(30)).await;
    assert_eq!(
        out.status.code(),
        Some(7),
        "stopped: exit 7; {}",
        text(&out.stderr)
    );
    let answered = c.sim_log().await.len();
    let states = c.states().await;
    assert_eq!(
        states.get("contacted").copied().unwrap_or(0),
        answered,
        "{states:?}"
    );
    assert_eq!(
        states.get("new").copied().unwrap_or(0),
        20 - answered,
        "{states:?}"
    );
    assert_eq!(states.get("needs_review"), None, "{states:?}");
    let outbox = c.count("SELECT COUNT(*) FROM outbox").await;
    assert_eq!(outbox as usize, answered, "every answer's text is kept");
    assert_eq!(
        c.count("SELECT COUNT(*) FROM attempts WHERE status IN ('in_flight', 'unknown')")
            .await,
        0
    );
    assert_eq!(
        c.count("SELECT COUNT(*) FROM leads WHERE lease_owner IS NOT NULL")
            .await,
        0
    );
    // The rest are simply due: the next run sends them, once each.
    c.ok(&["run"], &[]).await;
    let calls = calls_per_target(&c).await;
    assert_eq!(calls.len(), 20);
    assert!(calls.values().all(|n| *n == 1), "{calls:?}");
}

/// Defect 2, in the daemon: a batch that outlasts the grace period (20 calls at 2/s) used
/// to lose every answer; now a stop gives back what has not started and records the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_daemon_records_the_answers_of_a_batch_longer_than_its_grace() {
    let _one = SERIAL.lock().await;
    let c = campaign(
        &["--latency", "200ms"],
        "timeout = \"2s\"\n[limits]\nconcurrency = 2\nper_second = 2",
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\nbatch_size = 20\n",
    )
    .await;
    c.import((0..20).map(|i| format!("@d{i:02}"))).await;
    let daemon = c.command(&["daemon"]).spawn().expect("start the daemon");
    c.wait_for_calls(3).await;
    signal(&daemon, libc::SIGTERM);
    // The grace period is the timeout + 10 s; a clean stop takes about one call.
    let out = finish(daemon, Duration::from_secs(12)).await;
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        text(&out.stderr)
    );
    let answered = c.sim_log().await.len();
    let states = c.states().await;
    assert_eq!(
        states.get("contacted").copied().unwrap_or(0),
        answered,
        "{states:?}"
    );
    assert_eq!(states.get("needs_review"), None, "{states:?}");
    assert_eq!(
        c.count("SELECT COUNT(*) FROM outbox").await as usize,
        answered
    );
    assert_eq!(
        c.count("SELECT COUNT(*) FROM attempts WHERE status = 'in_flight'")
            .await,
        0
    );
}

/// Defect 3: a SIGKILL used to send the runner's whole recorded batch to review, calls
/// never made included. Now only the calls in flight (at most `concurrency`) go there.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_sends_at_most_the_calls_in_flight_to_review() {
    let _one = SERIAL.lock().await;
    let c = campaign(
        &["--latency", "100ms"],
        "timeout = \"5s\"\n[limits]\nconcurrency = 4\nper_second = 1000",
        &format!("{OPENERS}batch_size = 50\n"),
    )
    .await;
    c.import((0..200).map(|i| format!("@k{i:03}"))).await;
    let mut run = c.command(&["run"]).spawn().expect("start a run");
    c.wait_for_calls(10).await;
    run.kill().await.expect("SIGKILL");
    let _ = run.wait().await;
    // Later, past the leases: the lost calls go to review, everything else is worked.
    c.ok(&["run"], &[("FLUIDTALK_CLOCK_OFFSET", "3h")]).await;
    let states = c.states().await;
    let review = states.get("needs_review").copied().unwrap_or(0);
    assert!(review <= 4, "at most the 4 calls in flight: {states:?}");
    assert_eq!(
        states.get("contacted").copied().unwrap_or(0),
        200 - review,
        "{states:?}"
    );
    let calls = calls_per_target(&c).await;
    assert!(
        calls.values().all(|n| *n == 1),
        "nothing sent twice: {calls:?}"
    );
}

/// Found trying the README as a new user: a lead blocked while it waited for a slot (its
/// batch claimed, its call not started) was still called, and its text offered for
/// delivery. A block now stops every call not yet recorded in flight, and text for a lead
/// blocked since it was written is held back from `outbox list`.
#[tokio::test(flavor = "multi_thread")]
async fn a_lead_blocked_while_waiting_for_its_call_is_not_called_and_its_text_is_held() {
    let _one = SERIAL.lock().await;
    let c = campaign(
        &["--latency", "700ms"],
        "timeout = \"5s\"\n[limits]\nconcurrency = 1\nper_second = 1000",
        &format!("{OPENERS}batch_size = 5\n"),
    )
    .await;
    c.import((0..5).map(|i| format!("@w{i}"))).await;
    let run = c.command(&["run"]).spawn().expect("start a run");
    c.wait_in_flight(1).await;
    // @w0 is being called; @w4 waits its turn in the claimed batch.
    c.ok(&["leads", "block", "@w4"], &[]).await;
    let out = finish(run, Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let calls = calls_per_target(&c).await;
    assert_eq!(
        calls.get("@w4"),
        None,
        "a blocked lead is not called: {calls:?}"
    );
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(state(&c, "@w4").await, "blocked");
    // Text already written for a lead blocked afterwards is held back.
    c.ok(&["leads", "block", "@w0"], &[]).await;
    let out = c.output(&["outbox", "list"], &[]).await;
    let listed = text(&out.stdout);
    assert!(
        !listed.contains("@w0") && listed.contains("@w1"),
        "{listed}"
    );
    assert!(
        text(&out.stderr).contains("1 message(s) held back"),
        "{}",
        text(&out.stderr)
    );
    let all = c.ok(&["outbox", "list", "--all"], &[]).await;
    assert!(all.contains("held") && all.contains("@w0"), "{all}");
}
