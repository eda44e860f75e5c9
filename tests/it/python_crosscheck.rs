//! The Rust client against the official Python client 1.0.3: the same calls produce the
//! same requests, and the official client works against `fluidtalk-runner sim`.
//!
//! The Python side runs from a virtual environment: `FLUIDTALK_PYTHON` names its
//! interpreter (`.ci/run` sets it); without it the test makes one under `target/` from
//! `tests/py/requirements.txt`. Either way the check runs: it never skips.

use crate::common;

use common::*;
use fluidtalk_runner::fluidtalk::{
    ApiKey, ChatRequest, Client, ClientConfig, EventRequest, FollowUpRequest, ImageFile,
    OpenerRequest,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use wiremock::ResponseTemplate;

const PY_KEY: &str = "ft_sk_crosscheck_0b7e";

fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Ok(p) = std::env::var("FLUIDTALK_PYTHON") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = root.join("target/py-crosscheck");
        let py = venv.join("bin/python");
        if !py.exists() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 is needed for the cross-check")
                .success();
            assert!(ok, "python3 -m venv failed");
        }
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(root.join("tests/py/requirements.txt"))
            .status()
            .expect("pip runs")
            .success();
        assert!(ok, "installing the official client failed");
        py
    })
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/crosscheck.py")
}

async fn rust_calls(base_url: &str, image: &Path) {
    let mut config = ClientConfig::new(ApiKey::new(PY_KEY).expect("key"));
    config.base_url = format!("{base_url}/");
    config.own_username = Some("@default".into());
    let c = Client::new(config).expect("client");
    c.ai_opener(&OpenerRequest {
        target: "@lead one".into(),
        own_username: Some("@me".into()),
        image_file: Some(ImageFile::Path(image.to_path_buf())),
        ..Default::default()
    })
    .await
    .expect("opener");
    c.ai_opener(&OpenerRequest {
        target: "@lead two".into(),
        image_url: Some("https://cdn.example/p.jpg".into()),
        ..Default::default()
    })
    .await
    .expect("opener");
    c.follow_up(&FollowUpRequest {
        target: "@lead one".into(),
        own_username: None,
    })
    .await
    .expect("follow-up");
    let context = json!({"reaction": "🔥", "n": 1.5, "big": 1e16,
                         "nested": {"a": [1, null, true]}, "q": "a\"b/ü"});
    c.event_trigger(&EventRequest {
        target: "@lead".into(),
        event_type: "story_reaction".into(),
        context: context.as_object().cloned(),
        image_url: Some("https://cdn.example/s.jpg".into()),
        ..Default::default()
    })
    .await
    .expect("event");
    c.inbound_chat(&ChatRequest {
        target: "@lead".into(),
        message: "hey, saw your post! ünïcode & more *~".into(),
        own_username: Some(String::new()),
        ..Default::default()
    })
    .await
    .expect("chat");
    c.upload_image(&ImageFile::Path(image.to_path_buf()))
        .await
        .expect("upload");
    c.upload_image(&ImageFile::Bytes {
        filename: "raw.png".into(),
        data: b"\x89PNG raw".to_vec(),
    })
    .await
    .expect("upload bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_client_sends_what_the_official_client_sends() {
    let python = python();
    let dir = tempfile::tempdir().expect("temp dir");
    let image = dir.path().join("profile.jpg");
    std::fs::write(&image, b"\xff\xd8\xff jpeg bytes").expect("write image");
    let answer = json!({"session_id": "s", "message": "m", "url": "https://u", "reply": "r"});

    let py_server = recorder(ResponseTemplate::new(200).set_body_json(answer.clone())).await;
    let out = Command::new(python)
        .arg(script())
        .args(["calls", &py_server.uri()])
        .arg(&image)
        .output()
        .expect("run the official client");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rust_server = recorder(ResponseTemplate::new(200).set_body_json(answer)).await;
    rust_calls(&rust_server.uri(), &image).await;

    let py_seen = seen(&py_server).await;
    let rust_seen = seen(&rust_server).await;
    assert_eq!(py_seen.len(), 7, "the official client made its seven calls");
    assert_eq!(rust_seen.len(), py_seen.len());
    for (i, (py, rs)) in py_seen.iter().zip(&rust_seen).enumerate() {
        assert_eq!(rs.method, py.method, "call {i}");
        assert_eq!(rs.path, py.path, "call {i}");
        assert_eq!(rs.api_key.as_deref(), Some(PY_KEY), "call {i}");
        assert_eq!(rs.api_key, py.api_key, "call {i}");
        assert_eq!(rs.content_type, py.content_type, "call {i}");
        assert_eq!(rs.fields(), py.fields(), "call {i}: fields");
        // Urlencoded bodies match byte for byte.
        assert_eq!(rs.raw_form, py.raw_form, "call {i}: raw body");
        let names = |s: &Seen| s.parts.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(rs), names(py), "call {i}: part order");
        let files = |s: &Seen| {
            s.files()
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.filename.clone(),
                        p.content_type.clone(),
                        p.data.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(files(rs), files(py), "call {i}: file parts");
    }
    // The cases the comparison is meant to cover really occurred.
    assert_eq!(py_seen[0].content_type, "multipart/form-data");
    assert_eq!(
        py_seen[0].files()[0].filename.as_deref(),
        Some("profile.jpg")
    );
    assert!(
        py_seen[3]
            .field("entry_context")
            .is_some_and(|c| c.contains("\\ud83d\\udd25"))
    );
    assert_eq!(
        py_seen[4].field("own_username").as_deref(),
        Some("@default")
    );
}

#[test]
fn the_official_client_works_against_the_simulator() {
    let python = python();
    let (_sim, url) =
        spawn_sim_process(&["--tokens", "1", "--seal-after", "2", "--ignore", "@dup"]);
    let out = Command::new(python)
        .arg(script())
        .args(["e2e", &url])
        .output()
        .expect("run the official client");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["version"], "1.0.3");
    assert!(
        got["opener"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(got["opener"]["continued"], false);
    assert_eq!(got["opener_again"]["continued"], true);
    assert_eq!(got["opener_again"]["message"], "");
    assert_eq!(
        got["opener_again"]["continued_reason"],
        "conversation_already_active"
    );
    assert!(got["follow_up"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(got["event"]["continued"], true);
    assert_eq!(got["chat_replies"].as_array().map(Vec::len), Some(2));
    assert!(
        got["upload_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/x.jpg"))
    );
    assert_eq!(got["ignored"], true);
    assert_eq!(got["no_conversation"]["status"], 404);
    // The one token went to @py (the event and chat continued it), so @broke gets 402.
    assert_eq!(got["out_of_tokens"]["status"], 402);
    assert_eq!(
        got["out_of_tokens"]["detail"]["detail"],
        "insufficient_tokens"
    );
    // Follow-up 1 came before; follow-up 2 seals; follow-up 3 is refused.
    assert_eq!(got["sealed"]["status"], 400);
    assert_eq!(got["sealed"]["detail"]["detail"], "This session is DONE");
}
