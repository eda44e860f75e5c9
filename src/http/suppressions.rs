//! `/v1/suppressions`: the suppression list (a global do-not-contact list). `GET` pages it
//! in target order; `POST` adds targets and blocks their leads; `DELETE` takes targets off
//! it (their leads stay blocked: `POST /v1/leads/{target}/unblock` resumes one). Targets
//! are checked as a lead's are; a bad one refuses the whole request (nothing written,
//! the item's `index` named); each request is one transaction.

use super::AppState;
use super::error::{ApiError, Json};
use crate::store::{
    SUPPRESS_BATCH_MAX, SUPPRESSIONS_PAGE_MAX, Suppressed, Suppression, Unsuppressed,
};
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Targets to add to or remove from the suppression list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionsRequest {
    /// 1 to 10,000 targets (e.g. `@ana`), checked as a lead's target is.
    pub targets: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuppressionsQuery {
    /// Page size: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The previous page's `next_after`: only targets after it.
    pub after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionPage {
    /// In target order.
    pub suppressions: Vec<Suppression>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_after: Option<String>,
}

/// The request's targets, checked, each once; the first bad one refuses the request.
fn checked(req: SuppressionsRequest) -> Result<Vec<String>, ApiError> {
    if req.targets.is_empty() {
        return Err(ApiError::bad_request("no targets; send 1 or more").field("targets"));
    }
    if req.targets.len() > SUPPRESS_BATCH_MAX {
        return Err(ApiError::bad_request(format!(
            "{} targets in one request; send at most {SUPPRESS_BATCH_MAX} per request",
            req.targets.len()
        ))
        .field("targets"));
    }
    let mut seen = std::collections::HashSet::new();
    let mut targets = Vec::with_capacity(req.targets.len());
    for (index, raw) in req.targets.iter().enumerate() {
        let target = crate::lead::fields::target(raw)
            .map_err(|e| ApiError::from(e).field("targets").index(index))?;
        if seen.insert(target.clone()) {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// The suppressed targets in target order, a page at a time.
#[utoipa::path(get, path = "/v1/suppressions", tag = "suppressions", operation_id = "list_suppressions", params(SuppressionsQuery),
    responses((status = 200, body = SuppressionPage), (status = 400, body = super::ErrorBody),
              (status = 401, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<SuppressionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SuppressionPage>, ApiError> {
    let Query(q) = query.map_err(super::error::query_rejection)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=SUPPRESSIONS_PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit is {limit}; expected 1 to {SUPPRESSIONS_PAGE_MAX}"
        ))
        .field("limit"));
    }
    let after = q
        .after
        .as_deref()
        .map(crate::lead::fields::target)
        .transpose()
        .map_err(|e| ApiError::from(e).field("after"))?;
    // One more than the page: whether the list goes on.
    let mut suppressions = state
        .store
        .suppressions(after.as_deref(), limit + 1)
        .await?;
    let more = suppressions.len() > limit as usize;
    suppressions.truncate(limit as usize);
    let next_after = more
        .then(|| suppressions.last().map(|s| s.target.clone()))
        .flatten();
    Ok(Json(SuppressionPage {
        suppressions,
        next_after,
    }))
}

/// Adds targets to the suppression list (never called from then on) and blocks their
/// leads, in one transaction. Targets already on it are counted in `already`.
#[utoipa::path(post, path = "/v1/suppressions", tag = "suppressions", operation_id = "add_suppressions",
    request_body = SuppressionsRequest,
    responses((status = 200, body = Suppressed), (status = 400, body = super::ErrorBody),
              (status = 422, body = super::ErrorBody, description = "a target over its limit"),
              (status = 409, body = super::ErrorBody, description = "`full`: the list would pass 1,000,000 targets"),
              (status = 401, body = super::ErrorBody), (status = 413, body = super::ErrorBody),
              (status = 415, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn add(
    State(state): State<AppState>,
    Json(req): Json<SuppressionsRequest>,
) -> Result<Json<Suppressed>, ApiError> {
    let targets = checked(req)?;
    let now = state.clock.now();
    Ok(Json(state.store.suppress(&targets, now).await?))
}

/// Takes targets off the suppression list, in one transaction. Their leads stay blocked
/// (`leads_still_blocked`): unblocking one is a person's decision.
#[utoipa::path(delete, path = "/v1/suppressions", tag = "suppressions", operation_id = "remove_suppressions",
    request_body = SuppressionsRequest,
    responses((status = 200, body = Unsuppressed), (status = 400, body = super::ErrorBody),
              (status = 422, body = super::ErrorBody, description = "a target over its limit"),
              (status = 401, body = super::ErrorBody), (status = 413, body = super::ErrorBody),
              (status = 415, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Json(req): Json<SuppressionsRequest>,
) -> Result<Json<Unsuppressed>, ApiError> {
    let targets = checked(req)?;
    Ok(Json(state.store.unsuppress(&targets).await?))
}
