//! `/v1/leads...`: import, list and show leads; replies, block, unblock, retry; events.
//!
//! A target in a path is read as one in a body is (`Target`: `import::check_target`,
//! trimmed and checked), so `/v1/leads/%20@ana` is `@ana`'s. Lists are paged in the
//! database and stop before an answer passes `MAX_ANSWER`.

use super::AppState;
use super::MAX_ANSWER;
use super::error::{ApiError, Json};
use super::idempotency::{self, Claimed};
use crate::import::check_input;
use crate::lead::LeadState;
use crate::store::KeyAnswer;
use crate::store::KeyOf;
use crate::store::NewEvent;
use crate::store::{Attempt, Lead, LeadFilter, QueuedEvent, UserAction};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The most leads one `POST /v1/leads` takes.
pub const MAX_IMPORT: usize = 10_000;
/// The most attempts `GET /v1/leads/{target}` shows.
pub const MAX_ATTEMPTS_SHOWN: u32 = 100;
/// The most queued events `GET /v1/leads/{target}` shows.
pub const MAX_EVENTS_SHOWN: u32 = 100;
/// The largest page `GET /v1/leads` returns.
pub const MAX_PAGE: u32 = 1_000;

/// A lead's target from the route's path, read as a body's target is
/// (`import::check_target`): surrounding space trimmed, the same checks. A path that is no
/// text, or a target the check refuses, is a 400 in the API's error shape.
pub struct Target(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Target {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(super::error::path_rejection)?;
        // The one rule for targets, as in bodies: trimmed, within its limit (422).
        Ok(Target(crate::lead::fields::target(&raw)?))
    }
}

/// A lead to add or update (by `target`); fields left out keep what the lead has.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLead {
    pub target: String,
    pub own_username: Option<String>,
    /// An IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: Option<String>,
    pub profile_image: Option<String>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// At most 10,000.
    pub leads: Vec<NewLead>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rejected {
    /// The item's index in `leads`.
    pub index: usize,
    pub error: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    pub imported: u64,
    pub updated: u64,
    /// Of the leads imported or updated, those whose target is on the suppression list:
    /// created or left `blocked`.
    pub suppressed: u64,
    pub rejected: Vec<Rejected>,
}

