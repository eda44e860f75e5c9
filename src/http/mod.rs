//! The runner as an HTTP service: an authenticated JSON API over the lead database (leads,
//! replies, events, the inbound relay, the outbox, status, the suppression list, job
//! pauses), health
//! checks and metrics, served by the daemon next to its schedules (`[http] listen`, `daemon --http`).
//!
//! Every route but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`; wrong
//! tokens are throttled per client address (`throttle`). Bodies over 1 MiB are refused
//! (413); a request gets 10 s to send its body and `request_timeout` in all; every list is
//! paged in the database and an answer holds about `MAX_ANSWER` bytes at most. Every
//! answer carries the security headers of `headers`; connections are bounded and timed
//! out by `serve` (`[http]`), over TLS with `tls`. The API is described by an OpenAPI
//! document built from these handlers (`openapi`), served at `/v1/openapi.json` and kept
//! in `docs/openapi.json`.

mod auth;
mod error;
pub mod headers;
mod health;
mod idempotency;
pub(crate) mod inbound;
mod jobs;
mod leads;
mod openapi;
mod outbox;
mod serve;
mod suppressions;
mod tally;
pub mod throttle;
pub mod tls;
pub mod ui;

pub use auth::{Token, TokenError};
pub use error::{ApiError, ErrorBody};
pub use openapi::openapi;
pub use serve::{MAX_STREAMS, client_key};
pub use tls::{Tls, TlsError};

use crate::clock::Clock;
use crate::config::{Config, HttpSettings, RunnerSettings};
use crate::runner::Runner;
use crate::store::ServiceStore;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// How long a client may take to send its body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// About the most bytes one answer holds: a page of leads, of outbox messages or of a
/// lead's events ends early rather than grow past it (and says where to go on).
pub const MAX_ANSWER: usize = 4 << 20;

/// How long a request may take in all: at least two minutes, and always longer than an
/// inbound call can (the API timeout, then riding out a database outage to record it), so
/// a caller never gets a timeout for a call that then succeeds.
pub fn request_timeout(runner: &RunnerSettings) -> Duration {
    runner
        .timeout
        .saturating_add(crate::runner::DB_OUTAGE_BUDGET)
        .saturating_add(Duration::from_secs(60))
        .max(Duration::from_secs(120))
}

/// Renders the metrics in the Prometheus text format.
pub type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ServiceStore>,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    /// The relay's calls: the client, `[limits]` shared with the jobs, database retries,
    /// and the id its attempts, leases and pauses are recorded under.
    pub runner: Runner,
    pub token: Token,
    /// `/metrics`' text; `None` answers 404.
    pub metrics: Option<MetricsText>,
    /// Relayed calls, each in its own task: a stop waits for them (`tasks.wait()`).
    pub tasks: TaskTracker,
    /// `/readyz`'s last answer and when it was read: probes hit the database at most once
    /// a second.
    pub(crate) ready: Arc<tokio::sync::Mutex<Option<health::Readiness>>>,
    /// The dashboard's counts that read many rows (the funnel, the calls chart), kept for
    /// a while on `clock` (see `ui::cache`).
    pub(crate) dashboard: Arc<ui::cache::Cache>,
    /// The campaign's database, for the dashboard's forecast, which reads it on a
    /// connection of its own (`None`: the dashboard shows no forecast).
    pub database_url: Option<String>,
    /// The dashboard's forecast: one at a time, on `[forecast]`'s budget, cancelled when
    /// the server stops (`Server::run`).
    pub forecasts: Arc<crate::forecast::Guest>,
    /// Wrong tokens per client address (`[http] auth_failures_per_minute`).
    pub(crate) throttle: Arc<throttle::Throttle>,
    /// How the service is reached (`[http] public_url`, TLS).
    pub(crate) site: Arc<headers::Site>,
    /// `[http]`: where and how the service is served, its limits.
    pub http: Arc<HttpSettings>,
    /// How long a request may take in all (`request_timeout`).
    pub(crate) request_timeout: Duration,
}

impl AppState {
    /// The service over `store` (the same database as `runner`'s, in its HTTP role).
    pub fn new(
        store: Arc<dyn ServiceStore>,
        runner: Runner,
        token: Token,
        metrics: Option<MetricsText>,
    ) -> AppState {
        let http = Arc::new(runner.config.http.clone());
        let throttle = Arc::new(throttle::Throttle::new(http.auth_failures_per_minute));
        let site = Arc::new(headers::Site::new(&http));
        let request_timeout = request_timeout(&runner.settings);
        AppState {
            store,
            config: runner.config.clone(),
            clock: runner.clock.clone(),
            runner,
            token,
            metrics,
            tasks: TaskTracker::new(),
            ready: Arc::default(),
            dashboard: Arc::default(),
            database_url: None,
            forecasts: Arc::default(),
            throttle,
            site,
            http,
            request_timeout,
        }
    }

    /// The database the dashboard's forecast reads (the one the runner's store opened).
    pub fn with_database_url(mut self, url: String) -> AppState {
        self.database_url = Some(url);
        self
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.backend())
            .field("runner_id", &self.runner.runner_id)
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
        .merge(ui::routes())
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/readyz", axum::routing::get(health::readyz))
        .merge(private)
        .fallback(health::no_route)
        .method_not_allowed_fallback(health::no_method)
        .layer(axum::middleware::from_fn(health::count_request))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            state.request_timeout,
        ))
        .layer(from_fn_with_state(state.clone(), headers::secure))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `stop` is cancelled; requests being answered
/// then finish (see `serve::serve`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    Server::new(listener, state, None).run(stop).await
}

/// The HTTP API bound to its address: `router(state)` on `listener`, over HTTPS with `tls`
/// (`[http] tls_cert` and `tls_key`) if given.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<Tls>,
}

impl Server {
    pub fn new(listener: tokio::net::TcpListener, state: AppState, tls: Option<Tls>) -> Server {
        Server {
            listener,
            state,
            tls,
        }
    }

    /// The dashboard's URL, from the address actually bound (port 0 shows the port
    /// picked) and the scheme served (https with TLS), or `[http] public_url` when set.
    pub fn dashboard_url(&self) -> Option<String> {
        let addr = self.listener.local_addr().ok()?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Some(serve::dashboard_url(&self.state.http, scheme, addr))
    }

    /// The relayed calls' tasks: a stop waits for them (`AppState::tasks`).
    pub fn relays(&self) -> TaskTracker {
        self.state.tasks.clone()
    }

    /// Serves until `stop` is cancelled; requests being answered then finish, and the
    /// dashboard's forecast is cancelled as the stop begins (waited for up to
    /// `FORECAST_STOP`).
    pub async fn run(self, stop: CancellationToken) -> std::io::Result<()> {
        let http = self.state.http.clone();
        let forecasts = self.state.forecasts.clone();
        // The forecast is cancelled as the stop begins, not once requests have drained.
        let ended = CancellationToken::new();
        let cancel = {
            let (stop, ended) = (stop.clone(), ended.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = ended.cancelled() => {}
                }
                forecasts.stop(FORECAST_STOP).await
            })
        };
        let served = serve::serve(
            self.listener,
            router(self.state),
            &http,
            self.tls.map(|t| t.0),
            stop,
        )
        .await;
        ended.cancel();
        if let Ok(false) = cancel.await {
            tracing::warn!("the dashboard's forecast was still running when the server stopped");
        }
        served
    }
}

/// How long a stop waits for the dashboard's forecast to end (it is cancelled at its next
/// await: a statement of its scratch database or a simulated call).
const FORECAST_STOP: std::time::Duration = std::time::Duration::from_secs(10);
