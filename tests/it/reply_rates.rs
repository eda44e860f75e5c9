//! Reply rates per job, step and sender, on both databases, with real calls to the
//! simulator: each reply is credited to the last step sent before it (once), sealed and
//! ignored steps are counted, and `status --json`, the status text, `GET /v1/status`,
//! `/metrics` and the dashboard show the same figures and Wilson intervals.
//!
//! - The command line (the real binary, its clock moved by `FLUIDTALK_CLOCK_OFFSET`):
//!   steps sent days ago, replies recorded by `leads replied` now or `--at` a past time.
//! - The HTTP service (in this process, its clock a `ManualClock` at a fixed date): replies
//!   by `POST /v1/leads/{target}/replied` and by the inbound relay.
//!
//! `reply_counts_on_a_million_attempts` (ignored; run with `--ignored`) measures the
//! aggregate on 1,000,000 attempts (docs/BENCHMARKS.md).

use crate::common;

use chrono::{DateTime, TimeZone, Utc};
use common::campaign::Campaign;
use common::db::{self, Raw, TestDb};
use common::http::serve;
use common::{client_with, spawn_sim};
use fluidtalk_runner::clock::Clock;
use fluidtalk_runner::rates::wilson;
use fluidtalk_runner::sim::SimConfig;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// One expected row of `reply_rates`, its rate and interval computed from its counts.
fn row(
    job: &str,
    step: &str,
    sender: &str,
    (sent, replied, sealed, ignored): (u64, u64, u64, u64),
) -> Value {
    json!({
        "job": job,
        "step": step,
        "sender": sender,
        "sent": sent,
        "replied": replied,
        "sealed": sealed,
        "ignored": ignored,
        "reply_rate": (sent > 0).then(|| replied as f64 / sent as f64),
        "interval": wilson(replied, sent).map(|(lo, hi)| [lo, hi]),
    })
}

/// The status line of an expected row (`status`, with the JSON's names).
fn line(r: &Value) -> String {
    let rate = match (r["reply_rate"].as_f64(), r["interval"].as_array()) {
        (Some(rate), Some(i)) => format!(
            "reply_rate={rate:.4} interval=[{:.4}, {:.4}]",
            i[0].as_f64().unwrap_or(-1.0),
            i[1].as_f64().unwrap_or(-1.0)
        ),
        _ => "reply_rate=- interval=-".into(),
    };
    format!(
        "  job={} step={} sender={} sent={} replied={} sealed={} ignored={} {rate}",
        r["job"].as_str().unwrap_or(""),
        r["step"].as_str().unwrap_or(""),
        r["sender"].as_str().unwrap_or("(none)"),
        r["sent"],
        r["replied"],
        r["sealed"],
        r["ignored"]
    )
}

/// Each attempt's (target, action, step, status, credited) in id order.
async fn attempts(raw: &Raw) -> Vec<(String, String, i64, String, bool)> {
    let sql = "SELECT l.target, a.action, a.step, a.status, a.replied_at IS NOT NULL
               FROM attempts a JOIN leads l ON l.id = a.lead_id ORDER BY a.id";
    match raw {
        Raw::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await,
        Raw::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await,
    }
    .expect("attempts")
}

/// The credited steps, as "target action step".
async fn credited(raw: &Raw) -> Vec<String> {
    attempts(raw)
        .await
        .into_iter()
        .filter(|a| a.4)
        .map(|(t, action, step, _, _)| format!("{t} {action} {step}"))
        .collect()
}

const JOBS: &str = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n\n\
    [[job]]\nname = \"follow\"\nkind = \"follow_up\"\nschedule = \"0 0 * * * *\"\n\
    quiet_after = [\"1d\", \"1d\", \"1d\"]\n";

