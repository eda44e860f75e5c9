//! The lead and its lifecycle: states and the allowed transitions, as a pure function.
//!
//! `new` ─opener ok─► `contacted` ─follow-up ok─► `contacted` (follow_ups_sent+1)
//! ─quiet past the last step─► `exhausted`. A recorded reply makes a `new` or `exhausted`
//! lead `contacted` again. Terminal: `done` (sealed, 400), `ignored` (owned by another
//! account), `blocked` (do-not-contact), `failed` (permanent error or retries used up),
//! `needs_review` (an attempt's outcome is unknown). A 404 on a follow-up sends the lead
//! back to `new` for the opener job. The names are part of the CLI's JSON output.
//!
//! `fields`: every lead field's limit and check, once for every way a lead comes in.

pub mod fields;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a lead is in its lifecycle.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
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

impl LeadEvent {
    /// The stored name of an event that can wait for a blocked lead (`leads.pending_event`).
    pub fn pending_name(self) -> Option<&'static str> {
        Some(match self {
            LeadEvent::OpenerSent => "opener_sent",
            LeadEvent::OpenerContinued => "opener_continued",
            LeadEvent::EventSent => "event_sent",
            LeadEvent::FollowUpSent => "follow_up_sent",
            LeadEvent::Ignored => "ignored",
            LeadEvent::Sealed => "sealed",
            LeadEvent::NoConversation => "no_conversation",
            LeadEvent::Failed => "failed",
            LeadEvent::OutcomeUnknown => "outcome_unknown",
            _ => return None,
        })
    }

    /// The event stored under `name` by `pending_name`.
    pub fn from_pending_name(name: &str) -> Option<LeadEvent> {
        [
            LeadEvent::OpenerSent,
            LeadEvent::OpenerContinued,
            LeadEvent::EventSent,
            LeadEvent::FollowUpSent,
            LeadEvent::Ignored,
            LeadEvent::Sealed,
            LeadEvent::NoConversation,
            LeadEvent::Failed,
            LeadEvent::OutcomeUnknown,
        ]
        .into_iter()
        .find(|e| e.pending_name() == Some(name))
    }

    /// Whether the event ends the lead's work or hands it to a person: such a pending event
    /// is never replaced by a later, milder one.
    fn sticks(self) -> bool {
        matches!(
            self,
            LeadEvent::OutcomeUnknown | LeadEvent::Sealed | LeadEvent::Ignored | LeadEvent::Failed
        )
    }
}

/// Where a runner's `event` leaves a lead that is in `state` *now*, and what then waits
/// for it. A person may have changed the lead while its call was in flight: the answer is
/// applied to the state the lead has, not the one it was claimed in. A blocked lead keeps
/// the answer's effect pending, so unblocking it cannot pretend the call never happened
/// (a lost answer makes it `needs_review`, a sealed one `done`).
pub fn settle(
    state: LeadState,
    pending: Option<LeadEvent>,
    event: LeadEvent,
) -> (LeadState, Option<LeadEvent>) {
    match next(state, event) {
        Ok(to) => (to, pending),
        Err(_) if state == LeadState::Blocked && event.pending_name().is_some() => {
            let keep = pending.filter(|p| p.sticks());
            (state, Some(keep.unwrap_or(event)))
        }
        Err(_) => (state, pending),
    }
}

/// What a blocked lead remembers of the state it was blocked in: a lead that needed review
/// or had failed returns to that when unblocked.
pub fn pending_on_block(from: LeadState, pending: Option<LeadEvent>) -> Option<LeadEvent> {
    pending.or(match from {
        LeadState::NeedsReview => Some(LeadEvent::OutcomeUnknown),
        LeadState::Failed => Some(LeadEvent::Failed),
        _ => None,
    })
}

