//! Each operation sends exactly the request the official client sends, and parses the
//! result with the documented defaults.

use crate::common;

use common::*;
use fluidtalk_runner::fluidtalk::{
    ChatRequest, EventRequest, FollowUpRequest, ImageFile, OpenerRequest,
};
use serde_json::json;
use std::time::Duration;
use wiremock::ResponseTemplate;

fn ok(body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn opener_without_image_is_urlencoded_with_the_outreach_action() {
    let server = recorder(ok(json!({
        "session_id": "s-1", "message": "hi there", "ignored": false, "extra": 1
    })))
    .await;
    let result = client(&server.uri())
        .ai_opener(&OpenerRequest {
            target: "@lead".into(),
            own_username: Some("@me".into()),
            ..Default::default()
        })
        .await
        .expect("opener succeeds");
    assert_eq!(result.session_id.as_deref(), Some("s-1"));
    assert_eq!(result.message, "hi there");
    assert!(!result.continued && !result.ignored);

    let seen = seen(&server).await;
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/v1/bot/action");
    assert_eq!(r.api_key.as_deref(), Some(TEST_KEY));
    assert_eq!(r.content_type, "application/x-www-form-urlencoded");
    assert_eq!(
        r.raw_form.as_deref(),
        Some("target=%40lead&action=OUTREACH&own_username=%40me")
    );
}

#[tokio::test]
async fn opener_with_a_local_image_is_multipart_with_the_file_part_last() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("profile shot.jpg");
    std::fs::write(&path, b"\xff\xd8jpegbytes").expect("write image");
    let server = recorder(ok(json!({"session_id": "s-2", "message": "hey"}))).await;
    client(&server.uri())
        .ai_opener(&OpenerRequest {
            target: "@lead".into(),
            image_url: Some("https://cdn.example/p.jpg".into()),
            image_file: Some(ImageFile::Path(path)),
            ..Default::default()
        })
        .await
        .expect("opener succeeds");
    let r = &seen(&server).await[0];
    assert_eq!(r.path, "/api/v1/bot/action");
    assert_eq!(r.content_type, "multipart/form-data");
    assert_eq!(
        r.fields(),
        fields(&[
            ("target", "@lead"),
            ("action", "OUTREACH"),
            ("image_url", "https://cdn.example/p.jpg")
        ])
    );
    let files = r.files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].name, "file");
    assert_eq!(files[0].filename.as_deref(), Some("profile shot.jpg"));
    assert_eq!(files[0].data, b"\xff\xd8jpegbytes");
    assert_eq!(r.parts.last().map(|p| p.name.as_str()), Some("file"));
}

#[tokio::test]
async fn event_trigger_sends_entry_type_and_context_as_python_json_text() {
    let server = recorder(ok(json!({"session_id": "s-3", "message": "thanks!",
        "continued": true, "continued_reason": "conversation_already_active"})))
    .await;
    let context = json!({"reaction": "🔥", "count": 2, "ratio": 0.5});
    let result = client_with(&server.uri(), Some("@default"), Duration::from_secs(5))
        .event_trigger(&EventRequest {
            target: "@lead".into(),
            event_type: "story_reaction".into(),
            context: context.as_object().cloned(),
            ..Default::default()
        })
        .await
        .expect("event succeeds");
    assert!(result.continued);
    assert_eq!(
        result.continued_reason.as_deref(),
        Some("conversation_already_active")
    );
    let r = &seen(&server).await[0];
    assert_eq!(r.content_type, "application/x-www-form-urlencoded");
    assert_eq!(
        r.fields(),
        fields(&[
            ("target", "@lead"),
            ("action", "ENTRY_POINT"),
            ("entry_type", "story_reaction"),
            (
                "entry_context",
                r#"{"reaction": "\ud83d\udd25", "count": 2, "ratio": 0.5}"#
            ),
            ("own_username", "@default"),
        ])
    );
}

#[tokio::test]
async fn an_empty_event_context_and_empty_fields_are_left_out() {
    let server = recorder(ok(json!({"session_id": "s-4"}))).await;
    client(&server.uri())
        .event_trigger(&EventRequest {
            target: "@lead".into(),
            event_type: "follow".into(),
            context: Some(serde_json::Map::new()),
            own_username: Some(String::new()),
            image_url: Some(String::new()),
            ..Default::default()
        })
        .await
        .expect("event succeeds");
    let r = &seen(&server).await[0];
    assert_eq!(
        r.raw_form.as_deref(),
        Some("target=%40lead&action=ENTRY_POINT&entry_type=follow")
    );
}

