//! The runner as an HTTP service: an authenticated JSON API over the lead database (leads,
//! replies, events, the inbound relay, the outbox, status), health checks and metrics,
//! served by the daemon next to its schedules (`[http] listen`, `daemon --http`).
//!
//! Every route but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`. Bodies
//! over 1 MiB are refused (413); a request gets 10 s to send its body and 60 s in all. The
//! API is described by an OpenAPI document built from these handlers (`openapi`), served
//! at `/v1/openapi.json` and kept in `docs/openapi.json`.

mod auth;
mod error;
mod health;
mod idempotency;
mod inbound;
mod leads;
mod openapi;
mod outbox;

pub use auth::Token;
pub use error::{ApiError, ErrorBody};
pub use openapi::openapi;

use crate::clock::Clock;
use crate::config::Config;
use crate::fluidtalk::Client;
use crate::store::Store;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// How long a client may take to send its body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take in all (an inbound call waits for the API within this).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Renders the metrics in the Prometheus text format.
pub type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    /// The FluidTalk client the inbound relay calls with.
    pub client: Client,
    pub token: Token,
    /// `/metrics`' text; `None` answers 404.
    pub metrics: Option<MetricsText>,
    /// Names the relay's attempts and leases, like a runner's id.
    pub runner_id: String,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("runner_id", &self.runner_id)
            .finish_non_exhaustive()
    }
}

/// Every route, with authentication, limits and request metrics.
pub fn router(state: AppState) -> Router {
    use axum::middleware::from_fn_with_state;
    use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
    let (api, _) = openapi::routes().split_for_parts();
    let private = api
        .route("/v1/openapi.json", axum::routing::get(openapi::serve))
        .route("/metrics", axum::routing::get(health::metrics))
        .layer(from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/readyz", axum::routing::get(health::readyz))
        .merge(private)
        .fallback(health::no_route)
        .layer(axum::middleware::from_fn(health::count_request))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `stop` is cancelled; requests being answered
/// then finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
