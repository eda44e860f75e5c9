//! `FLUIDTALK_LOG_FORMAT`, with the real binary: `json` makes every stderr line one JSON
//! object (timestamp, level, target, message, the fields, the spans), the key in none of
//! them; an unknown format stops start-up with the usage exit code before anything runs.

use crate::common;

use common::{KillOnDrop, TEST_KEY, spawn_sim_process};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn campaign(dir: &Path, url: &str) {
    std::fs::write(
        dir.join("jobs.toml"),
        format!(
            "[fluidtalk]\nbase_url = \"{url}\"\n\n[[job]]\nname = \"openers\"\nkind = \"opener\"\n\
             schedule = \"0 0 9 * * *\"\nbatch_size = 3\n\n[[job]]\nname = \"nudges\"\n\
             kind = \"follow_up\"\nschedule = \"0 0 10 * * *\"\nquiet_after = [\"2d\"]\n"
        ),
    )
    .expect("write jobs.toml");
    let leads: String = (0..3).map(|i| format!("@lead{i}\n")).collect();
    std::fs::write(dir.join("leads.csv"), format!("target\n{leads}")).expect("write leads");
    let out = bin()
        .args(["leads", "import", "leads.csv"])
        .current_dir(dir)
        .output()
        .expect("import");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The binary, with none of the caller's settings that would change what it reads.
fn bin() -> std::process::Command {
    let mut cmd = common::bin();
    for var in [
        "DATABASE_URL",
        "FLUIDTALK_RUNNER_CONFIG",
        "FLUIDTALK_BASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every line of `stderr` as a JSON object with the fields every log line carries.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line}"));
            let Value::Object(fields) = value else {
                panic!("a stderr line is not a JSON object: {line}");
            };
            let at = fields
                .get("timestamp")
                .and_then(Value::as_str)
                .unwrap_or_default();
            assert!(
                chrono::DateTime::parse_from_rfc3339(at).is_ok(),
                "timestamp {at:?} in {line}"
            );
            let level = fields
                .get("level")
                .and_then(Value::as_str)
                .unwrap_or_default();
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
                "level {level:?} in {line}"
            );
            let target = fields
                .get("target")
                .and_then(Value::as_str)
                .unwrap_or_default();
            assert!(!target.is_empty(), "no target in {line}");
            // An event of fields only (sqlx's statements) has no message; ours all have one.
            match fields.get("message") {
                Some(m) => assert!(m.is_string(), "message in {line}"),
                None => assert!(
                    !target.starts_with("fluidtalk_runner"),
                    "no message in {line}"
                ),
            }
            Value::Object(fields)
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_a_line_with_the_spans_fields_and_never_the_key() {
    let (_sim, url) = spawn_sim_process(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    campaign(dir.path(), &url);
    let out = bin()
        .args(["run", "openers", "--json"])
        .current_dir(dir.path())
        .env("FLUIDTALK_API_KEY", TEST_KEY)
        // Everything, the HTTP and TLS stacks' own events included.
        .env("FLUIDTALK_LOG", "trace")
        .env("FLUIDTALK_LOG_FORMAT", "json")
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines = json_lines(&stderr);
    assert!(
        lines.len() > 10,
        "a run at trace logs more than this: {stderr}"
    );
    assert!(!stderr.contains(TEST_KEY), "the key is in the logs");
    assert!(
        !text(&out.stdout).contains(TEST_KEY),
        "the key is in the output"
    );
    // The run's events carry the job's span, by name and with its fields.
    let in_job: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("fluidtalk_runner"))
        })
        .filter(|l| l["span"]["name"] == "job")
        .collect();
    assert!(!in_job.is_empty(), "no event in the job's span: {stderr}");
    for l in in_job {
        assert_eq!(l["span"]["job"], "openers");
        assert_eq!(l["span"]["kind"], "opener");
        assert!(l["spans"].as_array().is_some_and(|s| !s.is_empty()));
    }
}

