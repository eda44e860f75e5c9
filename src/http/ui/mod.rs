//! The dashboard at `/`: server-rendered HTML that reads without JavaScript. Login with
//! the API token (a password field) starts a session held in the database and sets its
//! cookie (`session`); Retry, Block, Redeliver and Log out are forms that carry a CSRF
//! token and must come from the dashboard's own origin (`Origin`). Failed logins count
//! against the client address like wrong bearer tokens (`throttle`). Pages carry a
//! Content-Security-Policy that lets only their own script and style run (by hash, see
//! `content_security_policy`).
//!
//! Shown: the pause banner, leads per state with shares and the contacted leads per
//! follow-up step, the calls per day and outcome of the last 14 days (an SVG chart), the
//! forecast of the next 14 days (`forecast`: the `forecast` command's, on a thread of its
//! own, kept for a quarter of an hour), each job (schedule, next fire, last run, today's sends against its cap, send window),
//! the outbox backlog, the `needs_review` and `failed` leads with their last attempt and
//! Retry / Block buttons, every lead paged, searched and filtered with Retry / Block on all
//! a filter matches (`leads`), the attempts paged, filtered by job, outcome and target
//! prefix, and parked webhook deliveries with Redeliver.
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
mod leads;
mod live;
mod page;
pub mod session;

use super::AppState;
use crate::lead::LeadState;
use crate::store::{Attempt, Lead, LeadFilter, UserAction};
use axum::Router;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

/// The most leads listed per state needing a person.
const REVIEW_LIST: u32 = 50;
/// The most recent attempts listed.
const RECENT: u32 = 50;

/// The page's query: the recent-attempts table's filters and cursor, and the leads
/// table's, from the page's own GET forms and links ("" is any).
#[derive(Debug, Default, Deserialize)]
pub struct RecentQuery {
    #[serde(default)]
    pub job: String,
    #[serde(default)]
    pub status: String,
    /// A target prefix.
    #[serde(default)]
    pub target: String,
    /// Attempts older than this id (the attempts table's next page).
    #[serde(default)]
    pub before: String,
    #[serde(flatten)]
    pub leads: leads::Filter,
    /// Leads after this target (the leads table's next page).
    #[serde(default)]
    pub lafter: String,
}

impl RecentQuery {
    fn filter(&self) -> crate::store::AttemptFilter {
        let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        crate::store::AttemptFilter {
            job: given(&self.job),
            status: crate::store::AttemptStatus::ALL
                .into_iter()
                .find(|s| s.as_str() == self.status.trim()),
            target: Some(self.target.trim_start().to_string())
                .filter(|t| !t.is_empty() && !t.contains('\0'))
                .map(|t| page::clip(&t).into_owned()),
            // One more than shown: whether there is a next page.
            limit: RECENT + 1,
            before: self.before.trim().parse().ok(),
        }
    }

    /// The attempts table's filters as query pairs (kept by the leads table's links).
    fn attempt_pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("job", self.job.as_str()),
            ("status", self.status.as_str()),
            ("target", self.target.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/ui/leads/{target}/{action}", post(lead_action))
        .route("/ui/leads/bulk", post(leads::bulk))
        .route("/ui/outbox/{id}/redeliver", post(redeliver))
        .route("/ui/jobs/{name}/{action}", post(job_action))
}

/// The page's Content-Security-Policy: only its own inline script and style, by hash.
pub fn content_security_policy() -> &'static str {
    page::content_security_policy()
}

/// The session's id, if the request carries the cookie of a session that is alive.
async fn session(
    state: &AppState,
    jar: &CookieJar,
) -> Result<Option<String>, crate::store::StoreError> {
    let name = session::cookie_name(state.site.https);
    let Some(id) = jar
        .get(name)
        .and_then(|c| session::check(&state.token, c.value()))
    else {
        return Ok(None);
    };
    let alive = state.store.session_alive(&id, state.clock.now()).await?;
    Ok(alive.then_some(id))
}

/// The page for a database that did not answer.
fn unavailable(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "the dashboard could not read the database");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page::message("The database did not answer", "Try again in a moment."),
    )
        .into_response()
}

/// Whether a form was sent from this dashboard: its `Origin` is the dashboard's own, or,
/// where the browser sends `Origin: null` (the page's `Referrer-Policy: no-referrer` makes
/// it do so for a form's POST), `Sec-Fetch-Site` says `same-origin`. A client that sends
/// neither header is no browser another site drives, and is let through (the CSRF token
/// and the `SameSite=Strict` cookie still hold).
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("").trim().to_ascii_lowercase());
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    match origin.as_deref() {
        Some(origin) if origin != "null" => state
            .site
            .expected_origin(headers)
            .is_some_and(|want| want.to_ascii_lowercase() == origin),
        Some(_) => fetch_site == Some("same-origin"),
        None => fetch_site.is_none_or(|v| matches!(v, "same-origin" | "none")),
    }
}

