//! The runner through database faults injected by triggers on the real PostgreSQL server
//! (transient errors, as a restarting server gives): answers are never dropped, and a call
//! is never made so late that its lease could run out under it. Found by a hostile review
//! of issue 9's runner; each failed before its fix.

use crate::common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::db::{Raw, TestDb};
use common::{TEST_KEY, spawn_sim};
use fluidtalk_runner::clock::{Clock, ManualClock};
use fluidtalk_runner::config::{self, Config};
use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::runner::Runner;
use fluidtalk_runner::sim::{SimConfig, Simulator};
use fluidtalk_runner::store::LeadInput;
use std::sync::Arc;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("a time")
}

struct World {
    db: TestDb,
    sim: Simulator,
    config: Arc<Config>,
    client: Client,
    clock: Arc<ManualClock>,
}

impl World {
    async fn new(db: TestDb, job: &str, leads: usize) -> World {
        let (url, sim) = spawn_sim(SimConfig::default()).await;
        let text = format!(
            "[fluidtalk]\nbase_url = \"{url}\"\ntimeout = \"2s\"\n[limits]\nconcurrency = 4\nper_second = 1000.0\n\
             [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\nbatch_size = 3\n{job}"
        );
        let config =
            Arc::new(config::parse(std::path::Path::new("jobs.toml"), &text).expect("config"));
        let mut cc = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
        cc.base_url = url;
        let mut s = db.store.begin_import(false).await.expect("import");
        s.upsert(
            (0..leads)
                .map(|i| LeadInput {
                    target: format!("@l{i}"),
                    ..Default::default()
                })
                .collect(),
            t0() - Duration::minutes(1),
        )
        .await
        .expect("upsert");
        s.finish(true).await.expect("finish");
        World {
            db,
            sim,
            config,
            client: Client::new(cc).expect("client"),
            clock: Arc::new(ManualClock::new(t0())),
        }
    }

    fn runner(&self, id: &str) -> Runner {
        Runner::new(
            self.db.store.clone(),
            self.client.clone(),
            self.config.clone(),
            self.clock.clone(),
            id.into(),
        )
    }

    fn pool(&self) -> &sqlx::PgPool {
        match &self.db.raw {
            Raw::Postgres(p) => p,
            Raw::Sqlite(_) => unreachable!("these tests run on PostgreSQL"),
        }
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.pool())
            .await
            .expect(sql)
    }
}

/// A results write that fails past the outage budget used to drop the answers from
/// memory: the run's last write then had nothing to write, and the answered calls went to
/// review. They are kept and written once the database takes writes again, however long
/// that takes (issue 19: a storage fault is an outage, never a loss), and the run ends
/// well.
#[tokio::test(flavor = "multi_thread")]
async fn answers_survive_a_results_write_that_fails_past_the_outage_budget() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    let w = World::new(db, "", 3).await;
    // The outbox insert fails with a serialization failure (transient) 25 times.
    w.db.exec("CREATE SEQUENCE fail_seq").await;
    w.db.exec(
        "CREATE FUNCTION fail_some() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF nextval('fail_seq') <= 25 THEN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END IF; \
         RETURN NEW; END $$",
    )
    .await;
    w.db.exec(
        "CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION fail_some()",
    )
    .await;
    let runner = w.runner("r");
    let result = runner.run_job(&w.config.jobs[0], None).await;
    assert!(
        result.is_ok(),
        "the answers were held, then written: {result:?}"
    );
    assert!(
        w.clock.now() - t0()
            > Duration::from_std(fluidtalk_runner::runner::DB_OUTAGE_BUDGET).expect("budget"),
        "the outage outlasted the budget for reads and claims"
    );
    assert_eq!(runner.db().health.outage(), None, "the outage is over");
    assert_eq!(w.sim.log().len(), 3);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM attempts WHERE status = 'in_flight'")
            .await,
        0,
        "every answer was written in the end"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM outbox").await, 3);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM leads WHERE state = 'contacted'")
            .await,
        3
    );
}

/// A call recorded in flight only after a long database outage used to start anyway,
/// past the moment its lease could still cover it; then the lease ran out under the live
/// call, another runner recovered it and (with `on_unknown = "retry"`) sent it again. A
/// call that can no longer start in time is now not made at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_can_no_longer_start_in_time_is_not_made() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    let w = World::new(db, "on_unknown = \"retry\"\n", 1).await;
    w.db.exec("CREATE TABLE flags (name text primary key, on_ boolean)")
        .await;
    w.db.exec("INSERT INTO flags VALUES ('attempts', true)")
        .await;
    w.db.exec(
        "CREATE FUNCTION fail_attempts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF (SELECT on_ FROM flags WHERE name = 'attempts') THEN PERFORM pg_sleep(0.05); \
         RAISE EXCEPTION 'down' USING ERRCODE = '08006'; END IF; RETURN NEW; END $$",
    )
    .await;
    w.db.exec(
        "CREATE TRIGGER a BEFORE INSERT ON attempts FOR EACH ROW EXECUTE FUNCTION fail_attempts()",
    )
    .await;
    let r1 = w.runner("r1");
    let job = w.config.jobs[0].clone();
    let j = job.clone();
    let first = tokio::spawn(async move { r1.run_job(&j, None).await });
    // The database takes attempts again 110 s (of the runner's clock) after the claim.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while w.clock.now() < t0() + Duration::seconds(110) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runner stopped trying"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    sqlx::query("UPDATE flags SET on_ = false WHERE name = 'attempts'")
        .execute(w.pool())
        .await
        .expect("the database is back");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), first)
        .await
        .expect("the first run ends");
    assert!(
        w.sim.log().is_empty(),
        "no call started that its lease could not cover"
    );
    // Later, another runner sends the opener: once.
    w.clock.advance(Duration::hours(1));
    let s = w.runner("r2").run_job(&job, None).await.expect("run");
    assert_eq!(s.sent, 1);
    let openers = w
        .sim
        .log()
        .iter()
        .filter(|e| e.action == "OUTREACH")
        .count();
    assert_eq!(openers, 1);
    assert_eq!(w.count("SELECT COUNT(*) FROM outbox").await, 1);
}
