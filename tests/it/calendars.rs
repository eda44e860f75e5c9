//! Holiday calendars (`[[calendar]]`, `[[job]] calendars`): a day off sends nothing and
//! says which calendar holds each lead, in a live run's summary (text and JSON) and in the
//! dry run (text and JSON); the day after sends. The lead's zone decides the day. The
//! `ics` file's all-day events, relative to the campaign file; the configuration's errors;
//! `check`'s next days off; the forecast. On SQLite and PostgreSQL, with fixed dates on an
//! injected clock.

use crate::common;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use common::db::TestDb;
use common::{TEST_KEY, bin, spawn_sim};
use fluidtalk_runner::clock::ManualClock;
use fluidtalk_runner::config::{self, Config};
use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::forecast::{self, Assumptions, Options};
use fluidtalk_runner::runner::{Runner, Summary};
use fluidtalk_runner::sim::{SimConfig, Simulator};
use fluidtalk_runner::store::{LeadInput, NewEvent};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .expect("valid")
}

/// Openers and story reactions in Berlin, both off on Christmas Day (a Friday).
const CAMPAIGN: &str = r#"
[limits]
concurrency = 4
per_second = 1000.0

[[calendar]]
name = "de"
dates = ["2026-12-25"]

[[job]]
name = "openers"
kind = "opener"
schedule = "0 0 * * * *"
timezone = "Europe/Berlin"
calendars = ["de"]

[[job]]
name = "reactions"
kind = "event"
event_type = "story_reaction"
schedule = "0 * * * * *"
timezone = "Europe/Berlin"
calendars = ["de"]
"#;

struct World {
    db: TestDb,
    dir: tempfile::TempDir,
    sim: Simulator,
    config: Arc<Config>,
    client: Client,
}

async fn world(db: TestDb, toml: &str) -> World {
    let (url, sim) = spawn_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("[fluidtalk]\nbase_url = \"{url}\"\ntimeout = \"2s\"\n{toml}");
    let path = dir.path().join("jobs.toml");
    std::fs::write(&path, &text).expect("write jobs.toml");
    let config = Arc::new(config::parse(&path, &text).expect("the campaign parses"));
    let mut cc = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
    cc.base_url = url;
    World {
        db,
        dir,
        sim,
        config,
        client: Client::new(cc).expect("client"),
    }
}

impl World {
    async fn add(&self, leads: &[(&str, Option<&str>)], at: DateTime<Utc>) {
        let rows = leads
            .iter()
            .map(|(t, zone)| LeadInput {
                target: (*t).into(),
                timezone: zone.map(str::to_string),
                ..Default::default()
            })
            .collect();
        let mut s = self.db.store.begin_import(false).await.expect("import");
        s.upsert(rows, at).await.expect("upsert");
        s.finish(true).await.expect("finish");
    }

    /// A live run of `job` at `at`, as `run` makes it: its summary.
    async fn run(&self, job: &str, at: DateTime<Utc>) -> Summary {
        let job = self
            .config
            .jobs
            .iter()
            .find(|j| j.name == job)
            .expect("job exists");
        Runner::new(
            self.db.store.clone(),
            self.client.clone(),
            self.config.clone(),
            Arc::new(ManualClock::new(at)),
            "calendar-test".into(),
        )
        .run_job(job, None)
        .await
        .expect("run")
    }