/// Adds or updates leads, checked as `leads import` checks a file's rows; items that fail
/// the check are listed in `rejected` and the rest are stored. An item with a field over
/// its limit (docs/guide.md, "Limits") refuses the whole request with 422, naming the item's
/// `index` and the `field`: nothing is stored.
#[utoipa::path(post, path = "/v1/leads", tag = "leads", request_body = ImportRequest,
    responses((status = 200, body = ImportResult), (status = 400, body = super::ErrorBody),
              (status = 422, body = super::ErrorBody, description = "a field over its limit"),
              (status = 401, body = super::ErrorBody), (status = 413, body = super::ErrorBody), (status = 415, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<AppState>,
    Json(req): Json<ImportRequest>,
) -> Result<Json<ImportResult>, ApiError> {
    if req.leads.len() > MAX_IMPORT {
        return Err(ApiError::bad_request(format!(
            "{} leads in one request; send at most {MAX_IMPORT} per request",
            req.leads.len()
        ))
        .field("leads"));
    }
    let mut rows = Vec::with_capacity(req.leads.len());
    let mut rejected = Vec::new();
    for (index, l) in req.leads.into_iter().enumerate() {
        match check_input(
            &l.target,
            l.own_username,
            l.timezone,
            l.profile_image,
            l.tags.unwrap_or_default(),
        ) {
            Ok(row) => rows.push(row),
            Err(e) if e.is_limit() => return Err(ApiError::from(e).index(index)),
            Err(e) => rejected.push(Rejected {
                index,
                error: e.to_string(),
            }),
        }
    }
    let now = state.clock.now();
    let mut session = state.store.begin_import(true).await?;
    let counts = match session.upsert(rows, now).await {
        Ok(c) => c,
        Err(e) => {
            let _ = session.finish(false).await;
            return Err(e.into());
        }
    };
    session.finish(true).await?;
    Ok(Json(ImportResult {
        imported: counts.imported,
        updated: counts.updated,
        suppressed: counts.suppressed,
        rejected,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only leads in this state.
    pub state: Option<LeadState>,
    /// Only leads with this tag.
    pub tag: Option<String>,
    /// Page size: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The previous page's `next_after`.
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeadPage {
    pub leads: Vec<Lead>,
    /// Pass as `after` for the next page; `null` on the last page. A page may hold fewer
    /// than `limit` leads and still have a next one: it ends before the answer passes
    /// about 4 MiB.
    pub next_after: Option<i64>,
}

/// Leads in id order, a page at a time (fewer than `limit` when they are large).
#[utoipa::path(get, path = "/v1/leads", tag = "leads", params(ListQuery),
    responses((status = 200, body = LeadPage), (status = 400, body = super::ErrorBody),
              (status = 401, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LeadPage>, ApiError> {
    let Query(q) = query.map_err(super::error::query_rejection)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(
            ApiError::bad_request(format!("limit is {limit}; expected 1 to {MAX_PAGE}"))
                .field("limit"),
        );
    }
    if q.after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request("after must be 0 or more").field("after"));
    }
    let (leads, cut) = state
        .store
        .leads_within(
            &LeadFilter {
                state: q.state,
                tag: q.tag,
                limit: Some(limit),
                after: q.after,
            },
            MAX_ANSWER,
        )
        .await?;
    let next_after = (cut || leads.len() == limit as usize)
        .then(|| leads.last().map(|l| l.id))
        .flatten();
    Ok(Json(LeadPage { leads, next_after }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeadDetail {
    pub lead: Lead,
    /// Newest first, at most 100 (a chatty lead gains one per relayed message).
    pub attempts: Vec<Attempt>,
    /// How many attempts the lead has in all.
    pub attempts_total: u64,
    /// Oldest first, at most 100 (fewer when their contexts are large).
    pub queued_events: Vec<QueuedEvent>,
    /// How many events the lead has queued in all.
    pub queued_events_total: u64,
}

/// One lead, its attempts and its queued events.
#[utoipa::path(get, path = "/v1/leads/{target}", tag = "leads",
    params(("target" = String, Path, description = "The lead's target, e.g. `@ana`")),
    responses((status = 200, body = LeadDetail), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Target(target): Target,
) -> Result<Json<LeadDetail>, ApiError> {
    let lead = found(&state, &target).await?;
    let (attempts, attempts_total) = state.store.attempts_of(lead.id, MAX_ATTEMPTS_SHOWN).await?;
    let (queued_events, queued_events_total) = state
        .store
        .queued_events_of(lead.id, MAX_EVENTS_SHOWN, MAX_ANSWER / 2)
        .await?;
    Ok(Json(LeadDetail {
        lead,
        attempts,
        attempts_total,
        queued_events,
        queued_events_total,
    }))
}

async fn found(state: &AppState, target: &str) -> Result<Lead, ApiError> {
    state
        .store
        .get_lead(target)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no lead with target {target:?}")))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepliedRequest {
    /// When the lead wrote (RFC 3339); default now.
    pub at: Option<DateTime<Utc>>,
}

/// The lead wrote back: resets its quiet clock and follow-up count (`leads replied`).
#[utoipa::path(post, path = "/v1/leads/{target}/replied", tag = "leads",
    params(("target" = String, Path, description = "The lead's target")),
    request_body(content = Option<RepliedRequest>, description = "Optional; `{}` or no body means now"),
    responses((status = 200, body = Lead), (status = 400, body = super::ErrorBody),
              (status = 422, body = super::ErrorBody, description = "`at` outside years 1 to 9999"),
              (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody),
              (status = 401, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn replied(
    State(state): State<AppState>,
    Target(target): Target,
    body: axum::body::Bytes,
) -> Result<Json<Lead>, ApiError> {
    let req: RepliedRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RepliedRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not a reply: {e}")))?
    };
    let now = state.clock.now();
    let at = crate::lead::fields::time("at", req.at.unwrap_or(now))?;
    Ok(Json(state.store.record_reply(&target, at, now).await?))
}

macro_rules! user_action {
    ($name:ident, $path:literal, $action:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "leads",
            params(("target" = String, Path, description = "The lead's target")),
            responses((status = 200, body = Lead), (status = 400, body = super::ErrorBody),
                      (status = 404, body = super::ErrorBody),
                      (status = 409, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
            security(("bearer" = [])))]
        pub async fn $name(
            State(state): State<AppState>,
            Target(target): Target,
        ) -> Result<Json<Lead>, ApiError> {
            let now = state.clock.now();
            Ok(Json(state.store.apply_user_action(&target, $action, now).await?))
        }
    };
}

/// Marks the lead do-not-contact (`leads block`), adding it if unknown (a do-not-contact
/// list may name people not imported yet); its outbox text is held back.
#[utoipa::path(post, path = "/v1/leads/{target}/block", tag = "leads",
    params(("target" = String, Path, description = "The lead's target")),
    responses((status = 200, body = Lead), (status = 400, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
              (status = 422, body = super::ErrorBody, description = "the target over its limit")),
    security(("bearer" = [])))]
pub async fn block(
    State(state): State<AppState>,
    Target(target): Target,
) -> Result<Json<Lead>, ApiError> {
    let now = state.clock.now();
    Ok(Json(
        crate::store::block_adding(&*state.store, &target, now).await?,
    ))
}

user_action!(
    unblock,
    "/v1/leads/{target}/unblock",
    UserAction::Unblock,
    "Lifts a block (`leads unblock`)."
);
user_action!(
    retry,
    "/v1/leads/{target}/retry",
    UserAction::Retry,
    "Works a `failed` or `needs_review` lead again (`leads retry`)."
);

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// An event type some `event` job sends.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's context, a JSON object, sent as the trigger's `entry_context`: at most
    /// 16 KiB as JSON text, nesting at most 8 levels.
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventQueued {
    pub id: i64,
    pub event: QueuedEvent,
}

/// Queues a platform event for the lead (added as `new` if unknown) for the job that
/// sends its type (`leads event`). With an `Idempotency-Key`, a retried request gets the
/// first one's answer and queues nothing more.
#[utoipa::path(post, path = "/v1/leads/{target}/events", tag = "leads",
    params(("target" = String, Path, description = "The lead's target"),
           ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters")),
    request_body = EventRequest,
    responses((status = 202, body = EventQueued), (status = 400, body = super::ErrorBody), (status = 415, body = super::ErrorBody),
              (status = 401, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody, description = "a request with this key is still being answered"),
              (status = 422, body = super::ErrorBody, description = "the target or the context over its limit, or the key was used with another request"),
              (status = 502, body = super::ErrorBody, description = "the first request with this key ended without an answer")),
    security(("bearer" = [])))]
pub async fn event(
    State(state): State<AppState>,
    Target(target): Target,
    headers: HeaderMap,
    Json(req): Json<EventRequest>,
) -> Result<Response, ApiError> {
    let sent = state.config.event_types();
    if !sent.contains(&req.event_type.as_str()) {
        return Err(ApiError::bad_request(format!(
            "no job sends event type {}: it would wait forever; types sent: {}",
            crate::lead::fields::shown(&req.event_type),
            if sent.is_empty() {
                "none".to_string()
            } else {
                sent.join(", ")
            }
        ))
        .field("type"));
    }
    // Claimed in the database before the event is queued, as `/inbound` claims its key:
    // of two daemons answering the same retry, one queues and the other replays.
    let key = idempotency::key(&headers)?;
    let scope = format!("event:{target}");
    if let Some(k) = &key {
        let body = serde_json::to_vec(&req).unwrap_or_default();
        let hash = idempotency::request_hash(&[scope.as_bytes(), &body]);
        let stale =
            chrono::Duration::from_std(state.request_timeout).unwrap_or(chrono::Duration::hours(1));
        if let Claimed::Answer(r) = idempotency::claim(
            &*state.store,
            &scope,
            k,
            &hash,
            state.clock.now(),
            stale,
            "the first request with this Idempotency-Key ended without an answer (the daemon stopped): \
             whether the event was queued is unknown; see GET /v1/leads/{target}",
        )
        .await?
        {
            return Ok(r);
        }
    }
    let context = req
        .context
        .as_ref()
        .map(crate::lead::fields::event_context)
        .transpose()?;
    let now = state.clock.now();
    let queued = state
        .store
        .queue_event(&NewEvent {
            target: &target,
            event_type: &req.event_type,
            context: context.as_deref(),
            now,
        })
        .await;
    let event = match queued {
        Ok(event) => event,
        Err(e) => {
            // Nothing was queued: a retry with the key queues it.
            if let Some(k) = &key
                && let Err(e) = state.store.forget_key(&scope, k).await
            {
                tracing::warn!(error = %e, "could not forget an idempotency key; it expires by itself");
            }
            return Err(e.into());
        }
    };
    let answer = EventQueued {
        id: event.id,
        event,
    };
    if let Some(k) = &key {
        let body = serde_json::to_string(&answer).unwrap_or_default();
        let stored = state
            .store
            .finish_key(
                KeyOf {
                    scope: &scope,
                    key: k,
                },
                KeyAnswer {
                    status: StatusCode::ACCEPTED.as_u16(),
                    response: &body,
                },
                state.clock.now(),
            )
            .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, "could not store the answer of an idempotent event request");
        }
    }
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}
