//! The verdict on one call: its outcome turned into the attempt's end, the lead's result
//! and the account's effect. A pure function over `policy::decide`, unit-tested like it.

use super::summary::Tally;
use crate::clock::later as after;
use crate::config::{Backoff, OnUnknown};
use crate::fluidtalk::{ActionResult, Error as ApiError};
use crate::lead::LeadEvent;
use crate::plan::PlannedCall;
use crate::policy::{self, AccountEffect, Context, LeadEffect, Outcome};
use crate::store::{AttemptEnd, AttemptStatus, LeadResult};
use chrono::{DateTime, Utc};

/// How one recorded call ended, as the runner saw it.
#[derive(Debug)]
pub enum CallOutcome {
    /// Not made: a stop or a pause came between recording it and starting it.
    NotCalled,
    /// The API answered, or the call failed in a way the client could name.
    Answered(Result<ActionResult, ApiError>),
    /// The call's task died: it may or may not have reached the API.
    Lost,
}

/// A call recorded in flight: what was planned, under which lease, as which attempt.
#[derive(Debug, Clone)]
pub struct Started {
    pub call: PlannedCall,
    pub lease_token: String,
    pub attempt_id: i64,
}

/// The job settings judging needs, and what the step's history says.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub backoff: &'a Backoff,
    pub on_unknown: OnUnknown,
    /// `on_unknown = "retry"` already re-sent this step once (`store::ON_UNKNOWN_RELEASE`
    /// on an earlier attempt of it): an unknown outcome now goes to review.
    pub step_retried: bool,
}

/// What one judged call writes and counts.
#[derive(Debug)]
pub struct Verdict {
    pub result: LeadResult,
    /// The summary counter, if the call was made.
    pub tally: Option<Tally>,
    /// What the answer means for the account, with the error's words.
    pub account: Option<(AccountEffect, String)>,
    /// The connection could not be made: the API never saw the call.
    pub unreachable: bool,
}

