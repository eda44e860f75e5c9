//! A FluidTalk-compatible simulator, for demos, tests and benchmarks. Never on the live path.
//!
//! It serves the same endpoints, wire format and status codes as the real API, keeps its
//! conversations in memory keyed by target, spends a token for each new conversation,
//! answers `continued` to an opener for an active conversation, 404 to a follow-up with no
//! conversation, seals a conversation after `seal_after` follow-ups (then 400), answers
//! `ignored` for configured targets, and can add latency and seeded random 500s. Every
//! request it answers is kept in a log (`GET /_sim/log`) so tests can count what was sent.

mod state;

pub use state::{LogEntry, SimSnapshot};

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
    /// Share of API requests answered with a 500, drawn from `seed`.
    pub fail_rate: f64,
    pub seed: u64,
    /// The only key accepted; `None` accepts any non-empty key.
    pub api_key: Option<ApiKey>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tokens: None,
            seal_after: None,
            ignore: HashSet::new(),
            latency: Duration::ZERO,
            fail_rate: 0.0,
            seed: 0,
            api_key: None,
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

    /// Every API request answered so far, in order.
    pub fn log(&self) -> Vec<LogEntry> {
        self.lock().log.clone()
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

    /// The path every API request takes: latency, key check, fault injection, form
    /// decoding, then `work`; whatever the answer, it is logged.
    async fn call(
        &self,
        path: &str,
        req: Request,
        work: impl FnOnce(&mut SimState, &SimConfig, &Fields, &mut Logged) -> Result<Reply, Reply>,
    ) -> Response {
        let mut logged = Logged::default();
        let reply = async {
            if !self.config.latency.is_zero() {
                tokio::time::sleep(self.config.latency).await;
            }
            self.check_key(req.headers())?;
            if self.config.fail_rate > 0.0 && self.lock().draw() < self.config.fail_rate {
                return Err(Reply::detail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "simulated server error",
                ));
            }
            let fields = read_fields(req).await?;
            work(&mut self.lock(), &self.config, &fields, &mut logged)
        }
        .await
        .unwrap_or_else(|rejected| rejected);
        self.lock()
            .record(path, &logged.action, &logged.target, reply.status.as_u16());
        reply.into_response()
    }
}

/// What the request log says about a call.
#[derive(Default)]
struct Logged {
    action: String,
    target: String,
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
