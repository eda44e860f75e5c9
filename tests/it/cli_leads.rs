//! `fluidtalk-runner leads ...`, `outbox ...` and `migrate` as a user runs them, on a real
//! SQLite file (and PostgreSQL where `TEST_DATABASE_URL` is set).

use crate::common;

use chrono::Utc;
use common::bin;
use fluidtalk_runner::store::{self, Action, AttemptEnd, AttemptStatus, NewAttempt};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

struct Env {
    dir: tempfile::TempDir,
    url: String,
}

impl Env {
    fn sqlite() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("leads.db").display());
        // `leads event` takes only types a job sends.
        std::fs::write(
            dir.path().join("jobs.toml"),
            "[[job]]\nname = \"reactions\"\nkind = \"event\"\nevent_type = \"story_reaction\"\n\
             schedule = \"0 * * * * *\"\n",
        )
        .expect("write jobs.toml");
        Env { dir, url }
    }

    /// A temp dir for files, and the database at `url` (e.g. PostgreSQL's).
    fn on(url: String) -> Env {
        Env {
            url,
            ..Env::sqlite()
        }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write file");
        path.display().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        bin()
            .args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", &self.url)
            .env_remove("FLUIDTALK_RUNNER_CONFIG")
            .output()
            .expect("run the cli")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
    }

    fn targets(&self) -> Vec<String> {
        self.json(&["leads", "list", "--json"])
            .as_array()
            .expect("an array")
            .iter()
            .map(|l| l["target"].as_str().expect("target").to_string())
            .collect()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn an_import_keeps_good_rows_and_names_the_line_and_reason_of_each_bad_one() {
    let env = Env::sqlite();
    let long = "x".repeat(256);
    let csv = format!(
        "target,own_username,timezone,profile_image,tags,state,last_contact_at,last_reply_at,follow_ups_sent\n\
         @ana,@me,Europe/Berlin,https://cdn/a.jpg,vip;spring,,,,\n\
         ,,,,,,,,\n\
         {long},,,,,,,,\n\
         @ctl\u{7},,,,,,,,\n\
         @tz,,Mars/Base,,,,,,\n\
         @time,,,,,contacted,last tuesday,,\n\
         @state,,,,,done,,,\n\
         @fus,,,,,contacted,2026-11-20T10:00:00Z,,many\n\
         @short,@me\n\
         @old,,,,,contacted,2026-11-20T10:00:00Z,2026-11-21T08:00:00+01:00,1\n"
    );
    let path = env.file("leads.csv", csv.as_bytes());
    let out = env.run(&["leads", "import", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 2, updated 0, rejected 8"
    );
    let stderr = text(&out.stderr);
    for (line, reason) in [
        (3, "target is empty"),
        (4, "target is 256 characters long; the limit is 255"),
        (5, "target contains a control character (U+0007)"),
        (6, "unknown time zone \"Mars/Base\""),
        (
            7,
            "last_contact_at \"last tuesday\" is not an RFC 3339 time",
        ),
        (8, "state \"done\" cannot be imported"),
        (9, "follow_ups_sent \"many\" is not a whole number"),
        (10, "expected 9 fields as in the header, found 2"),
    ] {
        let want = format!("{path}:{line}: {reason}");
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    let leads = env.json(&["leads", "list", "--json"]);
    let ana = &leads[0];
    assert_eq!(ana["target"], "@ana");
    assert_eq!(ana["own_username"], "@me");
    assert_eq!(ana["state"], "new");
    assert_eq!(ana["tags"], serde_json::json!(["vip", "spring"]));
    assert_eq!(ana["follow_ups_sent"], 0);
    assert!(ana["next_eligible_at"].is_string());
    let old = &leads[1];
    assert_eq!(old["state"], "contacted");
    assert_eq!(old["last_contact_at"], "2026-11-20T10:00:00Z");
    assert_eq!(old["last_reply_at"], "2026-11-21T07:00:00Z");
    assert_eq!(old["follow_ups_sent"], 1);
    for key in [
        "session_id",
        "last_reply_at",
        "next_eligible_at",
        "own_username",
    ] {
        assert!(ana.get(key).is_some(), "list JSON has {key}");
    }
}

/// Over several batches (the file is read a batch ahead of the writer): rejections keep
/// their lines and order, a target repeated in a later batch counts as an update, and
/// the summary adds up.
#[test]
fn a_file_of_several_batches_keeps_every_line_and_count() {
    let env = Env::sqlite();
    let mut csv = String::from("target,tags\n");
    for i in 0..2500 {
        match i {
            700 | 1999 => csv.push_str(",x\n"),
            2400 => csv.push_str("@l0,again\n"),
            _ => csv.push_str(&format!("@l{i},t{i}\n")),
        }
    }
    let path = env.file("many.csv", csv.as_bytes());
    let out = env.run(&["leads", "import", &path, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["imported"], 2497);
    assert_eq!(report["updated"], 1, "@l0 again, two batches later");
    assert_eq!(report["rejected"], 2);
    // Line 1 is the header: row i is on line i + 2.
    assert_eq!(report["rejections"][0]["line"], 702);
    assert_eq!(report["rejections"][1]["line"], 2001);
    let stderr = text(&out.stderr);
    let first = stderr
        .find(":702: target is empty")
        .expect("line 702 on stderr");
    let second = stderr
        .find(":2001: target is empty")
        .expect("line 2001 on stderr");
    assert!(first < second, "in file order: {stderr}");
    let l0 = env.json(&["leads", "show", "@l0", "--json"]);
    assert_eq!(l0["lead"]["tags"], serde_json::json!(["again"]));
}

#[test]
fn a_bom_crlf_file_with_duplicate_targets_imports_like_a_plain_one() {
    let env = Env::sqlite();
    let path = env.file(
        "crlf.csv",
        b"\xef\xbb\xbftarget,Tags\r\n@a,x\r\n\r\n@b,\r\n@a,y;z\r\n,\r\n",
    );
    let out = env.run(&["leads", "import", &path, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["imported"], 2);
    assert_eq!(report["updated"], 1, "the second @a updates the first");
    assert_eq!(report["rejected"], 1);
    assert_eq!(report["rejections"][0]["line"], 6);
    assert_eq!(env.targets(), ["@a", "@b"]);
    let a = env.json(&["leads", "show", "@a", "--json"]);
    assert_eq!(a["lead"]["tags"], serde_json::json!(["y", "z"]));
}

#[test]
fn a_jsonl_file_imports_with_tags_as_an_array() {
    let env = Env::sqlite();
    let path = env.file(
        "leads.jsonl",
        br#"{"target": "@j1", "tags": ["a", "b"], "timezone": "Asia/Tokyo"}

{"target": "@j2", "follow_ups_sent": 2, "state": "contacted", "last_contact_at": "2026-11-01T00:00:00Z"}
{"target": "@j3", "tags": "a;b"}
{"target": "@j4", "colour": "red"}
not json
"#,
    );
    let out = env.run(&["leads", "import", &path]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 2, updated 0, rejected 3"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(":4: tags must be an array of strings"),
        "{stderr}"
    );
    assert!(stderr.contains(":5: unknown key \"colour\""), "{stderr}");
    assert!(stderr.contains(":6: not a JSON object"), "{stderr}");
    let j2 = env.json(&["leads", "show", "@j2", "--json"]);
    assert_eq!(j2["lead"]["follow_ups_sent"], 2);
}

#[test]
fn a_strict_import_with_a_bad_row_leaves_the_database_untouched() {
    let env = Env::sqlite();
    let first = env.file("first.csv", b"target,tags\n@keep,old\n");
    assert!(env.run(&["leads", "import", &first]).status.success());
    let before = env.json(&["leads", "list", "--json"]);

    let path = env.file(
        "bad.csv",
        b"target,tags\n@new1,a\n@keep,new\n@bad,x\n,\n@new2,b\n",
    );
    let out = env.run(&["leads", "import", &path, "--strict"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 0, updated 0, rejected 1"
    );
    assert!(text(&out.stderr).contains("nothing from it was kept"));
    assert_eq!(env.json(&["leads", "list", "--json"]), before);

    // Without --strict the good rows are kept.
    let out = env.run(&["leads", "import", &path]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(env.targets(), ["@keep", "@new1", "@bad", "@new2"]);
}

#[test]
fn a_file_that_cannot_be_read_as_leads_imports_nothing_and_exits_3() {
    let env = Env::sqlite();
    let cases = [
        (
            "cols.csv",
            &b"target,colour\n@a,red\n"[..],
            "line 1: unknown column \"colour\"",
        ),
        (
            "notarget.csv",
            &b"own_username\n@me\n"[..],
            "no \"target\" column",
        ),
        (
            "twice.csv",
            &b"target,tags,Tags\n@a,,\n"[..],
            "column \"tags\" appears twice",
        ),
        ("leads.xlsx", &b"x"[..], "expected a .csv or .jsonl file"),
    ];
    for (name, bytes, want) in cases {
        let path = env.file(name, bytes);
        let out = env.run(&["leads", "import", &path]);
        assert_eq!(out.status.code(), Some(3), "{name}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&path) && stderr.contains(want),
            "{name}: {stderr}"
        );
    }
    let out = env.run(&["leads", "import", "missing.csv"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("missing.csv: cannot read"));
    assert!(env.targets().is_empty());
}

#[test]
fn add_list_show_reply_block_unblock_and_events_work_from_the_command_line() {
    let env = Env::sqlite();
    let out = env.run(&[
        "leads",
        "add",
        "@ana",
        "--timezone",
        "America/Chicago",
        "--tag",
        "vip",
        "--tag",
        "b",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "added @ana");
    let out = env.run(&["leads", "add", "@ana", "--own-username", "@me"]);
    assert_eq!(text(&out.stdout).trim(), "updated @ana");
    let ana = env.json(&["leads", "show", "@ana", "--json"]);
    assert_eq!(ana["lead"]["timezone"], "America/Chicago");
    assert_eq!(ana["lead"]["own_username"], "@me");
    assert_eq!(ana["attempts"], serde_json::json!([]));

    let out = env.run(&["leads", "add", "@x", "--timezone", "Nowhere/Land"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("unknown time zone \"Nowhere/Land\""));

    let replied = env.json(&[
        "leads",
        "replied",
        "@ana",
        "--at",
        "2026-11-24T09:00:00+01:00",
        "--json",
    ]);
    assert_eq!(replied["state"], "contacted");
    assert_eq!(replied["last_reply_at"], "2026-11-24T08:00:00Z");

    assert_eq!(
        env.json(&["leads", "block", "@ana", "--json"])["state"],
        "blocked"
    );
    let out = env.run(&["leads", "block", "@ana"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: a blocked lead cannot take block: it is already blocked"
    );
    assert_eq!(
        env.json(&["leads", "list", "--state", "blocked", "--json"])[0]["target"],
        "@ana"
    );
    assert_eq!(
        env.json(&["leads", "unblock", "@ana", "--json"])["state"],
        "new"
    );
    let out = env.run(&["leads", "retry", "@ana"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("only a failed or needs_review lead is retried"));

    let out = env.run(&[
        "leads",
        "event",
        "@fan",
        "story_reaction",
        "--context",
        r#"{"reaction":"🔥"}"#,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("queued event #1 story_reaction for @fan"));
    let out = env.run(&["leads", "event", "@fan", "x", "--context", "[1]"]);
    assert_eq!(out.status.code(), Some(3));
    let vip = env.json(&["leads", "list", "--tag", "vip", "--json"]);
    assert_eq!(vip.as_array().map(Vec::len), Some(1));
    assert_eq!(vip[0]["target"], "@ana");
    assert_eq!(env.targets(), ["@ana", "@fan"]);

    let out = env.run(&["leads", "show", "@nobody"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no lead with target \"@nobody\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_lists_pending_text_and_acks_it_once() {
    let env = Env::sqlite();
    assert!(env.run(&["leads", "add", "@a"]).status.success());
    let store = store::open(&env.url).await.expect("open");
    let lead = store.get_lead("@a").await.expect("get").expect("exists");
    let now = Utc::now();
    let ids = store
        .start_attempts(&[NewAttempt {
            lead_id: lead.id,
            job: "openers".into(),
            action: Action::Opener,
            step: 0,
            lease_token: "r1".into(),
            claimed: None,
            started_at: now,
            sender: None,
        }])
        .await
        .expect("start");
    store
        .finish_attempts(&[AttemptEnd {
            attempt_id: ids[0],
            status: AttemptStatus::Sent,
            http_status: Some(200),
            error_kind: None,
            error_detail: None,
            session_id: Some("s1".into()),
            finished_at: now,
            message: Some("Hi @a!".into()),
            release: None,
        }])
        .await
        .expect("finish");

    let items = env.json(&["outbox", "list", "--json"]);
    assert_eq!(items.as_array().map(Vec::len), Some(1));
    assert_eq!(items[0]["message"], "Hi @a!");
    let id = items[0]["id"].to_string();
    let show = env.json(&["leads", "show", "@a", "--json"]);
    assert_eq!(show["attempts"][0]["status"], "sent");
    assert_eq!(show["attempts"][0]["action"], "opener");

    // Ids as the list shows them (`#17`), and ranges; a backwards range is a usage error
    // that names the argument and acks nothing.
    let out = env.run(&["outbox", "ack", "424242-424240"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("runs backwards; expected the lower id first, e.g. 424240-424242"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        env.json(&["outbox", "list", "--json"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let out = env.run(&["outbox", "ack", &format!("#{id}"), "424242-424243"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "acked 1");
    assert!(
        text(&out.stderr).contains("not pending (unknown or already acked): #424242, #424243"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        env.json(&["outbox", "list", "--json"]),
        serde_json::json!([])
    );
    assert_eq!(
        env.json(&["outbox", "list", "--all", "--json"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // --all acks every pending message, and only those: not one held for a blocked lead.
    for t in ["@b", "@c", "@d"] {
        assert!(env.run(&["leads", "add", t]).status.success());
        let lead = store.get_lead(t).await.expect("get").expect("exists");
        let ids = store
            .start_attempts(&[NewAttempt {
                lead_id: lead.id,
                job: "openers".into(),
                action: Action::Opener,
                step: 0,
                lease_token: format!("r-{t}"),
                claimed: None,
                started_at: now,
                sender: None,
            }])
            .await
            .expect("start");
        store
            .finish_attempts(&[AttemptEnd {
                attempt_id: ids[0],
                status: AttemptStatus::Sent,
                http_status: Some(200),
                error_kind: None,
                error_detail: None,
                session_id: None,
                finished_at: now,
                message: Some(format!("Hi {t}!")),
                release: None,
            }])
            .await
            .expect("finish");
    }
    assert!(env.run(&["leads", "block", "@d"]).status.success());
    // With webhook delivery the daemon delivers: --all would drop what it has not sent.
    let with_delivery = env.file(
        "delivery.toml",
        b"[delivery]\nwebhook_url = \"https://hooks.example.com/ft\"\nsecret_env = \"WEBHOOK_SECRET\"\n",
    );
    let out = env.run(&["--config", &with_delivery, "outbox", "ack", "--all"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("[delivery] is set"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["outbox", "ack", "--all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "acked 2");
    assert_eq!(
        env.json(&["outbox", "list", "--json"]),
        serde_json::json!([])
    );
    let held: Vec<serde_json::Value> = env
        .json(&["outbox", "list", "--all", "--json"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["acked_at"].is_null())
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["target"], "@d");
    // The text list says how many it holds back, and where to see them.
    let out = env.run(&["outbox", "list"]);
    assert!(
        text(&out.stderr).contains("1 message(s) held back: their lead is blocked"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_database_url_comes_from_the_environment_then_jobs_toml_then_the_default() {
    let env = Env::sqlite();
    // No DATABASE_URL: ./jobs.toml names the file.
    std::fs::write(
        env.dir.path().join("jobs.toml"),
        "[database]\nurl = \"sqlite://from-config.db\"\n",
    )
    .expect("write config");
    let out = bin()
        .args(["leads", "add", "@c"])
        .current_dir(env.dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(env.dir.path().join("from-config.db").exists());
    // No config file at all: the default file in the working directory.
    let bare = tempfile::tempdir().expect("temp dir");
    let out = bin()
        .args(["migrate"])
        .current_dir(bare.path())
        .env_remove("DATABASE_URL")
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(Path::new(&bare.path().join("fluidtalk-runner.db")).exists());
    assert_eq!(
        text(&out.stdout).trim(),
        "sqlite database at sqlite://fluidtalk-runner.db is up to date"
    );
    // A named config file that does not exist, or a bad value, is an error naming it.
    let out = bin()
        .args(["--config", "nope.toml", "migrate"])
        .current_dir(bare.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("nope.toml: cannot read"));
    std::fs::write(bare.path().join("bad.toml"), "[database]\nurl = 42\n").expect("write");
    let out = bin()
        .args(["--config", "bad.toml", "migrate"])
        .current_dir(bare.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr)
            .contains("bad.toml: line 2, column 7: [database] url: invalid type: integer `42`, expected a string"),
        "{}",
        text(&out.stderr)
    );
    // An unreachable PostgreSQL is a database error (6) and the password is not shown.
    let out = bin()
        .args(["migrate"])
        .current_dir(bare.path())
        .env("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:1/leads")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(6));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("postgres://app:***@127.0.0.1:1/leads"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_commands_work_on_postgresql() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("l.csv");
    std::fs::write(&path, "target,tags\n@p1,a\n@p2,b\n,\n").expect("write");
    let run = |args: &[&str]| {
        bin()
            .args(args)
            .env("DATABASE_URL", &db.url)
            .output()
            .expect("run")
    };
    let out = run(&["leads", "import", path.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 2, updated 0, rejected 1"
    );
    let out = run(&["leads", "list", "--tag", "b", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list[0]["target"], "@p2");
    let out = run(&["leads", "replied", "@p1", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["migrate"]);
    assert!(text(&out.stdout).starts_with("postgres database at"));
}

#[test]
fn a_jsonl_line_that_is_not_utf8_is_rejected_alone_and_blank_crlf_lines_are_skipped() {
    let env = Env::sqlite();
    let path = env.file(
        "mixed.jsonl",
        b"{\"target\": \"@ok1\"}\n{\"target\": \"@bad\xff\"}\n{\"target\": \"@ok2\"}\n",
    );
    let out = env.run(&["leads", "import", &path]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 2, updated 0, rejected 1"
    );
    assert!(
        text(&out.stderr).contains(":2: the line is not valid UTF-8"),
        "{}",
        text(&out.stderr)
    );

    // A one-column CRLF file with a blank line: the blank line is no row.
    let path = env.file("one.csv", b"target\r\n@c1\r\n\r\n@c2\r\n");
    let out = env.run(&["leads", "import", &path, "--strict"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 2, updated 0, rejected 0"
    );
    assert_eq!(env.targets(), ["@ok1", "@ok2", "@c1", "@c2"]);
}

#[test]
fn a_do_not_contact_list_can_be_built_before_import_and_targets_without_at_get_a_hint() {
    let env = Env::sqlite();
    let blocked = env.json(&["leads", "block", "@never", "--json"]);
    assert_eq!(blocked["state"], "blocked");
    // Importing the same target later does not unblock it.
    let path = env.file("l.csv", b"target,tags\n@never,x\n@ana,\n");
    assert!(env.run(&["leads", "import", &path]).status.success());
    assert_eq!(
        env.json(&["leads", "show", "@never", "--json"])["lead"]["state"],
        "blocked"
    );
    let out = env.run(&["leads", "show", "ana"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: no lead with target \"ana\" (did you mean \"@ana\"?)"
    );
    // Queued events show with their lead.
    assert!(
        env.run(&[
            "leads",
            "event",
            "@ana",
            "story_reaction",
            "--context",
            "{\"r\":1}"
        ])
        .status
        .success()
    );
    let shown = env.json(&["leads", "show", "@ana", "--json"]);
    assert_eq!(shown["queued_events"][0]["event_type"], "story_reaction");
    let out = env.run(&["leads", "show", "@ana"]);
    assert!(
        text(&out.stdout).contains("queued event #1 story_reaction {\"r\":1}"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).starts_with("TARGET "), "a header row");
}

#[test]
fn a_file_that_cannot_be_read_prints_no_summary_and_an_empty_file_says_so() {
    let env = Env::sqlite();
    let out = env.run(&["leads", "import", "nope.csv"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stdout).is_empty(),
        "no summary: {}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("No such file").count(),
        1,
        "the cause once: {stderr}"
    );
    let path = env.file("empty.csv", b"");
    let out = env.run(&["leads", "import", &path]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("the file is empty"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn several_targets_are_blocked_and_unblocked_from_arguments_and_a_file() {
    let env = Env::sqlite();
    let state = |t: &str| env.json(&["leads", "show", t, "--json"])["lead"]["state"].clone();

    // A bad line anywhere refuses the whole list, naming its file and line: nothing is
    // written.
    let bad = env.file("bad.txt", b"@ok\n@bad\x07x\n");
    let out = env.run(&["leads", "block", "--file", &bad]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("{bad}:2: ")), "{stderr}");
    assert!(stderr.contains("control character"), "{stderr}");
    assert!(
        !env.dir.path().join("leads.db").exists(),
        "checked before the database is opened: nothing was stored"
    );

    // A CSV row, a header with a comment, or an empty file: refused, never taken for targets.
    for (name, bytes, want) in [
        (
            "csv.txt",
            &b"@ok\n@ana,Ana Smith\n"[..],
            ":2: \"@ana,Ana Smith\" is not one target",
        ),
        (
            "comment.txt",
            &b"# do not contact\n@ok\n"[..],
            ":1: \"# do not contact\" is not one target",
        ),
        ("empty.txt", &b"\n\n"[..], "no targets"),
    ] {
        let f = env.file(name, bytes);
        let out = env.run(&["leads", "block", "--file", &f]);
        assert_eq!(out.status.code(), Some(3), "{name}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(want),
            "{name}: {}",
            text(&out.stderr)
        );
    }
    assert!(
        !env.dir.path().join("leads.db").exists(),
        "checked before the database is opened: nothing was stored"
    );

    // Arguments, then the file's lines (blank ones skipped), each once; unknown targets
    // are added, blocked.
    let list = env.file("dnc.txt", b"@b\n\n@c\n@b\n");
    let blocked = env.json(&["leads", "block", "@a", "--file", &list, "--json"]);
    let targets: Vec<&str> = blocked
        .as_array()
        .expect("several: an array")
        .iter()
        .map(|l| l["target"].as_str().expect("target"))
        .collect();
    assert_eq!(targets, ["@a", "@b", "@c"]);
    assert!(
        blocked
            .as_array()
            .expect("array")
            .iter()
            .all(|l| l["state"] == "blocked")
    );

    // Blocking a list again: those blocked before are said and skipped.
    let out = env.run(&["leads", "block", "@a", "@z"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("@a: already blocked"));
    assert_eq!(text(&out.stdout).trim(), "blocked @z (now blocked)");

    // Unblock: an unknown target is named and nothing is unblocked (exit 3).
    let out = env.run(&["leads", "unblock", "@a", "@b", "@nobody"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("1 of 3 targets are no lead: \"@nobody\"; no lead was unblocked"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(state("@a"), "blocked");
    assert_eq!(state("@b"), "blocked");
    let out = env.run(&["leads", "unblock", "@a", "@b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(state("@a"), "new");
    assert_eq!(state("@b"), "new");
    let out = env.run(&["leads", "unblock", "@a", "@c"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("@a: not blocked (it is new)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(state("@c"), "new");
    assert_eq!(state("@z"), "blocked");
}

#[test]
fn block_and_unblock_of_several_targets_are_all_or_nothing_on_sqlite() {
    blocks_all_or_nothing(&Env::sqlite());
}

#[tokio::test(flavor = "multi_thread")]
async fn block_and_unblock_of_several_targets_are_all_or_nothing_on_postgresql() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    blocks_all_or_nothing(&Env::on(db.url.clone()));
}

/// `leads block` / `unblock` of several targets, from arguments, a plain file and a CSV:
/// one transaction each; an unknown target of an unblock is named and nothing is written.
fn blocks_all_or_nothing(env: &Env) {
    let state = |t: &str| env.json(&["leads", "show", t, "--json"])["lead"]["state"].clone();
    let leads = env.file("leads.csv", b"target,tags\n@a,x\n@b,x\n@c,y\n");
    assert!(env.run(&["leads", "import", &leads]).status.success());

    // A CSV with a `target` column (other columns and quoting ignored), with arguments.
    let csv = env.file("dnc.csv", b"name,target\n\"Smith, C\",@c\nD,@d\n");
    let blocked = env.json(&["leads", "block", "@a", "@b", "--file", &csv, "--json"]);
    let targets: Vec<(&str, &str)> = blocked
        .as_array()
        .expect("several: an array")
        .iter()
        .map(|l| {
            (
                l["target"].as_str().expect("target"),
                l["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("@a", "blocked"),
            ("@b", "blocked"),
            ("@c", "blocked"),
            ("@d", "blocked")
        ],
        "known ones blocked, the unknown @d added blocked"
    );

    // Unknown targets among several: all named, and not one lead is unblocked.
    let out = env.run(&["leads", "unblock", "@a", "@nobody1", "@b", "@nobody2"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "2 of 4 targets are no lead: \"@nobody1\", \"@nobody2\"; no lead was unblocked"
        ),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout), "", "nothing said done");
    for t in ["@a", "@b", "@c", "@d"] {
        assert_eq!(state(t), "blocked", "{t} was left blocked");
    }

    // A bad line of a CSV is named FILE:LINE, and nothing is written.
    let bad = env.file("bad.csv", b"target\n@e\n\n@bad\x07x\n");
    let out = env.run(&["leads", "unblock", "@a", "--file", &bad]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("{bad}:4: ")),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(state("@a"), "blocked");

    // More than 10,000 targets: refused before anything is written.
    let many: String = (0..10_001).map(|i| format!("@m{i}\n")).collect();
    let many = env.file("many.txt", many.as_bytes());
    let out = env.run(&["leads", "block", "--file", &many]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("{many}:10001: more than 10000 targets")),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !env.targets().contains(&"@m0".to_string()),
        "nothing was added"
    );

    // A plain file and an argument: all unblocked, one not blocked said and skipped.
    let plain = env.file("ok.txt", b"@a\n\n@b\n@zz\n");
    let out = env.run(&["leads", "unblock", "@c", "--file", &plain]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "@zz is no lead: {}",
        text(&out.stderr)
    );
    let plain = env.file("ok.txt", b"@a\n\n@b\n");
    assert!(
        env.run(&["leads", "unblock", "@a"]).status.success(),
        "one target, as always"
    );
    let out = env.run(&["leads", "unblock", "@c", "--file", &plain]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "unblocked @c (now new)\nunblocked @b (now new)\n"
    );
    assert!(
        text(&out.stderr).contains("@a: not blocked (it is new)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(state("@d"), "blocked");
    // One target, as always: an unknown one is an error (exit 3), a known one is done.
    let out = env.run(&["leads", "unblock", "@nobody"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("no lead with target \"@nobody\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_cut_list_says_so_and_how_to_see_the_next_page() {
    let env = Env::sqlite();
    let mut csv = String::from("target\n");
    for i in 0..2_500 {
        csv.push_str(&format!("@l{i:04}\n"));
    }
    let file = env.file("leads.csv", csv.as_bytes());
    assert!(env.run(&["leads", "import", &file]).status.success());

    // The default limit: 1,000 shown, and the cut said on stderr with the next page's cursor.
    let out = env.run(&["leads", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first: Vec<Value> = serde_json::from_slice(&out.stdout).expect("one JSON array");
    assert_eq!(first.len(), 1_000);
    let last = first[999]["id"].as_i64().expect("id");
    let hint = text(&out.stderr);
    assert!(
        hint.contains(&format!(
            "cut at 1000 leads (--limit 1000); more match: `--after {last}`"
        )) && hint.contains("`leads export` writes them all"),
        "{hint}"
    );
    // The next page starts right after it.
    let next = env.json(&[
        "leads",
        "list",
        "--json",
        "--after",
        &last.to_string(),
        "--limit",
        "2000",
    ]);
    let next = next.as_array().expect("array");
    assert_eq!(next.len(), 1_500);
    assert_eq!(next[0]["target"], "@l1000");
    // All, read a page at a time, and nothing said when nothing was cut.
    let out = env.run(&["leads", "list", "--limit", "0"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).lines().count(),
        2_501,
        "a header and every lead"
    );
    assert_eq!(text(&out.stderr), "");
    // A list that ends exactly at the limit is not cut.
    let out = env.run(&["leads", "list", "--limit", "2500", "--json"]);
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn an_export_round_trips_through_import_on_sqlite() {
    exports_round_trip(&Env::sqlite(), &Env::sqlite());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_round_trips_through_import_on_postgresql() {
    let (Some(db), Some(fresh)) = (common::db::postgres().await, common::db::postgres().await)
    else {
        return;
    };
    exports_round_trip(&Env::on(db.url.clone()), &Env::on(fresh.url.clone()));
}

const HEADER: &str = "target,own_username,timezone,profile_image,tags,state,last_contact_at,last_reply_at,follow_ups_sent";

/// `leads export` in both formats, with filters, past one page; and export -> import
/// into `fresh` (an empty database) -> export gives the same file.
fn exports_round_trip(env: &Env, fresh: &Env) {
    let mut csv = format!(
        "{HEADER}\n\
         @a,@me,Europe/Berlin,\"https://cdn/a,1.jpg\",vip;spring,,,,\n\
         @b,,,,vip,contacted,2020-01-02T03:04:05Z,2020-01-03T00:00:00.5+01:00,2\n\
         @c,,,,,,,,\n"
    );
    for i in 0..1_205 {
        csv.push_str(&format!("@bulk{i:04},,,,bulk,,,,\n"));
    }
    let file = env.file("leads.csv", csv.as_bytes());
    let out = env.run(&["leads", "import", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 1208, updated 0, rejected 0"
    );
    let export = |env: &Env, args: &[&str]| {
        let out = env.run(&[&["leads", "export"][..], args].concat());
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };

    // CSV, the default: import's header, columns and formats.
    assert_eq!(
        export(env, &["--state", "contacted"]),
        format!("{HEADER}\n@b,,,,vip,contacted,2020-01-02T03:04:05Z,2020-01-02T23:00:00.500Z,2\n")
    );
    assert_eq!(
        export(env, &["--tag", "spring", "--format", "csv"]),
        format!("{HEADER}\n@a,@me,Europe/Berlin,\"https://cdn/a,1.jpg\",vip;spring,new,,,0\n")
    );
    // JSONL: import's keys, tags an array.
    let lines: Vec<Value> = export(env, &["--format", "jsonl", "--tag", "vip"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object a line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[1],
        serde_json::json!({
            "target": "@b", "own_username": null, "timezone": null, "profile_image": null,
            "tags": ["vip"], "state": "contacted", "last_contact_at": "2020-01-02T03:04:05Z",
            "last_reply_at": "2020-01-02T23:00:00.500Z", "follow_ups_sent": 2
        })
    );
    assert_eq!(lines[0]["target"], "@a");
    assert_eq!(lines[0]["tags"], serde_json::json!(["vip", "spring"]));
    // Every match, not a page of them.
    let bulk = export(env, &["--tag", "bulk"]);
    assert_eq!(
        bulk.lines().count(),
        1 + 1_205,
        "a header and every bulk lead"
    );
    assert!(bulk.ends_with("@bulk1204,,,,bulk,new,,,0\n"));

    // Round trips: what comes out goes back in as it was, in both formats.
    for format in ["csv", "jsonl"] {
        let first = export(env, &["--format", format]);
        assert_eq!(first.lines().count(), 1_208 + usize::from(format == "csv"));
        let path = fresh.file(&format!("export.{format}"), first.as_bytes());
        let out = fresh.run(&["leads", "import", "--strict", &path]);
        assert!(out.status.success(), "{format}: {}", text(&out.stderr));
        assert_eq!(export(fresh, &["--format", format]), first, "{format}");
    }
}

/// `leads show` shows a lead's newest `--attempts` (100 by default) and its oldest 100
/// queued events: a cut list says so on stderr, and the JSON has the totals.
async fn leads_show_says_when_its_lists_were_cut(db: common::db::TestDb) {
    use fluidtalk_runner::store::{LeadInput, NewEvent};
    let now = Utc::now();
    let mut import = db.store.begin_import(false).await.expect("import");
    let lead = LeadInput {
        target: "@busy".into(),
        ..Default::default()
    };
    import.upsert(vec![lead], now).await.expect("upsert");
    import.finish(true).await.expect("finish");
    let lead = db
        .store
        .get_lead("@busy")
        .await
        .expect("get")
        .expect("lead");
    // Five attempts, steps 1 to 5, each finished.
    for step in 1..=5 {
        let id = db
            .store
            .start_attempts(&[NewAttempt {
                lead_id: lead.id,
                job: "follow-ups".into(),
                action: Action::FollowUp,
                step,
                lease_token: "test".into(),
                started_at: now,
                claimed: None,
                sender: None,
            }])
            .await
            .expect("start")[0];
        db.store
            .finish_attempts(&[AttemptEnd {
                attempt_id: id,
                status: AttemptStatus::Sent,
                http_status: Some(200),
                error_kind: None,
                error_detail: None,
                session_id: None,
                finished_at: now,
                message: None,
                release: None,
            }])
            .await
            .expect("finish");
    }
    for _ in 0..101 {
        db.store
            .queue_event(&NewEvent {
                target: "@busy",
                event_type: "story_reaction",
                context: None,
                now,
            })
            .await
            .expect("queue an event");
    }
    let env = Env::on(db.url.clone());
    let out = env.run(&["leads", "show", "@busy", "--attempts", "3", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let steps: Vec<i64> = shown["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["step"].as_i64().expect("step"))
        .collect();
    assert_eq!(steps, [5, 4, 3], "the newest first");
    assert_eq!(shown["attempts_total"], 5);
    assert_eq!(shown["queued_events"].as_array().map(Vec::len), Some(100));
    assert_eq!(shown["queued_events_total"], 101);
    let hint = text(&out.stderr);
    assert!(
        hint.contains("showing the newest 3 of 5 attempts; `--attempts N` shows more")
            && hint.contains("showing the oldest 100 of 101 queued events"),
        "{hint}"
    );
    // In text too; and nothing said when nothing was cut.
    let out = env.run(&["leads", "show", "@busy", "--attempts", "3"]);
    assert!(text(&out.stderr).contains("showing the newest 3 of 5 attempts"));
    assert_eq!(text(&out.stdout).matches("  attempt #").count(), 3);
    let out = env.run(&["leads", "show", "@busy", "--attempts", "5"]);
    assert!(
        !text(&out.stderr).contains("attempts;"),
        "{}",
        text(&out.stderr)
    );
    // A count out of range is refused, naming the argument.
    let out = env.run(&["leads", "show", "@busy", "--attempts", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--attempts"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn leads_show_says_when_its_lists_were_cut_on_sqlite() {
    leads_show_says_when_its_lists_were_cut(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leads_show_says_when_its_lists_were_cut_on_postgresql() {
    if let Some(db) = common::db::postgres().await {
        leads_show_says_when_its_lists_were_cut(db).await;
    }
}
