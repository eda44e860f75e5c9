//! `POST /v1/leads/{target}/inbound`, the inbound relay: the lead wrote to the persona on
//! the platform. The reply is recorded (an unknown target is added as `contacted`), the
//! lead is leased for the call, `inbound_chat` is called and recorded as an attempt, its
//! answer goes to the outbox and back to the caller. API errors act on the lead and the
//! account as the runner's policy says (402 pause, 400 done, ...) and come back as 502.
//! The call itself is the runner's (`Runner::call_inbound`); this module checks the
//! request, keeps the idempotency key and maps the result to HTTP.
//!
//! The call runs in its own task: a caller that hangs up mid-call does not cancel it, so
//! its answer is always recorded.

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorDetail, Json};
use super::idempotency::{self, Claimed};
use crate::lead::LeadState;
use crate::runner::one::text_of;
use crate::runner::{Called, Inbound, NotCalled};
use crate::store::KeyAnswer;
use crate::store::KeyOf;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::runner::INBOUND_JOB;

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
        let stale =
            chrono::Duration::from_std(state.request_timeout).unwrap_or(chrono::Duration::hours(1));
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
                    .finish_key(
                        KeyOf {
                            scope: &scope,
                            key: k,
                        },
                        KeyAnswer {
                            status: status.as_u16(),
                            response: &body.to_string(),
                        },
                        clock.now(),
                    )
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

fn error_json(e: ApiError) -> (StatusCode, serde_json::Value, bool) {
    let body = serde_json::to_value(ErrorBody { error: e.detail }).unwrap_or_default();
    (e.status, body, false)
}

/// The call through the runner (`Runner::call_inbound`, the one call path), its result as
/// HTTP: the answer's status, its JSON, and whether it is kept for the idempotency key
/// (only when the API may have acted).
async fn relay(
    state: &AppState,
    target: &str,
    own_username: Option<&str>,
    req: InboundRequest,
) -> (StatusCode, serde_json::Value, bool) {
    let called = state
        .runner
        .call_inbound(Inbound {
            target: target.to_string(),
            own_username: own_username.map(str::to_string),
            message: req.message,
            image_url: req.image_url,
        })
        .await;
    let Called {
        attempt_id,
        lead,
        answer,
        may_have_acted,
        ..
    } = match called {
        Ok(c) => c,
        Err(NotCalled::Paused { until, reason }) => {
            return error_json(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "paused",
                format!(
                    "every call is paused until {} ({reason}): fix FLUIDTALK_API_KEY, then `pause clear`",
                    until.to_rfc3339()
                ),
            ));
        }
        Err(NotCalled::Overloaded) => {
            return error_json(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "every API call slot ([limits] concurrency) is busy; try again in a few seconds",
            ));
        }
        Err(NotCalled::Busy(t)) => {
            return error_json(ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                format!("lead {t:?} has a campaign call in flight; try again once it is answered"),
            ));
        }
        Err(NotCalled::Changed) => {
            return error_json(ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                "the lead changed while the call was being recorded; try again",
            ));
        }
        Err(NotCalled::Store(e)) => return error_json(e.into()),
    };
    let store = &*state.store;
    match answer {
        Ok(chat) => {
            // Read back even when the record failed (`Called::unrecorded`): a commit whose
            // acknowledgement was lost may have queued it. Not found: the caller still gets
            // the answer.
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
                may_have_acted,
            )
        }
        Err(e) => {
            let detail = ErrorDetail {
                kind: "api_error",
                message: format!("the FluidTalk API call failed: {e}"),
                field: None,
                index: None,
                api_status: e.status(),
                api_error: Some(e.kind().as_str().to_string()),
            };
            let body = serde_json::to_value(ErrorBody { error: detail }).unwrap_or_default();
            (StatusCode::BAD_GATEWAY, body, may_have_acted)
        }
    }
}