    /// `run --dry-run --at AT [--json]` on this campaign's database.
    fn dry_run(&self, at: &str, json: bool) -> String {
        let mut cmd = bin();
        cmd.args(["run", "--dry-run", "--at", at])
            .current_dir(self.dir.path())
            .env("DATABASE_URL", &self.db.url)
            .env_remove("FLUIDTALK_API_KEY")
            .env_remove("FLUIDTALK_BASE_URL")
            .env_remove("FLUIDTALK_CLOCK_OFFSET");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("dry run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.sim
            .log()
            .into_iter()
            .map(|e| (e.action, e.target))
            .collect()
    }
}

/// `run`'s words and JSON for one job's summary, as `cli/run.rs` prints them.
fn shown(name: &str, s: &Summary) -> (String, Value) {
    (
        format!("{name}: {}", s.describe()),
        serde_json::to_value(s).expect("summary JSON"),
    )
}

async fn a_day_off_sends_nothing_and_says_why(db: TestDb) {
    let w = world(db, CAMPAIGN).await;
    w.add(&[("@berlin", None)], utc(2026, 12, 20, 9)).await;
    w.db.store
        .queue_event(&NewEvent {
            target: "@fan",
            event_type: "story_reaction",
            context: None,
            now: utc(2026, 12, 20, 9),
        })
        .await
        .expect("queue an event");
    // Christmas Day, 11:00 in Berlin.
    let xmas = "2026-12-25T10:00:00Z";
    let text = w.dry_run(xmas, false);
    assert!(
        text.contains(
            "  held      @berlin                  calendar \"de\": 2026-12-25 is a day off in Europe/Berlin"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "note: 1 due lead(s) on a day off of calendar \"de\" (2026-12-25 in their zone)"
        ),
        "{text}"
    );
    assert!(text.contains("openers: 0 call(s)"), "{text}");
    assert!(text.contains("held      @fan"), "the event job too: {text}");
    assert!(text.contains("reactions: 0 call(s)"), "{text}");
    let plan: Value = serde_json::from_str(&w.dry_run(xmas, true)).expect("plan JSON");
    let plan = plan.as_array().expect("an array");
    // Each job also says why it calls no one: an element with `reasons`, not a call.
    let (why, plan): (Vec<&Value>, Vec<&Value>) =
        plan.iter().partition(|e| e.get("reasons").is_some());
    assert_eq!(plan.len(), 2, "{plan:#?}");
    for (w, job) in why.iter().zip(["openers", "reactions"]) {
        assert_eq!(w["job"], job, "{w}");
        assert_eq!(w["reasons"][0]["reason"], "day_off", "{w}");
        assert_eq!(w["reasons"][0]["calendar"], "de", "{w}");
    }
    assert_eq!(why.len(), 2, "{why:#?}");
    for (item, (job, target)) in plan
        .iter()
        .zip([("openers", "@berlin"), ("reactions", "@fan")])
    {
        assert_eq!(item["held"], "day_off", "{item}");
        assert_eq!(item["calendar"], "de");
        assert_eq!(item["date"], "2026-12-25");
        assert_eq!(item["zone"], "Europe/Berlin");
        assert_eq!(
            (item["job"].as_str(), item["target"].as_str()),
            (Some(job), Some(target))
        );
        assert!(item.get("action").is_none(), "not a call: {item}");
    }

    let at = utc(2026, 12, 25, 10);
    for job in ["openers", "reactions"] {
        let s = w.run(job, at).await;
        assert_eq!(s.calls, 0, "{s:?}");
        let (text, json) = shown(job, &s);
        assert_eq!(
            text,
            format!(
                "{job}: nothing sent: day_off (calendar \"de\") for 1 due lead(s): 2026-12-25 in their zone (day off (de) 1)"
            )
        );
        assert_eq!(json["reasons"][0]["reason"], "day_off", "{json}");
        assert_eq!(json["day_off"]["de"], 1, "{json}");
        assert_eq!(json["calls"], 0);
    }
    assert!(w.calls().is_empty(), "{:?}", w.calls());
    // The run's stored summary says it too (the forecast and the dashboard read it).
    let runs = w.db.store.last_runs().await.expect("runs");
    assert!(
        runs.iter()
            .all(|r| r.summary.as_ref().is_some_and(|s| s["day_off"]["de"] == 1)),
        "{runs:?}"
    );

    // Boxing Day is not in the calendar: the same leads are called.
    let text = w.dry_run("2026-12-26T10:00:00Z", false);
    assert!(
        text.contains("openers: 1 call(s)") && !text.contains("held"),
        "{text}"
    );
    let at = utc(2026, 12, 26, 10);
    let (openers, reactions) = (w.run("openers", at).await, w.run("reactions", at).await);
    assert_eq!(
        (openers.sent, reactions.sent),
        (1, 1),
        "{openers:?} {reactions:?}"
    );
    assert!(openers.day_off.is_empty() && !openers.describe().contains("day off"));
    let mut calls = w.calls();
    calls.sort();
    assert_eq!(
        calls,
        vec![
            ("ENTRY_POINT".to_string(), "@fan".to_string()),
            ("OUTREACH".to_string(), "@berlin".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_off_sends_nothing_and_says_why_on_sqlite() {
    a_day_off_sends_nothing_and_says_why(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_off_sends_nothing_and_says_why_on_postgres() {
    if let Some(db) = common::db::postgres().await {
        a_day_off_sends_nothing_and_says_why(db).await;
    }
}

/// Around the date line: at 16:00 UTC on December 24 it is already the 25th in Tokyo and
/// still the 24th in New York; a day later, the 26th in Tokyo and the 25th in New York.
async fn the_leads_zone_decides_the_day(db: TestDb) {
    let w = world(
        db,
        "[[calendar]]\nname = \"xmas\"\ndates = [\"2026-12-25\"]\n\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\ntimezone = \"Europe/Berlin\"\ncalendars = [\"xmas\"]\n",
    )
    .await;
    w.add(
        &[
            ("@tokyo", Some("Asia/Tokyo")),
            ("@newyork", Some("America/New_York")),
        ],
        utc(2026, 12, 20, 9),
    )
    .await;
    let text = w.dry_run("2026-12-24T16:00:00Z", false);
    assert!(
        text.contains(&format!(
            "  held      {:<24} calendar \"xmas\": 2026-12-25 is a day off in Asia/Tokyo",
            "@tokyo"
        )),
        "{text}"
    );
    let s = w.run("openers", utc(2026, 12, 24, 16)).await;
    assert_eq!((s.sent, s.day_off.get("xmas")), (1, Some(&1)), "{s:?}");
    assert_eq!(w.calls(), vec![("OUTREACH".into(), "@newyork".into())]);

    let s = w.run("openers", utc(2026, 12, 25, 16)).await;
    assert_eq!(s.sent, 1, "{s:?}");
    assert!(s.day_off.is_empty(), "{s:?}");
    assert_eq!(
        w.calls().last(),
        Some(&("OUTREACH".to_string(), "@tokyo".to_string()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leads_zone_decides_the_day_on_sqlite() {
    the_leads_zone_decides_the_day(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leads_zone_decides_the_day_on_postgres() {
    if let Some(db) = common::db::postgres().await {
        the_leads_zone_decides_the_day(db).await;
    }
}

const ICS: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
BEGIN:VEVENT\r\nUID:xmas\r\nSUMMARY:Weihnachten\r\nDTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261227\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:ny\r\nSUMMARY:Neujahr\r\nDTSTART;VALUE=DATE:20270101\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:meeting\r\nSUMMARY:A meeting\r\nDTSTART:20261228T090000Z\r\nDTEND:20261228T100000Z\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n";

/// A campaign in `dir` whose calendar reads `cal/de.ics` next to it.
fn ics_campaign(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("cal")).expect("mkdir");
    std::fs::write(dir.join("cal/de.ics"), ICS).expect("write ics");
    let path = dir.join("jobs.toml");
    std::fs::write(
        &path,
        "[[calendar]]\nname = \"de\"\nics = \"cal/de.ics\"\ndates = [\"2026-12-31\"]\n\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\ntimezone = \"Europe/Berlin\"\ncalendars = [\"de\"]\n",
    )
    .expect("write jobs.toml");
    path
}

#[test]
fn check_lists_the_next_days_off_of_an_ics_file_relative_to_the_campaign_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = ics_campaign(dir.path());
    // Run from elsewhere: the ics path is the campaign file's, not the working folder's.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let out = bin()
        .args(["check", "--at", "2026-12-01T00:00:00Z", "--config"])
        .arg(&path)
        .current_dir(elsewhere.path())
        .env_remove("DATABASE_URL")
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .env_remove("FLUIDTALK_BASE_URL")
        .env_remove("FLUIDTALK_CLOCK_OFFSET")
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("calendar \"de\": 4 day(s) off, with ")
            && text.contains("cal/de.ics; 1 timed event(s) ignored"),
        "{text}"
    );
    let days: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("calendar \"de\""))
        .skip(2)
        .take_while(|l| l.starts_with("    "))
        .map(str::trim)
        .collect();
    // The two days of a multi-day event (DTEND is exclusive), a date of `dates`, a
    // single day; not the timed meeting on the 28th.
    assert_eq!(
        days,
        [
            "Fri 2026-12-25",
            "Sat 2026-12-26",
            "Thu 2026-12-31",
            "Fri 2027-01-01"
        ],
        "{text}"
    );
    assert!(
        text.contains("  calendars  de (no call on their days off)"),
        "{text}"
    );
}

#[test]
fn each_calendar_mistake_names_what_it_should() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.toml");
    let job = |cal: &str| {
        format!(
            "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\ncalendars = [{cal}]\n"
        )
    };
    let err = |text: &str| {
        config::parse(&path, text)
            .expect_err("a mistake")
            .to_string()
    };
    let shown = path.display().to_string();
    // A job naming a calendar the file does not define: the job and the name.
    let e = err(&format!(
        "[[calendar]]\nname = \"de\"\ndates = [\"2026-12-25\"]\n\n{}",
        job("\"de\", \"fr\"")
    ));
    assert_eq!(
        e,
        format!(
            "{shown}: line 9: [[job]] \"openers\" calendars[1]: no [[calendar]] is named \"fr\" (calendars: de)"
        )
    );
    // A date that is not one: the key, its index and its line.
    let e =
        err("[[calendar]]\nname = \"de\"\ndates = [\n  \"2026-12-25\",\n  \"2026-12-32\",\n]\n");
    assert_eq!(
        e,
        format!(
            "{shown}: line 5: [[calendar]] \"de\" dates[1]: \"2026-12-32\" is not a date; expected YYYY-MM-DD, e.g. \"2026-12-25\""
        )
    );
    // A missing file: the path as resolved, next to the campaign file.
    let e = err("[[calendar]]\nname = \"de\"\nics = \"holidays/none.ics\"\n");
    let resolved = dir.path().join("holidays/none.ics").display().to_string();
    assert!(
        e.starts_with(&format!(
            "{shown}: line 3: [[calendar]] \"de\" ics: {resolved} cannot be read:"
        )),
        "{e}"
    );
    // Too big a file.
    std::fs::write(
        dir.path().join("big.ics"),
        "X".repeat(config::MAX_ICS_BYTES as usize + 1),
    )
    .expect("write");
    let e = err("[[calendar]]\nname = \"de\"\nics = \"big.ics\"\n");
    assert!(
        e.contains("[[calendar]] \"de\" ics:") && e.contains("larger than 1048576 bytes"),
        "{e}"
    );
    // A recurrence other than yearly: the file and the event.
    std::fs::write(
        dir.path().join("weekly.ics"),
        ICS.replace("UID:ny\r\n", "UID:ny\r\nRRULE:FREQ=WEEKLY;BYDAY=FR\r\n"),
    )
    .expect("write");
    let e = err("[[calendar]]\nname = \"de\"\nics = \"weekly.ics\"\n");
    assert!(
        e.contains("weekly.ics: event \"Neujahr\" (UID ny): RRULE") && e.contains("FREQ=WEEKLY"),
        "{e}"
    );
    // Too many dates.
    let many: Vec<String> = NaiveDate::from_ymd_opt(2026, 1, 1)
        .expect("date")
        .iter_days()
        .take(config::MAX_CALENDAR_DAYS + 1)
        .map(|d| format!("\"{d}\""))
        .collect();
    let e = err(&format!(
        "[[calendar]]\nname = \"de\"\ndates = [{}]\n",
        many.join(", ")
    ));
    assert!(
        e.contains("[[calendar]] \"de\" dates: lists 2001 dates; at most 2000"),
        "{e}"
    );
    // An unknown key, and a calendar with no days at all.
    let e = err("[[calendar]]\nname = \"de\"\ndays = [\"2026-12-25\"]\n");
    assert!(e.contains("unknown field `days`"), "{e}");
    let e = err("[[calendar]]\nname = \"de\"\n");
    assert!(
        e.contains("[[calendar]] \"de\" dates: a calendar needs dates"),
        "{e}"
    );
}

/// The forecast runs the planner: over December 24 to 26, Christmas Day makes no opener
/// and says which calendar held them.
async fn the_forecast_skips_the_day_off(db: TestDb) {
    let w = world(
        db,
        "[[calendar]]\nname = \"de\"\ndates = [\"2026-12-25\"]\n\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\ntimezone = \"Europe/Berlin\"\ndaily_cap = 5\ncalendars = [\"de\"]\n",
    )
    .await;
    let leads: Vec<String> = (0..20).map(|i| format!("@l{i:02}")).collect();
    let rows: Vec<(&str, Option<&str>)> = leads.iter().map(|t| (t.as_str(), None)).collect();
    w.add(&rows, utc(2026, 12, 20, 9)).await;
    let source = fluidtalk_runner::store::open_read_only(&w.db.url)
        .await
        .expect("a read-only store");
    let f = forecast::forecast(
        &*source,
        &w.config,
        &Options {
            from: utc(2026, 12, 24, 0),
            days: 3,
            zone: chrono_tz::Europe::Berlin,
            assumptions: Assumptions::default(),
        },
    )
    .await
    .expect("the forecast");
    let openers: Vec<u64> = f.days.iter().map(|d| d.openers).collect();
    assert_eq!(openers, [5, 0, 5], "{:#?}", f.days);
    assert_eq!(
        f.days[1].bottleneck.as_deref(),
        Some("day off (de) of openers"),
        "{:#?}",
        f.days
    );
    assert_eq!(
        f.days[0].bottleneck.as_deref(),
        Some("daily cap of openers")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forecast_skips_the_day_off_on_sqlite() {
    the_forecast_skips_the_day_off(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forecast_skips_the_day_off_on_postgres() {
    if let Some(db) = common::db::postgres().await {
        the_forecast_skips_the_day_off(db).await;
    }
}

/// An `ics` calendar whose every day is off, whatever today is: one yearly event of 366
/// days from January 1, 2000. So `run` itself (the real binary, on the system clock) can
/// be shown holding a lead with no dependence on the date the test runs.
const EVERY_DAY: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
BEGIN:VEVENT\r\nUID:always\r\nSUMMARY:Closed\r\nDTSTART;VALUE=DATE:20000101\r\nDURATION:P366D\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n";

/// `run` and `run --json` as a user runs them: the held lead is counted under its
/// calendar's name in the text and in the JSON, and nothing reaches the API.
async fn run_says_which_calendar_held_its_leads(db: TestDb) {
    use common::campaign::{Campaign, text};
    let c = Campaign::new(
        db,
        &[],
        "",
        "[[calendar]]\nname = \"closed\"\nics = \"closed.ics\"\n\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\ncalendars = [\"closed\"]\n",
    )
    .await;
    std::fs::write(c.dir.path().join("closed.ics"), EVERY_DAY).expect("write ics");
    c.import(["@lea".to_string()]).await;
    let out = c.ok(&["run"], &[]).await;
    // Why, by the reason's name, then the count as before (the day is today's).
    assert!(
        out.starts_with("openers: nothing sent: day_off (calendar \"closed\") for 1 due lead(s): ")
            && out.trim().ends_with(" in their zone (day off (closed) 1)"),
        "{out}"
    );
    let json: Value = serde_json::from_str(&c.ok(&["run", "--json"], &[]).await).expect("JSON");
    assert_eq!(json["jobs"]["openers"]["day_off"]["closed"], 1, "{json}");
    assert_eq!(json["total"]["day_off"]["closed"], 1, "{json}");
    assert_eq!(json["total"]["calls"], 0, "{json}");
    assert!(c.sim_log().await.is_empty());
    let status = c.output(&["status"], &[]).await;
    assert!(
        text(&status.stdout).contains("day off (closed) 1"),
        "{}",
        text(&status.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_says_which_calendar_held_its_leads_on_sqlite() {
    run_says_which_calendar_held_its_leads(common::db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_says_which_calendar_held_its_leads_on_postgres() {
    if let Some(db) = common::db::postgres().await {
        run_says_which_calendar_held_its_leads(db).await;
    }
}
