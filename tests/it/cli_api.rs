//! `fluidtalk-runner api ...` against `fluidtalk-runner sim`, as a user runs them.

use crate::common;

use common::*;
use serde_json::Value;

fn api(url: &str, args: &[&str]) -> std::process::Output {
    bin()
        .arg("api")
        .args(args)
        .env("FLUIDTALK_API_KEY", TEST_KEY)
        .env("FLUIDTALK_BASE_URL", url)
        .env_remove("FLUIDTALK_LOG")
        .output()
        .expect("run the cli")
}

fn json_out(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn all_five_operations_work_against_the_simulator() {
    let (_sim, url) = spawn_sim_process(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let img = dir.path().join("face.jpg");
    std::fs::write(&img, b"jpeg").expect("write image");
    let img = img.to_str().expect("utf-8 path");

    let out = api(
        &url,
        &["opener", "@a", "--own-username", "@me", "--image", img],
    );
    assert!(out.status.success(), "{out:?}");
    let opener = json_out(&out);
    assert!(opener["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(opener["continued"], false);

    let out = api(&url, &["follow-up", "@a"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        json_out(&out)["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );

    let out = api(
        &url,
        &[
            "event",
            "@b",
            "story_reaction",
            "--context",
            r#"{"reaction":"🔥"}"#,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_out(&out)["continued"], false);

    let out = api(
        &url,
        &["chat", "@a", "hey there", "--image-url", "https://x/y.jpg"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_out(&out)["replies"].as_array().map(Vec::len), Some(2));

    let out = api(&url, &["upload", img]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        json_out(&out)["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/face.jpg"))
    );
}

#[test]
fn an_api_error_prints_status_and_detail_and_exits_4() {
    let (_sim, url) = spawn_sim_process(&["--tokens", "0"]);
    let out = api(&url, &["opener", "@a"]);
    assert_eq!(out.status.code(), Some(4));
    let err = json_out(&out);
    assert_eq!(err["error"]["status"], 402);
    assert_eq!(err["error"]["kind"], "out_of_tokens");
    assert_eq!(err["error"]["detail"], "insufficient_tokens");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), "error: FluidTalk 402: insufficient_tokens");

    let out = api(&url, &["follow-up", "@nobody"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(json_out(&out)["error"]["status"], 404);
}

#[test]
fn a_refused_key_exits_5() {
    let (_sim, url) = spawn_sim_process(&["--api-key", "ft_sk_only_this"]);
    let out = api(&url, &["opener", "@a"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(json_out(&out)["error"]["status"], 401);
}

#[test]
fn an_unreachable_api_exits_4_with_a_network_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let out = api(&url, &["follow-up", "@a"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(json_out(&out)["error"]["kind"], "connect");
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not connect to FluidTalk"));
}

#[test]
fn a_missing_key_is_a_one_line_error_not_a_panic() {
    for key in [None, Some("")] {
        let mut cmd = bin();
        cmd.args(["api", "opener", "@a"])
            .env("FLUIDTALK_BASE_URL", "http://127.0.0.1:9");
        match key {
            None => cmd.env_remove("FLUIDTALK_API_KEY"),
            Some(k) => cmd.env("FLUIDTALK_API_KEY", k),
        };
        let out = cmd.output().expect("run the cli");
        assert_eq!(out.status.code(), Some(3));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: FLUIDTALK_API_KEY"), "{stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn a_bad_context_or_missing_image_is_an_input_error_exit_3() {
    let (_sim, url) = spawn_sim_process(&[]);
    let out = api(&url, &["event", "@a", "x", "--context", "{not json"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--context is not valid JSON"));
    let out = api(&url, &["opener", "@a", "--image", "/no/such/file.jpg"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.jpg"));
}

#[test]
fn the_simulator_prints_its_bound_address_first_and_reports_a_taken_port() {
    let (_sim, url) = spawn_sim_process(&[]);
    let addr = url.trim_start_matches("http://");
    let out = bin().args(["sim", "--listen", addr]).output().expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains(addr));
}

#[test]
fn the_demo_runs_a_whole_campaign_without_a_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = bin()
        .arg("demo")
        .current_dir(dir.path())
        .env_remove("FLUIDTALK_API_KEY")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run the demo");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "imported 7 sample leads",
        "openers: sent 5, ignored 1, paused (402) 1",
        "pause: new_conversations for 14m",
        "follow-ups: sent 5",
        "follow-ups: sealed",
        "story-reactions: paused (402) 1",
        "(strike 2)",
        "leads: new 1, done 5, ignored 1",
        "outbox: 10 message(s)",
        "daemon --http 127.0.0.1:8080; then open http://127.0.0.1:8080/",
        // The way to a campaign of one's own, from the binary alone.
        "fluidtalk-runner init my-campaign",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "no log noise"
    );
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "nothing left in the working directory"
    );
}

#[test]
fn a_bad_base_url_or_zero_timeout_is_a_setting_error_and_nothing_is_sent() {
    let out = api("notaurl", &["opener", "@a"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--base-url (or FLUIDTALK_BASE_URL): \"notaurl\" is not a URL")
    );
    let out = api("ftp://example.com", &["opener", "@a"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an http(s) URL"));
    for timeout in ["0s", "1ns", "300000years"] {
        let out = api(
            "http://127.0.0.1:9",
            &["--timeout", timeout, "opener", "@a"],
        );
        assert_eq!(out.status.code(), Some(2), "{timeout}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("out of range; expected from 1s to 10m"),
            "{timeout}: {out:?}"
        );
    }
}

#[test]
fn api_calls_go_to_the_campaign_files_base_url() {
    let (_sim, url) = spawn_sim_process(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("jobs.toml"),
        format!("[fluidtalk]\nbase_url = \"{url}\"\nown_username = \"@from_config\"\n"),
    )
    .expect("write");
    let out = bin()
        .args(["api", "opener", "@cfg"])
        .current_dir(dir.path())
        .env("FLUIDTALK_API_KEY", TEST_KEY)
        .env_remove("FLUIDTALK_BASE_URL")
        .env_remove("FLUIDTALK_RUNNER_CONFIG")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        json_out(&out)["message"]
            .as_str()
            .is_some_and(|m| m.contains("@cfg"))
    );
}

#[test]
fn the_simulator_listens_on_a_host_name() {
    let mut child = bin()
        .args(["sim", "--listen", "localhost:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut first,
    )
    .expect("read");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.starts_with("http://127.0.0.1:") || first.starts_with("http://[::1]:"),
        "{first}"
    );
}
