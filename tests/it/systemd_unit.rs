//! `contrib/fluidtalk-runner.service` says what the code does: it starts a real subcommand,
//! restarts on failure but not on the exit codes of a mistake a restart cannot fix, waits
//! longer than the daemon's stop grace, keeps its sandbox, and the env file example names
//! the secrets. (`.ci/run` also has `systemd-analyze verify` read it, where installed.)

use clap::{CommandFactory, Parser};
use fluidtalk_runner::cli::{Cli, Command};
use fluidtalk_runner::exit::Exit;
use std::collections::BTreeMap;
use std::time::Duration;

const UNIT: &str = include_str!("../../contrib/fluidtalk-runner.service");
const ENV_EXAMPLE: &str = include_str!("../../contrib/env.example");

/// The unit's settings: section → key → every value given, in order (systemd lets several
/// lines add to one setting).
fn parse(unit: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = None;
    for (n, line) in unit.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_string());
            sections.entry(name.to_string()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not KEY=VALUE: {line}", n + 1));
        let section = current
            .clone()
            .unwrap_or_else(|| panic!("line {}: a setting before any section", n + 1));
        sections
            .entry(section)
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    sections
}

fn service() -> BTreeMap<String, Vec<String>> {
    parse(UNIT).remove("Service").expect("a [Service] section")
}

/// The one value of `key` in [Service].
fn one(service: &BTreeMap<String, Vec<String>>, key: &str) -> String {
    match service.get(key).map(Vec::as_slice) {
        Some([value]) => value.clone(),
        other => panic!("[Service] {key}: expected one value, got {other:?}"),
    }
}

#[test]
fn exec_start_runs_the_daemon_subcommand_of_this_binary() {
    let s = service();
    let exec = one(&s, "ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert!(
        words[0].starts_with('/') && words[0].ends_with("/fluidtalk-runner"),
        "ExecStart names the binary by absolute path: {exec}"
    );
    let daemon = Cli::command()
        .find_subcommand(words.get(1).copied().unwrap_or_default())
        .map(|c| c.get_name().to_string());
    assert_eq!(daemon.as_deref(), Some("daemon"), "{exec}");
    // The whole command line parses, as the daemon command.
    let parsed = Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{exec}: {e}"));
    assert!(matches!(parsed.command, Command::Daemon(_)), "{exec}");
}

#[test]
fn it_restarts_on_failure_but_not_on_the_usage_and_config_exit_codes() {
    let s = service();
    assert_eq!(one(&s, "Restart"), "on-failure");
    let mut prevent: Vec<u8> = one(&s, "RestartPreventExitStatus")
        .split_whitespace()
        .map(|c| c.parse().unwrap_or_else(|e| panic!("{c:?}: {e}")))
        .collect();
    prevent.sort();
    assert_eq!(prevent, [Exit::Usage.code(), Exit::Config.code()]);
    // Bounded: a unit that keeps failing stops being restarted.
    let unit = parse(UNIT);
    assert!(unit["Unit"].contains_key("StartLimitBurst"));
    assert!(unit["Unit"].contains_key("StartLimitIntervalSec"));
}

#[test]
fn systemd_waits_longer_than_the_daemons_grace_before_it_kills() {
    let s = service();
    assert_eq!(one(&s, "KillSignal"), "SIGTERM");
    let wait = humantime::parse_duration(&one(&s, "TimeoutStopSec")).expect("a duration");
    // The daemon waits the API timeout + 10 s for calls in flight (src/cli/daemon.rs).
    let grace = fluidtalk_runner::fluidtalk::DEFAULT_TIMEOUT + Duration::from_secs(10);
    assert!(
        wait >= grace + Duration::from_secs(10),
        "TimeoutStopSec {wait:?} leaves no margin over the grace {grace:?}"
    );
}

#[test]
fn it_runs_as_its_own_user_with_its_state_directory_and_the_env_file() {
    let s = service();
    let user = one(&s, "User");
    assert!(!user.is_empty() && user != "root" && user != "0");
    assert!(!one(&s, "Group").is_empty());
    let state = one(&s, "StateDirectory");
    assert_eq!(one(&s, "WorkingDirectory"), format!("/var/lib/{state}"));
    assert_eq!(one(&s, "EnvironmentFile"), "/etc/fluidtalk-runner/env");
    assert_eq!(
        one(&s, "Environment"),
        format!(
            "{}=/etc/fluidtalk-runner/jobs.toml",
            fluidtalk_runner::config::CONFIG_ENV
        )
    );
    assert_eq!(parse(UNIT)["Install"]["WantedBy"], ["multi-user.target"]);
}

#[test]
fn the_sandbox_settings_are_all_there() {
    let s = service();
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(&s, key), value, "[Service] {key}");
    }
    assert_eq!(
        s.get("SystemCallFilter").map(Vec::as_slice),
        Some(
            [
                "@system-service".to_string(),
                "~@privileged @resources".to_string()
            ]
            .as_slice()
        )
    );
}

#[test]
fn the_env_example_names_each_secret_and_holds_no_real_one() {
    let mut keys = Vec::new();
    for line in ENV_EXAMPLE.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not VAR=value: {line}"));
        assert!(
            value.contains("replace"),
            "{key} holds a placeholder: {value}"
        );
        keys.push(key);
    }
    assert_eq!(
        keys,
        [
            fluidtalk_runner::fluidtalk::API_KEY_VAR,
            "FLUIDTALK_RUNNER_TOKEN",
            "FLUIDTALK_WEBHOOK_SECRET"
        ]
    );
}

/// `systemctl reload` sends SIGHUP to the daemon's process, which reads the campaign file
/// again (`tests/it/daemon.rs::sighup_*`), rather than running a second daemon or having
/// systemd refuse the reload.
#[test]
fn reload_sends_sighup_to_the_main_process() {
    let s = service();
    let reload = one(&s, "ExecReload");
    let words: Vec<&str> = reload.split_whitespace().collect();
    assert_eq!(words, ["/bin/kill", "-HUP", "$MAINPID"], "{reload}");
    // SIGHUP is caught, not the default action that would end the daemon (and be a
    // failure, restarted): the daemon's type is one systemd tracks the main PID of.
    assert_eq!(one(&s, "Type"), "exec");
}
