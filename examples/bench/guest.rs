//! The dashboard's forecast as a guest in the daemon: the daemon's RSS idle and while its
//! dashboard forecasts a large campaign (150,000 leads, an opener and a follow-up job
//! firing every second, as in issue 19) on the default `[forecast]` budget, read from
//! `/proc/PID/status` every 50 ms; how the forecast ended (past its budget, or done),
//! when, and after how many simulated calls; then how long the daemon's stop on SIGTERM
//! takes and whether a scratch folder is left (the stop during a forecast is tested in
//! `tests/it/forecast_guest.rs`).

use crate::env::{self, Db};
use crate::report::{Table, num};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token-6f1d0c3b9a2e4d5f8a7b6c5d4e";

/// `VmRSS` of process `pid` in MB (0 once it has ended).
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `budget`: `[forecast]` keys to set (`""`: the defaults).
pub async fn guest(bin: &std::path::Path, leads: u64, budget: &str, table: &mut Table) {
    let sim = env::sim(Duration::ZERO).await;
    let db = Db::new("sqlite", None).await;
    db.fill(leads).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let campaign = dir.path().join("guest.toml");
    std::fs::write(
        &campaign,
        format!(
            "[fluidtalk]\nbase_url = \"{sim}\"\n[limits]\nconcurrency = 8\nper_second = 50\n\
             [forecast]\n{budget}\n\
             [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\n\
             [[job]]\nname = \"follow-ups\"\nkind = \"follow_up\"\nschedule = \"* * * * * *\"\nquiet_after = [\"1h\"]\nmax_follow_ups = 2\n"
        ),
    )
    .expect("write the campaign");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = env::command(bin, &db.url, &campaign, &["daemon", "--http", &addr]);
    cmd.env("FLUIDTALK_RUNNER_TOKEN", TOKEN)
        .env("TMPDIR", dir.path())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn the daemon");
    let pid = child.id();
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // Up, then idle for a while (its jobs run, calling the simulator).
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the daemon did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut idle = 0.0f64;
    for _ in 0..20 {
        idle = idle.max(rss_mb(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http
        .post(format!("{base}/login"))
        .form(&[("password", TOKEN)])
        .send()
        .await
        .expect("login");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let started = Instant::now();
    let page = {
        let (http, base, cookie) = (http.clone(), base.clone(), cookie.clone());
        move || {
            let (http, base, cookie) = (http.clone(), base.clone(), cookie.clone());
            async move {
                http.get(format!("{base}/"))
                    .header("cookie", cookie)
                    .send()
                    .await
                    .expect("page")
                    .text()
                    .await
                    .expect("html")
            }
        }
    };
    let first = tokio::spawn(page());
    let mut peak = idle;
    let mut outcome = "still computing after 10 minutes";
    let limit = Instant::now() + Duration::from_secs(600);
    let mut last_look = Instant::now();
    let mut ended_after = 0.0;
    let mut calls = 0u64;
    while Instant::now() < limit {
        peak = peak.max(rss_mb(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_look.elapsed() >= Duration::from_secs(1) && first.is_finished() {
            last_look = Instant::now();
            let html = page().await;
            if html.contains("forecast-over-budget") {
                outcome = "past the budget: the page names the command";
                calls = html
                    .split(" simulated calls in ")
                    .next()
                    .and_then(|t| t.rsplit(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                ended_after = started.elapsed().as_secs_f64();
                break;
            }
            if html.contains("id=\"forecast-chart\"") {
                outcome = "done: the chart";
                ended_after = started.elapsed().as_secs_f64();
                break;
            }
        }
    }
    // The daemon's stop: how long it takes, and that nothing is left behind.
    let stop_at = Instant::now();
    // SAFETY: sends SIGTERM to the child started above.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let stop_s = stop_at.elapsed().as_secs_f64();
    let left = std::fs::read_dir(dir.path())
        .expect("read the folder")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("fluidtalk-forecast-")
        })
        .count();
    table.row(vec![
        ("leads", leads.into()),
        (
            "budget",
            if budget.is_empty() { "default" } else { budget }.into(),
        ),
        ("calls_simulated", calls.into()),
        ("idle_rss_mb", num(idle, 1)),
        ("peak_rss_during_forecast_mb", num(peak, 1)),
        ("growth_mb", num(peak - idle, 1)),
        ("forecast", outcome.into()),
        ("forecast_ended_s", num(ended_after, 1)),
        ("sigterm_to_exit_s", num(stop_s, 1)),
        ("scratch_folders_left", left.into()),
    ]);
    eprintln!("  {}", table.last_line());
}
