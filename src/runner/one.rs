//! One call outside a job: the HTTP relay's inbound message. It goes through the same
//! sequence as a job's call, with the same parts: the pause rule (`policy::scope_stops`),
//! one of `[limits] concurrency`'s slots and `per_second`, a lease, the attempt recorded in
//! flight before the call, the request with its metrics and its reaction to a 402 or 401
//! (`Caller::chat`, which stores the pause once, for every runner), `verdict` (the policy's
//! table), and the record that rides out a database outage (`Db::hold`). The relay only
//! maps the result to HTTP.

use super::Runner;
use super::verdict::{CallOutcome, Rules, Started, judge};
use crate::config::OnUnknown;
use crate::fluidtalk::{ActionResult, ChatRequest, ChatResult, Error as ApiError};
use crate::plan::PlannedCall;
use crate::store::Lease;
use crate::store::{Action, Lead, NewAttempt, StoreError};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The job name inbound attempts are recorded under.
pub const INBOUND_JOB: &str = "(inbound)";
/// How long an inbound call waits for a free call slot before its caller is told to retry.
const SLOT_WAIT: Duration = Duration::from_secs(10);

/// What the lead wrote, to whom.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The lead's target, checked.
    pub target: String,
    /// The persona account the lead wrote to (default: the lead's, then the campaign's).
    pub own_username: Option<String>,
    pub message: String,
    pub image_url: Option<String>,
}

/// Why the call was not made; nothing was sent and nothing is charged to the lead.
#[derive(Debug, thiserror::Error)]
pub enum NotCalled {
    #[error("every call is paused until {until} ({reason})")]
    Paused {
        until: DateTime<Utc>,
        reason: String,
    },
    #[error("every API call slot ([limits] concurrency) is busy")]
    Overloaded,
    /// The lead has a job's call in flight.
    #[error("lead {0:?} has a campaign call in flight")]
    Busy(String),
    /// The lead changed between its lease and the attempt's record.
    #[error("the lead changed while the call was being recorded")]
    Changed,
    #[error(transparent)]
    Store(StoreError),
}

/// A call that was made: its attempt, the lead as leased, and the API's answer.
#[derive(Debug)]
pub struct Called {
    pub attempt_id: i64,
    pub lead: Lead,
    pub answer: Result<ChatResult, ApiError>,
    /// Whether the API may have acted on the call (its attempt holds the step): a retry of
    /// the same request must not call again.
    pub may_have_acted: bool,
    /// The answer could not be written (past an outage's bound): the attempt stays in
    /// flight and goes to review once its lease ends.
    pub unrecorded: Option<StoreError>,
}

