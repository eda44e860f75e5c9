//! Upgrading a SQLite database that holds a campaign to this binary's schema keeps every
//! row: migration 0006 rebuilds `attempts` (SQLite cannot change a CHECK in place) with
//! foreign keys off, and the outbox's references must still hold after it.

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::str::FromStr;

/// A database at the schema before 0006, with a lead, two attempts and an outbox row.
async fn old_database(dir: &std::path::Path) -> String {
    database_before(dir, "0006").await
}

/// A database migrated by the migrations before `version` (as an older binary had them),
/// with a lead, two attempts and an outbox row.
async fn database_before(dir: &std::path::Path, version: &str) -> String {
    let old = dir.join("old-migrations");
    std::fs::create_dir(&old).expect("dir");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&src).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name.as_str() < version {
            std::fs::copy(&path, old.join(&name)).expect("copy");
        }
    }
    let url = format!("sqlite://{}", dir.join("leads.db").display());
    let opts = SqliteConnectOptions::from_str(&url)
        .expect("url")
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .expect("open");
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .expect("old migrator")
        .run(&pool)
        .await
        .expect("old schema");
    for sql in [
        "INSERT INTO leads (id, target, state, created_at, updated_at, next_eligible_at)
         VALUES (7, '@ana', 'contacted', '2026-11-01T00:00:00.000000Z', '2026-11-01T00:00:00.000000Z', '2026-11-01T00:00:00.000000Z')",
        "INSERT INTO attempts (id, lead_id, job, action, step, status, started_at, finished_at, runner_id)
         VALUES (41, 7, 'openers', 'opener', 0, 'sent', '2026-11-01T00:00:00.000000Z', '2026-11-01T00:00:01.000000Z', 'r1')",
        "INSERT INTO attempts (id, lead_id, job, action, step, status, started_at, runner_id)
         VALUES (42, 7, 'follow', 'follow_up', 1, 'in_flight', '2026-11-02T00:00:00.000000Z', 'r1')",
        "INSERT INTO outbox (id, lead_id, attempt_id, target, action, message, created_at)
         VALUES (3, 7, 41, '@ana', 'opener', 'hi', '2026-11-01T00:00:01.000000Z')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    pool.close().await;
    url
}

#[tokio::test]
async fn the_inbound_migration_keeps_attempts_outbox_and_foreign_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = old_database(dir.path()).await;
    // This binary opens (and so migrates) it.
    let store = fluidtalk_runner::store::open(&url).await.expect("migrates");
    let lead = store.get_lead("@ana").await.expect("read").expect("kept");
    let attempts = store.attempts_for(lead.id).await.expect("attempts");
    assert_eq!(attempts.iter().map(|a| a.id).collect::<Vec<_>>(), [42, 41]);
    assert_eq!(store.outbox(true).await.expect("outbox")[0].attempt_id, 41);

    let pool = SqlitePoolOptions::new()
        .connect(&url)
        .await
        .expect("reopen");
    let broken = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&pool)
        .await
        .expect("check");
    assert!(broken.is_empty(), "foreign keys hold after the rebuild");
    let version: i64 = sqlx::query("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("v")
        .get(0);
    assert!(version >= 6);
    // The never-send-twice index came back with the table.
    let twice = sqlx::query(
        "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id)
         VALUES (7, 'openers', 'opener', 0, 'in_flight', '2026-11-03T00:00:00.000000Z', 'r2')",
    )
    .execute(&pool)
    .await;
    assert!(twice.is_err(), "a second opener step 0 is refused");
    // And an inbound attempt is now allowed, any number of times.
    for _ in 0..2 {
        sqlx::query(
            "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id)
             VALUES (7, '(inbound)', 'inbound', 0, 'sent', '2026-11-03T00:00:00.000000Z', 'r2')",
        )
        .execute(&pool)
        .await
        .expect("inbound attempt");
    }
    // The outbox's reference still names the rebuilt table: a dangling row is refused.
    let opts = SqliteConnectOptions::from_str(&url)
        .expect("url")
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .connect_with(opts)
        .await
        .expect("reopen");
    let dangling = sqlx::query(
        "INSERT INTO outbox (lead_id, attempt_id, target, action, message, created_at)
         VALUES (7, 9999, '@ana', 'opener', 'x', '2026-11-03T00:00:00.000000Z')",
    )
    .execute(&pool)
    .await;
    assert!(dangling.is_err(), "an outbox row must point at an attempt");
    sqlx::query(
        "INSERT INTO outbox (lead_id, attempt_id, target, action, message, created_at)
                 VALUES (7, 42, '@ana', 'follow_up', 'x', '2026-11-03T00:00:00.000000Z')",
    )
    .execute(&pool)
    .await
    .expect("a row pointing at a kept attempt is fine");
}

