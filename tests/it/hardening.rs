//! Issue 9's defects 4-7 through the command line, as a hostile user found them: settings
//! that panicked or that `check` passed, leads stuck without a word, a lead file that made
//! the runner read (and upload) any file or hang on a FIFO, and the smaller ones. Each test
//! failed on main before issue 9 (`FLUIDTALK_RUNNER_BIN=old/fluidtalk-runner cargo test
//! --test it hardening::` runs them against an older build).

use crate::common;

use common::campaign::{Campaign, text};
use std::time::Duration;

const OPENERS: &str =
    "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\n";

async fn campaign(fluidtalk: &str, rest: &str) -> Campaign {
    Campaign::on_sqlite(&[], fluidtalk, rest).await
}

/// Runs `check` on a campaign file with `extra` appended; returns (exit code, stdout + stderr).
async fn check(extra: &str) -> (Option<i32>, String) {
    let c = campaign("", &format!("{extra}\n{OPENERS}")).await;
    let out = c.output(&["check"], &[]).await;
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// Defect 4 and 7: settings out of any sensible range were accepted by `check` (and some
/// panicked in every call, tick or dry run). Each is now refused with its line and key.
#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_every_setting_out_of_range_naming_the_line_and_key() {
    let cases = [
        (
            "[backoff]\nout_of_tokens = \"300000years\"",
            "line 6: [backoff] out_of_tokens: \"300000years\" is out of range",
        ),
        (
            "[backoff]\nretry_base = \"100000years\"",
            "[backoff] retry_base: \"100000years\" is out of range",
        ),
        (
            "[limits]\nper_second = 1e10",
            "[limits] per_second: 10000000000 is out of range",
        ),
        (
            "[database]\nurl = \"mysql://root@db/leads\"",
            "[database] url: \"mysql://root@db/leads\" is not a database this runner can use",
        ),
        (
            "[database]\nurl = \"sqlite::memory:\"",
            "in-memory database",
        ),
    ];
    for (extra, want) in cases {
        let (code, out) = check(extra).await;
        assert_eq!(code, Some(3), "{extra}: {out}");
        assert!(out.contains(want), "{extra}: {out}");
    }
    // In [fluidtalk], which the campaign helper writes first.
    for (fluidtalk, want) in [
        (
            "timeout = \"1ns\"",
            "[fluidtalk] timeout: \"1ns\" is out of range; expected from 1s",
        ),
        (
            "timeout = \"900000years\"",
            "[fluidtalk] timeout: \"900000years\" is out of range",
        ),
    ] {
        let c = campaign(fluidtalk, OPENERS).await;
        let out = c.output(&["check"], &[]).await;
        assert_eq!(out.status.code(), Some(3), "{fluidtalk}");
        assert!(text(&out.stderr).contains(want), "{}", text(&out.stderr));
    }
    let c = campaign("", OPENERS).await;
    let ftp = c.dir.path().join("jobs.toml");
    let body = std::fs::read_to_string(&ftp).expect("read");
    std::fs::write(&ftp, body.replacen("http://", "ftp://", 1)).expect("write");
    let out = c.output(&["check"], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("is not an http(s) URL"),
        "{}",
        text(&out.stderr)
    );
}

/// Defect 7: a schedule that never fires (February 30) passed `check` without a word.
#[tokio::test(flavor = "multi_thread")]
async fn check_warns_about_a_schedule_that_never_fires() {
    let c = campaign("", &OPENERS.replace("0 0 * * * *", "0 0 9 30 2 *")).await;
    let out = c.ok(&["check"], &[]).await;
    assert!(out.contains("never fires"), "{out}");
}

