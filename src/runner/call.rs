//! Making one recorded call: the last check before it goes out, the API request, and the
//! account's reaction the moment a 402 or 401 arrives.

use super::holds::Holds;
use super::image::{self, ProfileImage};
use super::verdict::CallOutcome;
use crate::clock::Clock;
use crate::config::Backoff;
use crate::fluidtalk::{
    ActionResult, ChatRequest, ChatResult, Client, Error as ApiError, EventRequest,
    FollowUpRequest, OpenerRequest,
};
use crate::plan::PlannedCall;
use crate::policy;
use crate::store::NewPause;
use crate::store::{Action, RunnerStore};
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long storing a pause may take before the call goes on without it (the hold in
/// this runner stands either way; other runners learn it at the next 402).
const PAUSE_WRITE_LIMIT: Duration = Duration::from_secs(10);

/// What every call of a runner shares.
#[derive(Clone)]
pub struct Caller {
    pub client: Client,
    pub store: Arc<dyn RunnerStore>,
    pub clock: Arc<dyn Clock>,
    pub holds: Arc<Holds>,
    pub stop: CancellationToken,
    pub backoff: Backoff,
    /// The campaign's default sender.
    pub own_username: Option<String>,
    /// Where local profile images may be read from.
    pub image_dir: Option<PathBuf>,
    /// The API timeout: also the budget for reading a local image.
    pub timeout: Duration,
    /// Names this runner in stored pauses.
    pub runner_id: String,
}

impl Caller {
    /// Makes `call` unless a stop or a pause came first, or it can no longer start before
    /// `start_by` (its lease must outlast it: `NotCalled`). A 402 or 401 holds this
    /// runner's calls at once and is stored as a pause for every runner (the first one a
    /// strike; one heard while the pause is in force is not).
    pub async fn call(&self, call: &PlannedCall, start_by: DateTime<Utc>) -> CallOutcome {
        let now = self.clock.now();
        if self.stop.is_cancelled() || self.holds.blocks(call.action, now) || now > start_by {
            return CallOutcome::NotCalled;
        }
        let asked = std::time::Instant::now();
        let answer = self.request(call).await;
        crate::metrics::api_call(
            call.action.as_str(),
            crate::metrics::outcome(&answer),
            asked.elapsed(),
        );
        if let Err(e) = &answer {
            self.react(e, call.action).await;
        }
        CallOutcome::Answered(answer)
    }

    /// An inbound call (the HTTP relay's): the lead's message to the persona, with the
    /// same metrics and the same reaction to a 402 or 401 as a job's call. It is made
    /// even while the runner stops: the relay's caller is waiting for its answer.
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResult, ApiError> {
        let asked = std::time::Instant::now();
        let answer = self.client.inbound_chat(request).await;
        crate::metrics::api_call(
            Action::Inbound.as_str(),
            crate::metrics::outcome(&answer),
            asked.elapsed(),
        );
        if let Err(e) = &answer {
            self.react(e, Action::Inbound).await;
        }
        answer
    }

    /// A 402 or 401 (`policy::account_effect`): holds this runner's calls of the scopes it
    /// pauses at once, then stores each pause for every runner (the first one a strike;
    /// one heard while the pause is in force is not), within `PAUSE_WRITE_LIMIT`.
    async fn react(&self, e: &ApiError, action: Action) {
        let Some(effect) = policy::account_effect(e.kind(), action, None) else {
            return;
        };
        let now = self.clock.now();
        for &scope in effect.pauses() {
            if self.holds.held(scope, now) {
                continue;
            }
            let first = crate::clock::later(now, effect.pause_length(&self.backoff, 1));
            self.holds.hold(scope, first, &e.to_string());
            let backoff = self.backoff;
            let length = move |strikes| effect.pause_length(&backoff, strikes);
            // Bounded: a database gone silent must not hold the call's answer hostage.
            let stored = tokio::time::timeout(
                PAUSE_WRITE_LIMIT,
                self.store.set_pause(&NewPause {
                    scope,
                    reason: &e.to_string(),
                    set_by: &self.runner_id,
                    now,
                    length: &length,
                }),
            )
            .await;
            match stored {
                Ok(Ok(p)) => {
                    self.holds.stored(&p);
                    tracing::warn!(scope = scope.as_str(), until = %p.until, strikes = p.strikes, "paused: {e}");
                }
                Ok(Err(db)) => {
                    tracing::error!(error = %db, "could not store the pause; it holds in this runner")
                }
                Err(_) => {
                    tracing::error!("storing the pause timed out; it holds in this runner")
                }
            }
        }
    }

    async fn request(&self, call: &PlannedCall) -> Result<ActionResult, ApiError> {
        let lead = &call.lead;
        let target = lead.target.clone();
        // The planner's choice (a job's `senders`, recorded on the lead with the attempt),
        // else the lead's own, else the campaign's default.
        let sender = call
            .sender
            .clone()
            .or_else(|| lead.own_username.clone())
            .or_else(|| self.own_username.clone());
        match call.action {
            Action::Opener => {
                let image = image::resolve(
                    lead.profile_image.as_deref(),
                    self.image_dir.as_deref(),
                    self.timeout,
                )
                .await?;
                let (image_url, image_file) = match image {
                    ProfileImage::None => (None, None),
                    ProfileImage::Url(u) => (Some(u), None),
                    ProfileImage::File(f) => (None, Some(f)),
                };
                self.client
                    .ai_opener(&OpenerRequest {
                        target,
                        own_username: sender,
                        image_url,
                        image_file,
                    })
                    .await
            }
            Action::FollowUp => {
                self.client
                    .follow_up(&FollowUpRequest {
                        target,
                        own_username: sender,
                    })
                    .await
            }
            Action::Event => {
                let (event_type, context) = call
                    .event
                    .as_ref()
                    .map(|(_, t, c)| {
                        (
                            t.clone(),
                            c.as_deref().and_then(|c| serde_json::from_str(c).ok()),
                        )
                    })
                    .unwrap_or_default();
                self.client
                    .event_trigger(&EventRequest {
                        target,
                        event_type,
                        context,
                        own_username: sender,
                        image_url: None,
                        image_file: None,
                    })
                    .await
            }
            // Jobs never plan one; an inbound call goes through `chat`.
            Action::Inbound => Err(ApiError::not_sent(
                "an inbound call is made by `Caller::chat`, not by a job".into(),
            )),
        }
    }
}
