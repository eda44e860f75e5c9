//! The campaign file's checks: one test per kind of mistake, and the example as written.

use super::fields::parse_days;
use super::*;
use chrono::{NaiveTime, Weekday};

fn check(text: &str) -> Result<Config, String> {
    parse(Path::new("jobs.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn the_example_in_the_repository_parses_as_written() {
    let text = include_str!("../../jobs.toml");
    let c = check(text).expect("the example parses");
    assert_eq!(c.jobs.len(), 4);
    // Two openers over disjoint segments.
    assert_eq!(c.jobs[0].segment.exclude_tags, ["vip"]);
    assert_eq!(c.jobs[3].segment.tags, ["vip"]);
    assert!(c.jobs[1].segment.is_everyone());
    assert_eq!(
        c.jobs[0].calendars.len(),
        1,
        "the openers keep the example's days off"
    );
    let de = &c.jobs[0].calendars[0];
    assert_eq!(de.name, "de");
    assert!(de.is_day_off(chrono::NaiveDate::from_ymd_opt(2026, 12, 25).expect("date")));
    assert!(c.jobs[1].calendars.is_empty());
    assert_eq!(c.limits.concurrency.get(), 8);
    assert_eq!(c.backoff.out_of_tokens, Duration::from_secs(900));
    let fu = &c.jobs[1];
    assert_eq!(fu.quiet_before(1), Some(Duration::from_secs(86_400)));
    assert_eq!(fu.quiet_before(3), Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(
        fu.quiet_before(9),
        Some(Duration::from_secs(7 * 86_400)),
        "the last repeats"
    );
    let JobKind::Opener {
        daily_cap,
        send_window,
    } = &c.jobs[0].kind
    else {
        panic!("the first job is the opener")
    };
    assert_eq!(*daily_cap, Some(200));
    let w = send_window.as_ref().expect("a window");
    assert!(w.contains(Weekday::Mon, NaiveTime::from_hms_opt(9, 0, 0).expect("t")));
    assert!(!w.contains(Weekday::Mon, NaiveTime::from_hms_opt(18, 0, 0).expect("t")));
    assert!(!w.contains(Weekday::Sat, NaiveTime::from_hms_opt(12, 0, 0).expect("t")));
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let c = check("").expect("empty is fine");
    assert!(c.jobs.is_empty());
    assert_eq!(c.fluidtalk.timeout, Duration::from_secs(60));
    assert_eq!(c.backoff.max_attempts, 5);
    assert_eq!(c.database_url, None);
}

/// One test per kind of mistake: each error names the file, the line and the key.
#[test]
fn each_kind_of_mistake_names_file_line_and_key() {
    let job = |extra: &str| {
        format!("[[job]]\nname = \"j\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n{extra}")
    };
    let cases: Vec<(String, &str)> = vec![
        (
            "[fluidtalk]\ntimeout = 60\n".into(),
            "jobs.toml: line 2, column 11: [fluidtalk] timeout: invalid type",
        ),
        (
            "[limits]\nconcurrancy = 4\n".into(),
            "jobs.toml: line 2, column 1: [limits] concurrancy: unknown field `concurrancy`",
        ),
        ("[limts]\n".into(), "unknown field `limts`"),
        ("[limits]\nconcurrency = \"many\"\n".into(), "line 2"),
        (
            "[limits]\nconcurrency = 0\n".into(),
            "jobs.toml: line 2: [limits] concurrency: 0 is out of range",
        ),
        (
            "[limits]\nper_second = -1.0\n".into(),
            "[limits] per_second: -1 is out of range; expected a number from 0.01 to 100000",
        ),
        // Issue 9: every setting has a range, and no value of any setting can panic.
        (
            "[limits]\nper_second = 1e10\n".into(),
            "jobs.toml: line 2: [limits] per_second: 10000000000 is out of range",
        ),
        (
            "[backoff]\nout_of_tokens = \"300000years\"\n".into(),
            "jobs.toml: line 2: [backoff] out_of_tokens: \"300000years\" is out of range; expected from 100ms to 30days",
        ),
        (
            "[backoff]\nretry_base = \"1000000000years\"\n".into(),
            "[backoff] retry_base: \"1000000000years\" is out of range",
        ),
        (
            "[fluidtalk]\ntimeout = \"1ns\"\n".into(),
            "jobs.toml: line 2: [fluidtalk] timeout: \"1ns\" is out of range; expected from 1s to 10m",
        ),
        (
            "[fluidtalk]\ntimeout = \"5000years\"\n".into(),
            "[fluidtalk] timeout: \"5000years\" is out of range",
        ),
        (
            "[fluidtalk]\nbase_url = \"ftp://api.example\"\n".into(),
            "[fluidtalk] base_url: \"ftp://api.example\" is not an http(s) URL with a host",
        ),
        (
            "[database]\nurl = \"mysql://root@localhost/leads\"\n".into(),
            "jobs.toml: line 2: [database] url: \"mysql://root@localhost/leads\" is not a database this runner can use",
        ),
        (
            "[database]\nurl = \"sqlite::memory:\"\n".into(),
            "[database] url: \"sqlite::memory:\" is an in-memory database",
        ),
        (
            "[fluidtalk]\nimage_dir = \"no/such/folder\"\n".into(),
            "jobs.toml: line 2: [fluidtalk] image_dir: no/such/folder cannot be used",
        ),
        (
            job("").replace(
                "kind = \"opener\"",
                "kind = \"follow_up\"\nquiet_after = [\"1d\", \"90000years\"]",
            ),
            "quiet_after: \"90000years\" is out of range; expected from 1m to 1year",
        ),
        // A default counts too: retry_max is 1h when not set.
        (
            "[backoff]\nretry_base = \"2h\"\n".into(),
            "jobs.toml: line 2: [backoff] retry_base: must not be longer than retry_max (1h when not set)",
        ),
        (
            "[backoff]\nretry_base = \"soon\"\n".into(),
            "jobs.toml: line 2: [backoff] retry_base: \"soon\" is not a duration",
        ),
        (
            "[backoff]\nout_of_tokens = \"1h\"\nout_of_tokens_max = \"5m\"\n".into(),
            "out_of_tokens_max: must not be shorter",
        ),
        (
            "[fluidtalk]\nbase_url = \"not a url\"\n".into(),
            "[fluidtalk] base_url: \"not a url\" is not a URL",
        ),
        ("[database]\nurl = 42\n".into(), "jobs.toml: line 2"),
        (
            job("").replace("0 0 * * * *", "*/15 * * * *"),
            "jobs.toml: line 4: [[job]] \"j\" schedule: \"*/15 * * * *\" has 5 fields",
        ),
        (
            job("").replace("0 0 * * * *", "0 0 25 * * *"),
            "schedule: \"0 0 25 * * *\" is not a valid cron expression",
        ),
        (
            job("timezone = \"Mars/Base\"\n"),
            "jobs.toml: line 5: [[job]] \"j\" timezone: unknown time zone \"Mars/Base\"",
        ),
        (
            job("").replace("opener", "blast"),
            "kind: \"blast\" is not a job kind",
        ),
        (
            job("quiet_after = \"1d\"\n"),
            "quiet_after: does not apply to an opener job",
        ),
        (job("batch_size = 0\n"), "batch_size: 0 is out of range"),
        (
            job("send_window = { days = \"mon-fry\", from = \"09:00\", to = \"18:00\" }\n"),
            "send_window.days: \"fry\" is not a day",
        ),
        (
            job("send_window = { from = \"18:00\", to = \"09:00\" }\n"),
            "must be before to",
        ),
        (
            job("send_window = { from = \"9am\", to = \"18:00\" }\n"),
            "send_window.from: \"9am\" is not a time",
        ),
        (job("on_unknown = \"resend\"\n"), "on_unknown: \"resend\""),
        // The key inside an inline table, and in a list written over several lines.
        (
            job("send_window = { from = \"09:00\", to = \"9pm\" }\n"),
            "jobs.toml: line 5: [[job]] \"j\" send_window.to: \"9pm\" is not a time",
        ),
        (
            job("send_window = { from = \"09:00\", to = \"18:00\", colour = 1 }\n"),
            "[[job]] \"j\" send_window.colour: unknown field `colour`",
        ),
        (
            job("").replace(
                "kind = \"opener\"",
                "kind = \"follow_up\"\nquiet_after = [\n  \"1d\",\n  \"2years\",\n]",
            ),
            "[[job]] \"j\" quiet_after: \"2years\" is out of range",
        ),
        (
            job("batch_size = -5\n"),
            "line 5: [[job]] \"j\" batch_size: -5 is out of range",
        ),
        (job("colour = \"red\"\n"), "unknown field `colour`"),
        (
            job("").replace("kind = \"opener\"", "kind = \"follow_up\""),
            "quiet_after: is required for a follow_up job",
        ),
        (
            job("").replace("kind = \"opener\"", "kind = \"event\""),
            "event_type: is required for an event job",
        ),
        (
            format!("{}{}", job(""), job("")),
            "jobs.toml: line 6: [[job]] \"j\" name: is used by an earlier job",
        ),
        (
            job("").replace("name = \"j\"", "name = \"my job\""),
            "name: \"my job\" is not a job name",
        ),
        ("[[job]]\nname = \"x\"\n".into(), "missing field"),
    ];
    for (text, want) in cases {
        let err = check(&text).expect_err(&format!("refused:\n{text}"));
        assert!(err.contains(want), "for\n{text}\ngot: {err}\nwant: {want}");
        assert!(err.starts_with("jobs.toml: "), "{err}");
    }
}

#[test]
fn days_read_like_people_write_them() {
    assert_eq!(
        parse_days("mon-fri"),
        Ok([true, true, true, true, true, false, false])
    );
    assert_eq!(
        parse_days("sat,sun"),
        Ok([false, false, false, false, false, true, true])
    );
    assert_eq!(
        parse_days("fri-mon"),
        Ok([true, false, false, false, true, true, true])
    );
    assert_eq!(parse_days("Daily"), Ok([true; 7]));
}

#[test]
fn a_syntax_error_does_not_quote_the_line_with_the_password() {
    let err = check("[database]\nurl = \"postgres://app:s3cret@db/leads\n").expect_err("refused");
    assert!(err.starts_with("jobs.toml: line 2, column"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn a_window_may_end_at_24_00_the_end_of_the_day() {
    let job = |extra: &str| {
        format!("[[job]]\nname = \"j\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n{extra}")
    };
    let c = check(&job(
        "send_window = { days = \"mon-sun\", from = \"00:00\", to = \"24:00\" }\n",
    ))
    .expect("24:00 is the end of the day");
    let w = c.jobs[0].kind.send_window().expect("a window");
    assert_eq!(w.to, None);
    assert_eq!(w.hours(), "00:00-24:00");
    let late = NaiveTime::from_hms_opt(23, 59, 59).expect("t");
    assert!(w.contains(Weekday::Sun, late));
    assert!(w.contains(Weekday::Mon, NaiveTime::MIN));
    // 24:00 is only an end.
    let e = check(&job("send_window = { from = \"24:00\", to = \"24:00\" }\n"))
        .expect_err("24:00 is not a start");
    assert!(
        e.contains("send_window.from: \"24:00\" is not a time"),
        "{e}"
    );
}
