//! The dashboard at `/`: server-rendered HTML that reads without JavaScript. Login with
//! the API token (a password field) sets a signed session cookie (`session`); Retry and
//! Block are forms that carry a CSRF token.
//!
//! Shown: the pause banner, leads per state with shares and the contacted leads per
//! follow-up step, the calls per day and outcome of the last 14 days (an SVG chart), the
//! forecast of the next 14 days (`forecast`: the `forecast` command's, on a thread of its
//! own, kept for a quarter of an hour), each job (schedule, next fire, last run, today's sends against its cap, send window),
//! the outbox backlog, the `needs_review` and `failed` leads with their last attempt and
//! Retry / Block buttons, the recent attempts, filtered by job, outcome and target, and
//! parked webhook deliveries with Redeliver.
//!
//! Live updates (`live`): a small inline script re-fetches `/` itself (the same address,
//! so the same session check; no other endpoint) every `live::REFRESH_SECS` and swaps the
//! page's `<main>`; without JavaScript a 30 s meta refresh (in `<noscript>`) reloads it.
//! The counts that read many rows are kept for a while (`cache`).

pub(crate) mod cache;
mod calls;
pub mod chart;
mod forecast;
mod funnel;
mod live;
mod page;
pub mod session;

use super::AppState;
use crate::lead::LeadState;
use crate::store::{Attempt, Lead, LeadFilter, UserAction};
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

/// The most leads listed per state needing a person.
const REVIEW_LIST: u32 = 50;
/// The most recent attempts listed.
const RECENT: u32 = 50;

/// The recent-attempts table's filters, from the page's own GET form ("" is any).
#[derive(Debug, Default, Deserialize)]
pub struct RecentQuery {
    #[serde(default)]
    pub job: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub target: String,
}

