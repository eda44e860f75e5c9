//! What one API answer means for the attempt, the lead and the account: a pure,
//! table-driven function (`decide`), with a unit test for every row.
//!
//! | answer | attempt | lead | account |
//! |---|---|---|---|
//! | `ignored` | ignored | → `ignored` | |
//! | opener `continued` | continued | → `contacted`, nothing to send | |
//! | opener / event / follow-up with text | sent | → `contacted` (+1 follow-up), text to the outbox | |
//! | 400 | sealed | → `done` | |
//! | 404 on a follow-up | no_conversation | → `new`, for the opener job | |
//! | 402 | out_of_tokens | not charged, stays due | pause new conversations (a follow-up's 402 pauses follow-ups too) |
//! | 401 / 403 | unauthorized | not charged | stop all calls |
//! | 429 | rate_limited | not charged | hold the job for `Retry-After` |
//! | 5xx but 502/504, refused connection | transient_error | retry with back-off; `failed` after `max_attempts` | |
//! | timeout, dropped connection, unreadable 2xx, 502/504 | unknown | `needs_review` (or one retry with `on_unknown = "retry"`, a recorded release) | |
//! | other status, unreadable local image | failed | → `failed` | |
//!
//! An `inbound` call (the HTTP relay) follows the same table; its answer with text is
//! `sent` (the lead → `contacted`), and a transient failure is not charged to the lead
//! (the relay's caller tries again).

use crate::config::{Backoff, Job, JobKind, OnUnknown};
use crate::fluidtalk::{ActionResult, ErrorKind};
use crate::lead::LeadEvent;
use crate::store::{Action, AttemptStatus, Pause, PauseScope};
use backon::BackoffBuilder;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// One call's answer, as the policy needs it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Answered(&'a ActionResult),
    Failed {
        kind: ErrorKind,
        retry_after: Option<Duration>,
    },
}

/// What the lead was like before the call.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub action: Action,
    /// Transient failures already counted for the lead.
    pub transient_failures: i32,
    pub backoff: &'a Backoff,
    pub on_unknown: OnUnknown,
    /// Whether `on_unknown = "retry"` already re-sent this step once (read from the
    /// step's attempts: nothing a person does to the lead resets it).
    pub step_retried: bool,
}

/// What happens to the lead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeadEffect {
    /// A lifecycle event (see `lead::next`).
    Event(LeadEvent),
    /// Nothing is charged to the lead: it stays due as it was.
    Release,
    /// A transient failure: count it and try again after this delay.
    RetryAfter(Duration),
}

/// What happens to the account or the job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AccountEffect {
    /// 402 on an opener or event: start no new conversations for a while.
    PauseNewConversations,
    /// 402 on a follow-up: pause follow-ups (and new conversations) for a while.
    PauseFollowUps,
    /// 401/403: no call can succeed until the key is fixed.
    Unauthorized,
    /// 429: hold the job, for `Retry-After` if the server sent one.
    RateLimited(Option<Duration>),
}

