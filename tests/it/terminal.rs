//! Progress on a terminal, quiet when piped: `run`, `leads import` and `forecast` run by
//! the real binary under a pseudo-terminal (`script` from util-linux) show their counts on
//! it; piped, or with `-q`, nothing but their results (no `\r`, no escape sequence).

use crate::common;

use common::TEST_KEY;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A campaign in a temporary folder: its jobs.toml against a simulator answering each
/// call after `latency`, one call at a time, and `leads` new leads imported.
struct Campaign {
    dir: tempfile::TempDir,
    _sim: common::KillOnDrop,
}

fn campaign(latency: &str, leads: usize) -> Campaign {
    let (sim, url) = common::spawn_sim_process(&["--latency", latency]);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobs.toml"),
        format!(
            "[fluidtalk]\nbase_url = \"{url}\"\n[limits]\nconcurrency = 1\n[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\n"
        ),
    )
    .expect("write jobs.toml");
    let c = Campaign { dir, _sim: sim };
    if leads > 0 {
        write_leads(c.dir.path(), "l.csv", leads);
        let out = c.piped(&["leads", "import", "l.csv"]);
        assert!(
            out.status.success(),
            "{}",
            common::campaign::text(&out.stderr)
        );
    }
    c
}

fn write_leads(dir: &Path, name: &str, n: usize) {
    let rows: String = (0..n).map(|i| format!("@{name}{i}\n")).collect();
    std::fs::write(dir.join(name), format!("target\n{rows}")).expect("write leads");
}

impl Campaign {
    fn env(&self, c: &mut Command) {
        c.current_dir(self.dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("FLUIDTALK_RUNNER_CONFIG")
            .env_remove("FLUIDTALK_LOG")
            .env_remove("FLUIDTALK_LOG_FORMAT")
            .env_remove("FLUIDTALK_CLOCK_OFFSET")
            .env("FLUIDTALK_API_KEY", TEST_KEY)
            .stdin(Stdio::null());
    }

    /// The command with stdout and stderr piped.
    fn piped(&self, args: &[&str]) -> std::process::Output {
        let mut c = common::bin();
        c.args(args);
        self.env(&mut c);
        c.output().expect("run the binary")
    }

    /// The command on a pseudo-terminal (stdout and stderr both): what the terminal got.
    fn on_terminal(&self, args: &[&str]) -> String {
        let bin = common::bin().get_program().to_owned();
        let quoted: Vec<String> = std::iter::once(bin.to_string_lossy().into_owned())
            .chain(args.iter().map(|a| (*a).to_string()))
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let mut c = Command::new("script");
        // -q: no "Script started" lines; -e: the command's exit status; the typescript
        // goes nowhere, the terminal's output to script's stdout.
        c.args(["-q", "-e", "-c", &quoted.join(" "), "/dev/null"]);
        self.env(&mut c);
        let child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start script (util-linux)");
        let out = wait_bounded(child, Duration::from_secs(60));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?} on a terminal failed: {text}"
        );
        text
    }
}

fn wait_bounded(child: std::process::Child, limit: Duration) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let id = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            // SAFETY: killing our own child, not yet reaped.
            unsafe { libc::kill(id as i32, libc::SIGKILL) };
            panic!("still running after {limit:?}");
        }
    }
}

/// No carriage return and no escape sequence: nothing a progress bar draws.
fn assert_plain(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.contains(&b'\r') && !bytes.contains(&0x1b),
        "{what} has terminal drawing in it: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[test]
fn run_on_a_terminal_shows_calls_recorded_of_those_planned_with_rate_and_eta() {
    // Five calls of 300 ms each, one at a time: the bar is drawn several times.
    let c = campaign("300ms", 5);
    let shown = c.on_terminal(&["run"]);
    assert!(
        shown.contains("openers: ") && shown.contains("/5 calls recorded"),
        "{shown:?}"
    );
    assert!(shown.contains("/s") && shown.contains("ETA"), "{shown:?}");
    // The result is still printed, after the bar is cleared.
    assert!(shown.contains("openers: sent 5"), "{shown:?}");
}

#[test]
fn leads_import_on_a_terminal_shows_rows_read_their_rate_and_eta() {
    let c = campaign("1ms", 0);
    write_leads(c.dir.path(), "many.csv", 3000);
    let shown = c.on_terminal(&["leads", "import", "many.csv"]);
    assert!(
        shown.contains(" rows read, ") && shown.contains(" rows/s, ETA "),
        "{shown:?}"
    );
    assert!(shown.contains("imported 3000"), "{shown:?}");
}

#[test]
fn forecast_on_a_terminal_shows_days_done_of_days_asked() {
    let c = campaign("1ms", 3);
    // From now: a forecast refuses a --from in the past.
    let shown = c.on_terminal(&["forecast", "--days", "9"]);
    assert!(
        shown.contains("/9 days, ") && shown.contains("ETA"),
        "{shown:?}"
    );
}

#[test]
fn quiet_on_a_terminal_shows_no_progress() {
    let c = campaign("100ms", 3);
    write_leads(c.dir.path(), "more.csv", 2000);
    let run = c.on_terminal(&["-q", "run"]);
    let import = c.on_terminal(&["-q", "leads", "import", "more.csv"]);
    let forecast = c.on_terminal(&["-q", "forecast", "--days", "3"]);
    for (what, shown) in [("run", &run), ("import", &import), ("forecast", &forecast)] {
        // The terminal turns each "\n" into "\r\n": only those carriage returns are allowed.
        let drawn = shown.replace("\r\n", "\n");
        assert_plain(what, drawn.as_bytes());
    }
    assert!(run.contains("openers: sent 3"), "{run:?}");
    assert!(import.contains("imported 2000"), "{import:?}");
}

#[test]
fn piped_output_has_no_progress_on_stdout_or_stderr() {
    let c = campaign("100ms", 3);
    write_leads(c.dir.path(), "more.csv", 2000);
    for args in [
        &["run"][..],
        &["leads", "import", "more.csv"],
        &["forecast", "--days", "3"],
        &["forecast", "--days", "3", "--json"],
    ] {
        let out = c.piped(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            common::campaign::text(&out.stderr)
        );
        assert_plain(&format!("{args:?}'s stdout"), &out.stdout);
        assert_plain(&format!("{args:?}'s stderr"), &out.stderr);
        assert!(!out.stdout.is_empty(), "{args:?} printed its result");
    }
}
