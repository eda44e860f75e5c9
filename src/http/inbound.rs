//! `POST /v1/leads/{target}/inbound`, the inbound relay: the lead wrote to the persona on
//! the platform. The reply is recorded (an unknown target is added as `contacted`), the
//! lead is leased for the call, `inbound_chat` is called and recorded as an attempt, its
//! answer goes to the outbox and back to the caller. API errors act on the lead and the
//! account as the runner's policy says (402 pause, 400 done, ...) and come back as 502.
//!
//! The call runs in its own task: a caller that hangs up mid-call does not cancel it, so
//! its answer is always recorded.

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorDetail, Json};
use super::idempotency::{self, Claimed};
use crate::config::OnUnknown;
use crate::fluidtalk::{ActionResult, ChatRequest, ChatResult};
use crate::lead::LeadState;
use crate::plan::PlannedCall;
use crate::policy;
use crate::runner::settle::{CallOutcome, Rules, Settled, Started, settle};
use crate::store::{Action, NewAttempt, PauseScope, StoreError};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use utoipa::ToSchema;

/// The job name inbound attempts are recorded under.
pub const INBOUND_JOB: &str = "(inbound)";
/// How long a relayed call waits for a free call slot before the caller is told to retry.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundRequest {
    /// What the lead wrote.
    pub message: String,
    /// The persona account the lead wrote to (default: the lead's, then the campaign's).
    pub own_username: Option<String>,
    /// An image the lead sent, by URL.
    pub image_url: Option<String>,
}

/// The persona's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboundAnswer {
    /// The outbox message holding the answer; `null` when there is nothing to send.
    pub outbox_id: Option<i64>,
    /// The answer's text ("" when there is nothing to send).
    pub message: String,
    /// The answer split into chat bubbles, if the API split it.
    pub replies: Vec<String>,
    pub session_id: Option<String>,
    /// The lead belongs to another account of the persona: send nothing.
    pub ignored: bool,
    pub ignore_reason: Option<String>,
    pub should_send_photo: bool,
    pub photo_url: Option<String>,
    /// The attempt recorded for the call.
    pub attempt_id: i64,
    /// The lead's state after the answer.
    pub lead_state: LeadState,
}

/// The inbound relay: records the lead's message as a reply, asks the persona for its
/// answer (`inbound_chat`) and puts it in the outbox. With an `Idempotency-Key`, a retried
/// request returns the first one's answer without a second call.
#[utoipa::path(post, path = "/v1/leads/{target}/inbound", tag = "inbound",
    params(("target" = String, Path, description = "The lead's target"),
           ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters")),
    request_body = InboundRequest,
    responses((status = 200, body = InboundAnswer),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "blocked lead, a call in flight, or the key in use"),
              (status = 422, body = ErrorBody, description = "the key was used with another request, or a field over its limit"),
              (status = 502, body = ErrorBody, description = "the FluidTalk API answered with an error"),
              (status = 503, body = ErrorBody, description = "every call is paused (the API refused the key)")),
    security(("bearer" = [])))]
pub async fn inbound(
    State(state): State<AppState>,
    super::leads::Target(target): super::leads::Target,
    headers: HeaderMap,
    Json(req): Json<InboundRequest>,
) -> Response {
    match accept(state, target, &headers, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn accept(
    state: AppState,
    target: String,
    headers: &HeaderMap,
    req: InboundRequest,
) -> Result<Response, ApiError> {
    use crate::lead::fields;
    let checked =
        crate::import::check_input(&target, req.own_username.clone(), None, None, Vec::new())?;
    fields::message(&req.message)?;
    if let Some(u) = &req.image_url {
        fields::image_url(u)?;
    }
    let key = idempotency::key(headers)?;
    let scope = format!("inbound:{}", checked.target);
    if let Some(k) = &key {
        let body = serde_json::to_vec(&req).unwrap_or_default();
        let hash = idempotency::request_hash(&[scope.as_bytes(), &body]);
        let stale = chrono::Duration::from_std(super::request_timeout(&state.config))
            .unwrap_or(chrono::Duration::hours(1));
        let now = state.clock.now();
        if let Claimed::Answer(r) = idempotency::claim(
            &*state.store,
            &scope,
            k,
            &hash,
            now,
            stale,
            "the first request with this Idempotency-Key ended without an answer (the daemon stopped mid-call): \
             whether the API answered is unknown, and the lead goes to review; it is not called again",
        )
        .await?
        {
            return Ok(r);
        }
    }
    let store = state.store.clone();
    let clock = state.clock.clone();
    // Tracked: a stop waits for it, and a caller who hangs up cancels nothing.
    let task = state.tasks.clone().spawn(async move {
        let (status, body, keep) = relay(
            &state,
            &checked.target,
            checked.own_username.as_deref(),
            req,
        )
        .await;
        if let Some(k) = &key {
            let stored = if keep {
                store
                    .finish_key(&scope, k, status.as_u16(), &body.to_string(), clock.now())
                    .await
            } else {
                store.forget_key(&scope, k).await
            };
            if let Err(e) = stored {
                tracing::error!(error = %e, "could not store the answer of an idempotent request");
            }
        }
        (status, body)
    });
    match task.await {
        Ok((status, body)) => Ok((status, axum::Json(body)).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "the inbound relay's task failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the relay failed; the daemon's log says why",
            ))
        }
    }
}

