//! `fluidtalk-runner run` as a user runs it: a dry run touches nothing and predicts the
//! live run exactly; a refused key ends with its own exit code.

use crate::common;

use common::{TEST_KEY, bin, spawn_sim_process};
use serde_json::Value;
use std::path::Path;

fn setup(dir: &Path, url: &str) {
    std::fs::write(
        dir.join("jobs.toml"),
        format!(
            "[fluidtalk]\nbase_url = \"{url}\"\n\n[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\nbatch_size = 4\n\n\
             [[job]]\nname = \"reactions\"\nkind = \"event\"\nevent_type = \"story_reaction\"\nschedule = \"*/30 * * * * *\"\n"
        ),
    )
    .expect("write jobs.toml");
    let leads: String = (0..10).map(|i| format!("@lead{i}\n")).collect();
    std::fs::write(dir.join("leads.csv"), format!("target\n{leads}")).expect("write leads");
    let ok = bin()
        .args(["leads", "import", "leads.csv"])
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("import");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = bin()
        .args([
            "leads",
            "event",
            "@fan",
            "story_reaction",
            "--context",
            "{\"r\": 1}",
        ])
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("event");
    assert!(ok.status.success());
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    // The database and its write-ahead log; SQLite's shared-memory index (-shm) is a cache
    // of the log's layout that readers may rebuild, not stored data.
    ["fluidtalk-runner.db", "fluidtalk-runner.db-wal"]
        .iter()
        .filter_map(|f| std::fs::read(dir.join(f)).ok().map(|b| (f.to_string(), b)))
        // An empty log holds nothing: a reader may create one where the last writer's
        // clean close had removed it.
        .filter(|(_, b)| !b.is_empty())
        .collect()
}

