//! The dashboard's forecast over real HTTP, both databases: the chart's numbers are the
//! `forecast` command's, the simulated calls count in no metric, and the forecast is
//! computed again after a quarter of an hour on the clock.

use crate::common;

use chrono::{DateTime, Utc};
use common::db::{self, TestDb};
use common::http::{Api, serve};
use common::spawn_sim;
use fluidtalk_runner::config;
use fluidtalk_runner::forecast::{self, Assumptions, Options};
use fluidtalk_runner::sim::SimConfig;
use serde_json::json;

const CAMPAIGN: &str = "[[job]]\nname = \"fc-openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\ntimezone = \"Europe/Berlin\"\ndaily_cap = 40\n\n[[job]]\nname = \"fc-follow-ups\"\nkind = \"follow_up\"\nschedule = \"0 0 15 * * *\"\ntimezone = \"Europe/Berlin\"\nquiet_after = [\"23h\"]\n";

/// The page, once it shows a forecast: a page waits for one at most 5 s, then says it
/// is being computed (a loaded machine may take longer), and a later page shows it.
async fn page(api: &Api, cookie: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, html) = api.page(cookie).await;
        assert_eq!(status, 200);
        if html.contains("id=\"forecast-chart\"") || std::time::Instant::now() > deadline {
            return html;
        }
        assert!(
            html.contains("The forecast is being computed"),
            "no forecast, and not computing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The forecast chart's number for `day` and `series`, from its table.
fn forecast_cell(html: &str, day: &str, series: &str) -> u64 {
    let chart = html
        .split("id=\"forecast-chart\"")
        .nth(1)
        .expect("the forecast chart");
    let row = chart
        .split(&format!("<tr data-day=\"{day}\">"))
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("a row for {day}"));
    row.split(&format!("data-series=\"{series}\">"))
        .nth(1)
        .and_then(|r| r.split('<').next())
        .map_or(0, |n| n.parse().expect("a number"))
}

fn monday() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-30T06:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

async fn shows_the_commands_forecast(db: TestDb) {
    let (sim, _) = spawn_sim(SimConfig::default()).await;
    let api = serve(db, &sim, CAMPAIGN).await;
    api.clock.set(monday());
    let leads: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"target": format!("@f{i:03}")}))
        .collect();
    api.post("/v1/leads", json!({ "leads": leads })).await;
    let cookie = api.session().await;
    let html = page(&api, &cookie).await;

    // The command's forecast of the same database from the same instant.
    let config = config::parse(std::path::Path::new("jobs.toml"), CAMPAIGN).expect("parses");
    let opts = Options {
        from: monday(),
        days: 14,
        zone: chrono_tz::Europe::Berlin,
        assumptions: Assumptions::default(),
    };
    // On its own thread, as the dashboard runs it: the metrics checked below are the
    // process's, shared with the other test of this file.
    let f = forecast::in_background(api.db.url.clone(), config, opts)
        .await
        .expect("a result")
        .expect("forecast");
    for d in &f.days {
        let day = d.date.to_string();
        assert_eq!(forecast_cell(&html, &day, "openers"), d.openers, "{day}");
        assert_eq!(
            forecast_cell(&html, &day, "follow_ups"),
            d.follow_ups_total(),
            "{day}"
        );
    }
    assert_eq!(forecast_cell(&html, "2026-11-30", "openers"), 40);
    assert_eq!(forecast_cell(&html, "2026-12-02", "openers"), 20);
    assert_eq!(forecast_cell(&html, "2026-12-01", "follow_ups"), 40);
    assert!(html.contains("First bottleneck: 2026-11-30, daily cap of fc-openers."));

    // The simulated calls are nobody's metric.
    let r = api
        .req(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    // The process's recorder is shared with every other test of the binary, so look for
    // this campaign's own job names (nothing but the forecast runs them here).
    for job in ["fc-openers", "fc-follow-ups"] {
        let series = format!("{}{{job=\"{job}\"", fluidtalk_runner::metrics::JOB_RUNS);
        assert!(!text.contains(&series), "{series} in {text}");
    }

    // Kept for a quarter of an hour: 50 more leads show only after it.
    let more: Vec<serde_json::Value> = (0..50)
        .map(|i| json!({"target": format!("@g{i:03}")}))
        .collect();
    api.post("/v1/leads", json!({ "leads": more })).await;
    api.clock.set(monday() + chrono::Duration::minutes(14));
    assert_eq!(
        forecast_cell(&page(&api, &cookie).await, "2026-12-03", "openers"),
        0
    );
    api.clock.set(monday() + chrono::Duration::minutes(15));
    // 150 leads at 40 a day: 40, 40, 40, then the last 30. (Until the new forecast is
    // ready a page shows the last one.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen = forecast_cell(&page(&api, &cookie).await, "2026-12-03", "openers");
    while seen != 30 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        seen = forecast_cell(&page(&api, &cookie).await, "2026-12-03", "openers");
    }
    assert_eq!(seen, 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_commands_forecast_on_sqlite() {
    shows_the_commands_forecast(db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_commands_forecast_on_postgres() {
    if let Some(pg) = db::postgres().await {
        shows_the_commands_forecast(pg).await;
    }
}
