//! The simulator behaves like the real API: tokens, continued, 404, sealing, ignored,
//! key checks, seeded failures and validation.

use crate::common;

use common::*;
use fluidtalk_runner::fluidtalk::{
    ChatRequest, ErrorKind, EventRequest, FollowUpRequest, ImageFile, OpenerRequest,
};
use fluidtalk_runner::sim::SimConfig;

fn opener(t: &str) -> OpenerRequest {
    OpenerRequest {
        target: t.into(),
        ..Default::default()
    }
}

fn follow_up(t: &str) -> FollowUpRequest {
    FollowUpRequest {
        target: t.into(),
        own_username: None,
    }
}

#[tokio::test]
async fn new_conversations_spend_tokens_until_402() {
    let (url, sim) = spawn_sim(SimConfig {
        tokens: Some(2),
        ..Default::default()
    })
    .await;
    let c = client(&url);
    let a = c.ai_opener(&opener("@a")).await.expect("first token");
    assert!(!a.message.is_empty());
    c.event_trigger(&EventRequest {
        target: "@b".into(),
        event_type: "follow".into(),
        ..Default::default()
    })
    .await
    .expect("second token");
    let e = c.ai_opener(&opener("@c")).await.expect_err("out of tokens");
    assert_eq!(e.kind(), ErrorKind::OutOfTokens);
    assert_eq!(e.detail(), "insufficient_tokens");
    // An existing conversation still continues without a token.
    c.follow_up(&follow_up("@a"))
        .await
        .expect("follow-ups cost nothing");
    assert_eq!(sim.snapshot().tokens_left, Some(0));
    assert_eq!(sim.snapshot().conversations, 2);
}

#[tokio::test]
async fn an_opener_to_an_active_conversation_is_continued_with_no_text() {
    let (url, _sim) = spawn_sim(SimConfig::default()).await;
    let c = client(&url);
    let first = c.ai_opener(&opener("@a")).await.expect("opens");
    let again = c.ai_opener(&opener("@a")).await.expect("continues");
    assert!(again.continued);
    assert_eq!(again.message, "");
    assert_eq!(
        again.continued_reason.as_deref(),
        Some("conversation_already_active")
    );
    assert_eq!(again.session_id, first.session_id);
}

#[tokio::test]
async fn a_follow_up_before_any_contact_is_404() {
    let (url, _sim) = spawn_sim(SimConfig::default()).await;
    let e = client(&url)
        .follow_up(&follow_up("@new"))
        .await
        .expect_err("404");
    assert_eq!(e.kind(), ErrorKind::NoConversation);
}

#[tokio::test]
async fn a_conversation_seals_after_n_follow_ups_and_then_answers_400() {
    let (url, sim) = spawn_sim(SimConfig {
        seal_after: Some(2),
        ..Default::default()
    })
    .await;
    let c = client(&url);
    c.ai_opener(&opener("@a")).await.expect("opens");
    c.follow_up(&follow_up("@a")).await.expect("follow-up 1");
    c.follow_up(&follow_up("@a"))
        .await
        .expect("follow-up 2 seals");
    let e = c.follow_up(&follow_up("@a")).await.expect_err("sealed");
    assert_eq!(e.kind(), ErrorKind::Sealed);
    assert_eq!(e.detail(), "This session is DONE");
    let e = c
        .inbound_chat(&ChatRequest {
            target: "@a".into(),
            message: "hi".into(),
            ..Default::default()
        })
        .await
        .expect_err("sealed for chat too");
    assert_eq!(e.status(), Some(400));
    assert_eq!(sim.snapshot().sealed, 1);
}

#[tokio::test]
async fn ignored_targets_are_answered_ignored_and_cost_nothing() {
    let (url, sim) = spawn_sim(SimConfig {
        tokens: Some(1),
        ignore: ["@dup".to_string()].into_iter().collect(),
        ..Default::default()
    })
    .await;
    let r = client(&url)
        .ai_opener(&opener("@dup"))
        .await
        .expect("answers");
    assert!(r.ignored);
    assert!(r.ignore_reason.is_some());
    assert_eq!(sim.snapshot().tokens_left, Some(1));
}

