//! The issue's "done when", as a team would run it: one `daemon` process with `[http]`
//! and `[delivery]`, leads and events and an inbound message pushed over HTTP, every
//! persona message received at a signature-checking webhook, `/metrics` scraped; on
//! SQLite and PostgreSQL.

use crate::common;

use common::campaign::{Campaign, finish, signal, text};
use common::db::TestDb;
use common::webhook::{Answer, Receiver, SECRET};
use fluidtalk_runner::clock::SystemClock;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const TOKEN: &str = "e2e-token-6f1d0c3b9a2e4d5f8a7b6c5d4e";

async fn one_daemon_serves_delivers_and_reports(db: TestDb) {
    let receiver = Receiver::start(Arc::new(SystemClock), Answer::Ok).await;
    let toml = format!(
        "[[job]]\nname = \"reactions\"\nkind = \"event\"\nevent_type = \"story_reaction\"\nschedule = \"* * * * * *\"\n\n\
         [delivery]\nwebhook_url = \"{}\"\nretry_base = \"100ms\"\n",
        receiver.url
    );
    let c = Campaign::new(db, &[], "", &toml).await;
    let mut cmd = c.command(&["daemon", "--http", "127.0.0.1:0"]);
    cmd.env("FLUIDTALK_RUNNER_TOKEN", TOKEN)
        .env("FLUIDTALK_WEBHOOK_SECRET", SECRET)
        .env("FLUIDTALK_LOG", "info");
    let mut daemon = cmd.spawn().expect("daemon starts");
    let mut lines = BufReader::new(daemon.stderr.take().expect("stderr")).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("addr=").nth(1) {
                return rest.split_whitespace().next().unwrap_or("").to_string();
            }
        }
        panic!("the daemon ended before it listened");
    })
    .await
    .expect("listening within a minute");
    // Keep draining the log so the daemon never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = format!("http://{addr}");
    fluidtalk_runner::fluidtalk::install_crypto_provider();
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };

    let r = post(
        "/v1/leads",
        json!({"leads": [{"target": "@ana"}, {"target": "@ben"}]}),
    )
    .await
    .expect("import");
    assert_eq!(r.status(), 200);
    let r = post(
        "/v1/leads/@ana/events",
        json!({"type": "story_reaction", "context": {"emoji": "🔥"}}),
    )
    .await
    .expect("event");
    assert_eq!(r.status(), 202);
    let r = post(
        "/v1/leads/@ben/inbound",
        json!({"message": "hey, who is this?"}),
    )
    .await
    .expect("inbound");
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.expect("json");

    // The event job's message and the inbound answer both reach the webhook, signed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while receiver.accepted().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook got {:?}",
            receiver.got()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        receiver.refused().is_empty(),
        "every request was signed: {:?}",
        receiver.refused()
    );
    let got = receiver.got();
    let by_target = |t: &str| {
        got.iter()
            .find(|g| g.target == t)
            .cloned()
            .expect("delivered")
    };
    assert_eq!(by_target("@ana").body["action"], "event");
    let ben = by_target("@ben");
    assert_eq!(ben.body["action"], "inbound");
    assert_eq!(ben.id, answer["outbox_id"].as_i64().expect("an outbox id"));
    assert_eq!(ben.text, answer["message"].as_str().unwrap_or(""));

    // The delivery's metric is recorded once its result is written, a moment after the
    // webhook got the message: read until every series is there (bounded).
    let series = [
        r#"fluidtalk_runner_api_calls_total{action="inbound",outcome="ok"}"#,
        r#"fluidtalk_runner_api_calls_total{action="event",outcome="ok"}"#,
        r#"fluidtalk_runner_webhook_deliveries_total{result="delivered"}"#,
        r#"fluidtalk_runner_http_requests_total{route="/v1/leads/{target}/inbound",status="200"}"#,
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = http
            .get(format!("{base}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let missing: Vec<&str> = series
            .iter()
            .copied()
            .filter(|s| !metrics.contains(s))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing:?} not in {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&daemon, libc::SIGTERM);
    let out = finish(daemon, Duration::from_secs(30)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_daemon_serves_delivers_and_reports_on_sqlite() {
    one_daemon_serves_delivers_and_reports(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_daemon_serves_delivers_and_reports_on_postgres() {
    if let Some(pg) = common::db::postgres().await {
        one_daemon_serves_delivers_and_reports(pg).await;
    }
}