impl AccountEffect {
    /// The stored pauses this effect sets, each with its length for the number of times in
    /// a row it has been set (`strikes`).
    pub fn pauses(self) -> &'static [PauseScope] {
        match self {
            AccountEffect::PauseNewConversations => &[PauseScope::NewConversations],
            AccountEffect::PauseFollowUps => &[PauseScope::NewConversations, PauseScope::FollowUps],
            AccountEffect::Unauthorized => &[PauseScope::All],
            AccountEffect::RateLimited(_) => &[],
        }
    }

    /// How long the pause lasts after `strikes` of them in a row.
    pub fn pause_length(self, backoff: &Backoff, strikes: u32) -> Duration {
        match self {
            AccountEffect::Unauthorized => UNAUTHORIZED_PROBE,
            _ => out_of_tokens_pause(backoff, strikes),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub status: AttemptStatus,
    pub lead: LeadEffect,
    /// Whether the answer's text goes to the outbox (only if there is text).
    pub deliver: bool,
    pub account: Option<AccountEffect>,
}

impl Decision {
    fn new(status: AttemptStatus, lead: LeadEffect) -> Self {
        Decision {
            status,
            lead,
            deliver: false,
            account: None,
        }
    }
}

/// The exponential back-off before transient retry number `failures + 1`: from
/// `retry_base`, doubling, capped at `retry_max`, with jitter (up to one more delay) so a
/// burst of failures does not come back as a burst.
pub fn retry_delay(backoff: &Backoff, failures: u32) -> Duration {
    backon::ExponentialBuilder::default()
        .with_min_delay(backoff.retry_base)
        .with_max_delay(backoff.retry_max)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(failures as usize + 1)
        .build()
        .nth(failures as usize)
        .unwrap_or(backoff.retry_max)
        .min(backoff.retry_max.saturating_mul(2))
}

/// The pause after the `strikes`-th 402 in a row: `out_of_tokens`, doubling, up to the max.
pub fn out_of_tokens_pause(backoff: &Backoff, strikes: u32) -> Duration {
    let doublings = strikes.saturating_sub(1).min(20);
    backoff
        .out_of_tokens
        .saturating_mul(1 << doublings)
        .min(backoff.out_of_tokens_max)
}

/// How long a 401 stops calls before the key is tried again.
pub const UNAUTHORIZED_PROBE: Duration = Duration::from_secs(3600);

/// What an error means for the account or the job, if anything (the table's last column).
pub fn account_effect(
    kind: ErrorKind,
    action: Action,
    retry_after: Option<Duration>,
) -> Option<AccountEffect> {
    match kind {
        ErrorKind::OutOfTokens if action == Action::FollowUp => Some(AccountEffect::PauseFollowUps),
        ErrorKind::OutOfTokens => Some(AccountEffect::PauseNewConversations),
        ErrorKind::Unauthorized => Some(AccountEffect::Unauthorized),
        ErrorKind::RateLimited => Some(AccountEffect::RateLimited(retry_after)),
        _ => None,
    }
}

pub fn decide(ctx: &Context<'_>, outcome: Outcome<'_>) -> Decision {
    use AttemptStatus as S;
    match outcome {
        Outcome::Answered(r) if r.ignored => {
            Decision::new(S::Ignored, LeadEffect::Event(LeadEvent::Ignored))
        }
        Outcome::Answered(r) => {
            let (status, event) = match (ctx.action, r.continued) {
                (Action::Opener, true) => (S::Continued, LeadEvent::OpenerContinued),
                (Action::Opener, false) => (S::Sent, LeadEvent::OpenerSent),
                (Action::Event, true) => (S::Continued, LeadEvent::EventSent),
                (Action::Event, false) => (S::Sent, LeadEvent::EventSent),
                (Action::FollowUp, _) => (S::Sent, LeadEvent::FollowUpSent),
                // The persona answered the lead's message: the lead is in conversation,
                // as after an event trigger's answer.
                (Action::Inbound, _) => (S::Sent, LeadEvent::EventSent),
            };
            Decision {
                deliver: !r.message.is_empty(),
                ..Decision::new(status, LeadEffect::Event(event))
            }
        }
        Outcome::Failed { kind, retry_after } => match kind {
            ErrorKind::Sealed => Decision::new(S::Sealed, LeadEffect::Event(LeadEvent::Sealed)),
            ErrorKind::NoConversation if ctx.action == Action::FollowUp => Decision::new(
                S::NoConversation,
                LeadEffect::Event(LeadEvent::NoConversation),
            ),
            ErrorKind::OutOfTokens | ErrorKind::Unauthorized | ErrorKind::RateLimited => Decision {
                account: account_effect(kind, ctx.action, retry_after),
                ..Decision::new(
                    match kind {
                        ErrorKind::OutOfTokens => S::OutOfTokens,
                        ErrorKind::Unauthorized => S::Unauthorized,
                        _ => S::RateLimited,
                    },
                    LeadEffect::Release,
                )
            },
            ErrorKind::Server | ErrorKind::Connect => {
                Decision::new(S::TransientError, transient(ctx))
            }
            ErrorKind::Timeout | ErrorKind::Network | ErrorKind::Decode | ErrorKind::Gateway => {
                // The engine may have acted: a repeat could open a second conversation or
                // come back `continued` with the first answer's text lost. Only a job that
                // opted in retries, once in the step's life (the runner records that as a
                // release of the step, and reads it back: `step_retried`).
                let lead = match ctx.on_unknown {
                    OnUnknown::Retry if !ctx.step_retried => transient(ctx),
                    _ => LeadEffect::Event(LeadEvent::OutcomeUnknown),
                };
                Decision::new(S::Unknown, lead)
            }
            // 404 on an opener or event, 422 and the like, an unreadable local image:
            // repeating the same call cannot help.
            _ => Decision::new(S::Failed, LeadEffect::Event(LeadEvent::Failed)),
        },
    }
}

fn transient(ctx: &Context<'_>) -> LeadEffect {
    if ctx.action == Action::Inbound {
        // The relay's caller retries the request; the lead's schedule is not touched.
        return LeadEffect::Release;
    }
    let failures = ctx.transient_failures.max(0) as u32 + 1;
    if failures >= ctx.backoff.max_attempts {
        LeadEffect::Event(LeadEvent::Failed)
    } else {
        LeadEffect::RetryAfter(retry_delay(ctx.backoff, failures - 1))
    }
}

/// Whether a pause of `scope` stops a call of `action`: `all` stops every call,
/// `new_conversations` openers and events, `follow_ups` follow-ups. An inbound call (the
/// lead wrote first, through the HTTP relay) is stopped by `all` only. The one rule for
/// jobs, the runner's in-memory holds and the relay.
pub fn scope_stops(scope: PauseScope, action: Action) -> bool {
    match scope {
        PauseScope::All => true,
        PauseScope::NewConversations => matches!(action, Action::Opener | Action::Event),
        PauseScope::FollowUps => action == Action::FollowUp,
    }
}

/// The action a job's calls make.
pub fn job_action(kind: &JobKind) -> Action {
    match kind {
        JobKind::Opener { .. } => Action::Opener,
        JobKind::FollowUp { .. } => Action::FollowUp,
        JobKind::Event { .. } => Action::Event,
    }
}

/// Whether `pause` stops a job of `kind` at `now`.
pub fn pause_blocks(pause: &Pause, kind: &JobKind, now: DateTime<Utc>) -> bool {
    pause.until > now && scope_stops(pause.scope, job_action(kind))
}

/// The pause, if any, that stops `job` at `now`.
pub fn blocking_pause<'a>(pauses: &'a [Pause], job: &Job, now: DateTime<Utc>) -> Option<&'a Pause> {
    pauses.iter().find(|p| pause_blocks(p, &job.kind, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttemptStatus as S;

    fn backoff() -> Backoff {
        Backoff {
            out_of_tokens: Duration::from_secs(900),
            out_of_tokens_max: Duration::from_secs(6 * 3600),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            max_attempts: 5,
        }
    }

    fn answer(message: &str, ignored: bool, continued: bool) -> ActionResult {
        ActionResult {
            session_id: Some("s".into()),
            message: message.into(),
            ignored,
            ignore_reason: None,
            continued,
            continued_reason: continued.then(|| "conversation_already_active".into()),
        }
    }

    fn decide_with(
        action: Action,
        failures: i32,
        on_unknown: OnUnknown,
        outcome: Outcome<'_>,
    ) -> Decision {
        let b = backoff();
        decide(
            &Context {
                action,
                transient_failures: failures,
                backoff: &b,
                on_unknown,
                step_retried: false,
            },
            outcome,
        )
    }

    fn d(action: Action, outcome: Outcome<'_>) -> Decision {
        decide_with(action, 0, OnUnknown::Review, outcome)
    }

    fn err(kind: ErrorKind) -> Outcome<'static> {
        Outcome::Failed {
            kind,
            retry_after: None,
        }
    }

    #[test]
    fn an_ignored_answer_ends_the_lead_as_ignored_with_nothing_to_send() {
        for action in [Action::Opener, Action::Event, Action::FollowUp] {
            let a = answer("", true, false);
            let got = d(action, Outcome::Answered(&a));
            assert_eq!(
                got,
                Decision::new(S::Ignored, LeadEffect::Event(LeadEvent::Ignored)),
                "{action:?}"
            );
        }
    }

    #[test]
    fn a_continued_opener_makes_the_lead_contacted_with_nothing_to_send() {
        let a = answer("", false, true);
        let got = d(Action::Opener, Outcome::Answered(&a));
        assert_eq!(
            got,
            Decision::new(S::Continued, LeadEffect::Event(LeadEvent::OpenerContinued))
        );
    }

    #[test]
    fn an_answered_opener_is_sent_and_its_text_delivered() {
        let a = answer("Hi!", false, false);
        let got = d(Action::Opener, Outcome::Answered(&a));
        assert_eq!(got.status, S::Sent);
        assert_eq!(got.lead, LeadEffect::Event(LeadEvent::OpenerSent));
        assert!(got.deliver);
    }

    #[test]
    fn an_answered_event_delivers_its_text_whether_new_or_continued() {
        for continued in [false, true] {
            let a = answer("Saw your story!", false, continued);
            let got = d(Action::Event, Outcome::Answered(&a));
            assert_eq!(got.lead, LeadEffect::Event(LeadEvent::EventSent));
            assert!(got.deliver);
            assert_eq!(got.status, if continued { S::Continued } else { S::Sent });
        }
    }

    #[test]
    fn an_answered_follow_up_is_sent_and_delivered() {
        let a = answer("Still there?", false, false);
        let got = d(Action::FollowUp, Outcome::Answered(&a));
        assert_eq!(got.lead, LeadEffect::Event(LeadEvent::FollowUpSent));
        assert!(got.deliver);
    }

    #[test]
    fn sealed_ends_the_lead_as_done() {
        for action in [Action::Opener, Action::Event, Action::FollowUp] {
            assert_eq!(
                d(action, err(ErrorKind::Sealed)),
                Decision::new(S::Sealed, LeadEffect::Event(LeadEvent::Sealed))
            );
        }
    }

    #[test]
    fn no_conversation_on_a_follow_up_sends_the_lead_back_for_an_opener() {
        let got = d(Action::FollowUp, err(ErrorKind::NoConversation));
        assert_eq!(
            got,
            Decision::new(
                S::NoConversation,
                LeadEffect::Event(LeadEvent::NoConversation)
            )
        );
        // On an opener it makes no sense and is final.
        assert_eq!(
            d(Action::Opener, err(ErrorKind::NoConversation)).lead,
            LeadEffect::Event(LeadEvent::Failed)
        );
    }

    #[test]
    fn out_of_tokens_pauses_new_conversations_and_does_not_charge_the_lead() {
        for action in [Action::Opener, Action::Event] {
            let got = d(action, err(ErrorKind::OutOfTokens));
            assert_eq!(got.status, S::OutOfTokens);
            assert_eq!(got.lead, LeadEffect::Release);
            assert_eq!(got.account, Some(AccountEffect::PauseNewConversations));
        }
        assert_eq!(
            d(Action::FollowUp, err(ErrorKind::OutOfTokens)).account,
            Some(AccountEffect::PauseFollowUps)
        );
    }

    #[test]
    fn unauthorized_stops_everything_and_charges_nothing() {
        let got = d(Action::Opener, err(ErrorKind::Unauthorized));
        assert_eq!(got.lead, LeadEffect::Release);
        assert_eq!(got.account, Some(AccountEffect::Unauthorized));
    }

    #[test]
    fn rate_limited_holds_the_job_for_retry_after() {
        let got = d(
            Action::FollowUp,
            Outcome::Failed {
                kind: ErrorKind::RateLimited,
                retry_after: Some(Duration::from_secs(12)),
            },
        );
        assert_eq!(got.status, S::RateLimited);
        assert_eq!(got.lead, LeadEffect::Release);
        assert_eq!(
            got.account,
            Some(AccountEffect::RateLimited(Some(Duration::from_secs(12))))
        );
    }

    #[test]
    fn server_errors_and_refused_connections_retry_with_growing_back_off_then_fail() {
        for kind in [ErrorKind::Server, ErrorKind::Connect] {
            let first = decide_with(Action::Opener, 0, OnUnknown::Review, err(kind));
            assert_eq!(first.status, S::TransientError);
            let LeadEffect::RetryAfter(d0) = first.lead else {
                panic!("retries: {first:?}")
            };
            assert!(
                d0 >= Duration::from_secs(30) && d0 <= Duration::from_secs(60),
                "{d0:?}"
            );
            let LeadEffect::RetryAfter(d2) =
                decide_with(Action::Opener, 2, OnUnknown::Review, err(kind)).lead
            else {
                panic!("retries")
            };
            assert!(
                d2 >= Duration::from_secs(120) && d2 <= Duration::from_secs(240),
                "{d2:?}"
            );
            // The fifth transient failure (max_attempts = 5) ends the lead as failed.
            let last = decide_with(Action::Opener, 4, OnUnknown::Review, err(kind));
            assert_eq!(last.lead, LeadEffect::Event(LeadEvent::Failed));
        }
    }

    #[test]
    fn an_unknown_outcome_goes_to_review_unless_the_job_opts_into_one_retry() {
        for kind in [ErrorKind::Timeout, ErrorKind::Network, ErrorKind::Decode] {
            let got = d(Action::Opener, err(kind));
            assert_eq!(
                got,
                Decision::new(S::Unknown, LeadEffect::Event(LeadEvent::OutcomeUnknown)),
                "{kind:?}"
            );
            let once = decide_with(Action::Opener, 0, OnUnknown::Retry, err(kind));
            assert!(matches!(once.lead, LeadEffect::RetryAfter(_)), "{once:?}");
            // Whether the step was retried decides, not the lead's failure count (which a
            // person's unblock or retry resets, and an earlier 5xx raises).
            let b = backoff();
            let ctx = |failures, step_retried| Context {
                action: Action::Opener,
                transient_failures: failures,
                backoff: &b,
                on_unknown: OnUnknown::Retry,
                step_retried,
            };
            let twice = decide(&ctx(0, true), err(kind));
            assert_eq!(twice.lead, LeadEffect::Event(LeadEvent::OutcomeUnknown));
            let after_a_5xx = decide(&ctx(1, false), err(kind));
            assert!(matches!(after_a_5xx.lead, LeadEffect::RetryAfter(_)));
        }
    }

    #[test]
    fn a_gateway_error_is_an_unknown_outcome_never_a_transient_retry() {
        let got = d(Action::Opener, err(ErrorKind::Gateway));
        assert_eq!(got.status, S::Unknown);
        assert_eq!(got.lead, LeadEffect::Event(LeadEvent::OutcomeUnknown));
    }

    /// The client's classification and this table say the same thing (one classification).
    #[test]
    fn the_table_agrees_with_the_clients_error_classes() {
        use crate::fluidtalk::ErrorClass;
        let kinds = [
            ErrorKind::Unauthorized,
            ErrorKind::OutOfTokens,
            ErrorKind::Sealed,
            ErrorKind::NoConversation,
            ErrorKind::RateLimited,
            ErrorKind::Server,
            ErrorKind::Gateway,
            ErrorKind::Connect,
            ErrorKind::Timeout,
            ErrorKind::Network,
            ErrorKind::Decode,
            ErrorKind::LocalFile,
            ErrorKind::Other,
        ];
        for kind in kinds {
            // A follow-up, where every final class is final (404 included).
            let got = d(Action::FollowUp, err(kind));
            match kind.class() {
                ErrorClass::Transient => {
                    assert_eq!(got.status, S::TransientError, "{kind:?}");
                    assert!(!got.status.holds_step(), "{kind:?}: the API did not act");
                }
                ErrorClass::AccountPause => {
                    assert!(got.account.is_some(), "{kind:?}");
                    assert_eq!(got.lead, LeadEffect::Release, "{kind:?}");
                    assert!(!got.status.holds_step(), "{kind:?}: the API did not act");
                }
                ErrorClass::FinalForLead => {
                    assert!(matches!(got.lead, LeadEffect::Event(_)), "{kind:?}")
                }
                ErrorClass::OutcomeUnknown => {
                    assert_eq!(got.status, S::Unknown, "{kind:?}");
                    assert!(got.status.holds_step(), "{kind:?}: never sent twice");
                }
            }
        }
    }

    #[test]
    fn other_errors_and_unreadable_images_fail_the_lead() {
        for kind in [ErrorKind::Other, ErrorKind::LocalFile] {
            assert_eq!(
                d(Action::Event, err(kind)),
                Decision::new(S::Failed, LeadEffect::Event(LeadEvent::Failed))
            );
        }
    }

    #[test]
    fn the_out_of_tokens_pause_doubles_up_to_its_maximum() {
        let b = backoff();
        let minutes: Vec<u64> = (1..=7)
            .map(|s| out_of_tokens_pause(&b, s).as_secs() / 60)
            .collect();
        assert_eq!(minutes, [15, 30, 60, 120, 240, 360, 360]);
    }
}
