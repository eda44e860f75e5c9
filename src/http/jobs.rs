//! `/v1/jobs`: the configured jobs with their pause state, and a job paused or resumed by
//! hand (as `job pause|resume` does; `crate::job_pause` checks the ask). A job the
//! campaign file does not define is a 404 naming it.

use super::AppState;
use super::error::{ApiError, Json};
use crate::job_pause::{self, AskError, JobState, PauseAsk};
use crate::store::JobPause;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long a job name in a path may be before it is refused unread.
const NAME_MAX: usize = 200;

/// The configured jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Every job of the campaign file, in file order.
    pub jobs: Vec<JobState>,
}

/// A pause to set: for a while (`for`), to an instant (`until`), or until resumed
/// (neither); and why.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// How long, e.g. `30m`, `2h`, `3days` (at most ten years).
    #[serde(rename = "for")]
    #[schema(rename = "for")]
    pub for_: Option<String>,
    /// When the pause ends (RFC 3339), after now.
    pub until: Option<DateTime<Utc>>,
    /// Why, at most 200 characters on one line.
    pub reason: Option<String>,
}

/// A job paused.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paused {
    pub job: String,
    /// The pause now in force.
    pub pause: JobPause,
    /// The pause it replaced, if the job was paused already.
    pub replaced: Option<JobPause>,
}

/// A job resumed (or not paused).
#[derive(Debug, Serialize, ToSchema)]
pub struct Resumed {
    pub job: String,
    /// Whether a pause was lifted; false: the job was not paused.
    pub resumed: bool,
    /// The pause lifted.
    pub was: Option<JobPause>,
}

fn ask_error(e: AskError) -> ApiError {
    match e {
        AskError::UnknownJob { .. } => ApiError::not_found(e.to_string()).field("name"),
        AskError::Bad {
            field,
            message,
            over_limit,
        } => if over_limit {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "over_limit", message)
        } else {
            ApiError::bad_request(message)
        }
        .field(field),
    }
}

/// The job named in the path: a configured one, else 404.
fn job_named(
    state: &AppState,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    let Path(name) = name.map_err(super::error::path_rejection)?;
    if name.chars().count() > NAME_MAX {
        return Err(ApiError::not_found(format!(
            "no job named {:?}... in the campaign file",
            name.chars().take(40).collect::<String>()
        ))
        .field("name"));
    }
    Ok(job_pause::find_job(&state.config, &name)
        .map_err(ask_error)?
        .name
        .clone())
}

/// The configured jobs, each with the pause that holds it now, if any.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", operation_id = "list_jobs",
    responses((status = 200, body = JobList), (status = 401, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<JobList>, ApiError> {
    let now = state.clock.now();
    let pauses = state.store.job_pauses().await?;
    Ok(Json(JobList {
        jobs: job_pause::states(&state.config, &pauses, now),
    }))
}

/// Pauses a job (`job pause`): every runner on the database makes no call for it from its
/// next batch until it is resumed or the pause ends. A paused job's pause is replaced.
#[utoipa::path(post, path = "/v1/jobs/{name}/pause", tag = "jobs", operation_id = "pause_job",
    params(("name" = String, Path, description = "The job's name, as in the campaign file")),
    request_body = PauseRequest,
    responses((status = 200, body = Paused), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody, description = "no job of that name"),
              (status = 422, body = super::ErrorBody, description = "the reason over its limit"),
              (status = 401, body = super::ErrorBody), (status = 413, body = super::ErrorBody),
              (status = 415, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Json(req): Json<PauseRequest>,
) -> Result<Json<Paused>, ApiError> {
    let name = job_named(&state, name)?;
    let for_ = req
        .for_
        .as_deref()
        .map(|s| {
            humantime::parse_duration(s).map_err(|e| {
                ApiError::bad_request(format!(
                    "`for` {s:?} is not a duration like 30m, 2h or 3days: {e}"
                ))
                .field("for")
            })
        })
        .transpose()?;
    let now = state.clock.now();
    let ask = PauseAsk {
        for_,
        until: req.until,
        reason: req.reason,
    };
    let pause = job_pause::pause_of(&state.config, &name, &ask, now).map_err(ask_error)?;
    let replaced = state.store.pause_job(&pause).await?;
    Ok(Json(Paused {
        job: name,
        pause,
        replaced,
    }))
}

/// Resumes a job (`job resume`): runners call again at their next batch or fire. A job
/// that is not paused is no error: `resumed` is false.
#[utoipa::path(post, path = "/v1/jobs/{name}/resume", tag = "jobs", operation_id = "resume_job",
    params(("name" = String, Path, description = "The job's name, as in the campaign file")),
    responses((status = 200, body = Resumed), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody, description = "no job of that name"),
              (status = 401, body = super::ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Resumed>, ApiError> {
    let name = job_named(&state, name)?;
    let now = state.clock.now();
    let was = state.store.resume_job(&name, now).await?;
    Ok(Json(Resumed {
        job: name,
        resumed: was.is_some(),
        was,
    }))
}
