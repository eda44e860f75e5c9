//! The forecast as a guest in the daemon (issue 19, item 4): one at a time, on the
//! `[forecast]` budget (past it the dashboard names the command instead of showing part
//! of the numbers), cancelled with its scratch folder when the daemon is SIGTERMed,
//! stale scratch folders of dead processes removed at start, and a virtual clock that
//! skips the ticks in which nothing can happen (an every-second job over a day is a
//! handful of steps, not 86,400).

use crate::common;

use common::campaign::{Campaign, finish, signal, text};
use common::db;
use common::http::{TOKEN, serve};
use common::spawn_sim;
use fluidtalk_runner::config;
use fluidtalk_runner::sim::SimConfig;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// `Simulated C call(s) in S step(s)` from the command's table.
fn simulated(out: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("Simulated "))
        .unwrap_or_else(|| panic!("no 'Simulated' line in {out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (
        words[1].parse().expect("calls"),
        words[4].parse().expect("steps"),
    )
}

/// The case: one `* * * * * *` job and one lead took more than 300 s for
/// `--days 1` (86,400 ticks, each a run). Now a tick that finds nothing sends the job
/// ahead to when it could have work: the opener, then nothing.
#[tokio::test]
async fn an_every_second_job_over_a_day_is_a_few_steps() {
    let toml = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\n\n\
                [[job]]\nname = \"follow-ups\"\nkind = \"follow_up\"\nschedule = \"* * * * * *\"\nquiet_after = [\"2h\"]\nmax_follow_ups = 2\n";
    let c = Campaign::on_sqlite(&[], "", toml).await;
    c.import(["@solo".to_string()]).await;
    let started = std::time::Instant::now();
    let out = c
        .output_within(&["forecast", "--days", "1"], &[], Duration::from_secs(120))
        .await;
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let (calls, steps) = simulated(&table);
    // The opener at the first tick, then the follow-ups 2 h apart as far as the day
    // reaches (after 22:00 UTC... none past the day's end): at most 3 calls.
    assert!((1..=3).contains(&calls), "{table}");
    // Each call's tick, the idle tick after it, and a few more: not one per second.
    assert!(steps <= 4 * calls + 4, "{steps} steps: {table}");
    // Piped, the command shows no progress.
    assert!(
        !text(&out.stderr).contains("of the days"),
        "{}",
        text(&out.stderr)
    );
    // Not a timing assertion (the steps above are): printed for the record.
    eprintln!("forecast --days 1, every-second jobs: {steps} steps, {calls} calls, {took:?}");
}