/// The command line: openers six days ago, follow-ups four and two days ago and now; the
/// simulator seals a conversation after its second follow-up and ignores `@ig`. `@a`
/// (sender `@alice`) replied before any follow-up, `@d` between its first and second (said
/// after the second was sent), `@b` after its second, twice.
async fn cli_credits_each_reply_to_the_last_step_sent_before_it(db: TestDb) {
    let c = Campaign::new(
        db,
        &["--seal-after", "2", "--ignore", "@ig"],
        "own_username = \"@house\"\n[limits]\nconcurrency = 4\nper_second = 1000",
        JOBS,
    )
    .await;
    std::fs::write(
        c.dir.path().join("leads.csv"),
        "target,own_username\n@a,@alice\n@b,\n@c,\n@d,\n@ig,\n",
    )
    .expect("write leads.csv");
    c.ok(&["leads", "import", "leads.csv"], &[]).await;
    let t0 = Utc::now();
    // Imported now, the leads are due from now: make them due a week ago, for the openers
    // six days ago (no command backdates an import).
    let week_ago = t0 - chrono::Duration::days(7);
    match &c.raw {
        Raw::Sqlite(p) => sqlx::query("UPDATE leads SET next_eligible_at = $1")
            .bind(week_ago.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
            .execute(p)
            .await
            .map(|r| r.rows_affected()),
        Raw::Postgres(p) => sqlx::query("UPDATE leads SET next_eligible_at = $1")
            .bind(week_ago)
            .execute(p)
            .await
            .map(|r| r.rows_affected()),
    }
    .expect("backdate the leads");
    let ago = |h: i64| (t0 - chrono::Duration::hours(h)).to_rfc3339();

    c.ok(&["run", "openers"], &[("FLUIDTALK_CLOCK_OFFSET", "-6d")])
        .await;
    // Before any follow-up: the opener's.
    c.ok(&["leads", "replied", "@a", "--at", &ago(5 * 24 + 12)], &[])
        .await;
    c.ok(&["run", "follow"], &[("FLUIDTALK_CLOCK_OFFSET", "-4d")])
        .await;
    c.ok(&["run", "follow"], &[("FLUIDTALK_CLOCK_OFFSET", "-2d")])
        .await;
    // Recorded after follow-up 2 went out, dated between follow-ups 1 and 2: follow-up
    // 1's, the last step sent before the reply, not the last step sent.
    c.ok(&["leads", "replied", "@d", "--at", &ago(3 * 24 + 12)], &[])
        .await;
    // After follow-up 2: its own, not the opener's; the second reply counts nowhere.
    c.ok(&["leads", "replied", "@b"], &[]).await;
    c.ok(&["leads", "replied", "@b"], &[]).await;
    // Follow-up 3 finds every conversation sealed (`@b` wrote just now: not due).
    c.ok(&["run", "follow"], &[]).await;

    assert_eq!(
        credited(&c.raw).await,
        ["@a opener 0", "@d follow_up 1", "@b follow_up 2"]
    );
    let expected = vec![
        row("openers", "opener_0", "@alice", (1, 1, 0, 0)),
        row("openers", "opener_0", "@house", (3, 0, 0, 1)),
        row("follow", "follow_up_1", "@alice", (1, 0, 0, 0)),
        row("follow", "follow_up_1", "@house", (3, 1, 0, 0)),
        row("follow", "follow_up_2", "@alice", (1, 0, 0, 0)),
        row("follow", "follow_up_2", "@house", (3, 1, 0, 0)),
        row("follow", "follow_up_3", "@alice", (0, 0, 1, 0)),
        row("follow", "follow_up_3", "@house", (0, 0, 2, 0)),
    ];
    // Sorted by job name: `follow` before `openers`.
    let mut want = expected.clone();
    want.sort_by_key(|r| r["job"].as_str().map(str::to_string));
    let status: Value =
        serde_json::from_str(&c.ok(&["status", "--json"], &[]).await).expect("status JSON");
    assert_eq!(
        status["reply_rates"],
        Value::Array(want.clone()),
        "{status}"
    );
    // 1 of 1: [0.2065, 1].
    assert_eq!(
        status["reply_rates"][6]["interval"][1],
        json!(1.0),
        "{status}"
    );

    let text = c.ok(&["status"], &[]).await;
    let shown: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("reply rates"))
        .skip(1)
        .collect();
    let lines: Vec<String> = want.iter().map(line).collect();
    assert_eq!(shown, lines, "{text}");
    assert!(
        text.contains(
            "  job=openers step=opener_0 sender=@alice sent=1 replied=1 sealed=0 ignored=0 reply_rate=1.0000 interval=[0.2065, 1.0000]"
        ),
        "{text}"
    );
}

/// Monday 2026-11-23 10:00 UTC: the HTTP test's clock, whatever today is.
fn monday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("valid")
}

/// `/metrics`' lines of the reply rates for `job`.
fn metric_lines(text: &str, job: &str) -> Vec<String> {
    let want = format!("{{job=\"{job}\",");
    text.lines()
        .filter(|l| {
            l.starts_with("fluidtalk_runner_steps_") || l.starts_with("fluidtalk_runner_reply_rate")
        })
        .filter(|l| l.contains(&want))
        .map(str::to_string)
        .collect()
}

