//! `fluidtalk-runner outbox list` and `outbox ack` as a user runs them: ids as the list
//! prints them (`#4`), ranges, several arguments, `--all`, the usage errors, and the
//! sender of each message; on a SQLite file and on PostgreSQL when `TEST_DATABASE_URL`
//! is set.

use crate::common;

use common::bin;
use common::db::TestDb;
use common::webhook::t0;
use fluidtalk_runner::store::{
    Action, AttemptEnd, AttemptStatus, LeadInput, NewAttempt, SenderCall,
};
use serde_json::Value;
use std::process::Output;

/// Runs `case` on a SQLite file, then on PostgreSQL when `TEST_DATABASE_URL` is set.
async fn on_both<F, Fut>(case: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    case(common::db::sqlite().await).await;
    if let Some(db) = common::db::postgres().await {
        case(db).await;
    }
}

/// One opener's outbox message per `(target, sender)`, in order; returns their ids.
async fn write(db: &TestDb, messages: &[(&str, Option<&str>)]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (target, sender) in messages {
        let mut import = db.store.begin_import(false).await.expect("begin import");
        let lead = LeadInput {
            target: target.to_string(),
            ..Default::default()
        };
        import.upsert(vec![lead], t0()).await.expect("upsert");
        import.finish(true).await.expect("finish import");
        let lead = db.store.get_lead(target).await.expect("get").expect("lead");
        let attempt = db
            .store
            .start_attempts(&[NewAttempt {
                lead_id: lead.id,
                job: "openers".into(),
                action: Action::Opener,
                step: 0,
                lease_token: "writer".into(),
                started_at: t0(),
                claimed: None,
                sender: sender.map(|s| SenderCall {
                    username: s.to_string(),
                    rule: None,
                    assign: false,
                }),
            }])
            .await
            .expect("start attempt")[0];
        db.store
            .finish_attempts(&[AttemptEnd {
                attempt_id: attempt,
                status: AttemptStatus::Sent,
                http_status: Some(200),
                error_kind: None,
                error_detail: None,
                session_id: Some(format!("sess-{target}")),
                finished_at: t0(),
                message: Some(format!("hi {target}")),
                release: None,
            }])
            .await
            .expect("finish attempt");
        let item = db
            .store
            .outbox_of_attempt(attempt)
            .await
            .expect("outbox")
            .expect("a message");
        ids.push(item.id);
    }
    ids
}

/// Ten messages, `#first` to `#first+9` with no gap (a fresh database): the tenth
/// from an attempt with no recorded sender, the others from `@anna` or `@ben`.
async fn ten(db: &TestDb) -> Vec<i64> {
    let mut messages = Vec::new();
    let targets: Vec<String> = (1..=10).map(|n| format!("@lead{n}")).collect();
    for (n, target) in targets.iter().enumerate() {
        let sender = match n {
            9 => None,
            n if n % 2 == 0 => Some("@anna"),
            _ => Some("@ben"),
        };
        messages.push((target.as_str(), sender));
    }
    let ids = write(db, &messages).await;
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(*id, ids[0] + n as i64, "ids follow each other: {ids:?}");
    }
    ids
}

fn run(db: &TestDb, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobs.toml"),
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\n",
    )
    .expect("write jobs.toml");
    bin()
        .args(args)
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .output()
        .expect("run the cli")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs an `outbox ack` that must succeed; returns (stdout, stderr).
fn ack(db: &TestDb, args: &[&str]) -> (String, String) {
    let mut all = vec!["outbox", "ack"];
    all.extend_from_slice(args);
    let out = run(db, &all);
    assert!(out.status.success(), "{all:?}: {}", text(&out.stderr));
    (text(&out.stdout), text(&out.stderr))
}