#[test]
fn a_dry_run_writes_nothing_and_the_live_run_makes_exactly_the_planned_calls() {
    let (_sim, url) = spawn_sim_process(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    setup(dir.path(), &url);
    let before = files(dir.path());
    assert!(!before.is_empty());

    let out = bin()
        .args(["run", "--dry-run", "--json"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("FLUIDTALK_API_KEY")
        .output()
        .expect("dry run");
    assert!(
        out.status.success(),
        "a dry run needs no key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let plan = plan.as_array().expect("an array").clone();
    assert_eq!(plan.len(), 11, "10 openers and 1 event");
    for call in &plan {
        for key in ["job", "target", "action", "step", "reason"] {
            assert!(call.get(key).is_some(), "{key} in {call}");
        }
    }
    assert_eq!(files(dir.path()), before, "the database is byte-identical");
    let out = bin()
        .args(["run", "--dry-run"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("dry run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("openers: 10 call(s)") && text.contains("new lead, eligible since"),
        "{text}"
    );
    assert_eq!(files(dir.path()), before);

    let out = bin()
        .args(["run"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("FLUIDTALK_API_KEY", TEST_KEY)
        .output()
        .expect("live run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("openers: sent 10"));
    let log: Value = reqwest::blocking_get(&format!("{url}/_sim/log"));
    let made: Vec<(String, String)> = log
        .as_array()
        .expect("log")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let planned: Vec<(String, String)> = plan
        .iter()
        .map(|c| {
            let action = match c["action"].as_str() {
                Some("opener") => "OUTREACH",
                Some("event") => "ENTRY_POINT",
                _ => "FOLLOW_UP",
            };
            (
                action.to_string(),
                c["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut made_sorted = made.clone();
    made_sorted.sort();
    let mut planned_sorted = planned.clone();
    planned_sorted.sort();
    assert_eq!(
        made_sorted, planned_sorted,
        "the live run made exactly the planned calls"
    );
    // And a dry run now plans nothing, and says why: no call, one reason per job.
    let out = bin()
        .args(["run", "--dry-run", "--json"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("dry");
    let plan = serde_json::from_slice::<Value>(&out.stdout).expect("json");
    let why: Vec<(&str, &str)> = plan
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            assert!(e.get("action").is_none(), "no call: {e}");
            (
                e["job"].as_str().unwrap_or(""),
                e["reasons"][0]["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        why,
        [("openers", "nothing_due"), ("reactions", "nothing_due")],
        "{plan}"
    );
}

#[test]
fn a_refused_key_ends_the_run_with_exit_5_and_at_previews_another_instant() {
    let (_sim, url) = spawn_sim_process(&["--api-key", "ft_sk_the_right_one"]);
    let dir = tempfile::tempdir().expect("temp dir");
    setup(dir.path(), &url);
    let out = bin()
        .args(["run", "openers"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("FLUIDTALK_API_KEY", TEST_KEY)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("the API refused the key"));
    // status says so loudly, and as JSON.
    let out = bin()
        .args(["status"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("!!! THE API REFUSED THE KEY"), "{text}");
    assert!(text.contains("leads: new 11"), "{text}");
    assert!(text.contains("job openers: last run"), "{text}");
    let out = bin()
        .args(["status", "--json"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("status");
    let status: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["pauses"][0]["scope"], "all");
    assert_eq!(status["leads"]["new"], 11);
    assert!(status["jobs"][0]["next_fire"].is_string());
    assert_eq!(status["jobs"][0]["last_run"]["job"], "openers");
    // The pause shows in a dry run; --at an hour and a minute later, it has passed.
    let out = bin()
        .args(["run", "--dry-run"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("dry");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("note: paused (all)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let later = (chrono::Utc::now() + chrono::Duration::minutes(61)).to_rfc3339();
    let out = bin()
        .args(["run", "--dry-run", "--at", &later])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("dry");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("openers: 10 call(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // --at is for dry runs only; an unknown job is named.
    let out = bin()
        .args(["run", "--at", &later])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["run", "nope", "--dry-run"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job named \"nope\""));
}

mod reqwest {
    /// A GET from a plain thread (the tests here are synchronous).
    pub fn blocking_get(url: &str) -> serde_json::Value {
        let url = url.to_string();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                fluidtalk_runner::fluidtalk::install_crypto_provider();
                ::reqwest::get(&url)
                    .await
                    .expect("get")
                    .json::<serde_json::Value>()
                    .await
                    .expect("json")
            })
        })
        .join()
        .expect("thread")
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_mid_call_leaves_attempts_in_flight_that_are_reviewed_never_resent() {
    use fluidtalk_runner::clock::ManualClock;
    use fluidtalk_runner::lead::LeadState;
    use fluidtalk_runner::runner::Runner;
    use fluidtalk_runner::store::AttemptStatus;
    use std::sync::Arc;

    let (_sim, url) = spawn_sim_process(&["--latency", "2s"]);
    let dir = tempfile::tempdir().expect("temp dir");
    setup(dir.path(), &url);
    let db_url = format!(
        "sqlite://{}",
        dir.path().join("fluidtalk-runner.db").display()
    );
    let mut child = bin()
        .args(["run", "openers"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("FLUIDTALK_API_KEY", TEST_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the run");
    let store = fluidtalk_runner::store::open(&db_url).await.expect("open");
    // Wait (bounded) until the run has recorded its first batch in flight, then kill it.
    let lead0 = store
        .get_lead("@lead0")
        .await
        .expect("get")
        .expect("exists");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store
        .attempts_for(lead0.id)
        .await
        .expect("attempts")
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the run recorded no attempt"
        );
        tokio::task::yield_now().await;
    }
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().expect("wait");

    let in_flight: Vec<_> = store.attempts_for(lead0.id).await.expect("attempts");
    assert_eq!(
        in_flight[0].status,
        AttemptStatus::InFlight,
        "killed mid-call"
    );
    let leads = store.list_leads(&Default::default()).await.expect("list");
    let leased: Vec<_> = leads
        .iter()
        .filter(|l| l.lease_owner.is_some())
        .map(|l| l.target.clone())
        .collect();
    // The orphans are the leads whose call was in flight; the runner may also have
    // claimed the next batch ahead of its calls (leased, never called: due again once the
    // lease runs out, not reviewed).
    let mut orphans = Vec::new();
    for l in &leads {
        let attempts = store.attempts_for(l.id).await.expect("attempts");
        if attempts.iter().any(|a| a.status == AttemptStatus::InFlight) {
            orphans.push(l.target.clone());
        }
    }
    assert!(!orphans.is_empty());
    assert!(
        orphans.iter().all(|t| leased.contains(t)),
        "in flight implies leased"
    );

    // While the lease holds, another run leaves those leads alone.
    let out = bin()
        .args(["run", "openers", "--dry-run", "--json"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("dry");
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan");
    for call in plan.as_array().expect("array") {
        assert!(
            !leased.contains(&call["target"].as_str().unwrap_or("").to_string()),
            "{call}"
        );
    }
    // After the lease expires, the next run reviews them and calls none of them again.
    let calls_before = reqwest::blocking_get(&format!("{url}/_sim/log"))
        .as_array()
        .map_or(0, Vec::len);
    let text = std::fs::read_to_string(dir.path().join("jobs.toml")).expect("read");
    let config = Arc::new(
        fluidtalk_runner::config::parse(&dir.path().join("jobs.toml"), &text).expect("parse"),
    );
    let mut cc = fluidtalk_runner::fluidtalk::ClientConfig::new(
        fluidtalk_runner::fluidtalk::ApiKey::new(TEST_KEY).expect("key"),
    );
    cc.base_url = url.clone();
    let client = fluidtalk_runner::fluidtalk::Client::new(cc).expect("client");
    let clock = Arc::new(ManualClock::new(
        chrono::Utc::now() + chrono::Duration::hours(2),
    ));
    let d = Runner::new(
        store.clone(),
        client,
        config.clone(),
        clock,
        "recovering-runner".into(),
    );
    let summary = d.run_job(&config.jobs[0], None).await.expect("run");
    assert_eq!(summary.recovered as usize, orphans.len(), "{summary:?}");
    for t in &orphans {
        assert_eq!(
            store.get_lead(t).await.expect("get").expect("exists").state,
            LeadState::NeedsReview,
            "{t}"
        );
    }
    let log = reqwest::blocking_get(&format!("{url}/_sim/log"));
    let resent = log
        .as_array()
        .expect("log")
        .iter()
        .skip(calls_before)
        .filter(|e| orphans.contains(&e["target"].as_str().unwrap_or("").to_string()))
        .count();
    assert_eq!(resent, 0, "no orphaned lead was called again");
}

/// A dry run over many due leads prints as it plans: a reader that takes one line and
/// goes away ends it quietly (exit 0), and a full read lists every due lead once.
#[test]
fn a_dry_run_streams_its_plan_and_stops_quietly_when_the_reader_goes_away() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobs.toml"),
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\nbatch_size = 100\n",
    )
    .expect("write jobs.toml");
    let leads: String = (0..20_000).map(|i| format!("@many{i:05}\n")).collect();
    std::fs::write(dir.path().join("leads.csv"), format!("target\n{leads}")).expect("leads");
    let ok = bin()
        .args(["leads", "import", "leads.csv"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("import");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let mut child = bin()
        .args(["run", "--dry-run"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dry run");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("the first line");
    // The reader is gone now (its end of the pipe dropped).
    assert!(first.starts_with("openers at "), "{first}");
    let status = child.wait().expect("the dry run ends");
    assert!(
        status.success(),
        "a closed reader ends a dry run quietly: {status}"
    );

    let out = bin()
        .args(["run", "--dry-run", "--json"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("dry run");
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let targets: std::collections::BTreeSet<&str> = plan
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|c| c["target"].as_str())
        .collect();
    assert_eq!(targets.len(), 20_000, "every due lead once");
}