/// Judges `started` by its `outcome` at `now`.
pub fn judge(
    rules: Rules<'_>,
    started: &Started,
    outcome: CallOutcome,
    now: DateTime<Utc>,
) -> Verdict {
    let lead = &started.call.lead;
    let mut result = LeadResult::new(lead, &started.lease_token);
    let end = |status, error_kind: Option<&str>, detail: &str| AttemptEnd {
        attempt_id: started.attempt_id,
        status,
        http_status: None,
        error_kind: error_kind.map(str::to_string),
        error_detail: Some(detail.to_string()),
        session_id: None,
        finished_at: now,
        message: None,
        release: None,
    };
    let answer = match outcome {
        CallOutcome::NotCalled => {
            result.attempt = Some(end(
                AttemptStatus::Cancelled,
                None,
                "not called: the run stopped or paused first",
            ));
            return Verdict {
                result,
                tally: None,
                account: None,
                unreachable: false,
            };
        }
        CallOutcome::Lost => {
            result.attempt = Some(end(
                AttemptStatus::Unknown,
                Some("unknown"),
                "the call's task failed; outcome unknown",
            ));
            result.event = Some(LeadEvent::OutcomeUnknown);
            result.last_error = Some("outcome unknown: the call's task failed".into());
            return Verdict {
                result,
                tally: Some(Tally::Review),
                account: None,
                unreachable: false,
            };
        }
        CallOutcome::Answered(answer) => answer,
    };
    let ctx = Context {
        action: started.call.action,
        transient_failures: lead.transient_failures,
        backoff: rules.backoff,
        on_unknown: rules.on_unknown,
        step_retried: rules.step_retried,
    };
    let (ok, err) = match &answer {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e)),
    };
    let decision = policy::decide(
        &ctx,
        match &answer {
            Ok(r) => Outcome::Answered(r),
            Err(e) => Outcome::Failed {
                kind: e.kind(),
                retry_after: e.retry_after(),
            },
        },
    );
    result.attempt = Some(AttemptEnd {
        attempt_id: started.attempt_id,
        status: decision.status,
        http_status: err
            .and_then(|e| e.status())
            .map(i32::from)
            .or(ok.map(|_| 200)),
        error_kind: err.map(|e| e.kind().as_str().to_string()),
        error_detail: err.map(|e| e.detail()),
        session_id: ok.and_then(|r| r.session_id.clone()),
        finished_at: now,
        message: ok.filter(|_| decision.deliver).map(|r| r.message.clone()),
        release: None,
    });
    let mut tally = match decision.status {
        AttemptStatus::Sent => Tally::Sent,
        AttemptStatus::Continued => Tally::Continued,
        AttemptStatus::Ignored => Tally::Ignored,
        AttemptStatus::Sealed => Tally::Sealed,
        AttemptStatus::NoConversation => Tally::Reopened,
        AttemptStatus::OutOfTokens => Tally::Paused,
        AttemptStatus::RateLimited => Tally::RateLimited,
        AttemptStatus::Unauthorized => Tally::Unauthorized,
        _ => Tally::Nothing,
    };
    match decision.lead {
        LeadEffect::Event(ev) => {
            result.event = Some(ev);
            result.contacted = matches!(
                ev,
                LeadEvent::OpenerSent
                    | LeadEvent::OpenerContinued
                    | LeadEvent::EventSent
                    | LeadEvent::FollowUpSent
            );
            result.follow_up_sent = ev == LeadEvent::FollowUpSent;
            result.reopened = ev == LeadEvent::NoConversation;
            if result.reopened {
                result.next_eligible_at = Some(now);
            }
            if result.contacted {
                result.transient_failures = 0;
                result.last_error = None;
            } else {
                result.last_error = err.map(|e| e.to_string());
            }
            match ev {
                LeadEvent::Failed => {
                    tally = Tally::Failed;
                    if decision.status == AttemptStatus::TransientError {
                        result.transient_failures += 1;
                    }
                }
                LeadEvent::OutcomeUnknown => tally = Tally::Review,
                _ => {}
            }
            if let Some((event_id, _, _)) = &started.call.event {
                let state = match ev {
                    LeadEvent::Failed | LeadEvent::Sealed | LeadEvent::OutcomeUnknown => "failed",
                    _ => "sent",
                };
                result.queued_event = Some((*event_id, state));
            }
        }
        LeadEffect::Release => {}
        LeadEffect::RetryAfter(delay) => {
            tally = Tally::Retried;
            result.transient_failures += 1;
            result.next_eligible_at = Some(after(now, delay));
            result.last_error = err.map(|e| e.to_string());
            // An unknown outcome tried again is the job's deliberate choice: the step is
            // released, and the attempt says so.
            if decision.status == AttemptStatus::Unknown
                && let Some(a) = result.attempt.as_mut()
            {
                a.release = Some(crate::store::ON_UNKNOWN_RELEASE.into());
            }
        }
    }
    let account = decision
        .account
        .map(|a| (a, err.map(|e| e.to_string()).unwrap_or_default()));
    Verdict {
        result,
        tally: Some(tally),
        account,
        unreachable: err.is_some_and(|e| e.kind() == crate::fluidtalk::ErrorKind::Connect),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fluidtalk::ErrorKind;
    use crate::lead::LeadState;
    use crate::store::{Action, Lead};
    use std::time::Duration;

    fn backoff() -> Backoff {
        Backoff {
            out_of_tokens: Duration::from_secs(900),
            out_of_tokens_max: Duration::from_secs(6 * 3600),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            max_attempts: 3,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn started(action: Action, failures: i32, event: bool) -> Started {
        let lead = Lead {
            id: 7,
            target: "@ana".into(),
            own_username: None,
            state: LeadState::New,
            timezone: None,
            profile_image: None,
            tags: vec![],
            created_at: now(),
            updated_at: now(),
            last_contact_at: None,
            last_reply_at: None,
            next_eligible_at: now(),
            follow_ups_sent: 0,
            follow_ups_total: 0,
            reopens: 0,
            transient_failures: failures,
            session_id: None,
            last_error: Some("earlier".into()),
            lease_owner: Some("r/1".into()),
            lease_expires_at: None,
            pending_event: None,
        };
        Started {
            call: PlannedCall {
                job: "j".into(),
                target: lead.target.clone(),
                action,
                step: 0,
                reason: String::new(),
                sender: None,
                assign: false,
                event: event.then(|| (42, "story".to_string(), None)),
                lead,
            },
            lease_token: "r/1".into(),
            attempt_id: 99,
        }
    }

    fn rules(on_unknown: OnUnknown) -> (Backoff, OnUnknown) {
        (backoff(), on_unknown)
    }

    fn run(s: &Started, outcome: CallOutcome, on_unknown: OnUnknown) -> Verdict {
        let (b, u) = rules(on_unknown);
        judge(
            Rules {
                backoff: &b,
                on_unknown: u,
                step_retried: false,
            },
            s,
            outcome,
            now(),
        )
    }

    fn answered(message: &str) -> CallOutcome {
        CallOutcome::Answered(Ok(ActionResult {
            session_id: Some("s1".into()),
            message: message.into(),
            ignored: false,
            ignore_reason: None,
            continued: false,
            continued_reason: None,
        }))
    }

    fn failed(status: u16) -> CallOutcome {
        CallOutcome::Answered(Err(ApiError::from_response(
            status,
            serde_json::json!({"detail": "x"}),
            None,
        )))
    }

    #[test]
    fn an_answered_opener_is_sent_contacts_the_lead_and_delivers_its_text() {
        let s = run(
            &started(Action::Opener, 2, false),
            answered("Hi!"),
            OnUnknown::Review,
        );
        let a = s.result.attempt.as_ref().expect("attempt");
        assert_eq!((a.status, a.http_status), (AttemptStatus::Sent, Some(200)));
        assert_eq!(a.message.as_deref(), Some("Hi!"));
        assert_eq!(a.session_id.as_deref(), Some("s1"));
        assert_eq!(s.result.event, Some(LeadEvent::OpenerSent));
        assert!(s.result.contacted);
        assert_eq!(
            (s.result.transient_failures, s.result.last_error.as_deref()),
            (0, None)
        );
        assert_eq!(s.tally, Some(Tally::Sent));
        assert!(s.account.is_none());
    }

    #[test]
    fn a_call_not_made_is_cancelled_and_changes_nothing() {
        let s = run(
            &started(Action::Opener, 1, false),
            CallOutcome::NotCalled,
            OnUnknown::Review,
        );
        let a = s.result.attempt.as_ref().expect("attempt");
        assert_eq!(a.status, AttemptStatus::Cancelled);
        assert!(!a.status.holds_step());
        assert_eq!(s.result.event, None);
        assert_eq!(s.result.transient_failures, 1);
        assert_eq!(s.tally, None);
    }

    #[test]
    fn a_lost_task_sends_the_lead_to_review() {
        let s = run(
            &started(Action::FollowUp, 0, false),
            CallOutcome::Lost,
            OnUnknown::Review,
        );
        assert_eq!(
            s.result.attempt.as_ref().map(|a| a.status),
            Some(AttemptStatus::Unknown)
        );
        assert_eq!(s.result.event, Some(LeadEvent::OutcomeUnknown));
        assert_eq!(s.tally, Some(Tally::Review));
    }

    #[test]
    fn a_402_charges_nothing_and_pauses_new_conversations() {
        let s = run(
            &started(Action::Opener, 0, false),
            failed(402),
            OnUnknown::Review,
        );
        assert_eq!(s.result.event, None);
        assert_eq!(s.result.last_error.as_deref(), Some("earlier"));
        assert_eq!(s.tally, Some(Tally::Paused));
        assert_eq!(
            s.account.map(|a| a.0),
            Some(AccountEffect::PauseNewConversations)
        );
    }

    #[test]
    fn a_server_error_is_retried_after_a_back_off_and_counted() {
        let s = run(
            &started(Action::Opener, 0, false),
            failed(500),
            OnUnknown::Review,
        );
        assert_eq!(s.tally, Some(Tally::Retried));
        assert_eq!(s.result.transient_failures, 1);
        assert!(s.result.next_eligible_at.expect("later") >= now() + chrono::Duration::seconds(30));
        // The third (max_attempts = 3) fails the lead.
        let s = run(
            &started(Action::Opener, 2, false),
            failed(500),
            OnUnknown::Review,
        );
        assert_eq!(
            (s.tally, s.result.event),
            (Some(Tally::Failed), Some(LeadEvent::Failed))
        );
        assert_eq!(s.result.transient_failures, 3);
    }

    #[test]
    fn an_unknown_outcome_goes_to_review_or_is_released_once_by_the_jobs_choice() {
        let timeout = || {
            CallOutcome::Answered(Err(ApiError::from_response(
                504,
                serde_json::json!({}),
                None,
            )))
        };
        let s = run(
            &started(Action::Opener, 0, false),
            timeout(),
            OnUnknown::Review,
        );
        assert_eq!(s.result.event, Some(LeadEvent::OutcomeUnknown));
        assert_eq!(
            s.result.attempt.as_ref().and_then(|a| a.release.clone()),
            None
        );
        let s = run(
            &started(Action::Opener, 0, false),
            timeout(),
            OnUnknown::Retry,
        );
        let a = s.result.attempt.as_ref().expect("attempt");
        assert_eq!(a.status, AttemptStatus::Unknown);
        assert_eq!(a.release.as_deref(), Some("on_unknown = \"retry\""));
        assert_eq!(s.tally, Some(Tally::Retried));
        assert!(matches!(
            timeout(),
            CallOutcome::Answered(Err(ref e)) if e.kind() == ErrorKind::Gateway
        ));
    }

    #[test]
    fn an_event_call_settles_its_queued_event() {
        let s = run(
            &started(Action::Event, 0, true),
            answered("Saw it!"),
            OnUnknown::Review,
        );
        assert_eq!(s.result.queued_event, Some((42, "sent")));
        let s = run(
            &started(Action::Event, 0, true),
            failed(400),
            OnUnknown::Review,
        );
        assert_eq!(s.result.queued_event, Some((42, "failed")));
        assert_eq!(s.result.event, Some(LeadEvent::Sealed));
        // A 402 leaves the event queued for later.
        let s = run(
            &started(Action::Event, 0, true),
            failed(402),
            OnUnknown::Review,
        );
        assert_eq!(s.result.queued_event, None);
    }

    #[test]
    fn a_follow_up_answered_404_reopens_the_lead_at_once() {
        let s = run(
            &started(Action::FollowUp, 0, false),
            failed(404),
            OnUnknown::Review,
        );
        assert!(s.result.reopened);
        assert_eq!(s.result.next_eligible_at, Some(now()));
        assert_eq!(s.tally, Some(Tally::Reopened));
    }

    #[test]
    fn a_huge_retry_after_saturates_instead_of_panicking() {
        let huge = Backoff {
            retry_base: Duration::from_secs(u64::MAX / 4),
            retry_max: Duration::from_secs(u64::MAX / 2),
            ..backoff()
        };
        let s = judge(
            Rules {
                backoff: &huge,
                on_unknown: OnUnknown::Review,
                step_retried: false,
            },
            &started(Action::Opener, 0, false),
            failed(500),
            now(),
        );
        assert_eq!(s.result.next_eligible_at, Some(DateTime::<Utc>::MAX_UTC));
    }
}