/// Defect 4: a huge pause length used to panic in the call task on the first 402 (the
/// pause never stored, the leads sent to review). The largest allowed one works.
#[tokio::test(flavor = "multi_thread")]
async fn the_longest_allowed_pause_is_stored_on_a_402_without_a_panic() {
    let c = Campaign::on_sqlite(
        &["--tokens", "0"],
        "",
        &format!(
            "[backoff]\nout_of_tokens = \"30days\"\nout_of_tokens_max = \"30days\"\n{OPENERS}"
        ),
    )
    .await;
    c.ok(&["leads", "add", "@a"], &[]).await;
    let out = c.output(&["run", "--json"], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    let status = c.ok(&["status", "--json"], &[]).await;
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(v["pauses"][0]["scope"], "new_conversations", "{v}");
    assert_eq!(
        v["leads"]["new"], 1,
        "the lead stays due, not sent to review: {v}"
    );
}

/// Defect 5: an event of a type no job sends (a typo) waited forever and held its lead
/// back from openers, silently. It is refused, naming the types jobs send.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_of_a_type_no_job_sends_is_refused() {
    let c = campaign(
        "",
        &format!("{OPENERS}[[job]]\nname = \"reactions\"\nkind = \"event\"\nevent_type = \"story_reaction\"\nschedule = \"0 * * * * *\"\n"),
    )
    .await;
    let out = c
        .output(&["leads", "event", "@cat", "story_reactoin"], &[])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("no job sends \"story_reactoin\" events") && err.contains("story_reaction"),
        "{err}"
    );
    c.ok(&["leads", "event", "@cat", "story_reaction"], &[])
        .await;
}

/// Defect 5: a reply time in the future stalled the lead until then.
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_time_in_the_future_is_refused() {
    let c = campaign("", OPENERS).await;
    c.ok(&["leads", "add", "@q"], &[]).await;
    let out = c
        .output(
            &["leads", "replied", "@q", "--at", "2062-01-01T00:00:00Z"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is in the future"),
        "{}",
        text(&out.stderr)
    );
}

/// Defect 5: nothing lifted a 401 pause after the key was fixed but waiting an hour.
#[tokio::test(flavor = "multi_thread")]
async fn a_person_lifts_a_401_pause_once_the_key_is_fixed() {
    let c = Campaign::on_sqlite(&["--api-key", "ft_sk_the_right_one"], "", OPENERS).await;
    c.ok(&["leads", "add", "@a"], &[]).await;
    let out = c.output(&["run"], &[]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let status = c.ok(&["status"], &[]).await;
    assert!(status.contains("pause clear"), "status says how: {status}");
    let fixed = [("FLUIDTALK_API_KEY", "ft_sk_the_right_one")];
    let out = c.output(&["run"], &fixed).await;
    assert_eq!(out.status.code(), Some(5), "still paused for the hour");
    let lifted = c.ok(&["pause", "clear"], &[]).await;
    assert!(lifted.contains("lifted all"), "{lifted}");
    c.ok(&["run"], &fixed).await;
    assert_eq!(c.states().await.get("contacted"), Some(&1));
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_string_lossy().as_bytes()).expect("path");
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Imports `rows` (target,profile_image), runs the openers with a bound on time, and
/// returns the targets the simulator was called for.
async fn run_with_images(c: &Campaign, rows: &str) -> Vec<String> {
    std::fs::write(
        c.dir.path().join("leads.csv"),
        format!("target,profile_image\n{rows}"),
    )
    .expect("write leads");
    c.ok(&["leads", "import", "leads.csv"], &[]).await;
    let run = c.command(&["run"]).output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run does not hang on a FIFO")
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    c.sim_log().await.into_iter().map(|e| e.target).collect()
}

/// Defect 6: a lead file's `profile_image` made the runner read any local file and upload
/// it (`/home/me/secret.txt`), or hang on a FIFO. Without `image_dir`, no local file is
/// read at all: the lead fails, nothing is sent.
#[tokio::test(flavor = "multi_thread")]
async fn without_an_image_folder_a_lead_file_cannot_make_the_runner_read_a_file() {
    let outside = tempfile::tempdir().expect("dir");
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "the database password").expect("write");
    let fifo = outside.path().join("pipe.jpg");
    mkfifo(&fifo);
    let c = Campaign::on_sqlite(&[], "timeout = \"3s\"", OPENERS).await;
    let sent = run_with_images(
        &c,
        &format!(
            "@abs,{}\n@fifo,{}\n@url,https://cdn.example/u.jpg\n",
            secret.display(),
            fifo.display()
        ),
    )
    .await;
    assert_eq!(sent, ["@url"], "only the lead with an image URL was called");
    let leads = c.leads().await;
    assert_eq!(
        (leads["@abs"].state.as_str(), leads["@fifo"].state.as_str()),
        ("failed", "failed")
    );
    let shown = c.ok(&["leads", "show", "@abs"], &[]).await;
    assert!(shown.contains("image_dir"), "says why: {shown}");
    assert!(!shown.contains("the database password"));
}

/// With `image_dir`, only regular files inside it are read: not a path out of it, a
/// symlink out of it, or a FIFO in it.
#[tokio::test(flavor = "multi_thread")]
async fn inside_the_image_folder_only_regular_files_are_read() {
    let outside = tempfile::tempdir().expect("dir");
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "the database password").expect("write");
    let c = Campaign::on_sqlite(&[], "timeout = \"3s\"\nimage_dir = \"images\"", OPENERS).await;
    let images = c.dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    std::fs::write(images.join("ok.jpg"), b"jpeg").expect("write");
    std::os::unix::fs::symlink(&secret, images.join("link.jpg")).expect("symlink");
    mkfifo(&images.join("pipe.jpg"));
    let sent = run_with_images(
        &c,
        &format!(
            "@abs,{}\n@up,../../secret.txt\n@link,link.jpg\n@fifo,pipe.jpg\n@fine,ok.jpg\n",
            secret.display()
        ),
    )
    .await;
    assert_eq!(sent, ["@fine"]);
    let leads = c.leads().await;
    for t in ["@abs", "@up", "@link", "@fifo"] {
        assert_eq!(leads[t].state, "failed", "{t}: {:?}", leads[t]);
    }
}

