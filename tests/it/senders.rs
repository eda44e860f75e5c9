//! Sender accounts (`[[sender]]`): daily caps, warm-up, `min_gap`, the choice of sender for
//! unassigned leads and its stickiness, on both backends, with the clock injected; and
//! exact across several runners on PostgreSQL.

use crate::common;
use crate::runner::{World, lead, world_with};
use chrono::Duration;
use fluidtalk_runner::clock::Clock;
use fluidtalk_runner::config;
use fluidtalk_runner::plan;
use fluidtalk_runner::sim::SimConfig;
use fluidtalk_runner::store::LeadInput;
use std::collections::BTreeMap;

/// Runs `case` on a SQLite file, then on PostgreSQL when `TEST_DATABASE_URL` is set.
async fn on_both<F, Fut>(case: F)
where
    F: Fn(common::db::TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    case(common::db::sqlite().await).await;
    if let Some(db) = common::db::postgres().await {
        case(db).await;
    }
}

/// The calls of `action` the simulator took, per `own_username`.
fn by_sender(w: &World, action: &str) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for e in w.sim.log().into_iter().filter(|e| e.action == action) {
        *n.entry(e.own_username.unwrap_or_else(|| "(none)".into()))
            .or_default() += 1;
    }
    n
}

/// Each target's `own_username` in the calls of `action`.
fn sender_of(w: &World, action: &str) -> BTreeMap<String, String> {
    w.sim
        .log()
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| (e.target, e.own_username.unwrap_or_default()))
        .collect()
}

const TWO_SENDERS: &str = r#"
[[sender]]
username = "@anna"
daily_cap = 3

[[sender]]
username = "@ben"
daily_cap = 5
timezone = "Europe/Berlin"

[[job]]
name = "openers"
kind = "opener"
schedule = "0 */15 * * * *"
batch_size = 4
senders = ["@anna", "@ben"]

[[job]]
name = "follow-ups"
kind = "follow_up"
schedule = "0 0 * * * *"
quiet_after = ["2d"]
max_follow_ups = 1
"#;

