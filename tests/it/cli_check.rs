//! `fluidtalk-runner check`: the campaign file is read once, checked, and explained.

use crate::common;

use common::bin;

fn check_in(dir: &std::path::Path, toml: &str) -> std::process::Output {
    std::fs::write(dir.join("jobs.toml"), toml).expect("write jobs.toml");
    bin()
        .arg("check")
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .env_remove("FLUIDTALK_BASE_URL")
        .output()
        .expect("run check")
}

#[test]
fn check_prints_each_jobs_next_five_fire_times_in_its_zone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = include_str!("../../jobs.toml");
    let out = check_in(dir.path(), example);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("jobs.toml: ok"), "{text}");
    for job in [
        "job \"openers\": opener, daily cap 200",
        "job \"follow-ups\": follow_up",
        "job \"story-reactions\": event \"story_reaction\"",
        "job \"openers-vip\": opener, daily cap 50",
        "segment    tagged none of [\"vip\"]",
        "segment    tagged all of [\"vip\"]",
    ] {
        assert!(text.contains(job), "missing {job:?} in\n{text}");
    }
    assert!(
        text.contains("window     mon,tue,wed,thu,fri 09:00-18:00"),
        "{text}"
    );
    // Five fire times per job; the openers' are in Berlin time (CET or CEST).
    let fires: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("    ") && l.contains(':'))
        .collect();
    assert_eq!(fires.len(), 20, "{text}");
    assert!(
        fires[..5]
            .iter()
            .all(|l| l.ends_with("CET") || l.ends_with("CEST")),
        "{text}"
    );
    assert!(fires[5..10].iter().all(|l| l.ends_with("UTC")), "{text}");
    // Checking touches no database.
    assert!(!dir.path().join("fluidtalk-runner.db").exists());
}

#[test]
fn a_bad_campaign_file_stops_every_command_with_exit_3_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * *\"\n";
    let out = check_in(dir.path(), bad);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: jobs.toml: line 4: [[job]] \"openers\" schedule: \"0 */15 * * *\" has 5 fields; \
         expected 6 (sec min hour day-of-month month day-of-week), e.g. \"0 */15 * * * *\" for every 15 minutes"
    );
    let out = bin()
        .args(["leads", "add", "@a"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        !dir.path().join("fluidtalk-runner.db").exists(),
        "nothing written"
    );
}

#[test]
fn check_without_a_campaign_file_says_so_instead_of_ok() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = bin()
        .arg("check")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no campaign file: jobs.toml does not exist here; give one with --config PATH or FLUIDTALK_RUNNER_CONFIG"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ok"));
}