/// The `/metrics` lines an expected row makes.
fn expected_metrics(r: &Value) -> Vec<String> {
    let labels = format!(
        "{{job=\"{}\",step=\"{}\",sender=\"{}\"}}",
        r["job"].as_str().unwrap_or(""),
        r["step"].as_str().unwrap_or(""),
        r["sender"].as_str().unwrap_or("(none)")
    );
    let mut out = Vec::new();
    for (name, key) in [
        ("fluidtalk_runner_steps_sent", "sent"),
        ("fluidtalk_runner_steps_replied", "replied"),
        ("fluidtalk_runner_steps_sealed", "sealed"),
        ("fluidtalk_runner_steps_ignored", "ignored"),
    ] {
        out.push(format!(
            "{name}{labels} {}",
            r[key].as_u64().unwrap_or(0) as f64
        ));
    }
    if let Some(rate) = r["reply_rate"].as_f64() {
        out.push(format!("fluidtalk_runner_reply_rate{labels} {rate}"));
    }
    if let Some(i) = r["interval"].as_array() {
        let (lo, hi) = (i[0].as_f64().unwrap_or(-1.0), i[1].as_f64().unwrap_or(-1.0));
        out.push(format!("fluidtalk_runner_reply_rate_low{labels} {lo}"));
        out.push(format!("fluidtalk_runner_reply_rate_high{labels} {hi}"));
    }
    out
}