/// A lease token for one relayed call: unique in this process, whose runner id is unique.
fn lease_token(runner_id: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{runner_id}/inbound-{}",
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn error_json(e: ApiError) -> (StatusCode, serde_json::Value, bool) {
    let body = serde_json::to_value(ErrorBody { error: e.detail }).unwrap_or_default();
    (e.status, body, false)
}

/// Records, calls and settles: the answer's status, its JSON, and whether it is kept for
/// the idempotency key (only when the API may have acted).
async fn relay(
    state: &AppState,
    target: &str,
    own_username: Option<&str>,
    req: InboundRequest,
) -> (StatusCode, serde_json::Value, bool) {
    let store = &*state.store;
    let now = state.clock.now();
    match store.pauses().await {
        Ok(p) => {
            if let Some(p) = p
                .iter()
                .find(|p| p.scope == PauseScope::All && p.until > now)
            {
                return error_json(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "paused",
                    format!(
                        "every call is paused until {} ({}): fix FLUIDTALK_API_KEY, then `pause clear`",
                        p.until.to_rfc3339(),
                        p.reason
                    ),
                ));
            }
        }
        Err(e) => return error_json(e.into()),
    }
    // One of `[limits] concurrency`'s slots, shared with the jobs, within a few seconds:
    // a caller told to come back later is better than a call that starts after it gave up.
    let Ok(Some(_slot)) = tokio::time::timeout(SLOT_WAIT, state.runner.call_slot()).await else {
        return error_json(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "every API call slot ([limits] concurrency) is busy; try again in a few seconds",
        ));
    };
    let token = lease_token(&state.runner.runner_id);
    let now = state.clock.now();
    let lease = state.runner.single_call_lease();
    let lead = match store
        .begin_inbound(target, own_username, &token, now, now + lease)
        .await
    {
        Ok(lead) => lead,
        Err(StoreError::Busy(t)) => {
            return error_json(ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                format!("lead {t:?} has a campaign call in flight; try again once it is answered"),
            ));
        }
        Err(e) => return error_json(e.into()),
    };
    let attempt = NewAttempt {
        lead_id: lead.id,
        job: INBOUND_JOB.to_string(),
        action: Action::Inbound,
        step: 0,
        lease_token: token.clone(),
        started_at: now,
        claimed: Some(lead.state),
    };
    let attempt_id = match store.start_attempts(&[attempt]).await {
        Ok(ids) if ids.len() == 1 => ids[0],
        failed => {
            if let Err(e) = store.release_leads(&[lead.id], &token, now).await {
                tracing::warn!(error = %e, "could not give the relay's lease back; it runs out by itself");
            }
            return error_json(match failed {
                Err(e) if !matches!(e, StoreError::Conflict(_)) => e.into(),
                _ => ApiError::new(
                    StatusCode::CONFLICT,
                    "busy",
                    "the lead changed while the call was being recorded; try again",
                ),
            });
        }
    };
    let sender = own_username
        .map(str::to_string)
        .or(lead.own_username.clone());
    let started = std::time::Instant::now();
    let answer = state
        .runner
        .client()
        .inbound_chat(&ChatRequest {
            target: lead.target.clone(),
            message: req.message,
            own_username: sender,
            image_url: req.image_url,
            image_file: None,
        })
        .await;
    crate::metrics::api_call(
        Action::Inbound.as_str(),
        crate::metrics::outcome(&answer),
        started.elapsed(),
    );
    let end = state.clock.now();
    // What the caller gets back is taken first: settling the answer consumes it.
    let reply: Result<ChatResult, ErrorDetail> = match &answer {
        Ok(chat) => Ok(chat.clone()),
        Err(e) => Err(ErrorDetail {
            kind: "api_error",
            message: format!("the FluidTalk API call failed: {e}"),
            field: None,
            index: None,
            api_status: e.status(),
            api_error: Some(e.kind().as_str().to_string()),
        }),
    };
    // Settled as a job's call is (`runner::settle`, the policy's table), as an `inbound`
    // call: a transient failure is not charged to the lead, and an unknown outcome goes to
    // review.
    let started = Started {
        call: PlannedCall {
            job: INBOUND_JOB.to_string(),
            target: lead.target.clone(),
            action: Action::Inbound,
            step: 0,
            reason: "the lead wrote to the persona".into(),
            lead: lead.clone(),
            event: None,
        },
        token: token.clone(),
        attempt_id,
    };
    let rules = Rules {
        backoff: &state.config.backoff,
        on_unknown: OnUnknown::Review,
        step_retried: false,
    };
    let outcome = CallOutcome::Answered(answer.map(|chat| ActionResult {
        session_id: chat.session_id.clone(),
        message: text_of(&chat),
        ignored: chat.ignored,
        ignore_reason: chat.ignore_reason,
        continued: false,
        continued_reason: None,
    }));
    let Settled {
        result, account, ..
    } = settle(rules, &started, outcome, end);
    let keep = result
        .attempt
        .as_ref()
        .is_some_and(|a| a.status.holds_step());
    // The answer exists only in memory until this succeeds: ride out a database outage.
    let results = [result];
    let recorded = state
        .runner
        .db()
        .hold("record an inbound answer", 1, || {
            store.record_results(&results, end)
        })
        .await;
    if let Err(e) = &recorded {
        // The attempt stays in flight: recovery sends the lead to review once its lease
        // ends. The caller still gets the answer below (not queued in the outbox).
        tracing::error!(error = %e, attempt_id, "could not record an inbound call's answer");
    }
    if let Some((effect, why)) = account {
        pause(state, effect, &why, end).await;
    }
    match reply {
        Ok(chat) => {
            let outbox = match store.outbox_of_attempt(attempt_id).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, attempt_id, "could not read the relay's outbox row back");
                    None
                }
            };
            let lead_state = store
                .get_lead(&lead.target)
                .await
                .ok()
                .flatten()
                .map_or(lead.state, |l| l.state);
            let body = InboundAnswer {
                outbox_id: outbox.map(|o| o.id),
                message: text_of(&chat),
                replies: chat.replies,
                session_id: chat.session_id,
                ignored: chat.ignored,
                ignore_reason: chat.ignore_reason,
                should_send_photo: chat.should_send_photo,
                photo_url: chat.photo_url,
                attempt_id,
                lead_state,
            };
            (
                StatusCode::OK,
                serde_json::to_value(body).unwrap_or_default(),
                keep,
            )
        }
        Err(detail) => {
            let body = serde_json::to_value(ErrorBody { error: detail }).unwrap_or_default();
            (StatusCode::BAD_GATEWAY, body, keep)
        }
    }
}