/// sqlx records a migration without a transaction only after its script: a process killed
/// in between, or two processes migrating at once, run 0006 again. It must survive that.
#[tokio::test]
async fn the_inbound_migration_survives_a_second_run_and_two_processes_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = old_database(dir.path()).await;
    // Two processes open the old database at the same moment.
    let (a, b) = tokio::join!(
        fluidtalk_runner::store::open(&url),
        fluidtalk_runner::store::open(&url)
    );
    let (a, b) = (a.expect("first opener"), b.expect("second opener"));
    for store in [&a, &b] {
        let lead = store.get_lead("@ana").await.expect("read").expect("kept");
        let attempts = store.attempts_for(lead.id).await.expect("attempts");
        assert_eq!(attempts.iter().map(|a| a.id).collect::<Vec<_>>(), [42, 41]);
    }
    drop((a, b));
    // Killed after 0006's script, before the migration was recorded (so before any later
    // one ran): the next start runs the script again, then the later ones.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = database_before(dir.path(), "0007").await;
    let pool = SqlitePoolOptions::new().connect(&url).await.expect("raw");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 6")
        .execute(&pool)
        .await
        .expect("forget 0006");
    pool.close().await;
    let store = fluidtalk_runner::store::open(&url)
        .await
        .expect("runs 0006 again");
    let lead = store.get_lead("@ana").await.expect("read").expect("kept");
    let attempts = store.attempts_for(lead.id).await.expect("attempts");
    assert_eq!(attempts.iter().map(|a| a.id).collect::<Vec<_>>(), [42, 41]);
    assert_eq!(store.outbox(true).await.expect("outbox").len(), 1);
}

/// Migration 0011 backfills `lead_tags` from the tags of the leads already there (each
/// tag once per lead), and its triggers keep it exact from then on.
#[tokio::test]
async fn the_segments_migration_indexes_the_tags_leads_already_carry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = dir.path().join("old-migrations");
    std::fs::create_dir(&old).expect("dir");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&src).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name.as_str() < "0011" {
            std::fs::copy(&path, old.join(&name)).expect("copy");
        }
    }
    let url = format!("sqlite://{}", dir.path().join("leads.db").display());
    let opts = SqliteConnectOptions::from_str(&url)
        .expect("url")
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .expect("open");
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .expect("old migrator")
        .run(&pool)
        .await
        .expect("old schema");
    for (id, tags) in [(1, r#"["vip","x","vip"]"#), (2, "[]"), (3, r#"["x"]"#)] {
        sqlx::query(
            "INSERT INTO leads (id, target, tags, created_at, updated_at, next_eligible_at)
             VALUES ($1, '@l' || $1, $2, '2026-11-01T00:00:00.000000Z',
                     '2026-11-01T00:00:00.000000Z', '2026-11-01T00:00:00.000000Z')",
        )
        .bind(id)
        .bind(tags)
        .execute(&pool)
        .await
        .expect("old lead");
    }
    pool.close().await;
    let store = fluidtalk_runner::store::open(&url).await.expect("migrates");
    let pool = SqlitePoolOptions::new()
        .connect(&url)
        .await
        .expect("reopen");
    let index = || async {
        sqlx::query_as::<_, (String, i64)>("SELECT tag, lead_id FROM lead_tags ORDER BY 1, 2")
            .fetch_all(&pool)
            .await
            .expect("lead_tags")
    };
    let row = |t: &str, id: i64| (t.to_string(), id);
    assert_eq!(
        index().await,
        [row("vip", 1), row("x", 1), row("x", 3)],
        "the old leads' tags, each once"
    );
    // From now on the triggers keep it: a lead added, a lead retagged.
    let mut import = store.begin_import(false).await.expect("import");
    import
        .upsert(
            vec![
                fluidtalk_runner::store::LeadInput {
                    target: "@l2".into(),
                    tags: Some(vec!["vip".into()]),
                    ..Default::default()
                },
                fluidtalk_runner::store::LeadInput {
                    target: "@new".into(),
                    tags: Some(vec!["x".into()]),
                    ..Default::default()
                },
            ],
            chrono::Utc::now(),
        )
        .await
        .expect("upsert");
    import.finish(true).await.expect("finish");
    let new_id: i64 = sqlx::query_scalar("SELECT id FROM leads WHERE target = '@new'")
        .fetch_one(&pool)
        .await
        .expect("id");
    assert_eq!(
        index().await,
        [
            row("vip", 1),
            row("vip", 2),
            row("x", 1),
            row("x", 3),
            row("x", new_id)
        ]
    );
}