#[test]
fn the_daemons_json_lines_carry_each_events_fields_at_the_top_level() {
    let (_sim, url) = spawn_sim_process(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    campaign(dir.path(), &url);
    let mut child = KillOnDrop(
        bin()
            .arg("daemon")
            .current_dir(dir.path())
            .env_remove("FLUIDTALK_LOG")
            .env("FLUIDTALK_API_KEY", TEST_KEY)
            .env("FLUIDTALK_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon"),
    );
    let stderr = child.0.stderr.take().expect("piped stderr");
    let mut reader = BufReader::new(stderr);
    // Up to each job's "scheduled" line, logged at start.
    let mut seen = String::new();
    let started = Instant::now();
    while seen.matches("\"scheduled\"").count() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no start: {seen}"
        );
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "the daemon ended early: {seen}");
        seen.push_str(&line);
    }
    // SAFETY: kill(2) with the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("read the rest");
    let status = child.0.wait().expect("wait for the daemon");
    seen.push_str(&rest);
    assert!(status.success(), "{status}: {seen}");
    let lines = json_lines(&seen);
    let start = lines
        .iter()
        .find(|l| l["message"] == "daemon starting")
        .unwrap_or_else(|| panic!("no start line: {seen}"));
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["target"], "fluidtalk_runner::cli::daemon");
    assert_eq!(start["jobs"], 2);
    assert_eq!(start["dry_run"], false);
    assert!(start["runner"].as_str().is_some_and(|r| !r.is_empty()));
    let jobs: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "scheduled")
        .map(|l| l["job"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(jobs, ["openers", "nudges"]);
    assert!(lines.iter().any(|l| l["message"] == "daemon stopped"));
    assert!(!seen.contains(TEST_KEY), "the key is in the logs");
}

#[test]
fn an_unknown_log_format_stops_start_up_with_the_usage_code_before_anything_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    for bad in ["yaml", "JSONL", "pretty"] {
        let out = bin()
            .arg("migrate")
            .current_dir(dir.path())
            .env("FLUIDTALK_LOG_FORMAT", bad)
            .output()
            .expect("migrate");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stderr),
            format!(
                "error: FLUIDTALK_LOG_FORMAT=\"{bad}\" is not a log format: expected \"text\" or \"json\"\n"
            )
        );
        assert!(out.stdout.is_empty());
    }
    assert!(
        !dir.path().join("fluidtalk-runner.db").exists(),
        "migrate ran despite the bad format"
    );
}

#[test]
fn the_error_that_ends_the_process_is_a_json_line_too_whatever_the_filter() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("jobs.toml"), "[limits]\nconcurrency = 2\n").expect("write");
    let run = |format: Option<&str>| {
        let mut cmd = bin();
        cmd.arg("daemon")
            .current_dir(dir.path())
            .env("FLUIDTALK_LOG", "off");
        match format {
            Some(f) => cmd.env("FLUIDTALK_LOG_FORMAT", f),
            None => cmd.env_remove("FLUIDTALK_LOG_FORMAT"),
        };
        cmd.output().expect("daemon")
    };

    let out = run(Some("json"));
    assert_eq!(out.status.code(), Some(3));
    let lines = json_lines(&text(&out.stderr));
    assert_eq!(lines.len(), 1, "{}", text(&out.stderr));
    assert_eq!(lines[0]["level"], "ERROR");
    assert_eq!(lines[0]["exit_code"], 3);
    assert!(
        lines[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no [[job]]")),
        "{:?}",
        lines[0]
    );

    // The default is text: the same error as a plain line.
    let out = run(None);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("no [[job]]"),
        "{stderr}"
    );
    assert!(serde_json::from_str::<Value>(stderr.trim()).is_err());
}

/// `-vv` shows the debug lines a one-shot command hides by default (each database opened),
/// `-q` hides even warnings, and both override `FLUIDTALK_LOG`.
#[test]
fn quiet_and_verbose_flags_override_the_log_filter() {
    let dir = tempfile::tempdir().expect("temp dir");
    campaign(dir.path(), "http://127.0.0.1:9");
    let list = |args: &[&str], env: Option<&str>| {
        let mut cmd = bin();
        cmd.args(["leads", "list"])
            .args(args)
            .current_dir(dir.path());
        match env {
            Some(filter) => cmd.env("FLUIDTALK_LOG", filter),
            None => cmd.env_remove("FLUIDTALK_LOG"),
        };
        let out = cmd.output().expect("leads list");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("@lead2"),
            "{}",
            text(&out.stdout)
        );
        text(&out.stderr)
    };
    let opened = "database open";
    assert!(!list(&[], None).contains(opened), "hidden by default");
    let verbose = list(&["-vv"], None);
    assert!(
        verbose.contains(opened) && verbose.contains("DEBUG"),
        "{verbose}"
    );
    assert!(
        list(&[], Some("debug")).contains(opened),
        "FLUIDTALK_LOG alone"
    );
    assert!(!list(&["-q"], Some("debug")).contains(opened), "-q wins");
    // A filter that does not parse warns, unless -q.
    assert!(list(&[], Some("[bad")).contains("is not a log filter"));
    let quiet = list(&["--quiet"], Some("[bad"));
    assert!(quiet.is_empty(), "{quiet}");

    let both = bin()
        .args(["-q", "-v", "status"])
        .current_dir(dir.path())
        .output()
        .expect("status");
    assert_eq!(both.status.code(), Some(2), "{}", text(&both.stderr));
}
