//! `/v1/outbox` (the persona's messages, for a platform that pulls them) and `/v1/status`.

use super::AppState;
use super::error::{ApiError, Json};
use crate::store::OutboxItem;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The most message ids one ack takes, and the largest page.
pub const MAX_IDS: usize = 10_000;
pub const MAX_PAGE: u32 = 1_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// Only messages with a greater id (the previous page's `next_after`); default 0.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxPage {
    pub messages: Vec<OutboxItem>,
    /// The last message's id (or `after` when the page is empty): the next `after`.
    pub next_after: i64,
}

/// Messages not yet acknowledged, oldest first; those to blocked leads are held back. A
/// page ends early (fewer than `limit`) rather than pass about 4 MiB.
#[utoipa::path(get, path = "/v1/outbox", tag = "outbox", params(OutboxQuery),
    responses((status = 200, body = OutboxPage), (status = 400, body = super::ErrorBody),
              (status = 401, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<OutboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OutboxPage>, ApiError> {
    let Query(q) = query.map_err(super::error::query_rejection)?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after must be 0 or more").field("after"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(
            ApiError::bad_request(format!("limit is {limit}; expected 1 to {MAX_PAGE}"))
                .field("limit"),
        );
    }
    let messages = state
        .store
        .outbox_page(after, limit, super::MAX_ANSWER)
        .await?;
    let next_after = messages.last().map_or(after, |m| m.id);
    Ok(Json(OutboxPage {
        messages,
        next_after,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Message ids delivered; at most 10,000.
    pub ids: Vec<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AckResult {
    /// The ids that were pending and are now acknowledged.
    pub acked: Vec<i64>,
    /// The ids that were not pending: unknown, or acknowledged already.
    pub not_pending: Vec<i64>,
}

/// Acknowledges delivered messages (`outbox ack`).
#[utoipa::path(post, path = "/v1/outbox/ack", tag = "outbox", request_body = AckRequest,
    responses((status = 200, body = AckResult), (status = 400, body = super::ErrorBody), (status = 415, body = super::ErrorBody),
              (status = 401, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn ack(
    State(state): State<AppState>,
    Json(req): Json<AckRequest>,
) -> Result<Json<AckResult>, ApiError> {
    if req.ids.len() > MAX_IDS {
        return Err(ApiError::bad_request(format!(
            "{} ids; send at most {MAX_IDS}",
            req.ids.len()
        ))
        .field("ids"));
    }
    let now = state.clock.now();
    let acked = state.store.ack_outbox(&req.ids, now).await?;
    let mut not_pending: Vec<i64> = req
        .ids
        .iter()
        .copied()
        .filter(|id| !acked.contains(id))
        .collect();
    not_pending.sort_unstable();
    not_pending.dedup();
    Ok(Json(AckResult { acked, not_pending }))
}

/// What `status --json` prints: leads per state, pauses in force, leads held by runners,
/// each job's last run and next fire, queued events no job sends.
#[utoipa::path(get, path = "/v1/status", tag = "status",
    responses((status = 200, body = Object, description = "As `status --json`"),
              (status = 401, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn status(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut report =
        crate::status::Report::read(&*state.store, &state.config, state.clock.now()).await?;
    report.storage.outage = state.runner.db().health.outage();
    Ok(Json(report.to_json(&state.config)))
}
