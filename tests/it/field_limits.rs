//! Issue 19 defect 6 and issue 20 defect 3: one set of limits for every lead field
//! (`lead::fields`), the same at every door: an import row (CSV and JSONL), the HTTP API,
//! the dashboard's Block and the command line. Over a limit: a row error naming the file,
//! line, field and limit at import (the other rows imported); a 422 in the API's error
//! shape; exit 3 on the command line; nothing stored. Times outside years 1 to 9999 are
//! refused the same way.

use crate::common;

use common::db::{self, TestDb};
use common::http::{Api, serve};
use common::{bin, spawn_sim};
use fluidtalk_runner::lead::fields;
use fluidtalk_runner::sim::SimConfig;
use serde_json::{Value, json};
use std::process::Output;

const CAMPAIGN: &str = "[[job]]\nname = \"reactions\"\nkind = \"event\"\nevent_type = \"story_reaction\"\nschedule = \"0 0 * * * *\"\n";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A campaign folder with a SQLite file, for the command line.
struct Cli {
    dir: tempfile::TempDir,
    url: String,
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("jobs.toml"), CAMPAIGN).expect("jobs.toml");
        let url = format!("sqlite://{}", dir.path().join("leads.db").display());
        Cli { dir, url }
    }

    fn run(&self, args: &[&str]) -> Output {
        bin()
            .args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", &self.url)
            .env_remove("FLUIDTALK_RUNNER_CONFIG")
            .env_remove("FLUIDTALK_CLOCK_OFFSET")
            .output()
            .expect("run the binary")
    }

    fn file(&self, name: &str, body: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).expect("write");
        path.display().to_string()
    }

    fn targets(&self) -> Vec<String> {
        let out = self.run(&["leads", "list", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        v.as_array()
            .expect("a list")
            .iter()
            .map(|l| l["target"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Every field over its limit by one, in a CSV file and a JSONL file: each row is
/// rejected with its file, line, field and limit; the good rows around them are imported.
#[test]
fn an_import_rejects_each_over_long_field_by_row_and_keeps_the_rest() {
    let cli = Cli::new();
    let over = |n: usize| "é".repeat(n + 1);
    let tags51: Vec<String> = (0..=fields::TAGS).map(|i| format!("t{i}")).collect();
    let rows: Vec<(String, String)> = vec![
        (
            format!("{},,,,", over(fields::TARGET_CHARS)),
            "target is 256 characters long; the limit is 255".into(),
        ),
        (
            format!("@own,{},,,", over(fields::OWN_USERNAME_CHARS)),
            "own_username is 256 characters long; the limit is 255".into(),
        ),
        (
            format!("@tz,,{},,", over(fields::TIMEZONE_CHARS)),
            "timezone is 65 characters long; the limit is 64".into(),
        ),
        (
            format!("@img,,,{},", over(fields::PROFILE_IMAGE_CHARS)),
            "profile_image is 2049 characters long; the limit is 2048".into(),
        ),
        (
            format!("@tag,,,,{}", over(fields::TAG_CHARS)),
            "a tag is 101 characters long; the limit is 100 per tag".into(),
        ),
        (
            format!("@tags,,,,{}", tags51.join(";")),
            "51 tags; the limit is 50".into(),
        ),
    ];
    let mut csv = String::from("target,own_username,timezone,profile_image,tags\n@first,,,,\n");
    for (row, _) in &rows {
        csv.push_str(row);
        csv.push('\n');
    }
    csv.push_str("@last,,,,\n");
    let path = cli.file("leads.csv", &csv);
    let out = cli.run(&["leads", "import", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 2, updated 0, rejected 6"
    );
    let stderr = text(&out.stderr);
    for (i, (_, reason)) in rows.iter().enumerate() {
        let want = format!("{path}:{}: {reason}", i + 3);
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    assert_eq!(cli.targets(), ["@first", "@last"]);

    // The same limits in JSON Lines, and the time range (year 0 is no time either
    // database stores).
    let lines = [
        json!({"target": "@j1"}),
        json!({"target": "@j2", "tags": tags51}),
        json!({"target": "@j3", "own_username": over(fields::OWN_USERNAME_CHARS)}),
        json!({"target": "@j4", "state": "contacted", "last_contact_at": "0000-06-01T00:00:00Z"}),
        json!({"target": "@j5"}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let path = cli.file("leads.jsonl", &body);
    let out = cli.run(&["leads", "import", &path, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["file"], path.as_str(), "{report}");
    assert_eq!(report["imported"], 2, "{report}");
    let rejections = report["rejections"].as_array().expect("rejections");
    let reasons: Vec<(u64, &str)> = rejections
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap_or(0),
                r["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(reasons[0], (2, "51 tags; the limit is 50"), "{report}");
    assert_eq!(
        reasons[1],
        (3, "own_username is 256 characters long; the limit is 255")
    );
    assert_eq!(reasons[2].0, 4);
    assert!(
        reasons[2]
            .1
            .contains("last_contact_at 0000-06-01T00:00:00+00:00 is outside the supported range"),
        "{report}"
    );
}

/// The command line refuses an over-long value with exit 3 and stores nothing.
#[test]
fn the_command_line_refuses_over_long_values_with_exit_3() {
    let cli = Cli::new();
    let long_target = format!("@{}", "x".repeat(3000));
    let levels = fields::CONTEXT_DEPTH + 1;
    let deep = "{\"a\":".repeat(levels) + "1" + &"}".repeat(levels);
    let big = format!("{{\"a\": \"{}\"}}", "x".repeat(fields::CONTEXT_BYTES));
    let tag = "x".repeat(fields::TAG_CHARS + 1);
    let own = "x".repeat(fields::OWN_USERNAME_CHARS + 1);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["leads", "add", &long_target],
            "target is 3001 characters long; the limit is 255",
        ),
        (
            vec!["leads", "add", "@a", "--own-username", &own],
            "own_username is 256 characters long; the limit is 255",
        ),
        (
            vec!["leads", "add", "@a", "--tag", &tag],
            "a tag is 101 characters long; the limit is 100 per tag",
        ),
        (
            vec!["leads", "block", &long_target],
            "target is 3001 characters long",
        ),
        (
            vec!["leads", "block", "@a\nb"],
            "target contains a control character (U+000A)",
        ),
        (
            vec!["leads", "event", "@a", "story_reaction", "--context", &deep],
            "context nests deeper than 8 levels",
        ),
        (
            vec!["leads", "event", "@a", "story_reaction", "--context", &big],
            "the limit is 16384",
        ),
    ];
    for (args, want) in cases {
        let out = cli.run(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{:?}: {stderr}", &args[..2]);
        assert!(stderr.contains(want), "{:?}: {stderr}", &args[..2]);
    }
    assert!(cli.targets().is_empty(), "nothing was stored");
    // Times outside years 1 to 9999 are refused as the command line is read (exit 2).
    let out = cli.run(&["leads", "replied", "@a", "--at", "0000-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("outside the supported range 0001-01-01 to 9999-12-31"),
        "{}",
        text(&out.stderr)
    );
}

async fn api(db: TestDb) -> Api {
    let (sim, _) = spawn_sim(SimConfig::default()).await;
    serve(db, &sim, CAMPAIGN).await
}

fn over_limit(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["kind"], "over_limit", "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
}

/// The HTTP API answers a field over its limit with 422 in its error shape, naming the
/// field (and, in a list, the item), and stores nothing.
#[tokio::test]
async fn the_api_answers_422_for_a_field_over_its_limit_and_stores_nothing() {
    for db in [Some(db::sqlite().await), db::postgres().await]
        .into_iter()
        .flatten()
    {
        let api = api(db).await;
        let tags: Vec<String> = (0..=fields::TAGS).map(|i| format!("t{i}")).collect();
        let (status, body) = api
            .post(
                "/v1/leads",
                json!({"leads": [{"target": "@ok"}, {"target": "@many", "tags": tags}]}),
            )
            .await;
        over_limit(status, &body, "tags");
        assert_eq!(body["error"]["index"], 1, "{body}");
        let (status, body) = api
            .post(
                "/v1/leads",
                json!({"leads": [{"target": "@img", "profile_image": "x".repeat(2049)}]}),
            )
            .await;
        over_limit(status, &body, "profile_image");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("the limit is 2048"),
            "{body}"
        );
        let long = format!("@{}", "x".repeat(3000));
        let (status, body) = api
            .post(&format!("/v1/leads/{long}/block"), json!({}))
            .await;
        over_limit(status, &body, "target");
        let deep = (0..=fields::CONTEXT_DEPTH).fold(json!(1), |v, _| json!({"a": v}));
        let (status, body) = api
            .post(
                "/v1/leads/@ana/events",
                json!({"type": "story_reaction", "context": deep}),
            )
            .await;
        over_limit(status, &body, "context");
        let (status, body) = api
            .post(
                "/v1/leads/@ana/events",
                json!({"type": "story_reaction", "context": {"a": "x".repeat(fields::CONTEXT_BYTES)}}),
            )
            .await;
        over_limit(status, &body, "context");
        let (status, body) = api
            .post(
                "/v1/leads/@ana/inbound",
                json!({"message": "x".repeat(fields::MESSAGE_CHARS + 1)}),
            )
            .await;
        over_limit(status, &body, "message");
        let (status, body) = api
            .post(
                "/v1/leads/@ana/inbound",
                json!({"message": "hi", "own_username": "x".repeat(256)}),
            )
            .await;
        over_limit(status, &body, "own_username");
        let (status, body) = api.get("/v1/leads").await;
        assert_eq!(status, 200);
        assert_eq!(body["leads"], json!([]), "nothing was stored");
        // A reply time outside years 1 to 9999.
        api.post("/v1/leads", json!({"leads": [{"target": "@ana"}]}))
            .await;
        let (status, body) = api
            .post(
                "/v1/leads/@ana/replied",
                json!({"at": "0000-01-01T00:00:00Z"}),
            )
            .await;
        over_limit(status, &body, "at");
    }
}

/// Issue 20 defect 3: the dashboard's Block stored newline, NUL, U+202E and 3,000
/// character targets; it now takes the same check as every other door.
#[tokio::test]
async fn the_dashboards_block_checks_the_target_like_every_other_door() {
    let api = api(db::sqlite().await).await;
    // A lead to review, so the page has its forms and their CSRF token.
    api.post("/v1/leads", json!({"leads": [{"target": "@c"}]}))
        .await;
    api.db
        .exec("UPDATE leads SET state = 'needs_review' WHERE target = '@c'")
        .await;
    let cookie = api.session().await;
    let (_, html) = api.page(&cookie).await;
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a csrf field")
        .to_string();
    let long = format!("%40{}", "x".repeat(3000));
    for (path, status) in [
        ("%40a%0Ab", 400),
        ("%40a%00b", 400),
        ("%40a%E2%80%AEnim", 400),
        (long.as_str(), 422),
    ] {
        let r = api
            .http
            .post(api.url(&format!("/ui/leads/{path}/block")))
            .header("cookie", &cookie)
            .form(&[("csrf", token.as_str())])
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status().as_u16(), status, "{path:.40}");
        let page = r.text().await.unwrap_or_default();
        assert!(page.contains("Not done"), "{page}");
    }
    let (_, body) = api.get("/v1/leads").await;
    let targets: Vec<&str> = body["leads"]
        .as_array()
        .expect("leads")
        .iter()
        .filter_map(|l| l["target"].as_str())
        .collect();
    assert_eq!(targets, ["@c"], "no forged target was stored");
}
