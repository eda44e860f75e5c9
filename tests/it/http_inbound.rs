//! The inbound relay over real HTTP: the simulator or a wiremock FluidTalk behind it, both
//! databases. Each API outcome acts on the lead and the account as the runner's policy
//! says; an Idempotency-Key never makes a second call; a caller that hangs up loses no
//! answer; a blocked lead or one with a call in flight is refused without a call.

use crate::common;

use common::db::{self, TestDb};
use common::http::{Api, answer, serve, serve_with_timeout};
use common::spawn_sim;
use fluidtalk_runner::clock::Clock;
use fluidtalk_runner::sim::SimConfig;
use fluidtalk_runner::store::{Action, NewAttempt, Recorded};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn each_backend(test: impl AsyncFn(TestDb)) {
    test(db::sqlite().await).await;
    if let Some(pg) = db::postgres().await {
        test(pg).await;
    }
}

async fn inbound(api: &Api, target: &str, message: &str, key: Option<&str>) -> (u16, Value, bool) {
    let mut r = api
        .req(Method::POST, &format!("/v1/leads/{target}/inbound"))
        .json(&json!({ "message": message }));
    if let Some(k) = key {
        r = r.header("Idempotency-Key", k);
    }
    let resp = r.send().await.expect("answered");
    let replayed = resp.headers().contains_key("idempotent-replayed");
    let (status, body) = answer(resp).await;
    (status, body, replayed)
}

/// A FluidTalk stand-in answering every call with `response`.
async fn fluidtalk(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn the_relay_records_the_reply_the_call_and_queues_the_answer() {
    each_backend(async |db| {
        let (sim_url, sim) = spawn_sim(SimConfig::default()).await;
        let api = serve(db, &sim_url, "").await;
        api.post("/v1/leads", json!({"leads": [{"target": "@ana"}]}))
            .await;

        // A lead nobody imported writes first: added as contacted, answered.
        let (status, body, _) = inbound(&api, "@zoe", "hi there", None).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains("hi there"),
            "{body}"
        );
        assert_eq!(body["replies"].as_array().map(Vec::len), Some(2), "{body}");
        assert_eq!(body["lead_state"], "contacted");
        assert!(
            body["session_id"].is_string() && body["outbox_id"].is_i64(),
            "{body}"
        );
        let (_, shown) = api.get("/v1/leads/@zoe").await;
        assert_eq!(shown["lead"]["state"], "contacted");
        assert!(shown["lead"]["last_reply_at"].is_string(), "{shown}");
        assert_eq!(
            shown["lead"]["lease_owner"],
            Value::Null,
            "the lease is given back"
        );
        let attempt = &shown["attempts"][0];
        assert_eq!(
            (attempt["action"].as_str(), attempt["status"].as_str()),
            (Some("inbound"), Some("sent")),
            "{shown}"
        );
        assert_eq!(attempt["id"], body["attempt_id"]);

        // A new lead who writes is in conversation: no opener will follow.
        let (status, body, _) = inbound(&api, "@ana", "hello?", None).await;
        assert_eq!(
            (status, body["lead_state"].as_str()),
            (200, Some("contacted")),
            "{body}"
        );

        let log = sim.log();
        assert_eq!(
            log.iter().filter(|c| c.action == "CHAT").count(),
            2,
            "{log:?}"
        );
        let (_, page) = api.get("/v1/outbox").await;
        let ids: Vec<i64> = page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["id"].as_i64())
            .collect();
        assert_eq!(ids.len(), 2, "{page}");
        assert_eq!(page["messages"][0]["target"], "@zoe");
        assert_eq!(page["next_after"], ids[1]);
        let (_, report) = api.get("/v1/status").await;
        assert_eq!(
            report["outbox"],
            json!({"pending": 2, "parked": 0}),
            "{report}"
        );
        let (_, acked) = api
            .post("/v1/outbox/ack", json!({"ids": [ids[0], 999_999]}))
            .await;
        assert_eq!(acked["acked"], json!([ids[0]]), "{acked}");
        assert_eq!(acked["not_pending"], json!([999_999]), "{acked}");
        let (_, page) = api.get("/v1/outbox").await;
        assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "{page}");
        let (_, page) = api.get(&format!("/v1/outbox?after={}", ids[1])).await;
        assert_eq!(page["messages"], json!([]), "{page}");
        let text = api
            .req(Method::GET, "/metrics")
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(
            text.contains(r#"fluidtalk_runner_api_calls_total{action="inbound",outcome="ok"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fluidtalk_runner_api_call_seconds_count{action="inbound"}"#),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_answer_without_a_second_call() {
    each_backend(async |db| {
        let (sim_url, sim) = spawn_sim(SimConfig::default()).await;
        let api = serve(db, &sim_url, "").await;
        let (s1, first, replayed1) = inbound(&api, "@ana", "one", Some("msg-1")).await;
        let (s2, second, replayed2) = inbound(&api, "@ana", "one", Some("msg-1")).await;
        assert_eq!(
            (s1, s2, replayed1, replayed2),
            (200, 200, false, true),
            "{first} {second}"
        );
        assert_eq!(first, second);
        let chats = || sim.log().iter().filter(|c| c.action == "CHAT").count();
        assert_eq!(chats(), 1, "the retry made no call");
        let (status, body, _) = inbound(&api, "@ana", "another text", Some("msg-1")).await;
        assert_eq!(
            (status, body["error"]["kind"].as_str()),
            (422, Some("idempotency_mismatch")),
            "{body}"
        );
        let (status, _, _) = inbound(&api, "@ben", "one", Some("msg-1")).await;
        assert_eq!(status, 200, "a key is per lead");
        let (status, _, _) = inbound(&api, "@ana", "one", Some("msg-2")).await;
        assert_eq!(status, 200);
        assert_eq!(chats(), 3);
        // Keys are remembered for a day.
        api.clock.advance(chrono::Duration::hours(25));
        let (status, _, replayed) = inbound(&api, "@ana", "one", Some("msg-1")).await;
        assert_eq!(
            (status, replayed),
            (200, false),
            "a day-old key is forgotten"
        );
        assert_eq!(chats(), 4);
        let (status, body, _) = inbound(&api, "@ana", "one", Some("has space")).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some("Idempotency-Key"))
        );
    })
    .await;
}

