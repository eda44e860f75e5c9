//! A FluidTalk-compatible simulator, for demos, tests and benchmarks. Never on the live path.
//!
//! It serves the same endpoints, wire format and status codes as the real API, keeps its
//! conversations in memory keyed by target, spends a token for each new conversation,
//! answers `continued` to an opener for an active conversation, 404 to a follow-up with no
//! conversation, seals a conversation after `seal_after` follow-ups (then 400), answers
//! `ignored` for configured targets, and injects faults: latency (fixed or a seeded random
//! range), seeded random 500s, 429 bursts with `Retry-After`, and dropped connections
//! (after acting, so the caller cannot know what happened). Every request is kept in a log
//! (`GET /_sim/log`) so tests can count what was sent; `POST /_sim/tokens` sets the balance.

mod state;

pub use state::{LogEntry, SimSnapshot, draw};

use crate::fluidtalk::ApiKey;
use crate::fluidtalk::{
    ACTION_ENTRY_POINT, ACTION_FOLLOW_UP, ACTION_OUTREACH, PATH_ACTION, PATH_CHAT, PATH_UPLOAD,
};
use axum::Router;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use state::{Op, Reply, SimState};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Tokens for new conversations; `None` is unlimited.
    pub tokens: Option<u64>,
    /// Seal a conversation after this many follow-ups; the next call gets 400.
    pub seal_after: Option<u32>,
    /// Targets owned by another account of the persona: answered `ignored`.
    pub ignore: HashSet<String>,
    /// Added to every API request.
    pub latency: Duration,
    /// With this, each request's latency is drawn between `latency` and this.
    pub latency_max: Option<Duration>,
    /// Share of API requests answered with a 500, drawn from `seed`.
    pub fail_rate: f64,
    /// Share of API requests whose connection is dropped after the simulator has acted on
    /// them (a message may have gone out; the caller gets no answer), drawn from `seed`.
    pub drop_rate: f64,
    /// Share of calls answered `ignored` (the lead is owned by another account), and of
    /// calls that find the conversation sealed (400), each drawn per call from `seed`,
    /// the target and its call count: the same calls get the same draws in any order.
    pub ignore_rate: f64,
    pub seal_rate: f64,
    /// Bursts of 429s: of every `every` requests, the first `burst` are refused.
    pub rate_limit: Option<RateLimitBursts>,
    pub seed: u64,
    /// The only key accepted; `None` accepts any non-empty key.
    pub api_key: Option<ApiKey>,
    /// Keep every request in the log (`log`, `/_sim/log`); without it only their count
    /// is kept (the forecast, whose memory must not grow with its calls).
    pub keep_log: bool,
}

/// 429 bursts: requests are numbered from 0; those with `n % every < burst` get a 429 with
/// `Retry-After: retry_after` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitBursts {
    pub every: u64,
    pub burst: u64,
    pub retry_after: u64,
}

impl std::str::FromStr for RateLimitBursts {
    type Err = String;

    /// `BURST/EVERY:RETRY_AFTER`, e.g. `20/200:1`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected BURST/EVERY:RETRY_AFTER_SECONDS, e.g. 20/200:1");
        let (burst, rest) = s.split_once('/').ok_or_else(bad)?;
        let (every, retry_after) = rest.split_once(':').ok_or_else(bad)?;
        let n = |v: &str| v.trim().parse::<u64>().map_err(|_| bad());
        let (burst, every, retry_after) = (n(burst)?, n(every)?, n(retry_after)?);
        if every == 0 || burst > every {
            return Err(format!(
                "{s:?}: BURST must be at most EVERY, and EVERY above 0"
            ));
        }
        Ok(Self {
            every,
            burst,
            retry_after,
        })
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tokens: None,
            seal_after: None,
            ignore: HashSet::new(),
            latency: Duration::ZERO,
            latency_max: None,
            fail_rate: 0.0,
            drop_rate: 0.0,
            ignore_rate: 0.0,
            seal_rate: 0.0,
            rate_limit: None,
            seed: 0,
            api_key: None,
            keep_log: true,
        }
    }
}

