//! The HTTP API over a real server on port 0, both databases: the token on every route,
//! leads in and out, the lifecycle's actions, events, the outbox, status, bad input, and
//! the OpenAPI document kept in docs/openapi.json.

use crate::common;

use common::db::{self, TestDb};
use common::http::{Api, TOKEN, answer, serve};
use common::spawn_sim;
use fluidtalk_runner::sim::SimConfig;
use reqwest::Method;
use serde_json::{Value, json};

// Wrong tokens are throttled after a few a minute per address: this file sends dozens on
// purpose (tests/it/http_attack.rs checks the throttle).
const CAMPAIGN: &str = r#"
[http]
auth_failures_per_minute = 1000

[[job]]
name = "reactions"
kind = "event"
event_type = "story_reaction"
schedule = "0 */5 * * * *"
"#;

async fn each_backend(test: impl AsyncFn(TestDb)) {
    test(db::sqlite().await).await;
    if let Some(pg) = db::postgres().await {
        test(pg).await;
    }
}

async fn api(db: TestDb) -> Api {
    let (sim, _) = spawn_sim(SimConfig::default()).await;
    serve(db, &sim, CAMPAIGN).await
}

const ROUTES: [(&str, &str); 13] = [
    ("POST", "/v1/leads"),
    ("GET", "/v1/leads"),
    ("GET", "/v1/leads/@ana"),
    ("POST", "/v1/leads/@ana/replied"),
    ("POST", "/v1/leads/@ana/block"),
    ("POST", "/v1/leads/@ana/unblock"),
    ("POST", "/v1/leads/@ana/retry"),
    ("POST", "/v1/leads/@ana/events"),
    ("POST", "/v1/leads/@ana/inbound"),
    ("GET", "/v1/outbox"),
    ("POST", "/v1/outbox/ack"),
    ("GET", "/v1/status"),
    ("GET", "/v1/openapi.json"),
];

