//! The simulator's conversations, token balance and request log.

use super::SimConfig;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;

/// One answered API request.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct LogEntry {
    pub seq: u64,
    pub path: String,
    /// The `action` field (`OUTREACH`, `FOLLOW_UP`, `ENTRY_POINT`), or `CHAT` / `UPLOAD`.
    pub action: String,
    pub target: String,
    /// The `own_username` the request named, if any: the sender account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_username: Option<String>,
    pub status: u16,
    /// The simulator dropped the connection instead of sending this answer (it had
    /// already acted on the request).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
}

/// What the simulator holds, for tests and the `/_sim/state` endpoint.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SimSnapshot {
    /// `None` when unlimited.
    pub tokens_left: Option<u64>,
    pub conversations: usize,
    pub sealed: usize,
    pub requests: usize,
}

pub(super) enum Op<'a> {
    Chat { message: &'a str },
    Opener,
    Event { entry_type: &'a str },
    FollowUp,
}

struct Conversation {
    session_id: String,
    follow_ups: u32,
    turns: u32,
    sealed: bool,
}

pub(super) struct SimState {
    conversations: HashMap<String, Conversation>,
    tokens: Option<u64>,
    rng: StdRng,
    next_session: u64,
    uploads: u64,
    pub(super) log: Vec<LogEntry>,
    /// Requests answered, logged or not.
    pub(super) requests: u64,
    keep_log: bool,
}

/// An answer: a status and a JSON body. Small, so it can be an `Err` as well as an `Ok`.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: serde_json::Value,
}

/// A 429 as a rate limiter in front of the API sends it, with `Retry-After` in seconds.
pub(super) fn too_many_requests(retry_after: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(axum::http::header::RETRY_AFTER, retry_after.to_string())],
        Json(json!({ "detail": "Too Many Requests" })),
    )
        .into_response()
}

