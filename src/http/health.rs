//! `/healthz`, `/readyz`, `/metrics`, the answer for unknown routes, and the count of
//! requests by route and status.

use super::AppState;
use super::error::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `/readyz`'s last verdict and when it was read.
pub(crate) type Readiness = (chrono::DateTime<chrono::Utc>, Result<(), String>);

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The process is up and answering.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(Health {
        status: "ok",
        reason: None,
    })
}

/// Ready for work: the database answers and no 401 pause stops every call. Read at most
/// once a second (probes need no token, so they must not be a way to load the database).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let verdict = {
        let now = state.clock.now();
        let mut last = state.ready.lock().await;
        match &*last {
            Some((at, v)) if (now - *at).abs() < chrono::Duration::seconds(1) => v.clone(),
            _ => {
                let v = readiness(&state).await;
                *last = Some((now, v.clone()));
                v
            }
        }
    };
    match verdict {
        Ok(()) => axum::Json(Health {
            status: "ready",
            reason: None,
        })
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(Health {
                status: "not_ready",
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

async fn readiness(state: &AppState) -> Result<(), String> {
    let now = state.clock.now();
    // Probes need no token: the database's own words (paths, errors) stay behind it.
    if state.runner.db().health.outage().is_some() || state.store.write_problem().await.is_some() {
        return Err(
            "storage unavailable: the database takes no writes; no call starts (details in /v1/status)"
                .into(),
        );
    }
    let pauses = state.store.pauses().await.map_err(|e| {
        tracing::warn!(error = %e, "readyz: the database did not answer");
        "the database is unreachable".to_string()
    })?;
    match pauses
        .iter()
        .find(|p| p.scope == crate::store::PauseScope::All && p.until > now)
    {
        // The API's own words stay behind the token (`/v1/status`).
        Some(p) => Err(format!(
            "the API refused the key: every call is paused until {}; fix FLUIDTALK_API_KEY, then `pause clear`",
            p.until.to_rfc3339()
        )),
        None => Ok(()),
    }
}

/// The metrics, in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(render) => {
            let mut text = render();
            // The reply rates, kept a while (`ui::cache`): rendered here, not recorded in
            // the process's recorder, so a series whose sender fell out of the bounded set
            // is gone rather than frozen at its last value.
            match state
                .dashboard
                .rates(&*state.store, &state.config, state.clock.now())
                .await
            {
                Ok(rows) => text.push_str(&crate::rates::prometheus(&rows)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the reply rates for /metrics")
                }
            }
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
                .into_response()
        }
        None => ApiError::not_found("metrics are not collected by this server").into_response(),
    }
}

/// The route has no such method.
pub async fn no_method() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take this method; see /v1/openapi.json",
    )
}

/// No route has this path.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route; see /v1/openapi.json")
}

/// Counts each request by its route's pattern (not its path: `/v1/leads/{target}`, so a
/// scan of targets makes no new series) and status.
pub async fn count_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route, "status" => response.status().as_u16().to_string())
        .increment(1);
    response
}