#[tokio::test]
async fn a_configured_key_is_required_and_any_other_key_is_401() {
    use fluidtalk_runner::fluidtalk::ApiKey;
    let (url, _sim) = spawn_sim(SimConfig {
        api_key: Some(ApiKey::new("ft_sk_right").expect("key")),
        ..Default::default()
    })
    .await;
    let e = client(&url)
        .ai_opener(&opener("@a"))
        .await
        .expect_err("wrong key");
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert_eq!(e.detail(), "Invalid API key");
    let mut config =
        fluidtalk_runner::fluidtalk::ClientConfig::new(ApiKey::new("ft_sk_right").expect("key"));
    config.base_url = url.clone();
    let right = fluidtalk_runner::fluidtalk::Client::new(config).expect("client");
    right
        .ai_opener(&opener("@a"))
        .await
        .expect("right key works");
    // No key at all.
    let status = reqwest::Client::new()
        .post(format!("{url}/api/v1/bot/action"))
        .form(&[("target", "@a"), ("action", "OUTREACH")])
        .send()
        .await
        .expect("answers")
        .status();
    assert_eq!(status.as_u16(), 401);
}

#[tokio::test]
async fn the_fail_rate_is_seeded_so_runs_repeat() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let (url, sim) = spawn_sim(SimConfig {
            fail_rate: 0.5,
            seed,
            ..Default::default()
        })
        .await;
        let c = client(&url);
        for i in 0..40 {
            let _ = c.ai_opener(&opener(&format!("@l{i}"))).await;
        }
        sim.log().into_iter().map(|e| e.status).collect()
    }
    let a = statuses(7).await;
    let b = statuses(7).await;
    assert_eq!(a, b, "same seed, same answers");
    let failures = a.iter().filter(|s| **s == 500).count();
    assert!(
        (8..=32).contains(&failures),
        "about half fail: {failures}/40"
    );
    assert_ne!(a, statuses(8).await, "another seed, other answers");
}

#[tokio::test]
async fn missing_fields_and_unknown_actions_are_422() {
    let (url, _sim) = spawn_sim(SimConfig::default()).await;
    let http = reqwest::Client::new();
    for form in [
        vec![("action", "OUTREACH")],
        vec![("target", "@a"), ("action", "NOPE")],
        vec![("target", "@a"), ("action", "ENTRY_POINT")],
        vec![
            ("target", "@a"),
            ("action", "ENTRY_POINT"),
            ("entry_type", "x"),
            ("entry_context", "[1]"),
        ],
    ] {
        let status = http
            .post(format!("{url}/api/v1/bot/action"))
            .header("X-API-Key", TEST_KEY)
            .form(&form)
            .send()
            .await
            .expect("answers")
            .status();
        assert_eq!(status.as_u16(), 422, "form {form:?}");
    }
}

#[tokio::test]
async fn uploads_return_a_url_and_the_log_counts_every_request() {
    let (url, sim) = spawn_sim(SimConfig::default()).await;
    let c = client(&url);
    let up = c
        .upload_image(&ImageFile::Bytes {
            filename: "me.png".into(),
            data: vec![1, 2, 3],
        })
        .await
        .expect("uploads");
    let hosted = up.url.expect("a url");
    assert!(
        hosted.starts_with(&url) && hosted.ends_with("/me.png"),
        "{hosted}"
    );
    c.ai_opener(&opener("@a")).await.expect("opens");
    let log: Vec<fluidtalk_runner::sim::LogEntry> = reqwest::get(format!("{url}/_sim/log"))
        .await
        .expect("log answers")
        .json()
        .await
        .expect("log is json");
    assert_eq!(log, sim.log());
    assert_eq!(log.len(), 2);
    assert_eq!(
        (
            log[1].action.as_str(),
            log[1].target.as_str(),
            log[1].status
        ),
        ("OUTREACH", "@a", 200)
    );
}