/// Defect 7: writing to a closed stdout (`leads list | head -1`) panicked.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    let c = campaign("", OPENERS).await;
    c.import((0..3000).map(|i| format!("@s{i:04}"))).await;
    let mut child = common::bin()
        .args(["leads", "list", "--limit", "0"])
        .current_dir(c.dir.path())
        .env("DATABASE_URL", &c.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("one line");
    // The reader is gone (dropped with its BufReader), like `head -1`.
    let out = child.wait_with_output().expect("wait");
    assert!(first.starts_with("TARGET"), "{first}");
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Defect 7: `sqlite::memory:` reported success and kept nothing.
#[tokio::test(flavor = "multi_thread")]
async fn an_in_memory_database_is_refused() {
    let c = campaign("", OPENERS).await;
    let mut cmd = c.command(&["leads", "add", "@a"]);
    cmd.env("DATABASE_URL", "sqlite::memory:");
    let out = cmd.output().await.expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("in-memory database"),
        "{}",
        text(&out.stderr)
    );
}

/// Defect 7: a JSONL line with two `target` keys silently dropped one; a target with
/// bidi or zero-width characters was accepted. Each is a row error naming its line.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_keys_and_invisible_characters_are_row_errors_with_their_line() {
    let c = campaign("", OPENERS).await;
    std::fs::write(
        c.dir.path().join("leads.jsonl"),
        "{\"target\": \"@ok\"}\n\
         {\"target\": \"@a\", \"target\": \"@b\"}\n\
         {\"target\": \"@adm\u{200B}in\"}\n\
         {\"target\": \"@x\u{202E}gpj\"}\n",
    )
    .expect("write");
    let out = c
        .output(&["leads", "import", "leads.jsonl", "--json"], &[])
        .await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    assert_eq!(report["imported"], 1, "{report}");
    let rejections = report["rejections"].as_array().expect("rejections");
    let lines: Vec<i64> = rejections
        .iter()
        .filter_map(|r| r["line"].as_i64())
        .collect();
    assert_eq!(lines, [2, 3, 4], "{report}");
    assert!(
        rejections[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("\"target\" appears twice")
    );
    assert!(
        rejections[1]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("U+200B")
    );
    assert!(
        rejections[2]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("U+202E")
    );
}
