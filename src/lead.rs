//! The lead and its lifecycle: states and the allowed transitions, as a pure function.
//!
//! `new` ─opener ok─► `contacted` ─follow-up ok─► `contacted` (follow_ups_sent+1)
//! ─quiet past the last step─► `exhausted`. A recorded reply makes a `new` or `exhausted`
//! lead `contacted` again. Terminal: `done` (sealed, 400), `ignored` (owned by another
//! account), `blocked` (do-not-contact), `failed` (permanent error or retries used up),
//! `needs_review` (an attempt's outcome is unknown). A 404 on a follow-up sends the lead
//! back to `new` for the opener job. The names are part of the CLI's JSON output.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a lead is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadState {
    New,
    Contacted,
    Exhausted,
    Done,
    Ignored,
    Blocked,
    Failed,
    NeedsReview,
}

impl LeadState {
    pub const ALL: [LeadState; 8] = [
        LeadState::New,
        LeadState::Contacted,
        LeadState::Exhausted,
        LeadState::Done,
        LeadState::Ignored,
        LeadState::Blocked,
        LeadState::Failed,
        LeadState::NeedsReview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeadState::New => "new",
            LeadState::Contacted => "contacted",
            LeadState::Exhausted => "exhausted",
            LeadState::Done => "done",
            LeadState::Ignored => "ignored",
            LeadState::Blocked => "blocked",
            LeadState::Failed => "failed",
            LeadState::NeedsReview => "needs_review",
        }
    }
}