#[tokio::test]
async fn follow_up_sends_the_follow_up_action_and_falls_back_to_the_default_sender() {
    let server = recorder(ok(json!({"session_id": "s-5", "message": "still there?"}))).await;
    let c = client_with(&server.uri(), Some("@default"), Duration::from_secs(5));
    c.follow_up(&FollowUpRequest {
        target: "@lead".into(),
        own_username: None,
    })
    .await
    .expect("follow-up succeeds");
    c.follow_up(&FollowUpRequest {
        target: "@lead".into(),
        own_username: Some("@other".into()),
    })
    .await
    .expect("follow-up succeeds");
    let seen = seen(&server).await;
    assert_eq!(
        seen[0].raw_form.as_deref(),
        Some("target=%40lead&action=FOLLOW_UP&own_username=%40default")
    );
    assert_eq!(
        seen[1].raw_form.as_deref(),
        Some("target=%40lead&action=FOLLOW_UP&own_username=%40other")
    );
}

#[tokio::test]
async fn inbound_chat_posts_to_chat_and_parses_every_reply_field() {
    let server = recorder(ok(json!({
        "reply": "a\nb", "replies": ["a", "b"], "should_send_photo": true,
        "photo_url": "https://cdn/x.jpg", "session_id": "s-6", "ignored": false,
        "ignore_reason": null, "new_field": [1, 2]
    })))
    .await;
    let result = client(&server.uri())
        .inbound_chat(&ChatRequest {
            target: "@lead".into(),
            message: "hey, saw your post! & ünï".into(),
            ..Default::default()
        })
        .await
        .expect("chat succeeds");
    assert_eq!(result.replies, vec!["a", "b"]);
    assert!(result.should_send_photo);
    assert_eq!(result.photo_url.as_deref(), Some("https://cdn/x.jpg"));
    let r = &seen(&server).await[0];
    assert_eq!(r.path, "/api/v1/bot/chat");
    assert_eq!(
        r.raw_form.as_deref(),
        Some("target=%40lead&message=hey%2C+saw+your+post%21+%26+%C3%BCn%C3%AF")
    );
}

#[tokio::test]
async fn inbound_chat_with_image_bytes_sends_them_as_the_file_part() {
    let server = recorder(ok(json!({"reply": "nice pic"}))).await;
    let result = client(&server.uri())
        .inbound_chat(&ChatRequest {
            target: "@lead".into(),
            message: "look".into(),
            image_file: Some(ImageFile::Bytes {
                filename: "incoming.png".into(),
                data: b"png!".to_vec(),
            }),
            ..Default::default()
        })
        .await
        .expect("chat succeeds");
    assert_eq!(result.reply, "nice pic");
    assert!(result.replies.is_empty(), "missing replies default to []");
    let r = &seen(&server).await[0];
    assert_eq!(r.content_type, "multipart/form-data");
    assert_eq!(
        r.fields(),
        fields(&[("target", "@lead"), ("message", "look")])
    );
    assert_eq!(r.files()[0].filename.as_deref(), Some("incoming.png"));
    assert_eq!(r.files()[0].data, b"png!");
}

#[tokio::test]
async fn upload_sends_only_the_file_part_and_returns_the_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pic.jpg");
    std::fs::write(&path, b"jpg").expect("write image");
    let server = recorder(ok(json!({"url": "https://cdn.example/u/1.jpg"}))).await;
    let result = client(&server.uri())
        .upload_image(&ImageFile::Path(path))
        .await
        .expect("upload succeeds");
    assert_eq!(result.url.as_deref(), Some("https://cdn.example/u/1.jpg"));
    let r = &seen(&server).await[0];
    assert_eq!(r.path, "/api/v1/bot/upload");
    assert_eq!(r.content_type, "multipart/form-data");
    assert_eq!(r.parts.len(), 1);
    assert_eq!(r.parts[0].name, "file");
    assert_eq!(r.parts[0].filename.as_deref(), Some("pic.jpg"));
}

#[tokio::test]
async fn a_trailing_slash_on_the_base_url_is_stripped() {
    let server = recorder(ok(json!({"session_id": "s"}))).await;
    let c = client(&format!("{}//", server.uri()));
    assert_eq!(c.base_url(), server.uri());
    c.follow_up(&FollowUpRequest {
        target: "@l".into(),
        own_username: None,
    })
    .await
    .expect("follow-up succeeds");
    assert_eq!(seen(&server).await[0].path, "/api/v1/bot/action");
}

#[tokio::test]
async fn the_default_timeout_is_sixty_seconds() {
    use fluidtalk_runner::fluidtalk::{ApiKey, ClientConfig, DEFAULT_BASE_URL};
    let config = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
    assert_eq!(config.timeout, Duration::from_secs(60));
    assert_eq!(config.base_url, DEFAULT_BASE_URL);
    assert_eq!(DEFAULT_BASE_URL, "https://api-talk.fluidvip.com");
}
