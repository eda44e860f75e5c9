//! Every "nothing" has a reason: `run` and `run --dry-run` say why calls were not made (the
//! daily cap and when it resets, the send window and when it opens, a pause and its end,
//! `max_per_run`, a calendar's day off, leads that did not exist at `--at`, or no lead
//! due), in text and JSON under the same names; leads given back are `given_back` in JSON
//! as "given back" in text, those held by their sender since the plan included; a forecast
//! from the past is refused. Through the binary against the simulator, on a SQLite file
//! and on PostgreSQL when `TEST_DATABASE_URL` is set; time set by `FLUIDTALK_CLOCK_OFFSET`
//! and `--at`, never today's date.

use crate::common;
use crate::runner::{lead, world_with};
use chrono::{DateTime, Utc};
use common::db::TestDb;
use common::{TEST_KEY, bin, spawn_sim_process};
use fluidtalk_runner::clock::Clock;
use fluidtalk_runner::sim::SimConfig;
use fluidtalk_runner::store::{Action, AttemptStatus, LeadInput, NewAttempt, SenderCall};
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

/// A campaign in a folder of its own: `jobs` (TOML) over `db`, against a simulator started
/// with `sim_args`, `leads` imported now.
struct Campaign {
    dir: tempfile::TempDir,
    db: TestDb,
    _sim: common::KillOnDrop,
}

impl Campaign {
    fn new(db: TestDb, sim_args: &[&str], jobs: &str, leads: usize) -> Self {
        let (sim, url) = spawn_sim_process(sim_args);
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("jobs.toml"),
            format!("[fluidtalk]\nbase_url = \"{url}\"\n\n{jobs}"),
        )
        .expect("write jobs.toml");
        let rows: String = (0..leads).map(|i| format!("@why{i}\n")).collect();
        std::fs::write(dir.path().join("leads.csv"), format!("target\n{rows}")).expect("leads");
        let c = Campaign { dir, db, _sim: sim };
        let out = c.run(&["leads", "import", "leads.csv"], None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        c
    }

    /// Runs the binary; `at`: the runner's clock is moved there (`FLUIDTALK_CLOCK_OFFSET`).
    fn run(&self, args: &[&str], at: Option<DateTime<Utc>>) -> Output {
        let mut cmd = bin();
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", &self.db.url)
            .env("FLUIDTALK_API_KEY", TEST_KEY)
            .env_remove("FLUIDTALK_RUNNER_CONFIG")
            .env_remove("FLUIDTALK_CLOCK_OFFSET");
        if let Some(at) = at {
            let secs = (at - Utc::now()).num_seconds();
            cmd.env("FLUIDTALK_CLOCK_OFFSET", format!("{secs}s"));
        }
        cmd.output().expect("run the cli")
    }

    /// Runs the binary, which must succeed; its stdout.
    fn ok(&self, args: &[&str], at: Option<DateTime<Utc>>) -> String {
        let out = self.run(args, at);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// `run JOB --json` at `at`: the job's summary.
    fn run_json(&self, job: &str, at: DateTime<Utc>) -> Value {
        let out = self.ok(&["run", job, "--json"], Some(at));
        let v: Value = serde_json::from_str(&out).expect("run JSON");
        v["jobs"][job].clone()
    }

    /// `run --dry-run --at AT --json`: the reasons element of `job`, if any.
    fn dry_reasons(&self, job: &str, at: DateTime<Utc>) -> Value {
        let out = self.ok(
            &["run", job, "--dry-run", "--json", "--at", &at.to_rfc3339()],
            None,
        );
        let plan: Value = serde_json::from_str(&out).expect("plan JSON");
        plan.as_array()
            .expect("an array")
            .iter()
            .find(|e| e.get("reasons").is_some())
            .map_or(Value::Null, |e| {
                assert_eq!(e["job"], job, "{e}");
                assert!(e.get("action").is_none(), "not a call: {e}");
                e["reasons"].clone()
            })
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The tests' instants are written in January 2027 and December 2027, but the leads are
/// imported at the machine's now: once those instants pass, each moves on by whole
/// 364-day steps (the weekday and the winter offset stay) to a year after now. `t` and
/// `shown` (the same instant as the output writes it) move alike.
fn years_on() -> chrono::Duration {
    let first = DateTime::parse_from_rfc3339("2027-01-06T00:00:00Z").expect("time");
    let mut shift = chrono::Duration::zero();
    while first + shift < Utc::now() + chrono::Duration::days(2) {
        shift += chrono::Duration::days(364);
    }
    shift
}

fn t(s: &str) -> DateTime<Utc> {
    (DateTime::parse_from_rfc3339(s).expect("time") + years_on()).with_timezone(&Utc)
}

/// `s` moved as `t` moves it, written as the output writes it (RFC 3339, its offset).
fn shown(s: &str) -> String {
    (DateTime::parse_from_rfc3339(s).expect("time") + years_on())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, s.ends_with('Z'))
}

/// A date `YYYY-MM-DD` moved as `t` moves it.
fn day(s: &str) -> String {
    shown(&format!("{s}T12:00:00+01:00"))[..10].to_string()
}

/// The reasons' names.
fn names(reasons: &Value) -> Vec<&str> {
    reasons
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["reason"].as_str()).collect())
        .unwrap_or_default()
}