/// A running simulator's shared state; clone it to inspect the log from a test.
#[derive(Clone)]
pub struct Simulator {
    config: Arc<SimConfig>,
    state: Arc<Mutex<SimState>>,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        let state = SimState::new(&config);
        Self {
            config: Arc::new(config),
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// How many API requests were answered so far.
    pub fn requests(&self) -> usize {
        self.lock().requests as usize
    }

    /// Every API request answered so far, in order.
    pub fn log(&self) -> Vec<LogEntry> {
        self.lock().log.clone()
    }

    /// Starts a conversation for each target without charging a token: conversations the
    /// real API already holds (the forecast's contacted leads).
    pub fn hold_conversations<'a>(&self, targets: impl IntoIterator<Item = &'a str>) {
        self.lock().hold(targets);
    }

    /// Tokens left and conversations held.
    pub fn snapshot(&self) -> SimSnapshot {
        self.lock().snapshot()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(PATH_CHAT, post(chat))
            .route(PATH_ACTION, post(action))
            .route(PATH_UPLOAD, post(upload))
            .route("/_sim/log", get(log))
            .route("/_sim/state", get(snapshot))
            .route("/_sim/tokens", post(set_tokens))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters to a simulator, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_key(&self, headers: &HeaderMap) -> Result<(), Reply> {
        let given = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if given.is_empty() {
            return Err(Reply::detail(StatusCode::UNAUTHORIZED, "Missing API key"));
        }
        if let Some(want) = &self.config.api_key
            && !want.matches(given)
        {
            return Err(Reply::detail(StatusCode::UNAUTHORIZED, "Invalid API key"));
        }
        Ok(())
    }

    /// The path every API request takes: latency, key check, form decoding, fault
    /// injection, then `work`; whatever the answer, it is logged.
    async fn call(
        &self,
        path: &str,
        req: Request,
        work: impl FnOnce(&mut SimState, &SimConfig, &Fields, &mut Logged) -> Result<Reply, Reply>,
    ) -> Response {
        let mut logged = Logged {
            action: match path {
                PATH_CHAT => "CHAT".into(),
                PATH_UPLOAD => "UPLOAD".into(),
                _ => String::new(),
            },
            target: String::new(),
            own_username: None,
        };
        let config = &self.config;
        let latency = match config.latency_max {
            Some(max) if max > config.latency => {
                let share = self.lock().draw();
                config.latency + (max - config.latency).mul_f64(share)
            }
            _ => config.latency,
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut dropped = false;
        let reply = async {
            self.check_key(req.headers())?;
            let fields = read_fields(req).await?;
            logged.action = fields.get("action").unwrap_or(&logged.action).to_string();
            logged.target = fields.get("target").unwrap_or_default().to_string();
            logged.own_username = fields
                .get("own_username")
                .filter(|u| !u.is_empty())
                .map(str::to_string);
            if let Some(limit) = config.rate_limit {
                let n = self.lock().requests;
                if n % limit.every < limit.burst {
                    return Err(Reply::detail(
                        StatusCode::TOO_MANY_REQUESTS,
                        "Too Many Requests",
                    ));
                }
            }
            if config.fail_rate > 0.0 && self.lock().draw() < config.fail_rate {
                return Err(Reply::detail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "simulated server error",
                ));
            }
            dropped = config.drop_rate > 0.0 && self.lock().draw() < config.drop_rate;
            work(&mut self.lock(), config, &fields, &mut logged)
        }
        .await
        .unwrap_or_else(|rejected| rejected);
        self.lock().record(
            path,
            &logged.action,
            &logged.target,
            logged.own_username.take(),
            reply.status.as_u16(),
            dropped,
        );
        if dropped {
            return dropped_connection();
        }
        match (reply.status, config.rate_limit) {
            (StatusCode::TOO_MANY_REQUESTS, Some(limit)) => {
                state::too_many_requests(limit.retry_after)
            }
            _ => reply.into_response(),
        }
    }
}

/// A response whose body fails before its first byte: the server closes the connection
/// without an answer, as a crashed worker or a cut network would.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<axum::body::Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "simulated dropped connection",
        ))
    });
    Response::new(axum::body::Body::from_stream(failing))
}

/// What the request log says about a call.
#[derive(Default)]
struct Logged {
    action: String,
    target: String,
    own_username: Option<String>,
}