/// The text that goes to the outbox: the reply, or its bubbles one per paragraph.
fn text_of(chat: &ChatResult) -> String {
    if chat.ignored {
        String::new()
    } else if !chat.reply.is_empty() {
        chat.reply.clone()
    } else {
        chat.replies.join("\n\n")
    }
}

/// Stores the pauses an answer calls for, as the runner does (one already in force is
/// not a new strike).
async fn pause(
    state: &AppState,
    effect: policy::AccountEffect,
    why: &str,
    now: chrono::DateTime<chrono::Utc>,
) {
    let held: Vec<PauseScope> = match state.store.pauses().await {
        Ok(p) => p
            .into_iter()
            .filter(|p| p.until > now)
            .map(|p| p.scope)
            .collect(),
        Err(_) => Vec::new(),
    };
    let backoff = state.config.backoff;
    for &scope in effect.pauses() {
        if held.contains(&scope) {
            continue;
        }
        let length = move |strikes| effect.pause_length(&backoff, strikes);
        match state
            .store
            .set_pause(scope, why, &state.runner.runner_id, now, &length)
            .await
        {
            Ok(p) => {
                tracing::warn!(scope = scope.as_str(), until = %p.until, "paused by an inbound call: {why}")
            }
            Err(e) => {
                tracing::error!(error = %e, "could not store the pause an inbound call called for")
            }
        }
    }
}