#[tokio::test]
async fn latency_delays_each_answer() {
    let (url, _sim) = spawn_sim(SimConfig {
        latency: std::time::Duration::from_millis(150),
        ..Default::default()
    })
    .await;
    let started = std::time::Instant::now();
    client(&url).ai_opener(&opener("@a")).await.expect("opens");
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
}

#[tokio::test]
async fn rate_limit_bursts_answer_429_with_retry_after_and_act_on_nothing() {
    let (url, sim) = spawn_sim(SimConfig {
        rate_limit: "2/5:3".parse().ok(),
        ..Default::default()
    })
    .await;
    let c = client(&url);
    let mut kinds = Vec::new();
    for i in 0..10 {
        match c.ai_opener(&opener(&format!("@r{i}"))).await {
            Ok(_) => kinds.push("ok".to_string()),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
                assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(3)));
                kinds.push("429".to_string());
            }
        }
    }
    assert_eq!(
        kinds,
        [
            "429", "429", "ok", "ok", "ok", "429", "429", "ok", "ok", "ok"
        ]
    );
    assert_eq!(sim.snapshot().conversations, 6, "a 429 opens nothing");
    let log = sim.log();
    assert_eq!(
        log[0].target, "@r0",
        "refused requests are logged with their target"
    );
    assert_eq!(log[0].status, 429);
}

#[tokio::test]
async fn a_dropped_connection_acts_but_leaves_the_caller_without_an_answer() {
    let (url, sim) = spawn_sim(SimConfig {
        drop_rate: 1.0,
        ..Default::default()
    })
    .await;
    let e = client(&url)
        .ai_opener(&opener("@d"))
        .await
        .expect_err("no answer");
    assert!(
        e.kind().outcome_unknown(),
        "{e:?} must count as an unknown outcome"
    );
    assert_eq!(sim.snapshot().conversations, 1, "the simulator acted first");
    let log = sim.log();
    assert!(log[0].dropped);
    assert_eq!((log[0].target.as_str(), log[0].status), ("@d", 200));
}

#[tokio::test]
async fn latency_range_and_token_refills_are_controllable() {
    let (url, sim) = spawn_sim(SimConfig {
        tokens: Some(0),
        latency: std::time::Duration::from_millis(5),
        latency_max: Some(std::time::Duration::from_millis(30)),
        ..Default::default()
    })
    .await;
    let c = client(&url);
    let started = std::time::Instant::now();
    let e = c.ai_opener(&opener("@t")).await.expect_err("no tokens");
    assert_eq!(e.kind(), ErrorKind::OutOfTokens);
    assert!(started.elapsed() >= std::time::Duration::from_millis(5));
    let refill: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/_sim/tokens"))
        .json(&serde_json::json!({"tokens": 1}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(refill["tokens_left"], 1);
    c.ai_opener(&opener("@t")).await.expect("a token again");
    assert_eq!(sim.snapshot().tokens_left, Some(0));
    let bad = reqwest::Client::new()
        .post(format!("{url}/_sim/tokens"))
        .json(&serde_json::json!({"tokens": "many"}))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 422);
}

#[test]
fn rate_limit_bursts_parse_and_refuse_nonsense() {
    use fluidtalk_runner::sim::RateLimitBursts;
    assert_eq!(
        "20/200:1".parse::<RateLimitBursts>(),
        Ok(RateLimitBursts {
            burst: 20,
            every: 200,
            retry_after: 1
        })
    );
    for bad in ["20", "20/200", "300/200:1", "1/0:1", "a/b:c"] {
        let e = bad.parse::<RateLimitBursts>().expect_err(bad);
        assert!(e.contains(bad), "{e}");
    }
}
