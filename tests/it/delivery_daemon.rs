//! Webhook delivery as an operator runs it: the real binary's `daemon` delivering what its
//! runs produce, its refusal to start without the secret, `outbox list --parked` and
//! `outbox redeliver`; and in-process, a campaign run against the simulator whose metrics
//! name every series, and a secret that appears in no log line or `Debug` output.

use crate::common;

use common::campaign::{Campaign, finish, signal, text};
use common::webhook::{Answer, Receiver, SECRET, t0, write_messages};
use fluidtalk_runner::clock::{Clock, ManualClock, SystemClock};
use fluidtalk_runner::delivery::{Deliverer, Signer};
use std::sync::Arc;
use std::time::Duration;

const OPENERS_EVERY_SECOND: &str =
    "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"* * * * * *\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_delivers_what_its_runs_produce_and_stops_cleanly() {
    let receiver = Receiver::start(Arc::new(SystemClock), Answer::Ok).await;
    let toml = format!(
        "{OPENERS_EVERY_SECOND}\n[delivery]\nwebhook_url = \"{}\"\nretry_base = \"100ms\"\n",
        receiver.url
    );
    let c = Campaign::new(common::db::sqlite().await, &[], "", &toml).await;
    c.import((0..5).map(|i| format!("@d{i}"))).await;
    let mut cmd = c.command(&["daemon"]);
    cmd.env("FLUIDTALK_WEBHOOK_SECRET", SECRET);
    let daemon = cmd.spawn().expect("start the daemon");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while receiver.accepted().len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook got {:?}",
            receiver.got()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&daemon, libc::SIGTERM);
    let out = finish(daemon, Duration::from_secs(30)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(receiver.refused().is_empty());
    let mut texts: Vec<String> = receiver.got().into_iter().map(|g| g.text).collect();
    texts.sort();
    assert!(texts[0].starts_with("Hi @d0!"), "{texts:?}");
    let pending = c.ok(&["outbox", "list", "--json"], &[]).await;
    assert_eq!(pending.trim(), "[]", "delivered is no longer pending");
    assert_eq!(
        c.count("SELECT COUNT(*) FROM outbox WHERE delivered_by = 'webhook'")
            .await,
        5
    );
}

#[tokio::test]
async fn the_daemon_refuses_to_start_without_the_webhook_secret() {
    let toml = format!(
        "{OPENERS_EVERY_SECOND}\n[delivery]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nsecret_env = \"MY_HOOK_SECRET\"\n"
    );
    let c = Campaign::new(common::db::sqlite().await, &[], "", &toml).await;
    let mut cmd = c.command(&["daemon"]);
    cmd.env_remove("MY_HOOK_SECRET");
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("ends")
        .expect("runs");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("MY_HOOK_SECRET"),
        "{}",
        text(&out.stderr)
    );
    // `check` shows the webhook (without its path) and the variable the secret comes from.
    let check = c.ok(&["check"], &[]).await;
    assert!(
        check.contains("delivery   http://127.0.0.1:9/… (secret from MY_HOOK_SECRET"),
        "{check}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_daemon_delivers_nothing_and_needs_no_secret() {
    use tokio::io::AsyncBufReadExt;
    let receiver = Receiver::start(Arc::new(SystemClock), Answer::Ok).await;
    let toml = format!(
        "{OPENERS_EVERY_SECOND}\n[delivery]\nwebhook_url = \"{}\"\n",
        receiver.url
    );
    let db = common::db::sqlite().await;
    write_messages(&db, &[("@a", "waiting")]).await;
    let c = Campaign::new(db, &[], "", &toml).await;
    let mut cmd = c.command(&["daemon", "--dry-run"]);
    cmd.env_remove("FLUIDTALK_WEBHOOK_SECRET")
        .env("FLUIDTALK_LOG", "info");
    let mut daemon = cmd.spawn().expect("start the daemon");
    let stderr = daemon.stderr.take().expect("piped stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let said = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            // Logged once the schedules run: the daemon is up.
            if line.contains("scheduled") {
                return true;
            }
            assert!(
                !line.contains("delivering the outbox"),
                "a dry run delivers: {line}"
            );
        }
        false
    })
    .await
    .expect("the daemon started");
    assert!(said, "the daemon ended before it started");
    signal(&daemon, libc::SIGTERM);
    let out = finish(daemon, Duration::from_secs(30)).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(receiver.got().is_empty());
    assert_eq!(
        c.count("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL")
            .await,
        1
    );
}