impl fmt::Display for LeadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`, so `{:<12}` aligns columns.
        f.pad(self.as_str())
    }
}

impl FromStr for LeadState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LeadState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = LeadState::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown lead state {s:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Something that happens to a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadEvent {
    /// An opener was answered with text to send.
    OpenerSent,
    /// An opener was answered `continued`: the lead is already in conversation.
    OpenerContinued,
    /// An event trigger was answered (new or continued conversation).
    EventSent,
    /// A follow-up was answered with text to send.
    FollowUpSent,
    /// The lead stayed quiet past the last follow-up step.
    QuietPastLastStep,
    /// The lead wrote back on the platform.
    Replied,
    /// The API answered `ignored`: another account of the persona owns the lead.
    Ignored,
    /// The API answered 400: the conversation is DONE.
    Sealed,
    /// The API answered 404 to a follow-up: there is no conversation, open one first.
    NoConversation,
    /// A permanent error, or the transient retries are used up.
    Failed,
    /// An attempt's outcome is unknown (a crash or lost answer mid-call).
    OutcomeUnknown,
    /// The user marked the lead do-not-contact.
    Block,
    /// The user lifted the block; `contacted` says whether the lead was ever contacted.
    Unblock { contacted: bool },
    /// The user asked to work a `failed` or `needs_review` lead again.
    Retry { contacted: bool },
}

/// A transition the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} lead cannot take {event}: {why}")]
pub struct Refused {
    pub from: LeadState,
    pub event: &'static str,
    pub why: &'static str,
}

impl LeadEvent {
    fn name(self) -> &'static str {
        match self {
            LeadEvent::OpenerSent => "an opener",
            LeadEvent::OpenerContinued => "a continued opener",
            LeadEvent::EventSent => "an event trigger",
            LeadEvent::FollowUpSent => "a follow-up",
            LeadEvent::QuietPastLastStep => "exhaustion",
            LeadEvent::Replied => "a reply",
            LeadEvent::Ignored => "an ignored answer",
            LeadEvent::Sealed => "a sealed answer",
            LeadEvent::NoConversation => "a no-conversation answer",
            LeadEvent::Failed => "a failure",
            LeadEvent::OutcomeUnknown => "an unknown outcome",
            LeadEvent::Block => "block",
            LeadEvent::Unblock { .. } => "unblock",
            LeadEvent::Retry { .. } => "retry",
        }
    }
}

/// The state after `event`, or why the lifecycle refuses it.
pub fn next(from: LeadState, event: LeadEvent) -> Result<LeadState, Refused> {
    use LeadEvent as E;
    use LeadState as S;
    let refuse = |why| {
        Err(Refused {
            from,
            event: event.name(),
            why,
        })
    };
    // States the runner may still work (send something to).
    let workable = matches!(from, S::New | S::Contacted | S::Exhausted);
    match event {
        E::OpenerSent | E::OpenerContinued => match from {
            S::New => Ok(S::Contacted),
            _ => refuse("only a new lead gets an opener"),
        },
        E::EventSent => {
            if workable {
                Ok(S::Contacted)
            } else {
                refuse("the lead is not being worked")
            }
        }
        E::FollowUpSent | E::QuietPastLastStep => match (from, event) {
            (S::Contacted, E::FollowUpSent) => Ok(S::Contacted),
            (S::Contacted, _) => Ok(S::Exhausted),
            _ => refuse("only a contacted lead is followed up"),
        },
        E::Replied => Ok(match from {
            S::New | S::Contacted | S::Exhausted => S::Contacted,
            // The reply is recorded, but it does not undo a seal, a block, another
            // account's ownership or a state a person has to look at.
            other => other,
        }),
        E::Ignored | E::Sealed | E::Failed | E::OutcomeUnknown => {
            if !workable {
                return refuse("the lead is not being worked");
            }
            Ok(match event {
                E::Ignored => S::Ignored,
                E::Sealed => S::Done,
                E::Failed => S::Failed,
                _ => S::NeedsReview,
            })
        }
        E::NoConversation => match from {
            S::Contacted | S::Exhausted => Ok(S::New),
            _ => refuse("only a contacted lead can lose its conversation"),
        },
        E::Block => match from {
            S::Blocked => refuse("it is already blocked"),
            S::Done | S::Ignored => refuse("it will not be contacted again anyway"),
            _ => Ok(S::Blocked),
        },
        E::Unblock { contacted } => match from {
            S::Blocked => Ok(if contacted { S::Contacted } else { S::New }),
            _ => refuse("it is not blocked"),
        },
        E::Retry { contacted } => match from {
            S::Failed | S::NeedsReview => Ok(if contacted { S::Contacted } else { S::New }),
            _ => refuse("only a failed or needs_review lead is retried"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::LeadEvent as E;
    use super::LeadState as S;
    use super::*;

    const EVENTS: [LeadEvent; 16] = [
        E::OpenerSent,
        E::OpenerContinued,
        E::EventSent,
        E::FollowUpSent,
        E::QuietPastLastStep,
        E::Replied,
        E::Ignored,
        E::Sealed,
        E::NoConversation,
        E::Failed,
        E::OutcomeUnknown,
        E::Block,
        E::Unblock { contacted: false },
        E::Unblock { contacted: true },
        E::Retry { contacted: false },
        E::Retry { contacted: true },
    ];

    /// Every allowed transition; everything not listed must be refused.
    const ALLOWED: &[(LeadState, LeadEvent, LeadState)] = &[
        (S::New, E::OpenerSent, S::Contacted),
        (S::New, E::OpenerContinued, S::Contacted),
        (S::New, E::EventSent, S::Contacted),
        (S::Contacted, E::EventSent, S::Contacted),
        (S::Exhausted, E::EventSent, S::Contacted),
        (S::Contacted, E::FollowUpSent, S::Contacted),
        (S::Contacted, E::QuietPastLastStep, S::Exhausted),
        (S::New, E::Replied, S::Contacted),
        (S::Contacted, E::Replied, S::Contacted),
        (S::Exhausted, E::Replied, S::Contacted),
        (S::Done, E::Replied, S::Done),
        (S::Ignored, E::Replied, S::Ignored),
        (S::Blocked, E::Replied, S::Blocked),
        (S::Failed, E::Replied, S::Failed),
        (S::NeedsReview, E::Replied, S::NeedsReview),
        (S::New, E::Ignored, S::Ignored),
        (S::Contacted, E::Ignored, S::Ignored),
        (S::Exhausted, E::Ignored, S::Ignored),
        (S::New, E::Sealed, S::Done),
        (S::Contacted, E::Sealed, S::Done),
        (S::Exhausted, E::Sealed, S::Done),
        (S::Contacted, E::NoConversation, S::New),
        (S::Exhausted, E::NoConversation, S::New),
        (S::New, E::Failed, S::Failed),
        (S::Contacted, E::Failed, S::Failed),
        (S::Exhausted, E::Failed, S::Failed),
        (S::New, E::OutcomeUnknown, S::NeedsReview),
        (S::Contacted, E::OutcomeUnknown, S::NeedsReview),
        (S::Exhausted, E::OutcomeUnknown, S::NeedsReview),
        (S::New, E::Block, S::Blocked),
        (S::Contacted, E::Block, S::Blocked),
        (S::Exhausted, E::Block, S::Blocked),
        (S::Failed, E::Block, S::Blocked),
        (S::NeedsReview, E::Block, S::Blocked),
        (S::Blocked, E::Unblock { contacted: false }, S::New),
        (S::Blocked, E::Unblock { contacted: true }, S::Contacted),
        (S::Failed, E::Retry { contacted: false }, S::New),
        (S::Failed, E::Retry { contacted: true }, S::Contacted),
        (S::NeedsReview, E::Retry { contacted: false }, S::New),
        (S::NeedsReview, E::Retry { contacted: true }, S::Contacted),
    ];

    #[test]
    fn every_allowed_transition_lands_where_the_table_says() {
        for &(from, event, to) in ALLOWED {
            assert_eq!(next(from, event), Ok(to), "{from} + {event:?}");
        }
    }

    #[test]
    fn every_transition_not_in_the_table_is_refused() {
        let mut refused = 0;
        for from in LeadState::ALL {
            for event in EVENTS {
                if ALLOWED.iter().any(|&(f, e, _)| f == from && e == event) {
                    continue;
                }
                let err = next(from, event).expect_err(&format!("{from} + {event:?} is refused"));
                assert_eq!(err.from, from);
                refused += 1;
            }
        }
        assert_eq!(refused, LeadState::ALL.len() * EVENTS.len() - ALLOWED.len());
    }

    #[test]
    fn a_refusal_says_why_in_words() {
        let err = next(S::Done, E::OpenerSent).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "a done lead cannot take an opener: only a new lead gets an opener"
        );
    }

    #[test]
    fn state_names_round_trip_and_unknown_names_list_the_choices() {
        for s in LeadState::ALL {
            assert_eq!(s.as_str().parse::<LeadState>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).expect("json"), format!("\"{s}\""));
        }
        let err = "sent".parse::<LeadState>().expect_err("unknown");
        assert!(err.contains("needs_review"), "{err}");
    }
}