/// Whether a forecast scratch folder of process `pid` is in `dir`.
fn scratch_of(dir: &Path, pid: u32) -> Vec<PathBuf> {
    let prefix = format!("fluidtalk-forecast-{pid}-");
    std::fs::read_dir(dir)
        .expect("read the temporary folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// A dashboard session on the daemon at `base`.
async fn session(base: &str, token: &str) -> String {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{base}/login"))
        .form(&[("password", token)])
        .send()
        .await
        .expect("login answered");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    cookie.split(';').next().expect("name=value").to_string()
}

async fn page(http: &reqwest::Client, base: &str, cookie: &str) -> String {
    let r = http
        .get(format!("{base}/"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page answered");
    assert_eq!(r.status(), 200);
    r.text().await.expect("html")
}

/// A real daemon whose dashboard forecast is long (20,000 leads, one call a virtual
/// second, a budget of ten minutes): two pages at once start one forecast, both show its
/// progress; SIGTERM ends the daemon within its bound and the scratch folder is gone.
/// Before it starts, a scratch folder of a dead process and an old one without a process
/// id are removed, while a live process's and a young one stay.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemons_forecast_runs_once_stops_with_it_and_cleans_up() {
    let _heavy = crate::common::HEAVY.lock().await;
    let toml = "[limits]\nper_second = 1\n\n[forecast]\nmax_calls = 1000000\nmax_time = \"10m\"\n\n\
                [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\nmax_per_run = 1\n";
    let c = Campaign::on_sqlite(&[], "", toml).await;
    c.import((0..20_000).map(|i| format!("@g{i:05}"))).await;
    let tmp = tempfile::tempdir().expect("a temporary folder for the daemon");

    // Left by earlier processes: a dead one's (no process has this id: above pid_max), an
    // old one without an id; and a live process's (this test's) and a young one, kept.
    let dead = tmp.path().join("fluidtalk-forecast-999999999-abc123");
    let old = tmp.path().join("fluidtalk-forecast-Xy12Zq");
    let live = tmp
        .path()
        .join(format!("fluidtalk-forecast-{}-keep", std::process::id()));
    let young = tmp.path().join("fluidtalk-forecast-Young1");
    for d in [&dead, &old, &live, &young] {
        std::fs::create_dir(d).expect("mkdir");
        std::fs::write(d.join("forecast.db"), vec![0u8; 4096]).expect("a file");
    }
    std::fs::File::open(&old)
        .expect("open the old folder")
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600))
        .expect("age it");

    let mut cmd = c.command(&["daemon", "--http", "127.0.0.1:0"]);
    cmd.env("FLUIDTALK_RUNNER_TOKEN", TOKEN)
        .env("FLUIDTALK_LOG", "info")
        .env("TMPDIR", tmp.path());
    let mut child = cmd.spawn().expect("daemon starts");
    let pid = child.id().expect("running");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = String::new();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read log") {
            log.push_str(&line);
            log.push('\n');
            if let Some(rest) = line.split("addr=").nth(1) {
                return rest.split_whitespace().next().unwrap_or("").to_string();
            }
        }
        panic!("the daemon ended before it listened: {log}");
    })
    .await
    .expect("the daemon listens within a minute");
    let rest = tokio::spawn(async move {
        let mut more = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            more.push_str(&line);
            more.push('\n');
        }
        more
    });
    assert!(!dead.exists(), "a dead process's scratch folder stays");
    assert!(!old.exists(), "a two-day-old scratch folder stays");
    assert!(live.exists(), "a live process's scratch folder was removed");
    assert!(
        young.exists(),
        "a young scratch folder without an id was removed"
    );

    fluidtalk_runner::fluidtalk::install_crypto_provider();
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let cookie = session(&base, TOKEN).await;
    // Two pages at once, then a third: one forecast.
    let (a, b) = tokio::join!(page(&http, &base, &cookie), page(&http, &base, &cookie));
    for html in [&a, &b] {
        assert!(
            html.contains("The forecast is being computed"),
            "a forecast of 20,000 calls is not ready in 5 s: {html}"
        );
    }
    let mut seen_progress = false;
    for _ in 0..50 {
        let folders = scratch_of(tmp.path(), pid);
        assert_eq!(folders.len(), 1, "one forecast at a time: {folders:?}");
        let html = page(&http, &base, &cookie).await;
        assert!(html.contains("The forecast is being computed"), "{html}");
        if html.contains("calls so far") {
            seen_progress = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen_progress,
        "the page shows the running forecast's progress"
    );

    // SIGTERM during the forecast: the daemon ends within its bound, the folder is gone.
    assert_eq!(scratch_of(tmp.path(), pid).len(), 1, "still running");
    let stopped = std::time::Instant::now();
    signal(&child, libc::SIGTERM);
    child.stderr = None;
    let out = finish(child, Duration::from_secs(60)).await;
    log += &rest.await.expect("log read");
    assert!(
        out.status.success(),
        "SIGTERM ends the daemon cleanly: {log}"
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "the stop took {:?}",
        stopped.elapsed()
    );
    assert_eq!(
        scratch_of(tmp.path(), pid),
        Vec::<PathBuf>::new(),
        "the forecast's scratch folder outlived the daemon: {log}"
    );
    assert!(
        !log.contains("still running when the server stopped"),
        "{log}"
    );
}