/// A request's form fields, the uploaded file's name if any, and the `Host` it was sent to.
struct Fields {
    values: HashMap<String, String>,
    file: Option<String>,
    host: String,
}

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A required field, or FastAPI's 422 for a missing one.
    fn require(&self, name: &str) -> Result<&str, Reply> {
        self.get(name).ok_or_else(|| Reply {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"detail": [{
                "type": "missing", "loc": ["body", name], "msg": "Field required"
            }]}),
        })
    }
}

async fn read_fields(req: Request) -> Result<Fields, Reply> {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let is_multipart = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    if !is_multipart {
        let axum::Form(values) = axum::Form::<HashMap<String, String>>::from_request(req, &())
            .await
            .map_err(|r| Reply::detail(r.status(), &r.body_text()))?;
        return Ok(Fields {
            values,
            file: None,
            host,
        });
    }
    let bad = |status: StatusCode, text: String| Reply::detail(status, &text);
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|r| bad(r.status(), r.body_text()))?;
    let mut fields = Fields {
        values: HashMap::new(),
        file: None,
        host,
    };
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.file_name().map(str::to_string);
        let data = field
            .bytes()
            .await
            .map_err(|e| bad(e.status(), e.body_text()))?;
        match filename {
            Some(filename) if name == "file" => fields.file = Some(filename),
            _ => {
                fields
                    .values
                    .insert(name, String::from_utf8_lossy(&data).into_owned());
            }
        }
    }
    Ok(fields)
}

async fn chat(State(sim): State<Simulator>, req: Request) -> Response {
    sim.call(PATH_CHAT, req, |state, config, fields, logged| {
        logged.action = "CHAT".into();
        let target = fields.require("target")?;
        logged.target = target.into();
        let message = fields.require("message")?;
        state.apply(config, Op::Chat { message }, target)
    })
    .await
}

async fn action(State(sim): State<Simulator>, req: Request) -> Response {
    sim.call(PATH_ACTION, req, |state, config, fields, logged| {
        let action = fields.get("action").unwrap_or_default();
        logged.action = action.into();
        let target = fields.require("target")?;
        logged.target = target.into();
        let op = match action {
            ACTION_OUTREACH => Op::Opener,
            ACTION_FOLLOW_UP => Op::FollowUp,
            ACTION_ENTRY_POINT => {
                let entry_type = fields.require("entry_type")?;
                if let Some(ctx) = fields.get("entry_context")
                    && !matches!(serde_json::from_str::<Value>(ctx), Ok(Value::Object(_)))
                {
                    return Err(Reply::detail(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "entry_context must be a JSON object",
                    ));
                }
                Op::Event { entry_type }
            }
            other => {
                return Err(Reply::detail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!(
                        "unknown action {other:?}: expected OUTREACH, ENTRY_POINT or FOLLOW_UP"
                    ),
                ));
            }
        };
        state.apply(config, op, target)
    })
    .await
}

async fn upload(State(sim): State<Simulator>, req: Request) -> Response {
    sim.call(PATH_UPLOAD, req, |state, _config, fields, logged| {
        logged.action = "UPLOAD".into();
        let Some(filename) = &fields.file else {
            return Err(Reply::detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "file part is required",
            ));
        };
        let n = state.next_upload();
        let safe: String = filename
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(Reply::ok(json!({
            "url": format!("http://{}/sim-uploads/{n}/{safe}", fields.host)
        })))
    })
    .await
}

async fn log(State(sim): State<Simulator>) -> axum::Json<Vec<LogEntry>> {
    axum::Json(sim.log())
}

async fn snapshot(State(sim): State<Simulator>) -> axum::Json<SimSnapshot> {
    axum::Json(sim.snapshot())
}

/// `POST /_sim/tokens` with `{"tokens": N}` (or `null` for unlimited): sets the balance.
async fn set_tokens(
    State(sim): State<Simulator>,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> Response {
    match body.get("tokens") {
        Some(Value::Null) => sim.lock().set_tokens(None),
        Some(v) if v.as_u64().is_some() => sim.lock().set_tokens(v.as_u64()),
        _ => {
            return Reply::detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "expected {\"tokens\": N} or {\"tokens\": null}",
            )
            .into_response();
        }
    }
    axum::Json(sim.snapshot()).into_response()
}