#[tokio::test]
async fn parked_messages_are_listed_and_redelivered_from_the_command_line() {
    let db = common::db::sqlite().await;
    let m = write_messages(&db, &[("@a", "one"), ("@a", "two")]).await;
    let claimed = db
        .store
        .claim_deliveries(
            5,
            fluidtalk_runner::store::Lease {
                lease_token: "d",
                now: t0(),
                until: t0() + chrono::Duration::minutes(5),
            },
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    db.store
        .park_delivery(
            fluidtalk_runner::store::Held {
                id: m[0],
                lease_token: "d",
            },
            "the webhook answered HTTP 410",
            t0(),
        )
        .await
        .expect("park");
    let c = Campaign::new(db, &[], "", "").await;
    let listed = c.ok(&["outbox", "list", "--parked"], &[]).await;
    assert!(
        listed.contains(&format!("#{:<6} parked", m[0])) && listed.contains("HTTP 410"),
        "{listed}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["outbox", "list", "--parked", "--json"], &[]).await)
            .expect("json");
    assert_eq!(json[0]["id"], m[0]);
    assert_eq!(json[0]["tries"], 1);
    let all = c.ok(&["outbox", "list"], &[]).await;
    assert!(all.contains(&format!("#{:<6} parked", m[0])), "{all}");
    assert!(all.contains(&format!("#{:<6} pending", m[1])), "{all}");
    let out = c
        .output(
            &["outbox", "redeliver", &m[0].to_string(), &m[1].to_string()],
            &[],
        )
        .await;
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "redelivering 1");
    assert!(text(&out.stderr).contains(&format!(
        "not parked (unknown, pending or delivered): #{}",
        m[1]
    )));
    let listed = c.output(&["outbox", "list", "--parked"], &[]).await;
    assert!(text(&listed.stdout).is_empty());
    assert!(text(&listed.stderr).contains("no message is parked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_and_its_delivery_show_in_the_metrics_by_name_and_label() {
    use fluidtalk_runner::config;
    use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
    use fluidtalk_runner::runner::Runner;
    use fluidtalk_runner::store::LeadInput;
    let handle = fluidtalk_runner::metrics::install();
    let (sim_url, _sim) = common::spawn_sim(fluidtalk_runner::sim::SimConfig::default()).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let receiver = Receiver::start(clock.clone(), Answer::Ok).await;
    let db = common::db::sqlite().await;
    let text = format!(
        "[fluidtalk]\nbase_url = \"{sim_url}\"\n[delivery]\nwebhook_url = \"{}\"\n{OPENERS_EVERY_SECOND}",
        receiver.url
    );
    let config = Arc::new(config::parse(std::path::Path::new("jobs.toml"), &text).expect("config"));
    let mut import = db.store.begin_import(false).await.expect("import");
    let leads = ["@m1", "@m2"].map(|t| LeadInput {
        target: t.into(),
        ..Default::default()
    });
    import.upsert(leads.to_vec(), t0()).await.expect("upsert");
    import.finish(true).await.expect("finish");
    let mut cc = ClientConfig::new(ApiKey::new(common::TEST_KEY).expect("key"));
    cc.base_url = sim_url;
    let runner = Runner::new(
        db.store.clone(),
        Client::new(cc).expect("client"),
        config.clone(),
        clock.clone(),
        "metrics-test".into(),
    );
    runner.run_job(&config.jobs[0], None).await.expect("run");
    let settings = config.delivery.as_ref().expect("delivery");
    let d = Arc::new(
        Deliverer::new(
            settings,
            Signer::new(SECRET.to_string().into()),
            db.store.clone(),
            clock.clone(),
            "m",
        )
        .expect("deliverer"),
    );
    assert_eq!(d.pass().await.expect("pass").delivered, 2);
    // The gauges are the process's: another test of this binary may set them from its own
    // database between this refresh and the render, so refresh and render until every
    // series below is seen together (or fail after 50 tries).
    let mut shown = String::new();
    for _ in 0..50 {
        fluidtalk_runner::metrics::refresh_gauges(&*db.store, clock.now())
            .await
            .expect("gauges");
        shown = handle.render();
        if EXPECTED.iter().all(|series| shown.contains(series)) {
            break;
        }
    }
    for series in EXPECTED {
        assert!(shown.contains(series), "{series} missing from:\n{shown}");
    }
    // One recorder per process, handed out again (other tests in this process record
    // into it at the same time, so compare a series of this test's own).
    assert!(
        fluidtalk_runner::metrics::install()
            .render()
            .contains("fluidtalk_runner_job_runs_total{job=\"openers\",result=\"ok\"}"),
        "a second install() renders the same recorder"
    );
}

const EXPECTED: [&str; 11] = [
    "fluidtalk_runner_api_calls_total{action=\"opener\",outcome=\"ok\"}",
    "fluidtalk_runner_api_call_seconds_bucket{action=\"opener\",le=\"0.05\"}",
    "fluidtalk_runner_job_runs_total{job=\"openers\",result=\"ok\"}",
    "fluidtalk_runner_job_run_seconds_count{job=\"openers\"}",
    "fluidtalk_runner_webhook_deliveries_total{result=\"delivered\"}",
    "fluidtalk_runner_leads{state=\"contacted\"} 2",
    "fluidtalk_runner_leads{state=\"new\"} 0",
    "fluidtalk_runner_pauses_active{scope=\"new_conversations\"} 0",
    "fluidtalk_runner_outbox_messages{status=\"pending\"} 0",
    "fluidtalk_runner_outbox_messages{status=\"parked\"} 0",
    "# HELP fluidtalk_runner_webhook_deliveries_total",
];

#[tokio::test(flavor = "current_thread")]
async fn the_webhook_secret_is_in_no_log_line_or_debug_output() {
    let logs = common::logs::Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let clock = Arc::new(ManualClock::new(t0()));
    let db = common::db::sqlite().await;
    write_messages(&db, &[("@a", "one"), ("@b", "two")]).await;
    let failing = Receiver::start(clock.clone(), Answer::Status(500)).await;
    let down = Receiver::down(clock.clone(), Answer::Ok).await;
    let mut debug = Vec::new();
    for url in [&failing.url, &down.url] {
        let text = format!("[delivery]\nwebhook_url = \"{url}\"\nmax_age = \"1m\"\n");
        let config = fluidtalk_runner::config::parse(std::path::Path::new("jobs.toml"), &text)
            .expect("config");
        let settings = config.delivery.clone().expect("delivery");
        let signer = Signer::new(SECRET.to_string().into());
        debug.push(format!("{config:?} {signer:?}"));
        let d = Arc::new(
            Deliverer::new(&settings, signer, db.store.clone(), clock.clone(), "s")
                .expect("deliverer"),
        );
        debug.push(format!("{d:?}"));
        for _ in 0..3 {
            d.pass().await.expect("pass");
            clock.advance(chrono::Duration::seconds(61));
        }
    }
    let parked = db.store.parked().await.expect("parked");
    assert_eq!(parked.len(), 2, "both tried to the end");
    debug.push(format!("{parked:?}"));
    let logs = logs.text();
    assert!(logs.contains("webhook"), "the capture works: {logs}");
    for text in debug.iter().chain([&logs]) {
        assert!(!text.contains(SECRET), "the secret leaked: {text}");
    }
    for text in &debug {
        assert!(!text.contains("t0ken"), "the URL's token leaked: {text}");
    }
}