/// The ids `outbox list --json` shows (pending, not held).
fn pending(db: &TestDb) -> Vec<i64> {
    let out = run(db, &["outbox", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    list.as_array()
        .expect("an array")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn outbox_list_shows_the_sender_of_each_message() {
    on_both(async |db| {
        let ids = ten(&db).await;
        let out = run(&db, &["outbox", "list", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let list: Value = serde_json::from_slice(&out.stdout).expect("json");
        let list = list.as_array().expect("an array");
        assert_eq!(list.len(), 10);
        let senders: Vec<&Value> = list.iter().map(|m| &m["sender"]).collect();
        assert_eq!(senders[0], "@anna");
        assert_eq!(senders[1], "@ben");
        assert_eq!(senders[8], "@anna");
        assert!(
            senders[9].is_null(),
            "no recorded sender: null, not absent: {}",
            list[9]
        );
        // The fields it had keep their names.
        for field in [
            "id",
            "target",
            "action",
            "message",
            "lead_state",
            "acked_at",
        ] {
            assert!(list[0].get(field).is_some(), "{field} in {}", list[0]);
        }

        let out = run(&db, &["outbox", "list"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 10, "{stdout}");
        let words =
            |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_string).collect() };
        assert_eq!(
            words(lines[0])[..5],
            [
                format!("#{}", ids[0]),
                "pending".into(),
                "@lead1".into(),
                "@anna".into(),
                "opener".into()
            ]
        );
        assert_eq!(words(lines[1])[3], "@ben", "{}", lines[1]);
        assert_eq!(words(lines[9])[3], "-", "no sender known: {}", lines[9]);
        assert!(lines[9].ends_with("\"hi @lead10\""), "{}", lines[9]);
    })
    .await;
}

#[tokio::test]
async fn outbox_ack_takes_ids_as_listed_ranges_several_arguments_and_all() {
    on_both(async |db| {
        let ids = ten(&db).await;
        let id = |n: usize| ids[n - 1];

        // `#4`, as `outbox list` prints it.
        let (out, err) = ack(&db, &[&format!("#{}", id(4))]);
        assert_eq!(out.trim(), "acked 1");
        assert!(err.is_empty(), "{err}");
        assert!(!pending(&db).contains(&id(4)));
        // Again: nothing pending, and said so.
        let (out, err) = ack(&db, &[&format!("#{}", id(4))]);
        assert_eq!(out.trim(), "acked 0");
        assert!(
            err.contains(&format!(
                "not pending (unknown or already acked): #{}",
                id(4)
            )),
            "{err}"
        );

        // A range, inclusive, `#`s or not.
        let (out, _) = ack(&db, &[&format!("#{}-#{}", id(5), id(7))]);
        assert_eq!(out.trim(), "acked 3");
        assert_eq!(
            pending(&db),
            vec![id(1), id(2), id(3), id(8), id(9), id(10)]
        );

        // Several arguments together; the acked and unknown ones named.
        let unknown = id(10) + 1000;
        let (out, err) = ack(
            &db,
            &[
                &id(1).to_string(),
                &format!("{}-#{}", id(2), id(3)),
                &id(6).to_string(),
                &format!("#{unknown}"),
            ],
        );
        assert_eq!(out.trim(), "acked 3");
        assert!(
            err.contains(&format!(
                "not pending (unknown or already acked): #{}, #{unknown}",
                id(6)
            )),
            "{err}"
        );
        assert_eq!(pending(&db), vec![id(8), id(9), id(10)]);

        // `--all`: every pending message, but not one held back for a blocked lead.
        let out = run(&db, &["leads", "block", "@lead9"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let (out, _) = ack(&db, &["--all"]);
        assert_eq!(out.trim(), "acked 2");
        assert!(pending(&db).is_empty());
        let out = run(&db, &["outbox", "list", "--all", "--json"]);
        let list: Value = serde_json::from_slice(&out.stdout).expect("json");
        let unacked: Vec<i64> = list
            .as_array()
            .expect("an array")
            .iter()
            .filter(|m| m["acked_at"].is_null())
            .map(|m| m["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(unacked, vec![id(9)], "the held message stays: {list}");
        let (out, _) = ack(&db, &["--all"]);
        assert_eq!(out.trim(), "acked 0");
    })
    .await;
}

#[tokio::test]
async fn outbox_ack_refuses_bad_ids_as_a_usage_error_and_acks_nothing() {
    on_both(async |db| {
        let ids = ten(&db).await;
        let wide = format!("{}-{}", ids[0], ids[0] + 10_000);
        let bad: [(&str, &str); 6] = [
            (
                "9-4",
                "runs backwards; expected the lower id first, e.g. 4-9",
            ),
            ("#x", "is not a message id; expected a number"),
            ("0", "is not a message id; expected a number"),
            ("4-", "is not a message id; expected a number"),
            (&wide, "ids, more than 10000"),
            ("##4", "is not a message id; expected a number"),
        ];
        for (arg, why) in bad {
            let out = run(&db, &["outbox", "ack", "1", arg]);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{arg}: {err}");
            assert!(err.contains(&format!("'{arg}'")), "{arg} named: {err}");
            assert!(err.contains(why), "{arg}: {err}");
        }
        // More than 100,000 ids in all, from ranges each within the bound.
        let ranges: Vec<String> = (0..11)
            .map(|n| format!("{}-{}", n * 10_000 + 1, n * 10_000 + 10_000))
            .collect();
        let mut args = vec!["outbox", "ack"];
        args.extend(ranges.iter().map(String::as_str));
        let out = run(&db, &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("more than 100000"));
        // `--all` with ids, or nothing at all.
        for args in [&["outbox", "ack", "--all", "4"][..], &["outbox", "ack"][..]] {
            let out = run(&db, args);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?}: {}",
                text(&out.stderr)
            );
        }
        assert_eq!(pending(&db), ids, "nothing was acked");
    })
    .await;
}

#[tokio::test]
async fn outbox_ack_acks_all_it_names_or_nothing() {
    on_both(async |db| {
        let ids = ten(&db).await;
        // The tenth message gets an id far enough on that a range naming it is acked in
        // several statements, and updating it fails: the first statement's acks must not
        // stay.
        match &db.raw {
            common::db::Raw::Sqlite(_) => {
                db.exec("UPDATE outbox SET id = id + 2500 WHERE target = '@lead10'")
                    .await;
                db.exec(
                    "CREATE TRIGGER fail_late BEFORE UPDATE ON outbox \
                     WHEN NEW.target = '@lead10' BEGIN SELECT RAISE(ABORT, 'injected'); END",
                )
                .await;
            }
            common::db::Raw::Postgres(_) => {
                db.exec("ALTER TABLE outbox ALTER COLUMN id RESTART WITH 2600")
                    .await;
                db.exec("UPDATE outbox SET id = DEFAULT WHERE target = '@lead10'")
                    .await;
                db.exec(
                    "CREATE FUNCTION fail_late() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                     IF NEW.target = '@lead10' THEN RAISE EXCEPTION 'injected'; END IF; \
                     RETURN NEW; END $$",
                )
                .await;
                db.exec(
                    "CREATE TRIGGER fail_late BEFORE UPDATE ON outbox FOR EACH ROW \
                     EXECUTE FUNCTION fail_late()",
                )
                .await;
            }
        }
        let before = pending(&db);
        let late = *before.last().expect("a message");
        assert!(late - ids[0] > 2000, "{before:?}");
        let out = run(&db, &["outbox", "ack", &format!("#{}-#{late}", ids[0])]);
        assert!(!out.status.success(), "{}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains("injected"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(pending(&db), before, "nothing was acked");
    })
    .await;
}

/// `outbox list` shows 1,000 messages unless `--limit` says otherwise: a cut list says so
/// on stderr with the `--after` of the next page, in text and JSON, and `--limit 0` shows
/// all.
#[tokio::test]
async fn a_cut_outbox_list_says_so_and_how_to_see_the_next_page() {
    on_both(async |db| {
        let ids = ten(&db).await;
        let out = run(&db, &["outbox", "list", "--limit", "4", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let page: Value = serde_json::from_slice(&out.stdout).expect("json");
        let page: Vec<i64> = page
            .as_array()
            .expect("an array")
            .iter()
            .map(|m| m["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(page, ids[..4]);
        let hint = text(&out.stderr);
        assert!(
            hint.contains(&format!(
                "cut at 4 messages (--limit 4); more follow: `--after {}` shows the next ones",
                ids[3]
            )),
            "{hint}"
        );
        // The next page starts right after it, and its end is said in text too.
        let after = ids[3].to_string();
        let out = run(&db, &["outbox", "list", "--limit", "4", "--after", &after]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("#{:<6}", ids[4])),
            "{lines:?}"
        );
        assert!(
            text(&out.stderr).contains(&format!("`--after {}`", ids[7])),
            "{}",
            text(&out.stderr)
        );
        // Nothing said when nothing was cut: exactly at the limit, or all.
        for limit in ["10", "0"] {
            let out = run(&db, &["outbox", "list", "--limit", limit, "--json"]);
            let all: Value = serde_json::from_slice(&out.stdout).expect("json");
            assert_eq!(all.as_array().map(Vec::len), Some(10), "--limit {limit}");
            assert_eq!(text(&out.stderr), "", "--limit {limit}");
        }
        assert_eq!(pending(&db), ids, "the default shows all ten");
    })
    .await;
}
