//! `daemon --http` as a user runs it: the real binary, the simulator as a process, a
//! SQLite file. A missing token stops it at start; a running one serves, keeps the key
//! and the token out of every answer and log line, and stops cleanly on SIGTERM.

use crate::common;

use common::TEST_KEY;
use common::campaign::{Campaign, finish, signal, text};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const TOKEN: &str = "daemon-token-6f1d0c3b9a2e4d5f8a7b6c";

#[tokio::test]
async fn without_a_token_the_http_daemon_does_not_start() {
    let c = Campaign::on_sqlite(&[], "", "").await;
    let mut cmd = c.command(&["daemon", "--http", "127.0.0.1:0"]);
    cmd.env_remove("FLUIDTALK_RUNNER_TOKEN");
    let out = cmd.output().await.expect("ran");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // Said once: the error is not repeated as its own cause.
    assert_eq!(
        text(&out.stderr)
            .matches("the HTTP API needs a token: set FLUIDTALK_RUNNER_TOKEN")
            .count(),
        1,
        "{}",
        text(&out.stderr)
    );
    let out = c
        .output(
            &["daemon", "--http", "127.0.0.1:0"],
            &[("FLUIDTALK_RUNNER_TOKEN", "short")],
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr).matches("at least 32").count(),
        1,
        "{}",
        text(&out.stderr)
    );
    let out = c
        .output(
            &["daemon", "--dry-run", "--http", "127.0.0.1:0"],
            &[("FLUIDTALK_RUNNER_TOKEN", TOKEN)],
        )
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[tokio::test]
async fn the_http_daemon_serves_keeps_secrets_and_stops_on_sigterm() {
    let c = Campaign::on_sqlite(&[], "", "").await;
    let mut cmd = c.command(&["daemon", "--http", "127.0.0.1:0"]);
    cmd.env("FLUIDTALK_RUNNER_TOKEN", TOKEN)
        .env("FLUIDTALK_LOG", "info");
    let mut child = cmd.spawn().expect("daemon starts");
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
    let base = format!("http://{addr}");
    fluidtalk_runner::fluidtalk::install_crypto_provider();
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let mut bodies = String::new();
    let r = http
        .post(format!("{base}/v1/leads/@ana/inbound"))
        .bearer_auth(TOKEN)
        .json(&json!({"message": "hello"}))
        .send()
        .await
        .expect("inbound");
    assert_eq!(r.status(), 200);
    bodies += &r.text().await.expect("body");
    for path in [
        "/v1/status",
        "/v1/leads/@ana",
        "/v1/outbox",
        "/v1/openapi.json",
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect(path);
        assert_eq!(r.status(), 200, "{path}");
        bodies += &r.text().await.expect("body");
    }
    signal(&child, libc::SIGTERM);
    let rest = tokio::spawn(async move {
        let mut more = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            more.push_str(&line);
            more.push('\n');
        }
        more
    });
    child.stderr = None;
    let out = finish(child, Duration::from_secs(30)).await;
    log += &rest.await.expect("log read");
    assert!(
        out.status.success(),
        "SIGTERM ends the daemon cleanly: {log}"
    );
    for secret in [TEST_KEY, TOKEN] {
        assert!(!bodies.contains(secret), "a secret in an answer");
        assert!(!log.contains(secret), "a secret in the log: {log}");
    }
    assert!(log.contains("HTTP API listening"), "{log}");
    // The start-up log says where the dashboard is.
    assert!(log.contains("dashboard=http://127.0.0.1:"), "{log}");
}

/// A campaign file with `[http] listen` still previews with `daemon --dry-run`: the HTTP
/// API is simply not served (only `--dry-run --http` is a contradiction).
#[tokio::test]
async fn a_dry_run_previews_a_campaign_that_also_sets_http() {
    let c = Campaign::on_sqlite(
        &[],
        "",
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 3 * * *\"\n",
    )
    .await;
    let mut cmd = c.command(&["daemon", "--dry-run"]);
    cmd.env_remove("FLUIDTALK_RUNNER_TOKEN")
        .env("FLUIDTALK_LOG", "info");
    let mut child = cmd.spawn().expect("starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("log") {
            log.push_str(&line);
            log.push('\n');
            if line.contains("the HTTP API ([http] listen) is not served") {
                return;
            }
        }
        panic!("ended without saying so: {log}");
    })
    .await
    .expect("said within a minute");
    signal(&child, libc::SIGTERM);
    child.stderr = None;
    let out = finish(child, Duration::from_secs(30)).await;
    assert!(out.status.success(), "{log}");
}

/// The start-up line says where the dashboard is, from the address bound (port 0 shows the
/// port picked), and which API the calls go to; the URL it names answers.
#[tokio::test]
async fn the_start_up_line_names_the_dashboard_url_it_serves_and_the_api_base_url() {
    let c = Campaign::on_sqlite(&[], "", "").await;
    let mut cmd = c.command(&["daemon", "--http", "127.0.0.1:0"]);
    cmd.env("FLUIDTALK_RUNNER_TOKEN", TOKEN)
        .env("FLUIDTALK_LOG", "info");
    let mut child = cmd.spawn().expect("daemon starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = String::new();
    let start = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read log") {
            log.push_str(&line);
            log.push('\n');
            if line.contains("daemon starting") {
                return line;
            }
        }
        panic!("the daemon ended before it started: {log}");
    })
    .await
    .expect("the daemon starts within a minute");
    let field = |name: &str| {
        start
            .split(&format!(" {name}="))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {name}= in {start:?}"))
            .to_string()
    };
    let dashboard = field("dashboard");
    assert!(
        dashboard.starts_with("http://127.0.0.1:") && dashboard.ends_with('/'),
        "{start}"
    );
    assert!(!dashboard.contains(":0/"), "the port bound, not 0: {start}");
    assert_eq!(field("api"), c.sim_url, "{start}");
    // The dashboard's URL answers: its page (a log-in form without a session).
    fluidtalk_runner::fluidtalk::install_crypto_provider();
    let page = reqwest::get(&dashboard)
        .await
        .expect("the dashboard answers");
    assert_eq!(page.status(), 200, "{dashboard}");
    let body = page.text().await.expect("body");
    assert!(body.contains("<form"), "{body}");
    signal(&child, libc::SIGTERM);
    child.stderr = None;
    let out = finish(child, Duration::from_secs(30)).await;
    assert!(out.status.success());
}