/// A lease token for one call outside a job: unique in this process, whose runner id is
/// unique.
fn new_lease_token(runner_id: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{runner_id}/inbound-{}",
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The text that goes to the outbox: the reply, or its bubbles one per paragraph.
pub fn text_of(chat: &ChatResult) -> String {
    if chat.ignored {
        String::new()
    } else if !chat.reply.is_empty() {
        chat.reply.clone()
    } else {
        chat.replies.join("\n\n")
    }
}

impl Runner {
    /// Records, makes and judges one inbound call (see the module's words).
    pub async fn call_inbound(&self, inbound: Inbound) -> Result<Called, NotCalled> {
        let store = &*self.store;
        let now = self.clock.now();
        // The stored pauses, read now: the relay answers at once when a person or another
        // runner paused the calls it makes (`policy::scope_stops`: only `all`), and goes
        // on as soon as `pause clear` lifted them. This runner's own holds are not
        // consulted: one it could not store would outlast a `pause clear`.
        let pauses = store.pauses().await.map_err(NotCalled::Store)?;
        if let Some(p) = pauses
            .iter()
            .find(|p| p.until > now && crate::policy::scope_stops(p.scope, Action::Inbound))
        {
            return Err(NotCalled::Paused {
                until: p.until,
                reason: p.reason.clone(),
            });
        }
        // A caller told to come back later is better than a call that starts after it
        // gave up.
        let Ok(Some(_slot)) = tokio::time::timeout(SLOT_WAIT, self.call_slot()).await else {
            return Err(NotCalled::Overloaded);
        };
        let lease_token = new_lease_token(&self.runner_id);
        let now = self.clock.now();
        let lease = self.single_call_lease();
        let lead = match store
            .begin_inbound(
                &inbound.target,
                inbound.own_username.as_deref(),
                Lease {
                    lease_token: &lease_token,
                    now,
                    until: now + lease,
                },
            )
            .await
        {
            Ok(lead) => lead,
            Err(StoreError::Busy(t)) => return Err(NotCalled::Busy(t)),
            Err(e) => return Err(NotCalled::Store(e)),
        };
        let sender = inbound.own_username.or(lead.own_username.clone());
        // An answer to the lead's own message: recorded with its sender, under none of the
        // sender's outreach rules (a cap or gap would leave the lead without an answer).
        let attempt = NewAttempt {
            lead_id: lead.id,
            job: INBOUND_JOB.to_string(),
            action: Action::Inbound,
            step: 0,
            lease_token: lease_token.clone(),
            started_at: now,
            claimed: Some(lead.state),
            sender: sender.clone().map(|username| crate::store::SenderCall {
                username,
                rule: None,
                assign: false,
            }),
        };
        let attempt_id = match store.start_attempts(&[attempt]).await {
            Ok(ids) if ids.len() == 1 => ids[0],
            failed => {
                if let Err(e) = store.release_leads(&[lead.id], &lease_token, now).await {
                    tracing::warn!(error = %e, "could not give the inbound call's lease back; it runs out by itself");
                }
                return Err(match failed {
                    Err(e) if !matches!(e, StoreError::Conflict(_)) => NotCalled::Store(e),
                    _ => NotCalled::Changed,
                });
            }
        };
        let answer = self
            .caller
            .chat(&ChatRequest {
                target: lead.target.clone(),
                message: inbound.message,
                own_username: sender.clone(),
                image_url: inbound.image_url,
                image_file: None,
            })
            .await;
        let end = self.clock.now();
        // Settled as a job's call is, as an `inbound` call: a transient failure is not
        // charged to the lead, and an unknown outcome goes to review. The account's
        // reaction (a pause) was `Caller::chat`'s.
        let started = Started {
            call: PlannedCall {
                job: INBOUND_JOB.to_string(),
                target: lead.target.clone(),
                action: Action::Inbound,
                step: 0,
                reason: "the lead wrote to the persona".into(),
                sender,
                assign: false,
                lead: lead.clone(),
                event: None,
            },
            lease_token,
            attempt_id,
        };
        let rules = Rules {
            backoff: &self.settings.backoff,
            on_unknown: OnUnknown::Review,
            step_retried: false,
        };
        let outcome = CallOutcome::Answered(match &answer {
            Ok(chat) => Ok(ActionResult {
                session_id: chat.session_id.clone(),
                message: text_of(chat),
                ignored: chat.ignored,
                ignore_reason: chat.ignore_reason.clone(),
                continued: false,
                continued_reason: None,
            }),
            Err(e) => Err(e.clone()),
        });
        let result = judge(rules, &started, outcome, end).result;
        let may_have_acted = result
            .attempt
            .as_ref()
            .is_some_and(|a| a.status.holds_step());
        // The answer exists only in memory until this succeeds: ride out a database outage.
        let results = [result];
        let unrecorded = self
            .db
            .hold("record an inbound answer", 1, || {
                store.record_results(&results, end)
            })
            .await
            .err();
        if let Some(e) = &unrecorded {
            tracing::error!(error = %e, attempt_id, "could not record an inbound call's answer");
        }
        Ok(Called {
            attempt_id,
            lead,
            answer,
            may_have_acted,
            unrecorded,
        })
    }
}