/// The state an unblocked lead returns to: `new` or `contacted`, then whatever answer
/// arrived while it was blocked.
pub fn unblocked(contacted: bool, pending: Option<LeadEvent>) -> LeadState {
    let base = next(LeadState::Blocked, LeadEvent::Unblock { contacted }).unwrap_or(LeadState::New);
    match pending {
        Some(ev) => next(base, ev).unwrap_or(base),
        None => base,
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

    #[test]
    fn an_answer_for_a_blocked_lead_waits_and_unblocking_applies_it() {
        // A lost answer: unblocking makes the lead needs_review, never new again.
        let (state, pending) = settle(S::Blocked, None, E::OutcomeUnknown);
        assert_eq!((state, pending), (S::Blocked, Some(E::OutcomeUnknown)));
        assert_eq!(unblocked(false, pending), S::NeedsReview);
        // Sealed meanwhile: done.
        let (_, pending) = settle(S::Blocked, None, E::Sealed);
        assert_eq!(unblocked(false, pending), S::Done);
        // Answered with text: the lead was contacted.
        let (_, pending) = settle(S::Blocked, None, E::OpenerSent);
        assert_eq!(unblocked(true, pending), S::Contacted);
        // A milder later answer never replaces one a person must see.
        let (_, pending) = settle(S::Blocked, Some(E::OutcomeUnknown), E::FollowUpSent);
        assert_eq!(pending, Some(E::OutcomeUnknown));
        // No pending answer: as before.
        assert_eq!(unblocked(false, None), S::New);
        assert_eq!(unblocked(true, None), S::Contacted);
    }

    #[test]
    fn an_answer_applies_to_the_state_the_lead_has_now() {
        // Replied to while its opener was in flight: contacted stays contacted.
        assert_eq!(
            settle(S::Contacted, None, E::OpenerSent),
            (S::Contacted, None)
        );
        // ... and a seal still ends it.
        assert_eq!(settle(S::Contacted, None, E::Sealed), (S::Done, None));
        // A state only a person leaves is kept.
        assert_eq!(
            settle(S::NeedsReview, None, E::OpenerSent),
            (S::NeedsReview, None)
        );
    }

    #[test]
    fn blocking_a_lead_under_review_remembers_it() {
        let pending = pending_on_block(S::NeedsReview, None);
        assert_eq!(unblocked(false, pending), S::NeedsReview);
        assert_eq!(
            unblocked(true, pending_on_block(S::Failed, None)),
            S::Failed
        );
        assert_eq!(
            unblocked(true, pending_on_block(S::Contacted, None)),
            S::Contacted
        );
    }

    #[test]
    fn pending_names_round_trip() {
        for e in EVENTS {
            if let Some(name) = e.pending_name() {
                assert_eq!(LeadEvent::from_pending_name(name), Some(e));
            }
        }
        assert_eq!(LeadEvent::from_pending_name("block"), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// What can happen to a lead: a runner's answer, or a person's action.
        #[derive(Debug, Clone, Copy)]
        enum Op {
            Answer(LeadEvent),
            Block,
            Unblock,
            Retry,
            Replied,
        }

        fn answers() -> impl Strategy<Value = LeadEvent> {
            prop::sample::select(vec![
                E::OpenerSent,
                E::OpenerContinued,
                E::EventSent,
                E::FollowUpSent,
                E::QuietPastLastStep,
                E::Ignored,
                E::Sealed,
                E::NoConversation,
                E::Failed,
                E::OutcomeUnknown,
            ])
        }

        fn ops() -> impl Strategy<Value = Vec<Op>> {
            prop::collection::vec(
                prop_oneof![
                    4 => answers().prop_map(Op::Answer),
                    1 => Just(Op::Block),
                    1 => Just(Op::Unblock),
                    1 => Just(Op::Retry),
                    1 => Just(Op::Replied),
                ],
                0..40,
            )
        }

        proptest! {
            /// `next` is total: every state and event gives a state of the set, or a
            /// refusal that names the state it refused from.
            #[test]
            fn next_is_total_and_never_leaves_the_state_set(
                from in prop::sample::select(LeadState::ALL.to_vec()),
                event in prop::sample::select(EVENTS.to_vec()),
            ) {
                match next(from, event) {
                    Ok(to) => prop_assert!(LeadState::ALL.contains(&to)),
                    Err(r) => prop_assert_eq!(r.from, from),
                }
            }

            /// Whatever people and runners do, in any order: once an answer may have
            /// been lost, the lead is never workable again (`new`, `contacted`,
            /// `exhausted`: a runner would send to it) until a person retries it; and a
            /// sealed or ignored lead stays so.
            #[test]
            fn a_lost_answer_holds_the_lead_until_a_person_retries(ops in ops()) {
                let (mut state, mut pending) = (S::New, None);
                let mut contacted = false;
                let mut lost = false;
                for op in ops {
                    let before = state;
                    match op {
                        Op::Answer(ev) => {
                            let workable_or_blocked =
                                matches!(state, S::New | S::Contacted | S::Exhausted | S::Blocked);
                            (state, pending) = settle(state, pending, ev);
                            if ev == E::OutcomeUnknown && workable_or_blocked {
                                lost = true;
                            }
                            contacted |= matches!(
                                ev,
                                E::OpenerSent | E::OpenerContinued | E::EventSent | E::FollowUpSent
                            ) && state != S::NeedsReview;
                        }
                        Op::Block => {
                            if let Ok(to) = next(state, E::Block) {
                                pending = pending_on_block(state, pending);
                                state = to;
                            }
                        }
                        Op::Unblock => {
                            if state == S::Blocked {
                                state = unblocked(contacted, pending);
                                pending = None;
                            }
                        }
                        Op::Retry => {
                            if let Ok(to) = next(state, E::Retry { contacted }) {
                                state = to;
                                pending = None;
                                lost = false;
                            }
                        }
                        Op::Replied => {
                            if let Ok(to) = next(state, E::Replied) {
                                state = to;
                            }
                        }
                    }
                    prop_assert!(LeadState::ALL.contains(&state));
                    if lost {
                        prop_assert!(
                            !matches!(state, S::New | S::Contacted | S::Exhausted),
                            "{before} + {op:?} made a lead with a lost answer workable: {state}"
                        );
                    }
                    if matches!(before, S::Done | S::Ignored) {
                        prop_assert_eq!(state, before, "{:?}", op);
                    }
                }
            }
        }
    }
}