/// The answer to a form from another origin.
fn cross_origin() -> Response {
    (
        StatusCode::FORBIDDEN,
        page::message(
            "Not allowed",
            "The form was not sent from this dashboard's own address; open the dashboard and try again.",
        ),
    )
        .into_response()
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
    /// The id the attempts table's next page starts below, if there is one.
    pub recent_next: Option<i64>,
    /// The leads table.
    pub leads: leads::Table,
    /// Contacted and exhausted leads per follow-ups sent.
    pub steps: funnel::Steps,
    /// The calls of the last 14 days.
    pub calls: calls::Calls,
    /// The next 14 days.
    pub forecast: forecast::Shown,
    /// Parked messages in all (more than `parked` shows when over 50).
    pub parked_total: u64,
    pub query: RecentQuery,
    pub csrf: String,
    /// Each `[[sender]]`: its room today (cap, openers used, last call).
    pub senders: Vec<crate::senders::Room>,
}

async fn dashboard(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<axum::extract::Query<RecentQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let id = match session(&state, &jar).await {
        Ok(Some(id)) => id,
        Ok(None) => return page::login(None).into_response(),
        Err(e) => return unavailable(&e),
    };
    // A hand-edited query string shows the unfiltered page rather than an error.
    let query = query.map(|q| q.0).unwrap_or_default();
    match view(&state, &id, query).await {
        // The page is the session's own: no cache keeps it (the script re-fetches it).
        Ok(v) => (
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            page::dashboard(&v),
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn view(
    state: &AppState,
    session_id: &str,
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
    let rates = state
        .dashboard
        .rates(&*state.store, &state.config, now)
        .await?;
    let report =
        crate::status::Report::read_with(&*state.store, &state.config, now, funnel.states, rates)
            .await?;
    let mut jobs = Vec::new();
    for job in &state.config.jobs {
        let since = crate::plan::day_start(now, job.timezone);
        jobs.push(JobRow {
            sent_today: state.store.count_started_since(&job.name, since).await?,
            last: report.runs.iter().find(|r| r.job == job.name).cloned(),
            job: job.clone(),
        });
    }
    // One statement for all senders (at most `senders::MAX_SENDERS`), over the index of
    // today's openers by sender.
    let rules: Vec<_> = state.config.senders.rules.values().cloned().collect();
    let uses = state.store.sender_uses(&rules, now).await?;
    let senders: Vec<_> = crate::senders::rooms(rules, &uses, now)
        .into_values()
        .collect();
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
    let mut recent = state.store.recent_attempts(&query.filter()).await?;
    let recent_next = if recent.len() > RECENT as usize {
        recent.truncate(RECENT as usize);
        recent.last().map(|(a, _)| a.id)
    } else {
        None
    };
    let leads = leads::Table::read(state, query.leads.clone(), &query.lafter).await?;
    let (parked, parked_total) = state.store.parked_page(REVIEW_LIST).await?;
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
        recent_next,
        leads,
        parked,
        parked_total,
        steps: funnel.steps,
        calls,
        forecast: forecast::current(state).await,
        query,
        csrf: session::csrf(&state.token, session_id),
        senders,
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
    #[serde(default)]
    password: String,
}

/// The dashboard's answer to a form it cannot read.
fn bad_form(e: &FormRejection) -> Response {
    (
        StatusCode::BAD_REQUEST,
        page::message(
            "Not understood",
            &format!("The form could not be read: {}", e.body_text()),
        ),
    )
        .into_response()
}

/// The session cookie with `value`, as this dashboard sets it (`max_age` 0 clears it).
fn session_cookie(state: &AppState, value: String, max_age: chrono::Duration) -> Cookie<'static> {
    Cookie::build((session::cookie_name(state.site.https), value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.site.https)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age.num_seconds()))
        .build()
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::http::throttle::Client(client): crate::http::throttle::Client,
    jar: CookieJar,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if !same_origin(&state, &headers) {
        return cross_origin();
    }
    if let Some(wait) = state.throttle.waiting(client, "login") {
        return too_many_logins(wait);
    }
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return bad_form(&e),
    };
    if !state.token.matches(f.password.trim().as_bytes()) {
        if let Some(wait) = state.throttle.failed(client, "login") {
            return too_many_logins(wait);
        }
        return (
            StatusCode::UNAUTHORIZED,
            page::login(Some("That is not the token (FLUIDTALK_RUNNER_TOKEN).")),
        )
            .into_response();
    }
    let new = match session::new_session(&state.token) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "could not start a dashboard session");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                page::message(
                    "No session",
                    "The system has no randomness to give; try again.",
                ),
            )
                .into_response();
        }
    };
    let now = state.clock.now();
    if let Err(e) = state
        .store
        .start_session(&crate::store::NewSession {
            id: &new.id,
            now,
            expires_at: now + session::LIFETIME,
            keep: session::MAX_SESSIONS,
        })
        .await
    {
        return unavailable(&e);
    }
    let cookie = session_cookie(&state, new.cookie, session::LIFETIME);
    (jar.add(cookie), Redirect::to("/")).into_response()
}