#[tokio::test]
async fn every_route_but_health_needs_the_token() {
    let api = api(db::sqlite().await).await;
    let mut routes: Vec<(&str, &str)> = ROUTES.to_vec();
    routes.push(("GET", "/metrics"));
    for (method, path) in routes {
        let method: Method = method.parse().expect("method");
        for auth in [None, Some("wrong-token-0123456789"), Some(&TOKEN[1..])] {
            let mut r = api.http.request(method.clone(), api.url(path));
            if let Some(t) = auth {
                r = r.bearer_auth(t);
            }
            let resp = r.json(&json!({})).send().await.expect("answered");
            assert_eq!(
                resp.headers().get("www-authenticate").map(|v| v.as_bytes()),
                Some(&b"Bearer"[..]),
                "{method} {path}"
            );
            let (status, body) = answer(resp).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}: {body}");
            assert_eq!(body["error"]["kind"], "unauthorized", "{method} {path}");
        }
    }
    // The scheme's name is case-insensitive.
    let resp = api
        .http
        .get(api.url("/v1/status"))
        .header("authorization", format!("BEARER {TOKEN}"))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 200);
    for path in ["/healthz", "/readyz"] {
        let (status, body) = answer(api.http.get(api.url(path)).send().await.expect("up")).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = api.get("/metrics").await;
    assert_eq!(
        (status, body),
        (200, Value::Null),
        "metrics text is not JSON"
    );
    let (status, body) = api.get("/v1/nothing-here").await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn leads_go_in_page_out_and_take_the_lifecycles_actions() {
    each_backend(async |db| {
        let api = api(db).await;
        let (status, body) = api
            .post(
                "/v1/leads",
                json!({"leads": [
                    {"target": "@ana", "timezone": "Europe/Berlin", "tags": ["vip"]},
                    {"target": "@ben"},
                    {"target": "@cy", "timezone": "Mars/Olympus"},
                    {"target": "@dee", "own_username": "@persona_b"},
                ]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["imported"].as_u64(), body["updated"].as_u64()),
            (Some(3), Some(0))
        );
        assert_eq!(body["rejected"][0]["index"], 2, "{body}");
        assert!(
            body["rejected"][0]["error"]
                .as_str()
                .unwrap_or_default()
                .contains("Mars/Olympus"),
            "{body}"
        );
        let (_, again) = api
            .post(
                "/v1/leads",
                json!({"leads": [{"target": "@ana", "tags": ["spring"]}]}),
            )
            .await;
        assert_eq!(
            (again["imported"].as_u64(), again["updated"].as_u64()),
            (Some(0), Some(1)),
            "{again}"
        );

        // Pages in id order, with a cursor.
        let (status, page) = api.get("/v1/leads?limit=2").await;
        assert_eq!(status, 200, "{page}");
        let targets = |p: &Value| {
            p["leads"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|l| l["target"].as_str().unwrap_or("").to_string())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        assert_eq!(targets(&page), ["@ana", "@ben"]);
        let after = page["next_after"].as_i64().expect("a next page");
        let (_, page2) = api.get(&format!("/v1/leads?limit=2&after={after}")).await;
        assert_eq!(targets(&page2), ["@dee"]);
        assert_eq!(page2["next_after"], Value::Null, "{page2}");
        let (_, tagged) = api.get("/v1/leads?tag=spring").await;
        assert_eq!(targets(&tagged), ["@ana"]);

        // One lead, and the lifecycle's actions with their refusals.
        let (status, shown) = api.get("/v1/leads/@ana").await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(shown["lead"]["timezone"], "Europe/Berlin");
        assert_eq!(shown["attempts"], json!([]));
        let (status, missing) = api.get("/v1/leads/@nobody").await;
        assert_eq!(
            (status, missing["error"]["kind"].as_str()),
            (404, Some("not_found")),
            "{missing}"
        );
        let (status, lead) = api.post("/v1/leads/@ben/replied", json!({})).await;
        assert_eq!(
            (status, lead["state"].as_str()),
            (200, Some("contacted")),
            "{lead}"
        );
        let (status, _) = api.post("/v1/leads/@nobody/replied", json!({})).await;
        assert_eq!(status, 404);
        let (status, lead) = api.post("/v1/leads/@ana/block", json!({})).await;
        assert_eq!(
            (status, lead["state"].as_str()),
            (200, Some("blocked")),
            "{lead}"
        );
        let (status, refused) = api.post("/v1/leads/@ana/block", json!({})).await;
        assert_eq!(
            (status, refused["error"]["kind"].as_str()),
            (409, Some("conflict")),
            "{refused}"
        );
        let (status, lead) = api.post("/v1/leads/@ana/unblock", json!({})).await;
        assert_eq!(
            (status, lead["state"].as_str()),
            (200, Some("new")),
            "{lead}"
        );
        // A do-not-contact list may name people not imported yet.
        let (status, lead) = api.post("/v1/leads/@stranger/block", json!({})).await;
        assert_eq!(
            (status, lead["state"].as_str()),
            (200, Some("blocked")),
            "{lead}"
        );
        let (status, refused) = api.post("/v1/leads/@ana/retry", json!({})).await;
        assert_eq!(status, 409, "a new lead has nothing to retry: {refused}");

        // Events: only a type some job sends.
        let (status, refused) = api
            .post("/v1/leads/@ana/events", json!({"type": "dm_open"}))
            .await;
        assert_eq!(
            (status, refused["error"]["field"].as_str()),
            (400, Some("type")),
            "{refused}"
        );
        let (status, queued) = api
            .post(
                "/v1/leads/@ana/events",
                json!({"type": "story_reaction", "context": {"emoji": "🔥"}}),
            )
            .await;
        assert_eq!(status, 202, "{queued}");
        let (_, shown) = api.get("/v1/leads/@ana").await;
        assert_eq!(shown["queued_events"][0]["id"], queued["id"], "{shown}");
        assert_eq!(shown["queued_events"][0]["context"], r#"{"emoji":"🔥"}"#);

        let (status, report) = api.get("/v1/status").await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["leads"]["new"], 2, "{report}");
        assert_eq!(report["jobs"][0]["name"], "reactions");
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_with_what_and_where() {
    let api = api(db::sqlite().await).await;
    let send = |body: &'static str, ctype: &'static str| {
        api.req(Method::POST, "/v1/leads")
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let (status, body) = answer(
        send("{not json", "application/json")
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    let (status, body) = answer(
        send(r#"{"leads": [{"own_username": "@x"}]}"#, "application/json")
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("target"),
        "{body}"
    );
    assert_eq!(body["error"]["field"], "leads[0]", "{body}");
    let (status, body) = answer(
        send(r#"{"leads": [{"target": "@bo",}]}"#, "application/json")
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("the body is not JSON: trailing comma") && !message.contains('?'),
        "{body}"
    );
    let (status, body) = answer(
        send(r#"[{"target": "@bo"}]"#, "application/json")
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("must be a JSON object"),
        "{body}"
    );
    let resp = api
        .req(Method::POST, "/v1/leads/@ana/inbound")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("answered");
    let (status, body) = answer(resp).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("message")),
        "{body}"
    );
    let resp = api
        .req(Method::DELETE, "/v1/leads/@ana")
        .send()
        .await
        .expect("answered");
    let (status, body) = answer(resp).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (405, Some("method_not_allowed")),
        "{body}"
    );
    let (status, body) = answer(
        send(r#"{"leads": [], "extra": 1}"#, "application/json")
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    let (status, body) = answer(
        send(r#"{"leads": []}"#, "text/plain")
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );

    let big = format!(
        r#"{{"leads": [{{"target": "@a", "own_username": "{}"}}]}}"#,
        "x".repeat(1 << 20)
    );
    let resp = api
        .req(Method::POST, "/v1/leads")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("answered");
    let (status, body) = answer(resp).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );

    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"target": format!("@l{i}")}))
        .collect();
    let (status, body) = api.post("/v1/leads", json!({ "leads": many })).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("leads")),
        "{body}"
    );
    let (count, _) = api.get("/v1/leads").await;
    assert_eq!(count, 200);

    for (path, field) in [
        ("/v1/leads?limit=0", "limit"),
        ("/v1/leads?limit=1001", "limit"),
        ("/v1/outbox?limit=0", "limit"),
        ("/v1/outbox?after=-1", "after"),
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{path}: {body}"
        );
    }
    for (path, field) in [
        ("/v1/leads?state=sleeping", Some("state")),
        ("/v1/leads?bogus=1", Some("bogus")),
        ("/v1/outbox?limit=x", Some("limit")),
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(
            (status, body["error"]["kind"].as_str()),
            (400, Some("bad_request")),
            "{path}: {body}"
        );
        assert_eq!(body["error"]["field"].as_str(), field, "{path}: {body}");
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("Failed to deserialize"),
            "{body}"
        );
    }
    let (status, body) = api
        .post("/v1/leads/@ana/replied", json!({"at": "yesterday"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api
        .post(
            "/v1/leads/@ana/events",
            json!({"type": "story_reaction", "context": [1]}),
        )
        .await;
    assert_eq!(status, 400, "the context must be an object: {body}");
}

#[tokio::test]
async fn the_openapi_document_is_the_one_checked_in() {
    let api = api(db::sqlite().await).await;
    let (status, served) = api.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let generated = serde_json::to_string_pretty(&fluidtalk_runner::http::openapi())
        .expect("serializes")
        + "\n";
    assert_eq!(
        serde_json::from_str::<Value>(&generated).expect("json"),
        served,
        "served = generated"
    );
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == generated,
        "docs/openapi.json differs from the API the code serves: run `UPDATE_OPENAPI=1 cargo test --test it http_api::openapi` and commit it"
    );
    for path in [
        "/v1/leads",
        "/v1/leads/{target}/inbound",
        "/v1/outbox/ack",
        "/v1/status",
    ] {
        assert!(served["paths"][path].is_object(), "{path} is described");
    }
}

/// A client that never finishes its headers is cut off (hyper needs a timer for that,
/// which axum's own `serve` does not give it), so idle sockets cannot pile up.
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = api(db::sqlite().await).await;
    let addr = api.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("half the headers");
    let limit = fluidtalk_runner::config::HttpSettings::default().header_timeout
        + std::time::Duration::from_secs(5);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(limit, socket.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the server closed the connection within {limit:?}"
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}
