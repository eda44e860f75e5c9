//! `fluidtalk-runner init`: a first campaign folder the other commands accept as it is, and
//! never a file written over.

use crate::common::bin;

#[test]
fn init_writes_a_campaign_that_checks_and_prints_the_next_commands() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("new").join("campaign");
    let out = bin()
        .args(["init", "--timezone", "Asia/Tokyo"])
        .arg(&dir)
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .output()
        .expect("run init");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for next in [
        "fluidtalk-runner leads import leads.csv",
        "fluidtalk-runner run --dry-run",
        "fluidtalk-runner run ",
    ] {
        assert!(stdout.contains(next), "{next:?} not in:\n{stdout}");
    }
    assert!(
        stdout.contains(&format!("cd {}", dir.display())),
        "{stdout}"
    );
    let jobs = std::fs::read_to_string(dir.join("jobs.toml")).expect("jobs.toml");
    assert!(jobs.contains("timezone = \"Asia/Tokyo\""), "{jobs}");
    assert!(!jobs.contains("{zone}"));
    let env = std::fs::read_to_string(dir.join(".env.example")).expect(".env.example");
    assert!(env.contains("FLUIDTALK_API_KEY=") && env.contains("FLUIDTALK_BASE_URL="));

    // The file checks as the runner reads it, and the lead file imports as it is.
    let check = bin()
        .arg("--config")
        .arg(dir.join("jobs.toml"))
        .arg("check")
        .current_dir(&dir)
        .output()
        .expect("run check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let import = bin()
        .args(["leads", "import", "leads.csv"])
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .output()
        .expect("run import");
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(String::from_utf8_lossy(&import.stdout).contains("imported 5"));
    assert!(
        dir.join("fluidtalk-runner.db").is_file(),
        "the database is in the folder"
    );
}

#[test]
fn init_over_an_existing_campaign_writes_nothing_and_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("jobs.toml"), "# mine\n").expect("write");
    let out = bin()
        .arg("init")
        .current_dir(dir.path())
        .output()
        .expect("run init");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("jobs.toml exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("jobs.toml")).expect("read"),
        "# mine\n"
    );
    assert!(!dir.path().join("leads.csv").exists());
    assert!(!dir.path().join(".env.example").exists());
}

#[test]
fn init_refuses_an_unknown_time_zone_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bin()
        .args(["init", "--timezone", "Mars/Olympus"])
        .arg(dir.path())
        .output()
        .expect("run init");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Mars/Olympus") && stderr.contains("--timezone"),
        "{stderr}"
    );
    assert!(!dir.path().join("jobs.toml").exists());
}