impl RecentQuery {
    fn filter(&self) -> crate::store::AttemptFilter {
        let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        crate::store::AttemptFilter {
            job: given(&self.job),
            status: crate::store::AttemptStatus::ALL
                .into_iter()
                .find(|s| s.as_str() == self.status.trim()),
            target: given(&self.target),
            limit: RECENT,
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/ui/leads/{target}/{action}", post(lead_action))
        .route("/ui/outbox/{id}/redeliver", post(redeliver))
}

/// The session's nonce, if the request carries a valid session cookie.
fn session(state: &AppState, jar: &CookieJar) -> Option<String> {
    let value = jar.get(session::COOKIE)?.value().to_string();
    session::check(&state.token, &value, state.clock.now())
}

/// One job's row.
pub struct JobRow {
    pub job: crate::config::Job,
    pub sent_today: u64,
    pub last: Option<crate::store::JobRun>,
}

/// Everything the page shows.
pub struct View {
    pub report: crate::status::Report,
    pub jobs: Vec<JobRow>,
    pub review: Vec<(Lead, Option<Attempt>)>,
    /// Parked webhook deliveries, oldest first (at most 50).
    pub parked: Vec<crate::store::ParkedItem>,
    /// The newest attempts, filtered as asked, with their lead's target.
    pub recent: Vec<(Attempt, String)>,
    /// Contacted and exhausted leads per follow-ups sent.
    pub steps: funnel::Steps,
    /// The calls of the last 14 days.
    pub calls: calls::Calls,
    /// The next 14 days.
    pub forecast: forecast::Shown,
    pub query: RecentQuery,
    pub csrf: String,
}

async fn dashboard(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<axum::extract::Query<RecentQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(nonce) = session(&state, &jar) else {
        return page::login(None).into_response();
    };
    // A hand-edited query string shows the unfiltered page rather than an error.
    let query = query.map(|q| q.0).unwrap_or_default();
    match view(&state, &nonce, query).await {
        // The page is the session's own: no cache keeps it (the script re-fetches it).
        Ok(v) => (
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            page::dashboard(&v),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the dashboard could not read the database");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                page::message("The database did not answer", "Try again in a moment."),
            )
                .into_response()
        }
    }
}

async fn view(
    state: &AppState,
    nonce: &str,
    query: RecentQuery,
) -> Result<View, crate::store::StoreError> {
    let now = state.clock.now();
    let funnel = match state
        .dashboard
        .funnel
        .fresh(now, i64::from(live::REFRESH_SECS))
    {
        Some(f) => f,
        None => {
            let f = cache::Funnel {
                states: state.store.count_by_state().await?,
                steps: funnel::Steps::read(&*state.store).await?,
            };
            state.dashboard.funnel.keep(now, f.clone());
            f
        }
    };
    let report =
        crate::status::Report::read_with(&*state.store, &state.config, now, funnel.states).await?;
    let mut jobs = Vec::new();
    for job in &state.config.jobs {
        let since = crate::plan::day_start(now, job.timezone);
        jobs.push(JobRow {
            sent_today: state.store.count_started_since(&job.name, since).await?,
            last: report.runs.iter().find(|r| r.job == job.name).cloned(),
            job: job.clone(),
        });
    }
    let mut leads = Vec::new();
    for st in [LeadState::NeedsReview, LeadState::Failed] {
        leads.extend(
            state
                .store
                .list_leads(&LeadFilter {
                    state: Some(st),
                    tag: None,
                    limit: Some(REVIEW_LIST),
                    after: None,
                })
                .await?,
        );
    }
    let ids: Vec<i64> = leads.iter().map(|l| l.id).collect();
    let mut last = state.store.last_attempts(&ids).await?;
    let review = leads
        .into_iter()
        .map(|l| {
            let a = last.remove(&l.id);
            (l, a)
        })
        .collect();
    let recent = state.store.recent_attempts(&query.filter()).await?;
    let mut parked = state.store.parked().await?;
    parked.truncate(REVIEW_LIST as usize);
    let calls = match state.dashboard.calls.fresh(now, cache::CALLS_SECS) {
        Some(c) => c,
        None => {
            let c = read_calls(state, now).await?;
            state.dashboard.calls.keep(now, c.clone());
            c
        }
    };
    Ok(View {
        report,
        jobs,
        review,
        recent,
        parked,
        steps: funnel.steps,
        calls,
        forecast: forecast::current(state).await,
        query,
        csrf: session::csrf(&state.token, nonce),
    })
}

/// The calls of the configured jobs and the relay, in the first job's zone.
async fn read_calls(
    state: &AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<calls::Calls, crate::store::StoreError> {
    let mut names: Vec<&str> = state.config.jobs.iter().map(|j| j.name.as_str()).collect();
    names.push(crate::http::inbound::INBOUND_JOB);
    names.sort_unstable();
    names.dedup();
    let first = state.config.jobs.first();
    calls::read(
        &*state.store,
        &names,
        first.map_or(chrono_tz::Tz::UTC, |j| j.timezone),
        first.map(|j| j.name.clone()),
        now,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    password: String,
}

async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(f): Form<LoginForm>,
) -> Response {
    if !state.token.matches(f.password.trim().as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            page::login(Some("That is not the token (FLUIDTALK_RUNNER_TOKEN).")),
        )
            .into_response();
    }
    let value = session::new_session(&state.token, state.clock.now());
    let cookie = Cookie::build((session::COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build();
    (jar.add(cookie), Redirect::to("/")).into_response()
}

#[derive(Debug, Deserialize)]
struct ActionForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(refused) = refusal(&state, &jar, &f) {
        return refused;
    }
    (
        jar.remove(Cookie::build(session::COOKIE).path("/")),
        Redirect::to("/"),
    )
        .into_response()
}

/// The refusal of a form that lacks a live session or that session's CSRF token.
fn refusal(state: &AppState, jar: &CookieJar, form: &ActionForm) -> Option<Response> {
    let Some(nonce) = session(state, jar) else {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                page::login(Some("Your session ended; log in again.")),
            )
                .into_response(),
        );
    };
    if !session::csrf_ok(&state.token, &nonce, &form.csrf) {
        return Some((
            StatusCode::FORBIDDEN,
            page::message(
                "Not allowed",
                "The form was not sent from this dashboard's session; reload the page and try again.",
            ),
        )
            .into_response());
    }
    None
}

/// Back to the page's `anchor` when done; what stopped it otherwise.
fn done<T>(result: Result<T, crate::store::StoreError>, anchor: &str) -> Response {
    match result {
        Ok(_) => Redirect::to(&format!("/#{anchor}")).into_response(),
        Err(e) => (
            StatusCode::CONFLICT,
            page::message("Not done", &e.to_string()),
        )
            .into_response(),
    }
}

async fn lead_action(
    State(state): State<AppState>,
    jar: CookieJar,
    Path((target, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(refused) = refusal(&state, &jar, &f) {
        return refused;
    }
    let now = state.clock.now();
    state.dashboard.funnel.forget();
    let result = match action.as_str() {
        "retry" => {
            state
                .store
                .apply_user_action(&target, UserAction::Retry, now)
                .await
        }
        "block" => crate::store::block_adding(&*state.store, &target, now).await,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                page::message("No such action", "Leads can be retried or blocked here."),
            )
                .into_response();
        }
    };
    done(result, "review")
}

async fn redeliver(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(id): Path<i64>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(refused) = refusal(&state, &jar, &f) {
        return refused;
    }
    state.dashboard.funnel.forget();
    done(
        state.store.redeliver(&[id], state.clock.now()).await,
        "outbox",
    )
}