#[tokio::test]
async fn a_blocked_lead_is_refused_and_not_called() {
    let (sim_url, sim) = spawn_sim(SimConfig::default()).await;
    let api = serve(db::sqlite().await, &sim_url, "").await;
    api.post("/v1/leads", json!({"leads": [{"target": "@ana"}]}))
        .await;
    api.post("/v1/leads/@ana/block", json!({})).await;
    let (status, body, _) = inbound(&api, "@ana", "hi", Some("k1")).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("blocked"),
        "{body}"
    );
    assert!(sim.log().is_empty(), "no call");
    api.post("/v1/leads/@ana/unblock", json!({})).await;
    let (status, _, replayed) = inbound(&api, "@ana", "hi", Some("k1")).await;
    assert_eq!(
        (status, replayed),
        (200, false),
        "a refusal without a call does not use up the key"
    );
    for (body, field) in [
        (json!({"message": "  "}), "message"),
        (
            json!({"message": "x", "image_url": "file:///etc/passwd"}),
            "image_url",
        ),
    ] {
        let resp = api
            .req(Method::POST, "/v1/leads/@ana/inbound")
            .json(&body)
            .send()
            .await
            .expect("answered");
        let (status, body) = answer(resp).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}"
        );
    }
}

/// Each API outcome: the status the caller gets, what the lead and the account become,
/// and whether a retry with the same key calls again (only when the API surely did not act).
#[tokio::test]
async fn each_api_outcome_acts_as_the_runners_policy_says() {
    struct Case {
        api: ResponseTemplate,
        api_error: &'static str,
        lead: &'static str,
        pause: Option<&'static str>,
        retry_calls_again: bool,
    }
    let detail = |s: u16, d: &str| ResponseTemplate::new(s).set_body_json(json!({ "detail": d }));
    let cases = [
        Case {
            api: detail(400, "This session is DONE"),
            api_error: "sealed",
            lead: "done",
            pause: None,
            retry_calls_again: false,
        },
        Case {
            api: detail(402, "insufficient_tokens"),
            api_error: "out_of_tokens",
            lead: "contacted",
            pause: Some("new_conversations"),
            retry_calls_again: true,
        },
        Case {
            api: detail(500, "boom"),
            api_error: "server",
            lead: "contacted",
            pause: None,
            retry_calls_again: true,
        },
        Case {
            api: detail(422, "bad field"),
            api_error: "other",
            lead: "failed",
            pause: None,
            retry_calls_again: false,
        },
        Case {
            api: detail(200, "x").set_delay(Duration::from_secs(3)),
            api_error: "timeout",
            lead: "needs_review",
            pause: None,
            retry_calls_again: false,
        },
    ];
    for case in cases {
        let server = fluidtalk(case.api).await;
        let api = serve_with_timeout(
            db::sqlite().await,
            &server.uri(),
            "",
            Duration::from_millis(500),
        )
        .await;
        let (status, body, _) = inbound(&api, "@ana", "hi", Some("k")).await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["error"]["kind"], "api_error", "{body}");
        assert_eq!(body["error"]["api_error"], case.api_error, "{body}");
        let (_, shown) = api.get("/v1/leads/@ana").await;
        assert_eq!(
            shown["lead"]["state"], case.lead,
            "{}: {shown}",
            case.api_error
        );
        assert_eq!(
            shown["lead"]["transient_failures"], 0,
            "an inbound failure is not charged to the lead's schedule"
        );
        let (_, report) = api.get("/v1/status").await;
        let pauses: Vec<&str> = report["pauses"]
            .as_array()
            .expect("pauses")
            .iter()
            .filter_map(|p| p["scope"].as_str())
            .collect();
        assert_eq!(
            pauses,
            case.pause.into_iter().collect::<Vec<_>>(),
            "{}: {report}",
            case.api_error
        );
        let (again, body2, replayed) = inbound(&api, "@ana", "hi", Some("k")).await;
        let calls = server.received_requests().await.map_or(0, |r| r.len());
        if case.retry_calls_again {
            assert_eq!(
                (calls, replayed),
                (2, false),
                "{}: the API did not act, so the retry calls",
                case.api_error
            );
        } else {
            assert_eq!(
                (calls, replayed, again),
                (1, true, 502),
                "{}: the retry gets the first answer",
                case.api_error
            );
            assert_eq!(body, body2);
        }
    }
}