/// The login page's answer to an address that tried too many wrong tokens.
fn too_many_logins(wait: std::time::Duration) -> Response {
    let secs = crate::http::throttle::retry_after(wait);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(axum::http::header::RETRY_AFTER, secs.to_string())],
        page::login(Some(&format!(
            "Too many wrong tokens from your address: try again in {secs} seconds."
        ))),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let id = match refusal(&state, &headers, &jar, form).await {
        Ok(id) => id,
        Err(refused) => return refused,
    };
    // Ended in the database: the cookie is refused everywhere, even where it was copied.
    if let Err(e) = state.store.end_session(&id).await {
        return unavailable(&e);
    }
    (
        jar.add(session_cookie(
            &state,
            String::new(),
            chrono::Duration::zero(),
        )),
        Redirect::to("/"),
    )
        .into_response()
}

/// The session id of a form sent from this dashboard with a live session and that
/// session's CSRF token; the refusal otherwise.
async fn refusal(
    state: &AppState,
    headers: &HeaderMap,
    jar: &CookieJar,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<String, Response> {
    let csrf = form.as_ref().map(|Form(f)| f.csrf.as_str());
    checked(state, headers, jar, csrf).await
}

/// `refusal` for any form: `csrf` is its CSRF field, or why it could not be read.
async fn checked(
    state: &AppState,
    headers: &HeaderMap,
    jar: &CookieJar,
    csrf: Result<&str, &FormRejection>,
) -> Result<String, Response> {
    if !same_origin(state, headers) {
        return Err(cross_origin());
    }
    let id = match session(state, jar).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            return Err((
                StatusCode::UNAUTHORIZED,
                page::login(Some("Your session ended; log in again.")),
            )
                .into_response());
        }
        Err(e) => return Err(unavailable(&e)),
    };
    let csrf = match csrf {
        Ok(c) => c,
        Err(e) => return Err(bad_form(e)),
    };
    if !session::csrf_ok(&state.token, &id, csrf) {
        return Err((
            StatusCode::FORBIDDEN,
            page::message(
                "Not allowed",
                "The form was not sent from this dashboard's session; reload the page and try again.",
            ),
        )
            .into_response());
    }
    Ok(id)
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
    headers: HeaderMap,
    jar: CookieJar,
    Path((target, action)): Path<(String, String)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    if let Err(refused) = refusal(&state, &headers, &jar, form).await {
        return refused;
    }
    // The same check as every other way a target comes in (one rule: trimmed, within its
    // limit): a forged form cannot store a target the API would refuse, and a target
    // with spaces around it names the same lead as in the API.
    let target = match crate::lead::fields::target(&target) {
        Ok(target) => target,
        Err(e) => {
            let status = if e.is_limit() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::BAD_REQUEST
            };
            return (status, page::message("Not done", &e.to_string())).into_response();
        }
    };
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

/// The jobs table's Pause (until resumed) and Resume buttons: a job pause as `job pause`
/// and `job resume` set it, read by every runner at its next batch.
async fn job_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path((name, action)): Path<(String, String)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    if let Err(refused) = refusal(&state, &headers, &jar, form).await {
        return refused;
    }
    let name = match crate::job_pause::find_job(&state.config, &name) {
        Ok(job) => job.name.clone(),
        Err(e) => {
            return (
                StatusCode::NOT_FOUND,
                page::message("No such job", &e.to_string()),
            )
                .into_response();
        }
    };
    let now = state.clock.now();
    let result = match action.as_str() {
        "pause" => {
            let ask = crate::job_pause::PauseAsk {
                reason: Some("paused from the dashboard".into()),
                ..Default::default()
            };
            match crate::job_pause::pause_of(&state.config, &name, &ask, now) {
                Ok(p) => state.store.pause_job(&p).await.map(|_| ()),
                Err(e) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        page::message("Not done", &e.to_string()),
                    )
                        .into_response();
                }
            }
        }
        "resume" => state.store.resume_job(&name, now).await.map(|_| ()),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                page::message("No such action", "Jobs can be paused or resumed here."),
            )
                .into_response();
        }
    };
    done(result, "jobs")
}

async fn redeliver(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    id: Result<Path<i64>, PathRejection>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return crate::http::error::path_rejection(e).into_response(),
    };
    if let Err(refused) = refusal(&state, &headers, &jar, form).await {
        return refused;
    }
    state.dashboard.funnel.forget();
    done(
        state.store.redeliver(&[id], state.clock.now()).await,
        "outbox",
    )
}