#[tokio::test(flavor = "multi_thread")]
async fn two_senders_open_exactly_their_caps_and_follow_ups_keep_the_first_sender() {
    on_both(|db| async move {
        let w = world_with(db, SimConfig::default(), 4, "", TWO_SENDERS).await;
        w.add((0..20).map(|i| lead(&format!("@l{i:02}"))).collect())
            .await;
        let s = w.run("openers").await.expect("run");
        assert_eq!(s.sent, 8, "{s:?}");
        assert_eq!(
            by_sender(&w, "OUTREACH"),
            BTreeMap::from([("@anna".to_string(), 3), ("@ben".to_string(), 5)])
        );
        // Each contacted lead now names its sender.
        let openers = sender_of(&w, "OUTREACH");
        for (target, sender) in &openers {
            let l = w.store.get_lead(target).await.expect("get").expect("lead");
            assert_eq!(l.own_username.as_deref(), Some(sender.as_str()), "{target}");
        }
        // The caps hold for the day, and the run says why.
        let s = w.run("openers").await.expect("run");
        assert_eq!((s.calls, s.sender_held), (0, 12), "{s:?}");
        let why = s.sender_hold.clone().unwrap_or_default();
        assert!(why.contains("daily cap"), "{why}");
        assert!(
            s.describe().contains("held by their sender 12"),
            "{}",
            s.describe()
        );
        // Days later: each follow-up goes out with its lead's first sender.
        w.clock.advance(Duration::days(3));
        let s = w.run("follow-ups").await.expect("run");
        assert_eq!(s.sent, 8, "{s:?}");
        assert_eq!(sender_of(&w, "FOLLOW_UP"), openers);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_up_of_start_2_step_3_opens_2_5_8_on_days_0_1_2() {
    on_both(|db| async move {
        let w = world_with(
            db,
            SimConfig::default(),
            4,
            "",
            r#"
[[sender]]
username = "@new_account"
daily_cap = 100
warmup = { start = 2, step = 3, every = "1d" }

[[job]]
name = "openers"
kind = "opener"
schedule = "0 */15 * * * *"
senders = ["@new_account"]
"#,
        )
        .await;
        w.add((0..40).map(|i| lead(&format!("@w{i:02}"))).collect())
            .await;
        let mut per_day = Vec::new();
        for _ in 0..3 {
            let s = w.run("openers").await.expect("run");
            assert_eq!(
                w.run("openers").await.expect("run").calls,
                0,
                "the day's cap holds"
            );
            per_day.push(s.sent);
            w.clock.advance(Duration::days(1));
        }
        assert_eq!(per_day, vec![2, 5, 8]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn min_gap_allows_one_call_per_gap_under_concurrency_32() {
    on_both(|db| async move {
        let w = world_with(
            db,
            SimConfig::default(),
            32,
            "own_username = \"@solo\"",
            r#"
[[sender]]
username = "@solo"
min_gap = "90s"

[[job]]
name = "openers"
kind = "opener"
schedule = "0 * * * * *"
batch_size = 32
"#,
        )
        .await;
        w.add((0..40).map(|i| lead(&format!("@g{i:02}"))).collect())
            .await;
        let s = w.run("openers").await.expect("run");
        assert_eq!(s.sent, 1, "{s:?}");
        assert!(
            s.sender_hold
                .clone()
                .unwrap_or_default()
                .contains("min_gap"),
            "{s:?}"
        );
        w.clock.advance(Duration::seconds(89));
        assert_eq!(
            w.run("openers").await.expect("run").calls,
            0,
            "89 s is within the gap"
        );
        w.clock.advance(Duration::seconds(1));
        assert_eq!(
            w.run("openers").await.expect("run").sent,
            1,
            "90 s is past it"
        );
        assert_eq!(
            by_sender(&w, "OUTREACH"),
            BTreeMap::from([("@solo".into(), 2)])
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lead_naming_an_unconfigured_sender_keeps_it_and_no_cap_applies() {
    on_both(|db| async move {
        let w = world_with(db, SimConfig::default(), 4, "", TWO_SENDERS).await;
        w.add(
            (0..6)
                .map(|i| LeadInput {
                    own_username: Some("@elsewhere".into()),
                    ..lead(&format!("@x{i}"))
                })
                .collect(),
        )
        .await;
        let s = w.run("openers").await.expect("run");
        assert_eq!(s.sent, 6, "{s:?}");
        assert_eq!(
            by_sender(&w, "OUTREACH"),
            BTreeMap::from([("@elsewhere".into(), 6)])
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dry_run_names_each_calls_sender_and_what_holds_the_rest() {
    on_both(|db| async move {
        let w = world_with(db, SimConfig::default(), 4, "", TWO_SENDERS).await;
        w.add((0..10).map(|i| lead(&format!("@d{i}"))).collect())
            .await;
        let job = w.config.jobs[0].clone();
        let p = plan::preview(&*w.store, &job, w.clock.now())
            .await
            .expect("preview");
        let mut n = BTreeMap::new();
        for c in &p.calls {
            *n.entry(c.sender.clone().unwrap_or_default()).or_insert(0) += 1;
        }
        assert_eq!(n, BTreeMap::from([("@anna".into(), 3), ("@ben".into(), 5)]));
        assert!(
            p.notes
                .iter()
                .any(|note| note.starts_with("2 due lead(s) held: sender @")
                    && note.contains("daily cap")),
            "{:?}",
            p.notes
        );
        // The preview is what a live run then does.
        let s = w.run("openers").await.expect("run");
        assert_eq!(s.sent, 8);
        let sent = sender_of(&w, "OUTREACH");
        for c in &p.calls {
            assert_eq!(sent.get(&c.target), c.sender.as_ref(), "{}", c.target);
        }
    })
    .await;
}

/// Three runners on one PostgreSQL database, started at once, keep each sender's cap and
/// gap exact: each runner plans with the room it read, the database counts under each
/// sender's lock.
#[tokio::test(flavor = "multi_thread")]
async fn three_runners_on_postgres_keep_every_cap_and_gap_exact() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    let w = world_with(
        db,
        SimConfig {
            latency: std::time::Duration::from_millis(5),
            ..SimConfig::default()
        },
        8,
        "",
        r#"
[[sender]]
username = "@anna"
daily_cap = 3

[[sender]]
username = "@ben"
daily_cap = 5

[[sender]]
username = "@gap"
min_gap = "1h"

[[job]]
name = "openers"
kind = "opener"
schedule = "0 */15 * * * *"
batch_size = 2
senders = ["@anna", "@ben"]
"#,
    )
    .await;
    w.add((0..60).map(|i| lead(&format!("@m{i:02}"))).collect())
        .await;
    w.add(
        (0..20)
            .map(|i| LeadInput {
                own_username: Some("@gap".into()),
                ..lead(&format!("@n{i:02}"))
            })
            .collect(),
    )
    .await;
    let job = w.config.jobs[0].clone();
    let runs: Vec<_> = (0..3)
        .map(|i| {
            let runner = fluidtalk_runner::runner::Runner::new(
                w.store.clone(),
                w.client.clone(),
                w.config.clone(),
                w.clock.clone(),
                format!("runner-{i}"),
            );
            let job = job.clone();
            tokio::spawn(async move { runner.run_job(&job, None).await })
        })
        .collect();
    let mut sent = 0;
    for r in runs {
        sent += r.await.expect("joined").expect("run").sent;
    }
    assert_eq!(sent, 9, "3 + 5 + 1");
    assert_eq!(
        by_sender(&w, "OUTREACH"),
        BTreeMap::from([
            ("@anna".to_string(), 3),
            ("@ben".to_string(), 5),
            ("@gap".to_string(), 1)
        ])
    );
}

#[tokio::test]
async fn sender_mistakes_name_the_key_and_line() {
    let bad = |toml: &str| {
        config::parse(std::path::Path::new("jobs.toml"), toml)
            .expect_err("refused")
            .to_string()
    };
    let job = "[[job]]\nname = \"o\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\n";
    let e = bad(&format!("{job}senders = [\"@nobody\"]\n"));
    assert!(
        e.contains("line 5")
            && e.contains("senders")
            && e.contains("\"@nobody\" is not a [[sender]]"),
        "{e}"
    );
    let e =
        bad("[[sender]]\nusername = \"@a\"\nwarmup = { start = 1, step = 1, every = \"1d\" }\n");
    assert!(
        e.contains("line 3") && e.contains("set daily_cap too"),
        "{e}"
    );
    let e = bad("[[sender]]\nusername = \"@a\"\n[[sender]]\nusername = \"@a\"\n");
    assert!(e.contains("line 4") && e.contains("must be unique"), "{e}");
    let e = bad(
        "[[sender]]\nusername = \"@a\"\ndaily_cap = 9\nwarmup = { start = 1, step = 0, every = \"1d\" }\n",
    );
    assert!(
        e.contains("line 4") && e.contains("from 1 to 1000000"),
        "{e}"
    );
    let e = bad("[[sender]]\nusername = \"@a\"\nmin_gap = \"2d\"\n");
    assert!(e.contains("min_gap") && e.contains("from 0s to 24h"), "{e}");
    let e = bad(
        "[[sender]]\nusername = \"@a\"\ndaily_cap = 9\nwarmup = { start = 1, step = 1, every = \"36h\" }\n",
    );
    assert!(
        e.contains("warmup.every") && e.contains("whole number of days"),
        "{e}"
    );
    let e = bad(
        "[[sender]]\nusername = \"@a\"\n[[job]]\nname = \"f\"\nkind = \"follow_up\"\nschedule = \"0 * * * * *\"\nquiet_after = [\"1d\"]\nsenders = [\"@a\"]\n",
    );
    assert!(e.contains("does not apply to a follow_up job"), "{e}");
}

#[tokio::test]
async fn check_prints_each_senders_ramp() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[database]\nurl = \"sqlite://none.db\"\n[[sender]]\nusername = \"@new_account\"\ndaily_cap = 10\nwarmup = { start = 2, step = 3, every = \"1d\" }\nmin_gap = \"90s\"\n",
    )
    .expect("write");
    let out = common::bin()
        .args(["check", "--config"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .expect("check");
    let text = common::campaign::text(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        common::campaign::text(&out.stderr)
    );
    assert!(
        text.contains("@new_account: daily cap 10 in UTC, at least 1m 30s between calls"),
        "{text}"
    );
    assert!(
        text.contains("caps       2, 5, 8, 10, 10, 10, 10"),
        "{text}"
    );
    assert!(text.contains("no opener yet, so day 0"), "{text}");
    assert!(
        !dir.path().join("none.db").exists(),
        "check creates no database"
    );
}

/// The dashboard's Senders table: each sender's openers today against its cap today (the
/// warm-up's), and whether it is free now.
#[tokio::test]
async fn the_dashboard_shows_each_senders_use_against_its_cap() {
    on_both(|db| async move {
        use fluidtalk_runner::clock::Clock;
        use fluidtalk_runner::store::{Action, NewAttempt, SenderCall};
        let (sim, _) = common::spawn_sim(SimConfig::default()).await;
        let campaign = "[[sender]]\nusername = \"@anna\"\ndaily_cap = 30\nwarmup = { start = 4, step = 4, every = \"1d\" }\n\n[[sender]]\nusername = \"@ben\"\ndaily_cap = 2\n";
        let config = config::parse(std::path::Path::new("jobs.toml"), campaign).expect("parses");
        let api = common::http::serve(db, &sim, campaign).await;
        let now = api.clock.now();
        let mut s = api.db.store.begin_import(false).await.expect("import");
        s.upsert(
            (0..5).map(|i| lead(&format!("@t{i}"))).collect(),
            now - Duration::minutes(1),
        )
        .await
        .expect("upsert");
        s.finish(true).await.expect("finish");
        let mut attempts = Vec::new();
        for (i, who) in ["@anna", "@anna", "@anna", "@ben", "@ben"].iter().enumerate() {
            let l = api
                .db
                .store
                .get_lead(&format!("@t{i}"))
                .await
                .expect("get")
                .expect("lead");
            attempts.push(NewAttempt {
                lead_id: l.id,
                job: "openers".into(),
                action: Action::Opener,
                step: 0,
                lease_token: "t/1".into(),
                started_at: now,
                claimed: None,
                sender: Some(SenderCall {
                    username: (*who).into(),
                    rule: config.senders.get(who).cloned(),
                    assign: true,
                }),
            });
        }
        api.db.store.start_attempts(&attempts).await.expect("recorded");
        let cookie = api.session().await;
        let (status, html) = api.page(&cookie).await;
        assert_eq!(status, 200);
        let row = |who: &str| {
            html.split(&format!("data-sender=\"{who}\""))
                .nth(1)
                .and_then(|r| r.split("</tr>").next())
                .unwrap_or_else(|| panic!("a row for {who} in {html}"))
                .to_string()
        };
        let anna = row("@anna");
        assert!(anna.contains("<td class=\"count used\">3</td>"), "{anna}");
        assert!(anna.contains("<td class=\"count cap\">4 "), "{anna}");
        assert!(anna.contains("warm-up day 0"), "{anna}");
        assert!(anna.contains(">free<"), "{anna}");
        let ben = row("@ben");
        assert!(ben.contains("<td class=\"count used\">2</td>"), "{ben}");
        assert!(ben.contains("at its daily cap of 2"), "{ben}");
    })
    .await;
}

/// With a gap, follow-ups go before openers: an opener run after a follow-up waited for
/// the sender's gap leaves the next call to it; once the follow-up is made, openers go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_waiting_for_its_senders_gap_goes_before_openers() {
    on_both(|db| async move {
        let w = world_with(
            db,
            SimConfig::default(),
            4,
            "",
            r#"
[[sender]]
username = "@solo"
min_gap = "90s"

[[job]]
name = "openers"
kind = "opener"
schedule = "0 * * * * *"
senders = ["@solo"]

[[job]]
name = "follow-ups"
kind = "follow_up"
schedule = "0 * * * * *"
quiet_after = ["1d"]
"#,
        )
        .await;
        w.add(vec![lead("@first")]).await;
        assert_eq!(w.run("openers").await.expect("run").sent, 1);
        w.clock.advance(Duration::days(2));
        w.add((0..3).map(|i| lead(&format!("@new{i}"))).collect())
            .await;
        // An opener takes the sender's call; the follow-up due meanwhile waits for the gap.
        assert_eq!(w.run("openers").await.expect("run").sent, 1);
        w.clock.advance(Duration::seconds(10));
        let s = w.run("follow-ups").await.expect("run");
        assert_eq!((s.calls, s.sender_held), (0, 1), "{s:?}");
        // Past the gap the openers leave the call to the follow-up, and say why.
        w.clock.advance(Duration::seconds(85));
        let s = w.run("openers").await.expect("run");
        assert_eq!(s.calls, 0, "{s:?}");
        assert!(
            s.sender_hold
                .clone()
                .unwrap_or_default()
                .contains("follow-up"),
            "{s:?}"
        );
        assert_eq!(w.run("follow-ups").await.expect("run").sent, 1);
        w.clock.advance(Duration::seconds(90));
        assert_eq!(w.run("openers").await.expect("run").sent, 1);
        assert_eq!(
            sender_of(&w, "FOLLOW_UP"),
            BTreeMap::from([("@first".to_string(), "@solo".to_string())])
        );
    })
    .await;
}

/// The senders table has a retention: a sender idle past `[retention] attempts` (and at
/// least 30 days) is forgotten, so its ramp starts again; one idle less is kept whatever
/// the setting.
#[tokio::test(flavor = "multi_thread")]
async fn a_sender_idle_past_retention_is_forgotten_and_a_recent_one_kept() {
    on_both(|db| async move {
        use fluidtalk_runner::store::PruneTable;
        let w = world_with(
            db,
            SimConfig::default(),
            4,
            "",
            "[[sender]]\nusername = \"@old\"\n\n[[sender]]\nusername = \"@recent\"\n\n[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\n",
        )
        .await;
        let mk = |who: &str, i: u32| LeadInput {
            own_username: Some(who.into()),
            ..lead(&format!("{who}_{i}"))
        };
        w.add(vec![mk("@old", 0)]).await;
        assert_eq!(w.run("openers").await.expect("run").sent, 1);
        w.clock.advance(Duration::days(25));
        w.add(vec![mk("@recent", 0)]).await;
        assert_eq!(w.run("openers").await.expect("run").sent, 1);
        w.clock.advance(Duration::days(10));
        let now = w.clock.now();
        let r = fluidtalk_runner::config::Retention {
            attempts: std::time::Duration::from_secs(3600),
            ..Default::default()
        };
        let cut = fluidtalk_runner::retention::cutoff(PruneTable::Senders, &r, now);
        assert_eq!(cut, now - Duration::days(30), "kept 30 days whatever the setting");
        let gone = w
            .store
            .prune_batch(PruneTable::Senders, cut, 1_000)
            .await
            .expect("prune");
        assert_eq!(gone, 1);
        let rules: Vec<_> = w.config.senders.rules.values().cloned().collect();
        let uses = w.store.sender_uses(&rules, now).await.expect("uses");
        let last = |who: &str| {
            uses.iter()
                .find(|u| u.username == who)
                .and_then(|u| u.last_call_at)
        };
        assert_eq!(last("@old"), None, "forgotten");
        assert!(last("@recent").is_some(), "kept");
    })
    .await;
}

/// `[fluidtalk] own_username` is trimmed as a `[[sender]]` username is: a stray space
/// must not turn the default sender's rules off (found in review).
#[tokio::test(flavor = "multi_thread")]
async fn a_default_sender_written_with_a_stray_space_keeps_its_rules() {
    on_both(|db| async move {
        let w = world_with(
            db,
            SimConfig::default(),
            4,
            "own_username = \"@main \"",
            r#"
[[sender]]
username = "@main"
daily_cap = 2

[[job]]
name = "openers"
kind = "opener"
schedule = "0 * * * * *"
batch_size = 4
"#,
        )
        .await;
        w.add((0..6).map(|i| lead(&format!("@t{i}"))).collect())
            .await;
        let s = w.run("openers").await.expect("run");
        assert_eq!(
            s.sent,
            2,
            "cap of 2 exceeded: {s:?} {:?}",
            by_sender(&w, "OUTREACH")
        );
    })
    .await;
}

/// An event sent to a `new` lead opens a conversation (a token): it counts against its
/// sender's daily cap as an opener does (found in review).
#[tokio::test(flavor = "multi_thread")]
async fn events_on_new_leads_count_against_their_senders_cap() {
    on_both(|db| async move {
        let w = world_with(
            db,
            SimConfig::default(),
            4,
            "own_username = \"@anna\"",
            r#"
[[sender]]
username = "@anna"
daily_cap = 2

[[job]]
name = "openers"
kind = "opener"
schedule = "0 * * * * *"
batch_size = 4

[[job]]
name = "reactions"
kind = "event"
event_type = "story_reaction"
schedule = "0 * * * * *"
"#,
        )
        .await;
        w.add((0..10).map(|i| lead(&format!("@e{i}"))).collect()).await;
        for i in 0..5 {
            w.store
                .queue_event(&fluidtalk_runner::store::NewEvent {
                    target: &format!("@e{i}"),
                    event_type: "story_reaction",
                    context: None,
                    now: w.clock.now(),
                })
                .await
                .expect("queue");
        }
        let e = w.run("reactions").await.expect("run");
        let o = w.run("openers").await.expect("run");
        let contacted = w.contacted().await;
        assert!(
            contacted <= 2,
            "@anna (daily_cap 2) opened {contacted} conversations today: events {e:?}, openers {o:?}"
        );
    })
    .await;
}