#[tokio::test]
async fn a_refused_key_pauses_every_call_and_readyz_says_so() {
    let server =
        fluidtalk(ResponseTemplate::new(401).set_body_json(json!({"detail": "bad key"}))).await;
    let api = serve(db::sqlite().await, &server.uri(), "").await;
    let (status, body, _) = inbound(&api, "@ana", "hi", None).await;
    assert_eq!(
        (status, body["error"]["api_status"].as_u64()),
        (502, Some(401)),
        "{body}"
    );
    let (status, body, _) = inbound(&api, "@ana", "hi again", None).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (503, Some("paused")),
        "{body}"
    );
    assert_eq!(
        server.received_requests().await.map_or(0, |r| r.len()),
        1,
        "no call while paused"
    );
    let (status, ready) = answer(api.http.get(api.url("/readyz")).send().await.expect("up")).await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (503, Some("not_ready")),
        "{ready}"
    );
    assert!(
        ready["reason"]
            .as_str()
            .unwrap_or("")
            .contains("pause clear"),
        "{ready}"
    );
    assert!(
        !ready.to_string().contains("bad key"),
        "the API's words stay behind the token: {ready}"
    );
    // `pause clear` lifts it.
    api.db
        .store
        .lift_pauses(&[fluidtalk_runner::store::PauseScope::All])
        .await
        .expect("lift");
    // Readiness is read at most once a second.
    let (status, _) = answer(api.http.get(api.url("/readyz")).send().await.expect("up")).await;
    assert_eq!(status, 503, "the last second's answer");
    api.clock.advance(chrono::Duration::seconds(2));
    let (status, _) = answer(api.http.get(api.url("/readyz")).send().await.expect("up")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_caller_that_hangs_up_mid_call_loses_no_answer() {
    each_backend(async |db| {
        let (sim_url, _sim) = spawn_sim(SimConfig {
            latency: Duration::from_millis(800),
            ..SimConfig::default()
        })
        .await;
        let api = serve(db, &sim_url, "").await;
        let hung_up = api
            .req(Method::POST, "/v1/leads/@ana/inbound")
            .json(&json!({"message": "quick"}))
            .timeout(Duration::from_millis(100))
            .send()
            .await;
        assert!(hung_up.is_err(), "the caller gave up first");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, shown) = api.get("/v1/leads/@ana").await;
            if shown["attempts"][0]["status"] == "sent" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the answer was never recorded: {shown}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, page) = api.get("/v1/outbox").await;
        assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "{page}");
    })
    .await;
}

#[tokio::test]
async fn a_lead_with_a_call_in_flight_is_busy_and_a_claim_loses_its_lead() {
    each_backend(async |db| {
        let (sim_url, sim) = spawn_sim(SimConfig {
            latency: Duration::from_millis(600),
            ..SimConfig::default()
        })
        .await;
        let api = serve(db, &sim_url, "").await;
        let first = inbound(&api, "@ana", "one", None);
        let second = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            inbound(&api, "@ana", "two", None).await
        };
        let ((s1, b1, _), (s2, b2, _)) = tokio::join!(first, second);
        assert_eq!((s1, s2), (200, 409), "{b1} {b2}");
        assert_eq!(b2["error"]["kind"], "busy", "{b2}");
        assert_eq!(sim.log().len(), 1);

        // A runner that claimed the lead but has not called yet loses it to the relay: its
        // call is not recorded, so the lead who just wrote gets no follow-up on top.
        let store = &api.db.store;
        api.post("/v1/leads", json!({"leads": [{"target": "@ben"}]}))
            .await;
        let now = api.clock.now();
        let ben = store.get_lead("@ben").await.expect("read").expect("ben");
        let claimed = store
            .claim_leads(
                &[ben.id],
                fluidtalk_runner::store::Lease {
                    lease_token: "runner-x/1",
                    now,
                    until: now + chrono::Duration::hours(1),
                },
            )
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        let (status, body, _) = inbound(&api, "@ben", "hey", None).await;
        assert_eq!(status, 200, "{body}");
        let recorded = store
            .start_attempts_within(
                &[NewAttempt {
                    lead_id: ben.id,
                    job: "openers".into(),
                    action: Action::Opener,
                    step: 0,
                    lease_token: "runner-x/1".into(),
                    started_at: now,
                    claimed: Some(ben.state),
                    sender: None,
                }],
                None,
            )
            .await
            .expect("asked");
        assert_eq!(recorded, vec![Recorded::Changed]);
    })
    .await;
}