const CAPPED: &str = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n\
     timezone = \"Europe/Berlin\"\ndaily_cap = 3\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_cap_reached_is_said_with_its_count_and_when_it_resets() {
    on_both(async |db| {
        let c = Campaign::new(db, &[], CAPPED, 5);
        // A Wednesday noon in Berlin; the cap resets at the next local midnight.
        let noon = t("2027-01-06T12:00:00+01:00");
        let out = c.ok(&["run", "openers"], Some(noon));
        assert_eq!(
            out.trim(),
            format!(
                "openers: sent 3; not sent: daily_cap 3/3 reached, resets {}",
                shown("2027-01-07T00:00:00+01:00")
            ),
        );
        let out = c.ok(&["run", "openers"], Some(noon));
        assert_eq!(
            out.trim(),
            format!(
                "openers: nothing sent: daily_cap 3/3 reached, resets {}",
                shown("2027-01-07T00:00:00+01:00")
            ),
        );
        let s = c.run_json("openers", noon);
        assert_eq!(s["calls"], 0);
        assert_eq!(names(&s["reasons"]), ["daily_cap"], "{s}");
        let r = &s["reasons"][0];
        assert_eq!((r["count"].as_u64(), r["cap"].as_u64()), (Some(3), Some(3)));
        assert_eq!(r["until"], shown("2027-01-07T00:00:00+01:00"));
        assert_eq!(r["zone"], "Europe/Berlin");
        assert!(
            r["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("daily_cap ")),
            "{r}"
        );
        // The dry run says the same, under the same name.
        let dry = c.dry_reasons("openers", noon);
        assert_eq!(names(&dry), ["daily_cap"], "{dry}");
        assert_eq!(dry[0]["until"], shown("2027-01-07T00:00:00+01:00"));
        // The next day, the cap has reset: the last two leads go out.
        let out = c.ok(&["run", "openers"], Some(t("2027-01-07T09:00:00+01:00")));
        assert!(out.starts_with("openers: sent 2"), "{out}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_send_window_says_when_it_next_opens_in_the_zone_that_decides() {
    on_both(async |db| {
        let jobs = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n\
             timezone = \"Europe/Berlin\"\nsend_window = { days = \"mon-fri\", from = \"09:00\", to = \"17:00\" }\n";
        let c = Campaign::new(db, &[], jobs, 4);
        // A Saturday: next Monday 09:00 in Berlin.
        let saturday = t("2027-01-09T12:00:00+01:00");
        let out = c.ok(&["run", "openers"], Some(saturday));
        assert_eq!(
            out.trim(),
            format!(
                "openers: nothing sent: send_window closed for 4 due lead(s), opens \
                 {} (Europe/Berlin) (outside window 4)",
                shown("2027-01-11T09:00:00+01:00")
            ),
        );
        let s = c.run_json("openers", saturday);
        assert_eq!(names(&s["reasons"]), ["send_window"], "{s}");
        assert_eq!(s["reasons"][0]["count"], 4);
        assert_eq!(s["reasons"][0]["until"], shown("2027-01-11T09:00:00+01:00"));
        assert_eq!(s["outside_window"], 4, "the old field stays");
        let dry = c.dry_reasons("openers", saturday);
        assert_eq!(names(&dry), ["send_window"], "{dry}");
        assert_eq!(dry[0]["until"], shown("2027-01-11T09:00:00+01:00"));
        // Monday at ten it is open.
        let out = c.ok(&["run", "openers"], Some(t("2027-01-11T10:00:00+01:00")));
        assert_eq!(out.trim(), "openers: sent 4");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_pause_is_said_with_its_end() {
    on_both(async |db| {
        let jobs = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n\
             batch_size = 1\nmax_per_run = 2\n";
        // One token: the second opener is answered 402.
        let c = Campaign::new(db, &["--tokens", "1"], jobs, 5);
        let at = t("2027-01-06T12:00:00Z");
        let s = c.run_json("openers", at);
        assert_eq!(
            (s["sent"].as_u64(), s["paused"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(names(&s["reasons"]), ["paused"], "{s}");
        let pause = c.ok(&["pause", "list", "--json"], None);
        let pause: Value = serde_json::from_str(&pause).expect("pause JSON");
        let until = pause[0]["until"].as_str().expect("until").to_string();
        let reason_until = s["reasons"][0]["until"].as_str().expect("until");
        // To the second: the reason is written without fractions.
        assert_eq!(
            t(reason_until).timestamp(),
            t(&until).timestamp(),
            "{s} / {pause}"
        );
        // The next run is held by the stored pause, and says until when, in words too.
        let out = c.ok(&["run", "openers"], Some(at));
        assert!(
            out.starts_with("openers: nothing sent: paused: new_conversations until "),
            "{out}"
        );
        let dry = c.dry_reasons("openers", at);
        assert_eq!(names(&dry), ["paused"], "{dry}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn max_per_run_reached_is_said_with_its_count() {
    on_both(async |db| {
        let jobs = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n\
             batch_size = 1\nmax_per_run = 2\n";
        let c = Campaign::new(db, &[], jobs, 5);
        let at = t("2027-01-06T12:00:00Z");
        let dry = c.dry_reasons("openers", at);
        assert_eq!(names(&dry), ["max_per_run"], "{dry}");
        assert_eq!(
            (dry[0]["count"].as_u64(), dry[0]["cap"].as_u64()),
            (Some(2), Some(2))
        );
        let out = c.ok(&["run", "openers"], Some(at));
        assert_eq!(
            out.trim(),
            "openers: sent 2; not sent: max_per_run 2 reached: the next run goes on"
        );
        let s = c.run_json("openers", at);
        assert_eq!(s["sent"], 2);
        assert_eq!(names(&s["reasons"]), ["max_per_run"], "{s}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_off_names_its_calendar_and_nothing_due_is_said_as_such() {
    on_both(async |db| {
        let jobs = format!(
            "[[calendar]]\nname = \"xmas\"\ndates = [\"{}\"]\n\n\
             [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n\
             timezone = \"Europe/Berlin\"\ncalendars = [\"xmas\"]\n",
            day("2027-12-25")
        );
        let c = Campaign::new(db, &[], &jobs, 2);
        let xmas = t("2027-12-25T12:00:00+01:00");
        let s = c.run_json("openers", xmas);
        assert_eq!(names(&s["reasons"]), ["day_off"], "{s}");
        assert_eq!(s["reasons"][0]["calendar"], "xmas");
        assert_eq!(s["reasons"][0]["count"], 2);
        let out = c.ok(&["run", "openers"], Some(xmas));
        assert!(
            out.starts_with("openers: nothing sent: day_off (calendar \"xmas\") for 2 due lead(s)"),
            "{out}"
        );
        // The day after, both go out; then nothing is due, and the run says that.
        let boxing_day = t("2027-12-26T12:00:00+01:00");
        assert_eq!(
            c.ok(&["run", "openers"], Some(boxing_day)).trim(),
            "openers: sent 2"
        );
        let out = c.ok(&["run", "openers"], Some(boxing_day));
        assert_eq!(
            out.trim(),
            "openers: nothing sent: nothing_due: no lead due"
        );
        let s = c.run_json("openers", boxing_day);
        assert_eq!(names(&s["reasons"]), ["nothing_due"], "{s}");
        let dry = c.dry_reasons("openers", boxing_day);
        assert_eq!(names(&dry), ["nothing_due"], "{dry}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_at_a_past_instant_counts_the_leads_created_after_it() {
    on_both(async |db| {
        let jobs = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n";
        let c = Campaign::new(db, &[], jobs, 4);
        // Long before the leads were imported (now).
        let past = t("2020-01-06T09:00:00+01:00");
        let dry = c.dry_reasons("openers", past);
        assert_eq!(names(&dry), ["not_created_yet", "nothing_due"], "{dry}");
        assert_eq!(dry[0]["count"], 4);
        let out = c.ok(&["run", "--dry-run", "--at", &past.to_rfc3339()], None);
        assert!(
            out.contains(
                "  why: not_created_yet: 4 lead(s) were created after 2020-01-06T08:00:00+00:00 and are not counted"
            ),
            "{out}"
        );
        // At an instant after their creation, none is missing.
        let dry = c.dry_reasons("openers", Utc::now() + chrono::Duration::days(1));
        assert_eq!(dry, Value::Null, "4 calls, nothing held back");
    })
    .await;
}

#[tokio::test]
async fn a_forecast_from_the_past_is_refused_naming_from_and_now() {
    let c = Campaign::new(common::db::sqlite().await, &[], CAPPED, 1);
    let yesterday = (Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let out = c.run(&["forecast", "--days", "1", "--from", &yesterday], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("--from") && err.contains("is in the past (now is "),
        "{err}"
    );
    // From a minute ahead it runs.
    let soon = (Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let out = c.run(
        &["forecast", "--days", "1", "--from", &soon, "--json"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Leads whose sender's room another runner used between the plan and the call are given
/// back, and counted so: `given_back` in JSON (and its old name `cancelled`), "given back"
/// in text.
#[tokio::test(flavor = "multi_thread")]
async fn leads_held_by_their_sender_since_the_plan_are_counted_as_given_back() {
    on_both(async |db| {
        let sim = SimConfig {
            latency: std::time::Duration::from_millis(1500),
            ..SimConfig::default()
        };
        let w = world_with(
            db,
            sim,
            1,
            "",
            "[[sender]]\nusername = \"@anna\"\ndaily_cap = 3\n\n\
             [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\n\
             batch_size = 3\nsenders = [\"@anna\"]\nexclude_tags = [\"other\"]\n",
        )
        .await;
        w.add((0..5).map(|i| lead(&format!("@l{i}"))).collect())
            .await;
        // Two leads another runner works with the same sender.
        let others: Vec<LeadInput> = ["@x0", "@x1"]
            .iter()
            .map(|t| LeadInput {
                tags: Some(vec!["other".into()]),
                ..lead(t)
            })
            .collect();
        w.add(others).await;
        let runner = w.runner();
        let job = w.config.jobs[0].clone();
        let run = tokio::spawn(async move { runner.run_job(&job, None).await });
        // The run planned three leads (the sender's room) and its first call is in flight.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        'wait: loop {
            for i in 0..5 {
                let l = w
                    .store
                    .get_lead(&format!("@l{i}"))
                    .await
                    .expect("get")
                    .expect("lead");
                let a = w.store.attempts_for(l.id).await.expect("attempts");
                if a.iter().any(|a| a.status == AttemptStatus::InFlight) {
                    break 'wait;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no call started");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Meanwhile another runner opens two conversations with @anna: her cap is used.
        let mut taken = Vec::new();
        for t in ["@x0", "@x1"] {
            let l = w.store.get_lead(t).await.expect("get").expect("lead");
            taken.push(NewAttempt {
                lead_id: l.id,
                job: "elsewhere".into(),
                action: Action::Opener,
                step: 0,
                lease_token: "other-runner/1".into(),
                started_at: w.clock.now(),
                claimed: None,
                sender: Some(SenderCall {
                    username: "@anna".into(),
                    rule: None,
                    assign: false,
                }),
            });
        }
        w.store
            .start_attempts(&taken)
            .await
            .expect("the other runner's calls");
        let s = run.await.expect("join").expect("run");
        assert_eq!(s.sent, 1, "{s:?}");
        assert_eq!(
            s.given_back, 2,
            "the two planned leads @anna could no longer take: {s:?}"
        );
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["given_back"], 2);
        assert_eq!(
            json["cancelled"], json["given_back"],
            "the old name, the same value"
        );
        assert!(s.describe().contains("given back 2"), "{}", s.describe());
    })
    .await;
}