/// Past `[forecast] max_calls` the page says so, names the command, and shows no chart.
#[tokio::test(flavor = "multi_thread")]
async fn past_its_budget_the_dashboard_names_the_command_and_shows_no_numbers() {
    let (sim, _) = spawn_sim(SimConfig::default()).await;
    let toml = "[forecast]\nmax_calls = 20\n\n\
                [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\nmax_per_run = 1\n";
    let api = serve(db::sqlite().await, &sim, toml).await;
    let leads: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"target": format!("@b{i:03}")}))
        .collect();
    api.post("/v1/leads", json!({ "leads": leads })).await;
    let cookie = api.session().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let html = loop {
        let (status, html) = api.page(&cookie).await;
        assert_eq!(status, 200);
        if !html.contains("The forecast is being computed") {
            break html;
        }
        assert!(std::time::Instant::now() < deadline, "still computing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(html.contains("id=\"forecast-over-budget\""), "{html}");
    assert!(
        html.contains("fluidtalk-runner forecast --days 14"),
        "the command is named: {html}"
    );
    assert!(html.contains("max_calls = 20 simulated calls"), "{html}");
    assert!(
        !html.contains("id=\"forecast-chart\""),
        "part of the numbers shown"
    );
}

/// `[forecast]`: defaults, and a value out of range is an error naming the key and line.
#[test]
fn forecast_settings_have_defaults_and_ranges() {
    let path = std::path::Path::new("jobs.toml");
    let c = config::parse(path, "").expect("parses");
    assert_eq!(c.forecast.max_calls, config::DEFAULT_FORECAST_CALLS);
    assert_eq!(c.forecast.max_time, config::DEFAULT_FORECAST_TIME);
    let c = config::parse(path, "[forecast]\nmax_calls = 5\nmax_time = \"90s\"\n").expect("ok");
    assert_eq!(
        (c.forecast.max_calls, c.forecast.max_time),
        (5, Duration::from_secs(90))
    );
    for (text, expected) in [
        (
            "[forecast]\nmax_calls = 0\n",
            "line 2: [forecast] max_calls",
        ),
        (
            "[forecast]\nmax_calls = 10000001\n",
            "line 2: [forecast] max_calls",
        ),
        (
            "[forecast]\nmax_time = \"2d\"\n",
            "line 2: [forecast] max_time",
        ),
        (
            "[forecast]\nmax_time = \"0s\"\n",
            "line 2: [forecast] max_time",
        ),
        ("[forecast]\nmax_memory = 1\n", "max_memory"),
    ] {
        let e = config::parse(path, text).expect_err(text).to_string();
        assert!(e.contains(expected), "{text}: {e}");
    }
}

/// The command stopped by SIGTERM mid-forecast: exit 7, nothing printed, and its scratch
/// folder is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_forecast_command_stopped_by_sigterm_removes_its_scratch_folder() {
    let toml = "[limits]\nper_second = 1\n\n\
                [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\nmax_per_run = 1\n";
    let c = Campaign::on_sqlite(&[], "", toml).await;
    c.import((0..20_000).map(|i| format!("@s{i:05}"))).await;
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let mut cmd = c.command(&["forecast", "--days", "14"]);
    cmd.env("TMPDIR", tmp.path());
    let child = cmd.spawn().expect("forecast starts");
    let pid = child.id().expect("running");
    // Its scratch folder appears once the copy starts; the 20,000 calls take longer.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while scratch_of(tmp.path(), pid).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no scratch folder");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, libc::SIGTERM);
    let out = finish(child, Duration::from_secs(30)).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert!(
        scratch_of(tmp.path(), pid).is_empty(),
        "the scratch folder outlived the command"
    );
}

/// On a terminal (a pseudo-terminal from `script`), the command draws its progress on
/// stderr, then clears it and prints the table.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_the_forecast_command_shows_progress() {
    let toml = "[limits]\nper_second = 1\n\n\
                [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\nmax_per_run = 1\n";
    let c = Campaign::on_sqlite(&[], "", toml).await;
    c.import((0..1_000).map(|i| format!("@t{i:05}"))).await;
    let bin = std::env::var("FLUIDTALK_RUNNER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_fluidtalk-runner").to_string());
    let out = tokio::process::Command::new("script")
        .args(["-qec", &format!("{bin} forecast --days 1"), "/dev/null"])
        .current_dir(c.dir.path())
        .env("DATABASE_URL", &c.url)
        .env("FLUIDTALK_LOG", "warn")
        .env("TERM", "xterm")
        .env_remove("FLUIDTALK_CLOCK_OFFSET")
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("ends in time")
        .expect("script runs");
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("/1 days"), "no progress drawn: {shown}");
    assert!(shown.contains("Simulated "), "no table: {shown}");
}