/// The dashboard's row of `job/step/sender`: its cells' text, tags removed.
fn dashboard_row(html: &str, key: &str) -> Option<Vec<String>> {
    let start = html.find(&format!("data-rate=\"{key}\""))?;
    let rest = &html[start..];
    let end = rest.find("</tr>")?;
    let mut cells = Vec::new();
    for part in rest[..end].split("</t") {
        let Some(open) = part.rfind('>') else {
            continue;
        };
        cells.push(part[open + 1..].to_string());
    }
    cells.retain(|c| !c.is_empty());
    Some(cells)
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The HTTP service: openers on Monday, follow-ups two and four days later (the
/// simulator seals a conversation after one follow-up, ignores `@ig`). `@p` (sender
/// `@pat`) replied through the API before any follow-up, `@q` through the inbound relay
/// (twice), `@r` through the API after its first follow-up.
async fn http_credits_replies_from_the_api_and_the_relay(db: TestDb) {
    let toml = format!(
        "[fluidtalk]\nown_username = \"@house\"\n[limits]\nconcurrency = 4\nper_second = 1000\n\n{}",
        JOBS.replace("\"1d\", \"1d\", \"1d\"", "\"1d\", \"1d\"")
            .replace("openers", "h-openers")
            .replace("\"follow\"", "\"h-follow\"")
    );
    let (sim_url, _sim) = spawn_sim(SimConfig {
        seal_after: Some(1),
        ignore: ["@ig".to_string()].into_iter().collect(),
        ..SimConfig::default()
    })
    .await;
    let api = serve(db, &sim_url, &toml).await;
    api.clock.set(monday());
    let config = Arc::new(
        fluidtalk_runner::config::parse(std::path::Path::new("jobs.toml"), &toml)
            .expect("campaign parses"),
    );
    let runner = fluidtalk_runner::runner::Runner::new(
        api.db.store.clone(),
        client_with(&sim_url, Some("@house"), Duration::from_secs(10)),
        config.clone(),
        api.clock.clone() as Arc<dyn Clock>,
        "rates-test".into(),
    );
    let run = async |name: &str| {
        let job = config.jobs.iter().find(|j| j.name == name).expect("a job");
        runner.run_job(job, None).await.expect("the job runs");
    };
    let (status, body) = api
        .post(
            "/v1/leads",
            json!({"leads": [
                {"target": "@p", "own_username": "@pat"},
                {"target": "@q"}, {"target": "@r"}, {"target": "@ig"},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let hour = chrono::Duration::hours(1);
    let day = chrono::Duration::days(1);

    run("h-openers").await;
    api.clock.set(monday() + hour);
    let (status, body) = api.post("/v1/leads/@p/replied", json!({})).await;
    assert_eq!(status, 200, "{body}");
    for i in 0..2 {
        api.clock.set(monday() + hour * (2 + i));
        let (status, body) = api
            .post("/v1/leads/@q/inbound", json!({"message": "hi"}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    api.clock.set(monday() + day * 2);
    run("h-follow").await;
    api.clock.set(monday() + day * 2 + hour);
    let (status, body) = api.post("/v1/leads/@r/replied", json!({})).await;
    assert_eq!(status, 200, "{body}");
    api.clock.set(monday() + day * 4);
    run("h-follow").await;

    assert_eq!(
        credited(&api.db.raw).await,
        ["@p opener 0", "@q opener 0", "@r follow_up 1"],
        "{:?}",
        attempts(&api.db.raw).await
    );
    let want = vec![
        row("h-follow", "follow_up_1", "@house", (2, 1, 0, 0)),
        row("h-follow", "follow_up_1", "@pat", (1, 0, 0, 0)),
        row("h-follow", "follow_up_2", "@house", (0, 0, 2, 0)),
        row("h-follow", "follow_up_2", "@pat", (0, 0, 1, 0)),
        row("h-openers", "opener_0", "@house", (2, 1, 0, 1)),
        row("h-openers", "opener_0", "@pat", (1, 1, 0, 0)),
    ];
    let (status, body) = api.get("/v1/status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reply_rates"], Value::Array(want.clone()), "{body}");

    // /metrics: every series of every row, nothing else for these jobs.
    let scrape = async || {
        let r = api
            .req(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 200);
        r.text().await.expect("text")
    };
    let text = scrape().await;
    for job in ["h-openers", "h-follow"] {
        let mut got = metric_lines(&text, job);
        got.sort();
        let mut expected: Vec<String> = want
            .iter()
            .filter(|r| r["job"] == job)
            .flat_map(expected_metrics)
            .collect();
        expected.sort();
        assert_eq!(got, expected, "{text}");
    }
    assert!(
        text.contains("# TYPE fluidtalk_runner_reply_rate gauge"),
        "{text}"
    );

    // The dashboard: a row per job, step and sender.
    let cookie = api.session().await;
    let (status, html) = api.page(&cookie).await;
    assert_eq!(status, 200);
    for r in &want {
        let key = format!(
            "{}/{}/{}",
            r["job"].as_str().unwrap_or(""),
            r["step"].as_str().unwrap_or(""),
            r["sender"].as_str().unwrap_or("")
        );
        let cells = dashboard_row(&html, &key).unwrap_or_else(|| panic!("no row {key}: {html}"));
        let rate = r["reply_rate"]
            .as_f64()
            .map_or_else(|| "-".to_string(), percent);
        let interval = r["interval"].as_array().map_or_else(
            || "-".to_string(),
            |i| {
                format!(
                    "{} to {}",
                    percent(i[0].as_f64().unwrap_or(-1.0)),
                    percent(i[1].as_f64().unwrap_or(-1.0))
                )
            },
        );
        let expected: Vec<String> = [
            r["job"].as_str().unwrap_or("").to_string(),
            r["step"].as_str().unwrap_or("").to_string(),
            r["sender"].as_str().unwrap_or("").to_string(),
            r["sent"].to_string(),
            r["replied"].to_string(),
            r["sealed"].to_string(),
            r["ignored"].to_string(),
            rate,
            interval,
        ]
        .into();
        assert_eq!(cells, expected, "{key}");
    }

    // Kept for a minute on the service's clock: a new reply shows on /metrics after it.
    api.clock.set(monday() + day * 4 + hour);
    let (status, body) = api.post("/v1/leads/@r/replied", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let replied =
        "fluidtalk_runner_steps_replied{job=\"h-follow\",step=\"follow_up_1\",sender=\"@house\"}";
    let api_status = api.get("/v1/status").await.1;
    // `@r`'s last step sent is follow-up 1 (its follow-up 2 was sealed), credited already.
    assert_eq!(api_status["reply_rates"], Value::Array(want.clone()));
    assert!(scrape().await.contains(&format!("{replied} 1\n")));
    // A reply to `@q`'s follow-up 1 now counts: within the minute, /metrics shows the old
    // value, GET /v1/status the new one; after it, both.
    let (status, body) = api.post("/v1/leads/@q/replied", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        api.get("/v1/status").await.1["reply_rates"][0]["replied"],
        2
    );
    api.clock
        .set(monday() + day * 4 + hour + chrono::Duration::seconds(59));
    assert!(scrape().await.contains(&format!("{replied} 1\n")));
    api.clock
        .set(monday() + day * 4 + hour + chrono::Duration::seconds(61));
    assert!(scrape().await.contains(&format!("{replied} 2\n")));
}

/// 25 senders: `/metrics` names the 19 with the most sent and sums the other 6 under
/// `(other)`; `GET /v1/status` lists all 25.
async fn metrics_bound_the_sender_label(db: TestDb) {
    let toml = "[fluidtalk]\nown_username = \"@house\"\n[limits]\nconcurrency = 4\nper_second = 1000\n\n\
        [[job]]\nname = \"cap-openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n";
    let (sim_url, _sim) = spawn_sim(SimConfig::default()).await;
    let api = serve(db, &sim_url, toml).await;
    api.clock.set(monday());
    let config = Arc::new(
        fluidtalk_runner::config::parse(std::path::Path::new("jobs.toml"), toml)
            .expect("campaign parses"),
    );
    // Sender @s00 has one lead, @s01 two, ... @s24 twenty-five: the most used are clear.
    let leads: Vec<Value> = (0..25)
        .flat_map(|s| (0..=s).map(move |i| json!({"target": format!("@t{s:02}x{i:02}"), "own_username": format!("@s{s:02}")})))
        .collect();
    let (status, body) = api.post("/v1/leads", json!({ "leads": leads })).await;
    assert_eq!(status, 200, "{body}");
    let runner = fluidtalk_runner::runner::Runner::new(
        api.db.store.clone(),
        client_with(&sim_url, Some("@house"), Duration::from_secs(10)),
        config.clone(),
        api.clock.clone() as Arc<dyn Clock>,
        "rates-cap".into(),
    );
    runner
        .run_job(&config.jobs[0], None)
        .await
        .expect("the job runs");
    let (_, body) = api.get("/v1/status").await;
    assert_eq!(
        body["reply_rates"].as_array().map(Vec::len),
        Some(25),
        "{body}"
    );
    let text = api
        .req(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    let sent: Vec<String> = metric_lines(&text, "cap-openers")
        .into_iter()
        .filter(|l| l.starts_with("fluidtalk_runner_steps_sent{"))
        .collect();
    let mut want: Vec<String> = (6..25)
        .map(|s| {
            format!(
                "fluidtalk_runner_steps_sent{{job=\"cap-openers\",step=\"opener_0\",sender=\"@s{s:02}\"}} {}",
                s + 1
            )
        })
        .collect();
    // @s00 to @s05: 1 + 2 + ... + 6 leads.
    want.insert(
        0,
        "fluidtalk_runner_steps_sent{job=\"cap-openers\",step=\"opener_0\",sender=\"(other)\"} 21"
            .to_string(),
    );
    assert_eq!(sent, want, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_bound_the_sender_label_on_both_databases() {
    metrics_bound_the_sender_label(db::sqlite().await).await;
    if let Some(pg) = db::postgres().await {
        metrics_bound_the_sender_label(pg).await;
    }
}

/// The command line on both backends.
#[tokio::test(flavor = "multi_thread")]
async fn cli_credits_replies_on_sqlite() {
    cli_credits_each_reply_to_the_last_step_sent_before_it(db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_credits_replies_on_postgresql() {
    let Some(pg) = db::postgres().await else {
        return;
    };
    cli_credits_each_reply_to_the_last_step_sent_before_it(pg).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_credits_replies_on_sqlite() {
    http_credits_replies_from_the_api_and_the_relay(db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_credits_replies_on_postgresql() {
    let Some(pg) = db::postgres().await else {
        return;
    };
    http_credits_replies_from_the_api_and_the_relay(pg).await;
}

/// 250,000 contacted leads (40 senders; every fifth lead none) with four attempts each,
/// 1,000,000 in all: openers and three follow-ups, mostly sent, some sealed, ignored or
/// failed, every seventh replied.
async fn fill_a_million(raw: &Raw) {
    let ts = |pg: bool| {
        if pg {
            "CAST('2026-01-01T00:00:00Z' AS TIMESTAMPTZ)"
        } else {
            "'2026-01-01T00:00:00.000000Z'"
        }
    };
    let leads = |pg: bool| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250000)
             INSERT INTO leads (target, own_username, state, created_at, updated_at, next_eligible_at)
             SELECT '@lead' || i, CASE WHEN i % 5 = 0 THEN NULL ELSE '@s' || (i % 50) END,
                    'contacted', {t}, {t}, {t} FROM n",
            t = ts(pg)
        )
    };
    let attempts = |pg: bool, k: i64| {
        format!(
            "INSERT INTO attempts (lead_id, job, action, step, status, started_at, finished_at,
                                   runner_id, replied_at)
             SELECT id, '{job}', '{action}', {k},
                    CASE WHEN (id + {k}) % 17 = 0 THEN 'sealed' WHEN (id + {k}) % 13 = 0 THEN 'ignored'
                         WHEN (id + {k}) % 11 = 0 THEN 'failed' ELSE 'sent' END,
                    {t}, {t}, 'bench',
                    CASE WHEN (id + {k}) % 7 = 0 THEN {t} ELSE NULL END
             FROM leads",
            job = if k == 0 { "openers" } else { "follow" },
            action = if k == 0 { "opener" } else { "follow_up" },
            t = ts(pg)
        )
    };
    match raw {
        Raw::Sqlite(p) => {
            sqlx::query(sqlx::AssertSqlSafe(leads(false)))
                .execute(p)
                .await
                .expect("leads");
            for k in 0..4 {
                sqlx::query(sqlx::AssertSqlSafe(attempts(false, k)))
                    .execute(p)
                    .await
                    .expect("attempts");
            }
            sqlx::query("ANALYZE").execute(p).await.expect("analyze");
        }
        Raw::Postgres(p) => {
            sqlx::query(sqlx::AssertSqlSafe(leads(true)))
                .execute(p)
                .await
                .expect("leads");
            for k in 0..4 {
                sqlx::query(sqlx::AssertSqlSafe(attempts(true, k)))
                    .execute(p)
                    .await
                    .expect("attempts");
            }
            sqlx::query("VACUUM ANALYZE attempts")
                .execute(p)
                .await
                .expect("vacuum");
            sqlx::query("VACUUM ANALYZE leads")
                .execute(p)
                .await
                .expect("vacuum");
        }
    }
}

/// The plan of the rates' statement, one line per step.
async fn rates_plan(raw: &Raw) -> String {
    let counts = "SELECT a.job, a.action, CASE WHEN a.action = 'event' THEN 0 ELSE a.step END,
        COALESCE(l.own_username, '@house'),
        SUM(CASE WHEN a.status IN ('sent', 'continued') THEN 1 ELSE 0 END),
        SUM(CASE WHEN a.status IN ('sent', 'continued') AND a.replied_at IS NOT NULL
                 THEN 1 ELSE 0 END),
        SUM(CASE WHEN a.status = 'sealed' THEN 1 ELSE 0 END),
        SUM(CASE WHEN a.status = 'ignored' THEN 1 ELSE 0 END)
 FROM attempts a JOIN leads l ON l.id = a.lead_id
 WHERE a.status IN ('sent', 'continued', 'sealed', 'ignored') AND a.action <> 'inbound'
 GROUP BY 1, 2, 3, 4";
    match raw {
        Raw::Sqlite(p) => {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {counts}")))
                    .fetch_all(p)
                    .await
                    .expect("plan");
            rows.into_iter().map(|r| r.3 + "\n").collect()
        }
        Raw::Postgres(p) => {
            let rows: Vec<(String,)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN ANALYZE {counts}")))
                    .fetch_all(p)
                    .await
                    .expect("plan");
            rows.into_iter().map(|r| r.0 + "\n").collect()
        }
    }
}

async fn measure_a_million(db: TestDb) {
    fill_a_million(&db.raw).await;
    let mut took = Vec::new();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let rows = db.store.reply_counts(Some("@house")).await.expect("counts");
        took.push(t.elapsed());
        let sent: u64 = rows.iter().map(|r| r.sent).sum();
        let all: u64 = rows.iter().map(|r| r.sent + r.sealed + r.ignored).sum();
        assert!(sent > 700_000 && all < 1_000_000, "{sent} {all}");
        // `@s0` to `@s49` but those whose number is a multiple of 5 (their leads have
        // none), and the default.
        assert_eq!(rows.len(), 4 * 41, "4 steps by 40 senders and the default");
    }
    eprintln!(
        "reply_counts on 1,000,000 attempts ({}): {took:?}\n{}",
        db.store.backend(),
        rates_plan(&db.raw).await
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: fills a million attempts (docs/BENCHMARKS.md)"]
async fn reply_counts_on_a_million_attempts() {
    measure_a_million(db::sqlite().await).await;
    if let Some(pg) = db::postgres().await {
        measure_a_million(pg).await;
    }
}