impl Reply {
    pub(super) fn ok(body: serde_json::Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
        }
    }

    /// An error answer as FastAPI writes it: `{"detail": text}`.
    pub(super) fn detail(status: StatusCode, text: &str) -> Self {
        Self {
            status,
            body: json!({ "detail": text }),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

fn detail(status: StatusCode, text: &str) -> Reply {
    Reply::detail(status, text)
}

impl SimState {
    pub(super) fn new(config: &SimConfig) -> Self {
        Self {
            conversations: HashMap::new(),
            tokens: config.tokens,
            rng: StdRng::seed_from_u64(config.seed),
            next_session: 0,
            uploads: 0,
            log: Vec::new(),
            requests: 0,
            keep_log: config.keep_log,
        }
    }

    pub(super) fn draw(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    pub(super) fn next_upload(&mut self) -> u64 {
        self.uploads += 1;
        self.uploads
    }

    pub(super) fn record(
        &mut self,
        path: &str,
        action: &str,
        target: &str,
        own_username: Option<String>,
        status: u16,
        dropped: bool,
    ) {
        self.requests += 1;
        if !self.keep_log {
            return;
        }
        let seq = self.requests;
        self.log.push(LogEntry {
            seq,
            path: path.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            own_username,
            status,
            dropped,
        });
    }

    /// Sets the token balance (`None`: unlimited), as a team buying more tokens would.
    pub(super) fn set_tokens(&mut self, tokens: Option<u64>) {
        self.tokens = tokens;
    }

    pub(super) fn snapshot(&self) -> SimSnapshot {
        SimSnapshot {
            tokens_left: self.tokens,
            conversations: self.conversations.len(),
            sealed: self.conversations.values().filter(|c| c.sealed).count(),
            requests: self.requests as usize,
        }
    }

    /// Conversations that exist already, started without a token.
    pub(super) fn hold<'a>(&mut self, targets: impl IntoIterator<Item = &'a str>) {
        for target in targets {
            if !self.conversations.contains_key(target) {
                self.next_session += 1;
                let session_id = format!("sim-{:06}", self.next_session);
                self.conversations.insert(
                    target.to_string(),
                    Conversation {
                        session_id,
                        follow_ups: 0,
                        turns: 0,
                        sealed: false,
                    },
                );
            }
        }
    }

    /// Starts a conversation if the balance allows: one token each.
    fn open(&mut self, target: &str) -> Result<&mut Conversation, Reply> {
        if let Some(tokens) = self.tokens.as_mut() {
            if *tokens == 0 {
                return Err(detail(StatusCode::PAYMENT_REQUIRED, "insufficient_tokens"));
            }
            *tokens -= 1;
        }
        self.next_session += 1;
        let session_id = format!("sim-{:06}", self.next_session);
        Ok(self
            .conversations
            .entry(target.to_string())
            .or_insert(Conversation {
                session_id,
                follow_ups: 0,
                turns: 0,
                sealed: false,
            }))
    }

    /// The target's conversation, started (and paid for) if it has none.
    fn existing_or_new(&mut self, target: &str) -> Result<&mut Conversation, Reply> {
        if !self.conversations.contains_key(target) {
            self.open(target)?;
        }
        self.conversations
            .get_mut(target)
            .ok_or_else(|| detail(StatusCode::INTERNAL_SERVER_ERROR, "conversation vanished"))
    }

    /// Answers one API operation for `target`, as the real engine would.
    pub(super) fn apply(
        &mut self,
        config: &SimConfig,
        op: Op<'_>,
        target: &str,
    ) -> Result<Reply, Reply> {
        if config.ignore.contains(target) {
            return Ok(Reply::ok(json!({
                "session_id": null, "message": "", "reply": "", "replies": [],
                "ignored": true, "ignore_reason": "duplicate_lead_owned_by_another_account",
            })));
        }
        if self.conversations.get(target).is_some_and(|c| c.sealed) {
            return Err(detail(StatusCode::BAD_REQUEST, "This session is DONE"));
        }
        let n = self.conversations.get(target).map_or(0, |c| c.turns);
        if config.ignore_rate > 0.0
            && draw(config.seed, "ignore", target, i64::from(n)) < config.ignore_rate
        {
            return Ok(Reply::ok(json!({
                "session_id": null, "message": "", "reply": "", "replies": [],
                "ignored": true, "ignore_reason": "duplicate_lead_owned_by_another_account",
            })));
        }
        if config.seal_rate > 0.0
            && draw(config.seed, "seal", target, i64::from(n)) < config.seal_rate
        {
            if let Some(c) = self.conversations.get_mut(target) {
                c.sealed = true;
            }
            return Err(detail(StatusCode::BAD_REQUEST, "This session is DONE"));
        }
        let existed = self.conversations.contains_key(target);
        let continued = existed.then_some("conversation_already_active");
        match op {
            Op::FollowUp => {
                let conv = self.conversations.get_mut(target).ok_or_else(|| {
                    detail(StatusCode::NOT_FOUND, "No conversation for this target")
                })?;
                conv.follow_ups += 1;
                conv.turns += 1;
                let n = conv.follow_ups;
                if config.seal_after.is_some_and(|max| n >= max) {
                    conv.sealed = true;
                }
                let text = format!("Hey {target}, still around? ({n})");
                Ok(action_ok(&conv.session_id, &text, None))
            }
            Op::Opener => {
                let conv = self.existing_or_new(target)?;
                conv.turns += 1;
                // An opener to an active conversation sends nothing: the lead is already
                // in conversation.
                let text = if existed {
                    String::new()
                } else {
                    format!("Hi {target}! Loved your latest post, had to say hey")
                };
                Ok(action_ok(&conv.session_id, &text, continued))
            }
            Op::Event { entry_type } => {
                let conv = self.existing_or_new(target)?;
                conv.turns += 1;
                let text = format!("Saw your {entry_type}, {target}!");
                Ok(action_ok(&conv.session_id, &text, continued))
            }
            Op::Chat { message } => {
                let conv = self.existing_or_new(target)?;
                conv.turns += 1;
                let replies = vec![format!("You said: {message}"), "Tell me more?".to_string()];
                Ok(Reply::ok(json!({
                    "reply": replies.join("\n"),
                    "replies": replies,
                    "should_send_photo": false,
                    "photo_url": null,
                    "session_id": conv.session_id,
                    "ignored": false,
                    "ignore_reason": null,
                })))
            }
        }
    }
}

/// A draw in [0, 1) for `what` of the `n`-th call to `target` (its turn, its step): a hash
/// of the seed and those, so it does not depend on the order calls arrive in. SipHash with
/// fixed keys: the same draws on every run of this build. The simulator's ignore and seal
/// rates use it, and the forecast's replies.
pub fn draw(seed: u64, what: &str, target: &str, n: i64) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (seed, what, target, n).hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn action_ok(session_id: &str, message: &str, continued: Option<&str>) -> Reply {
    Reply::ok(json!({
        "session_id": session_id,
        "message": message,
        "ignored": false,
        "ignore_reason": null,
        "continued": continued.is_some(),
        "continued_reason": continued,
    }))
}
