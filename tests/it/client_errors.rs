//! Every kind of failure is classified, keeps its status and parsed body, and says what
//! the caller should do.

use crate::common;

use common::*;
use fluidtalk_runner::fluidtalk::{
    ErrorClass, ErrorKind, FollowUpRequest, ImageFile, OpenerRequest,
};
use serde_json::json;
use std::time::Duration;
use wiremock::ResponseTemplate;

async fn follow_up_against(response: ResponseTemplate) -> fluidtalk_runner::fluidtalk::Error {
    let server = recorder(response).await;
    client(&server.uri())
        .follow_up(&FollowUpRequest {
            target: "@lead".into(),
            own_username: None,
        })
        .await
        .expect_err("the call fails")
}

fn detail(status: u16, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "detail": text }))
}

#[tokio::test]
async fn status_400_is_sealed_and_final_for_the_lead() {
    let e = follow_up_against(detail(400, "This session is DONE")).await;
    assert_eq!(e.kind(), ErrorKind::Sealed);
    assert_eq!(e.class(), ErrorClass::FinalForLead);
    assert_eq!(e.status(), Some(400));
    assert_eq!(e.detail(), "This session is DONE");
    assert_eq!(e.to_string(), "FluidTalk 400: This session is DONE");
}

#[tokio::test]
async fn status_401_and_403_are_unauthorized_and_pause_the_account() {
    for status in [401, 403] {
        let e = follow_up_against(detail(status, "Invalid API key")).await;
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "status {status}");
        assert_eq!(e.class(), ErrorClass::AccountPause);
        assert_eq!(e.status(), Some(status));
    }
}

#[tokio::test]
async fn status_402_is_out_of_tokens() {
    let e = follow_up_against(detail(402, "insufficient_tokens")).await;
    assert_eq!(e.kind(), ErrorKind::OutOfTokens);
    assert_eq!(e.class(), ErrorClass::AccountPause);
    assert_eq!(e.body(), &json!({"detail": "insufficient_tokens"}));
}

#[tokio::test]
async fn status_404_is_no_conversation() {
    let e = follow_up_against(detail(404, "No conversation")).await;
    assert_eq!(e.kind(), ErrorKind::NoConversation);
    assert_eq!(e.class(), ErrorClass::FinalForLead);
}

#[tokio::test]
async fn status_429_is_rate_limited_and_keeps_retry_after() {
    let e = follow_up_against(detail(429, "slow down").insert_header("Retry-After", "17")).await;
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.class(), ErrorClass::AccountPause);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(17)));

    let e = follow_up_against(detail(429, "slow down")).await;
    assert_eq!(e.retry_after(), None);
}

#[tokio::test]
async fn status_5xx_is_a_transient_server_error() {
    for status in [500, 503, 507] {
        let e = follow_up_against(detail(status, "boom")).await;
        assert_eq!(e.kind(), ErrorKind::Server, "status {status}");
        assert_eq!(e.class(), ErrorClass::Transient);
        assert!(!e.kind().outcome_unknown());
    }
}

/// Issue 9: a gateway's 502/504 may come after the API acted, so it is never retried as
/// transient (which could send the step twice).
#[tokio::test]
async fn a_gateway_502_or_504_is_an_unknown_outcome_not_a_transient_error() {
    for status in [502, 504] {
        let e = follow_up_against(detail(status, "upstream")).await;
        assert_eq!(e.kind(), ErrorKind::Gateway, "status {status}");
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown);
        assert!(e.kind().outcome_unknown());
    }
}

#[tokio::test]
async fn a_non_json_error_body_becomes_its_text_as_detail() {
    let e =
        follow_up_against(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
            .await;
    assert_eq!(e.status(), Some(502));
    assert_eq!(e.body(), &json!({"detail": "<html>Bad Gateway</html>"}));
    assert_eq!(e.detail(), "<html>Bad Gateway</html>");
}

#[tokio::test]
async fn other_statuses_are_other_and_keep_a_structured_detail() {
    let e = follow_up_against(ResponseTemplate::new(422).set_body_json(json!({
        "detail": [{"loc": ["body", "target"], "msg": "Field required"}]
    })))
    .await;
    assert_eq!(e.kind(), ErrorKind::Other);
    assert_eq!(e.status(), Some(422));
    assert!(e.detail().contains("Field required"), "{}", e.detail());
}

#[tokio::test]
async fn an_undecodable_2xx_body_is_a_decode_error_with_unknown_outcome() {
    for body in ["<html>ok</html>", "[1, 2]", r#"{"message": 5}"#] {
        let e = follow_up_against(ResponseTemplate::new(200).set_body_string(body)).await;
        assert_eq!(e.kind(), ErrorKind::Decode, "body {body}");
        assert_eq!(e.status(), Some(200));
        assert!(e.kind().outcome_unknown());
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_and_certainly_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let e = client(&format!("http://{addr}"))
        .follow_up(&FollowUpRequest {
            target: "@lead".into(),
            own_username: None,
        })
        .await
        .expect_err("nobody listens");
    assert_eq!(e.kind(), ErrorKind::Connect);
    assert_eq!(e.status(), None);
    assert_eq!(e.class(), ErrorClass::Transient);
    assert!(!e.kind().outcome_unknown());
}

#[tokio::test]
async fn no_answer_within_the_timeout_is_a_timeout_with_unknown_outcome() {
    let server = recorder(
        ResponseTemplate::new(200)
            .set_body_json(json!({"session_id": "late"}))
            .set_delay(Duration::from_secs(5)),
    )
    .await;
    let e = client_with(&server.uri(), None, Duration::from_millis(300))
        .ai_opener(&OpenerRequest {
            target: "@lead".into(),
            ..Default::default()
        })
        .await
        .expect_err("times out");
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(e.status(), None);
    assert!(e.kind().outcome_unknown());
    assert_eq!(
        seen(&server).await.len(),
        1,
        "the request did reach the server"
    );
}

#[tokio::test]
async fn an_unreadable_image_file_fails_before_anything_is_sent() {
    let server = recorder(ResponseTemplate::new(200)).await;
    let e = client(&server.uri())
        .ai_opener(&OpenerRequest {
            target: "@lead".into(),
            image_file: Some(ImageFile::Path("/nonexistent/dir/p.jpg".into())),
            ..Default::default()
        })
        .await
        .expect_err("no such file");
    assert_eq!(e.kind(), ErrorKind::LocalFile);
    assert!(e.to_string().contains("/nonexistent/dir/p.jpg"), "{e}");
    assert!(seen(&server).await.is_empty());
}

#[tokio::test]
async fn a_connection_dropped_after_the_request_is_a_network_error_with_unknown_outcome() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        // Read the request, then hang up without a word.
        if let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
        }
    });
    let e = client(&format!("http://{addr}"))
        .ai_opener(&OpenerRequest {
            target: "@lead".into(),
            ..Default::default()
        })
        .await
        .expect_err("the server hangs up");
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert_eq!(e.status(), None);
    assert!(e.kind().outcome_unknown());
}
