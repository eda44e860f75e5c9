//! Segments by tag (`[[job]] tags`, `exclude_tags`), run as a user runs them, on both
//! backends: a segment's job calls exactly its leads (the simulator's log is the witness),
//! two opener jobs over disjoint segments share the lead table without ever calling the
//! same lead, follow-ups keep to their segment, `leads tag` and imports change what a job
//! selects (the triggers keep `lead_tags` exact), and the dry run predicts the live run.

use crate::common;

use common::campaign::{Campaign, text};
use common::db::{Raw, TestDb};
use serde_json::Value;
use std::collections::BTreeSet;

const JOBS: &str = "\
[[job]]
name = \"openers-vip\"
kind = \"opener\"
schedule = \"0 0 * * * *\"
batch_size = 2
tags = [\"vip\"]

[[job]]
name = \"openers-rest\"
kind = \"opener\"
schedule = \"0 0 * * * *\"
batch_size = 2
exclude_tags = [\"vip\"]

[[job]]
name = \"follow-vip\"
kind = \"follow_up\"
schedule = \"0 0 * * * *\"
quiet_after = [\"1h\"]
tags = [\"vip\", \"warm\"]
exclude_tags = [\"competitor\"]
";

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Targets the simulator was sent `action` for, `@` dropped, after the first `skip` entries.
async fn sent(c: &Campaign, action: &str, skip: usize) -> Vec<String> {
    c.sim_log()
        .await
        .into_iter()
        .skip(skip)
        .filter(|e| e.action == action)
        .map(|e| e.target.trim_start_matches('@').to_string())
        .collect()
}

/// The targets a dry run of `job` would call (`run JOB --dry-run --json`), `@` dropped.
async fn planned(c: &Campaign, job: &str, env: &[(&str, &str)]) -> BTreeSet<String> {
    let out = c.ok(&["run", job, "--dry-run", "--json"], env).await;
    let plan: Value = serde_json::from_str(&out).expect("plan JSON");
    plan.as_array()
        .expect("an array")
        .iter()
        .map(|call| {
            assert_eq!(call["job"], job, "{call}");
            call["target"]
                .as_str()
                .expect("target")
                .trim_start_matches('@')
                .to_string()
        })
        .collect()
}

/// Whether `lead_tags` is exactly every lead's tags, one row per (tag, lead).
async fn index_is_exact(c: &Campaign) {
    let (sqlite, postgres) = (
        "SELECT t.value, l.id FROM leads l, json_each(l.tags) t ORDER BY 1, 2",
        "SELECT DISTINCT t, l.id FROM leads l, jsonb_array_elements_text(l.tags) t ORDER BY 1, 2",
    );
    let index = "SELECT tag, lead_id FROM lead_tags ORDER BY 1, 2";
    type Rows = Vec<(String, i64)>;
    let (mut want, have): (Rows, Rows) = match &c.raw {
        Raw::Sqlite(p) => (
            sqlx::query_as(sqlite).fetch_all(p).await.expect("tags"),
            sqlx::query_as(index).fetch_all(p).await.expect("index"),
        ),
        Raw::Postgres(p) => (
            sqlx::query_as(postgres).fetch_all(p).await.expect("tags"),
            sqlx::query_as(index).fetch_all(p).await.expect("index"),
        ),
    };
    want.dedup();
    assert_eq!(have, want, "lead_tags is every lead's tags, no more");
}

async fn campaign(db: TestDb) -> Campaign {
    let c = Campaign::new(db, &[], "", JOBS).await;
    std::fs::write(
        c.dir.path().join("leads.csv"),
        "target,tags\n@v1,vip;warm\n@v2,vip\n@v3,vip;warm;competitor\n@r1,\n@r2,warm\n@r3,other\n",
    )
    .expect("write leads");
    c.ok(&["leads", "import", "leads.csv"], &[]).await;
    c
}

async fn disjoint_segments_each_call_only_their_own(db: TestDb) {
    let c = campaign(db).await;
    index_is_exact(&c).await;
    let vip = set(&["v1", "v2", "v3"]);
    let rest = set(&["r1", "r2", "r3"]);
    // The dry runs: each job its own segment, together every lead, none twice.
    assert_eq!(planned(&c, "openers-vip", &[]).await, vip);
    assert_eq!(planned(&c, "openers-rest", &[]).await, rest);

    // The live run of the segment calls exactly its leads, each once (in batches of 2).
    c.ok(&["run", "openers-vip"], &[]).await;
    let calls = sent(&c, "OUTREACH", 0).await;
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls.iter().cloned().collect::<BTreeSet<_>>(), vip);
    // The other job, after: its own leads, none of the first's.
    let before = c.sim_log().await.len();
    c.ok(&["run", "openers-rest"], &[]).await;
    let calls = sent(&c, "OUTREACH", before).await;
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls.iter().cloned().collect::<BTreeSet<_>>(), rest);
    // Both again: nothing is due, nobody is called twice.
    let before = c.sim_log().await.len();
    c.ok(&["run", "openers-vip", "openers-rest"], &[]).await;
    assert_eq!(sent(&c, "OUTREACH", before).await, Vec::<String>::new());

    // Follow-ups two hours on: only the contacted leads carrying vip and warm, not
    // competitor (v3), though every lead is contacted and quiet long enough.
    let later = [("FLUIDTALK_CLOCK_OFFSET", "2h")];
    assert_eq!(planned(&c, "follow-vip", &later).await, set(&["v1"]));
    let before = c.sim_log().await.len();
    c.ok(&["run", "follow-vip"], &later).await;
    assert_eq!(sent(&c, "FOLLOW_UP", before).await, ["v1"]);
    assert_eq!(
        c.count("SELECT COUNT(*) FROM leads WHERE state = 'contacted'")
            .await,
        6,
        "every lead was contacted: the segment, not the state, kept them out"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_disjoint_segments_each_call_only_their_own() {
    disjoint_segments_each_call_only_their_own(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_disjoint_segments_each_call_only_their_own() {
    if let Some(db) = common::db::postgres().await {
        disjoint_segments_each_call_only_their_own(db).await;
    }
}

async fn tagging_changes_what_a_job_selects(db: TestDb) {
    let c = campaign(db).await;
    // vip: v1 v2 v3. Tag two more, untag one, in one command each.
    let out = c
        .ok(&["leads", "tag", "@r1", "@r2", "--add", "vip", "x"], &[])
        .await;
    assert!(out.contains("tagged @r1 (vip, x)"), "{out}");
    assert!(out.contains("tagged @r2 (warm, vip, x)"), "{out}");
    c.ok(&["leads", "tag", "@v2", "--remove", "vip", "nothing"], &[])
        .await;
    index_is_exact(&c).await;
    assert_eq!(
        planned(&c, "openers-vip", &[]).await,
        set(&["v1", "v3", "r1", "r2"])
    );
    assert_eq!(planned(&c, "openers-rest", &[]).await, set(&["v2", "r3"]));

    // An unknown target: named, exit 3, and nothing written for the known ones.
    let out = c
        .output(
            &["leads", "tag", "@r3", "@nobody", "@ghost", "--add", "vip"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("@nobody: no lead") && stderr.contains("@ghost: no lead"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 of 3 targets are no lead") && stderr.contains("no lead was changed"),
        "{stderr}"
    );
    assert!(!stderr.contains("@r3:"), "{stderr}");
    assert_eq!(planned(&c, "openers-rest", &[]).await, set(&["v2", "r3"]));

    // A lead that would carry more than 50 tags: named, and nothing written for any.
    let many: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let mut args = vec!["leads", "tag", "@v2", "@r3", "--add"];
    args.extend(many.iter().map(String::as_str));
    let out = c.output(&args, &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("@r3: would carry 51 tags; the limit is 50")
            && stderr.contains("no lead was changed"),
        "{stderr}"
    );
    // Checked before anything is opened: a tag both added and removed, an empty one.
    for (args, want) in [
        (
            &["leads", "tag", "@v2", "--add", "a", "--remove", "a"][..],
            "\"a\" is both in --add and in --remove",
        ),
        (
            &["leads", "tag", "@v2", "--add", " "][..],
            "--add: a tag is empty",
        ),
    ] {
        let out = c.output(args, &[]).await;
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(text(&out.stderr).contains(want), "{}", text(&out.stderr));
    }
    assert_eq!(planned(&c, "openers-rest", &[]).await, set(&["v2", "r3"]));
    assert_eq!(
        c.count("SELECT COUNT(*) FROM lead_tags WHERE tag = 't0'")
            .await,
        0,
        "@v2 could take 50 tags, but not alone"
    );
    index_is_exact(&c).await;

    // An import that changes tags moves leads in and out too (the update trigger).
    std::fs::write(
        c.dir.path().join("retag.csv"),
        "target,tags\n@r3,vip\n@v1,warm\n@new,vip\n",
    )
    .expect("write");
    c.ok(&["leads", "import", "retag.csv"], &[]).await;
    index_is_exact(&c).await;
    assert_eq!(
        planned(&c, "openers-vip", &[]).await,
        set(&["v3", "r1", "r2", "r3", "new"])
    );
    // The forecast (and the dashboard's, through it) counts the same leads due.
    let path = c.dir.path().join("jobs.toml");
    let config = fluidtalk_runner::config::parse(
        &path,
        &std::fs::read_to_string(&path).expect("read jobs.toml"),
    )
    .expect("parse jobs.toml");
    let store = fluidtalk_runner::store::open(&c.url).await.expect("open");
    let due = |name: &str| {
        let job = config
            .jobs
            .iter()
            .find(|j| j.name == name)
            .expect("job")
            .clone();
        let store = store.clone();
        async move {
            fluidtalk_runner::forecast::due_now(&*store, &job, chrono::Utc::now())
                .await
                .expect("count due")
        }
    };
    assert_eq!(due("openers-vip").await, 5);
    assert_eq!(due("openers-rest").await, 2);
    // And the live run agrees with the dry run.
    c.ok(&["run", "openers-vip"], &[]).await;
    let calls: BTreeSet<String> = sent(&c, "OUTREACH", 0).await.into_iter().collect();
    assert_eq!(calls, set(&["v3", "r1", "r2", "r3", "new"]));

    // A lead's delete takes its rows along (the delete trigger).
    match &c.raw {
        Raw::Sqlite(p) => {
            sqlx::query("DELETE FROM leads WHERE target = '@v2'")
                .execute(p)
                .await
                .expect("delete");
        }
        Raw::Postgres(p) => {
            sqlx::query("DELETE FROM leads WHERE target = '@v2'")
                .execute(p)
                .await
                .expect("delete");
        }
    }
    index_is_exact(&c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_tagging_changes_what_a_job_selects() {
    tagging_changes_what_a_job_selects(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_tagging_changes_what_a_job_selects() {
    if let Some(db) = common::db::postgres().await {
        tagging_changes_what_a_job_selects(db).await;
    }
}

/// `check` on a campaign file of `job` lines after a valid opener's first three.
fn check(job: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobs.toml"),
        format!("[[job]]\nname = \"seg\"\nschedule = \"0 0 * * * *\"\n{job}"),
    )
    .expect("write");
    let out = common::bin()
        .arg("check")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .output()
        .expect("run check");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_bad_segment_is_an_error_naming_the_job_the_key_and_the_line() {
    let bad = [
        (
            "kind = \"opener\"\ntags = [\"vip\", \"b\"]\nexclude_tags = [\"a\", \"vip\"]\n",
            "line 6: [[job]] \"seg\" exclude_tags: \"vip\" is also in tags",
        ),
        (
            "kind = \"opener\"\ntags = [\"vip\", \" \"]\n",
            "line 5: [[job]] \"seg\" tags: has an empty tag",
        ),
        (
            "kind = \"opener\"\n\nexclude_tags = [\"a\", \"a\"]\n",
            "line 6: [[job]] \"seg\" exclude_tags: has \"a\" twice",
        ),
        (
            "kind = \"opener\"\ntags = [\"bad\\u0007tag\"]\n",
            "line 5: [[job]] \"seg\" tags:",
        ),
        (
            "kind = \"event\"\nevent_type = \"story_reaction\"\ntags = [\"vip\"]\n",
            "line 6: [[job]] \"seg\" tags: does not apply to an event job",
        ),
        ("kind = \"opener\"\ntags = \"vip\"\n", "line 5"),
    ];
    for (job, want) in bad {
        let (code, _, stderr) = check(job);
        assert_eq!(code, Some(3), "{job}: {stderr}");
        assert!(stderr.contains(want), "{job}: want {want:?} in {stderr}");
    }
    let many: Vec<String> = (0..21).map(|i| format!("\"t{i}\"")).collect();
    let (code, _, stderr) = check(&format!(
        "kind = \"opener\"\ntags = [{}]\n",
        many.join(", ")
    ));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("line 5: [[job]] \"seg\" tags: has 21 tags; the limit is 20"),
        "{stderr}"
    );
    let long = "x".repeat(101);
    let (code, _, stderr) = check(&format!("kind = \"opener\"\ntags = [\"{long}\"]\n"));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("line 5: [[job]] \"seg\" tags:"), "{stderr}");

    // A good one: check shows each job's segment.
    let (code, stdout, stderr) = check(
        "kind = \"follow_up\"\nquiet_after = [\"1d\"]\ntags = [\" vip \", \"warm\"]\nexclude_tags = [\"competitor\"]\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "segment    tagged all of [\"vip\", \"warm\"], tagged none of [\"competitor\"]"
        ),
        "{stdout}"
    );
    let (_, stdout, _) = check("kind = \"opener\"\n");
    assert!(stdout.contains("segment    all leads"), "{stdout}");
}
