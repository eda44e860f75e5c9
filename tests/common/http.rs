//! The runner's HTTP API served in the test on a free port, over a test database, with a
//! FluidTalk stand-in (the simulator or a wiremock server) at `api_base`.

use super::client_with;
use super::db::TestDb;
use fluidtalk_runner::clock::{Clock, ManualClock};
use fluidtalk_runner::config;
use fluidtalk_runner::http::{AppState, Token};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-6f1d0c3b9a2e4d5f8a7b6c5d";

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub clock: Arc<ManualClock>,
    stop: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves the API with the campaign `toml` (jobs, backoff) and the API at `api_base`.
pub async fn serve(db: TestDb, api_base: &str, toml: &str) -> Api {
    serve_with_timeout(db, api_base, toml, Duration::from_secs(10)).await
}

pub async fn serve_with_timeout(db: TestDb, api_base: &str, toml: &str, timeout: Duration) -> Api {
    fluidtalk_runner::fluidtalk::install_crypto_provider();
    let config = config::parse(std::path::Path::new("jobs.toml"), toml).expect("campaign parses");
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("bound");
    let runner = fluidtalk_runner::runner::Runner::new(
        db.store.clone(),
        client_with(api_base, Some("@persona"), timeout),
        Arc::new(config),
        clock.clone() as Arc<dyn Clock>,
        "test-http-0000".into(),
    );
    let metrics = fluidtalk_runner::metrics::install();
    let state = AppState::new(
        db.store.clone(),
        runner,
        Token::new(TOKEN).expect("token"),
        Some(Arc::new(move || metrics.render())),
    )
    .with_database_url(db.url.clone());
    let stop = CancellationToken::new();
    tokio::spawn(fluidtalk_runner::http::serve(listener, state, stop.clone()));
    Api {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        db,
        clock,
        stop,
    }
}

impl Api {
    /// Logs in to the dashboard with `password`: the status, the `Set-Cookie` header if
    /// one was set, and the body.
    pub async fn log_in(&self, password: &str) -> (u16, Option<String>, String) {
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .post(self.url("/login"))
            .form(&[("password", password)])
            .send()
            .await
            .expect("answered");
        let status = r.status().as_u16();
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, cookie, r.text().await.unwrap_or_default())
    }

    /// A dashboard session with the token: the cookie as a request sends it (`name=value`).
    pub async fn session(&self) -> String {
        let (_, cookie, _) = self.log_in(TOKEN).await;
        let cookie = cookie.expect("a session cookie");
        cookie.split(';').next().expect("name=value").to_string()
    }

    /// The dashboard's page with the session `cookie`: its status and HTML.
    pub async fn page(&self, cookie: &str) -> (u16, String) {
        let r = self
            .http
            .get(self.url("/"))
            .header("cookie", cookie)
            .send()
            .await
            .expect("answered");
        (r.status().as_u16(), r.text().await.expect("html"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the token.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(TOKEN)
    }

    /// GETs `path` with the token: the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        answer(
            self.req(reqwest::Method::GET, path)
                .send()
                .await
                .expect("GET answered"),
        )
        .await
    }

    /// POSTs `body` as JSON to `path` with the token.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        answer(
            self.req(reqwest::Method::POST, path)
                .json(&body)
                .send()
                .await
                .expect("POST answered"),
        )
        .await
    }
}

/// A response's status and JSON body (`null` when the body is not JSON).
pub async fn answer(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body read");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}
