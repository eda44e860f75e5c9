//! Holds: until when this runner keeps calls back, per pause scope.
//!
//! A hold is set the moment a 402 or 401 arrives (before its pause is even stored), so
//! every job of the runner stops before its next call; and from the stored pauses, read at
//! each claim and, while calls go out, at most once a second, so a pause another runner
//! stored stops this one too.

use crate::config::{Job, JobKind};
use crate::store::{Action, Pause, PauseScope, Store};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicI64, Ordering};

/// How often the stored pauses are re-read while calls are going out.
const PAUSE_REFRESH: chrono::Duration = chrono::Duration::seconds(1);

/// Until when (unix ms) this runner holds back calls, per pause scope.
#[derive(Default)]
pub struct Holds {
    new_conversations: AtomicI64,
    follow_ups: AtomicI64,
    all: AtomicI64,
    /// When (unix ms) the stored pauses were last read.
    refreshed: AtomicI64,
}

impl Holds {
    fn slot(&self, scope: PauseScope) -> &AtomicI64 {
        match scope {
            PauseScope::NewConversations => &self.new_conversations,
            PauseScope::FollowUps => &self.follow_ups,
            PauseScope::All => &self.all,
        }
    }

    pub fn hold(&self, scope: PauseScope, until: DateTime<Utc>) {
        self.slot(scope)
            .fetch_max(until.timestamp_millis(), Ordering::SeqCst);
    }

    pub fn absorb(&self, pauses: &[Pause]) {
        for p in pauses {
            self.hold(p.scope, p.until);
        }
    }

    pub fn held(&self, scope: PauseScope, now: DateTime<Utc>) -> bool {
        self.slot(scope).load(Ordering::SeqCst) > now.timestamp_millis()
    }

    /// Until when `scope` is held (unix epoch if it is not).
    pub fn until(&self, scope: PauseScope) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.slot(scope).load(Ordering::SeqCst)).unwrap_or_default()
    }

    /// Whether a call of `action` must wait at `now`.
    pub fn blocks(&self, action: Action, now: DateTime<Utc>) -> bool {
        self.held(PauseScope::All, now)
            || match action {
                Action::FollowUp => self.held(PauseScope::FollowUps, now),
                _ => self.held(PauseScope::NewConversations, now),
            }
    }

    /// Reads the stored pauses if they were last read more than `PAUSE_REFRESH` ago (one
    /// caller reads; the others go on). A read that fails keeps the holds as they are.
    pub async fn refresh(&self, store: &dyn Store, now: DateTime<Utc>) {
        let last = self.refreshed.load(Ordering::SeqCst);
        let due = now.timestamp_millis() - last >= PAUSE_REFRESH.num_milliseconds();
        if due
            && self
                .refreshed
                .compare_exchange(
                    last,
                    now.timestamp_millis(),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
        {
            // Bounded: a database gone silent must not stall the runner's loop.
            match tokio::time::timeout(std::time::Duration::from_secs(5), store.pauses()).await {
                Ok(Ok(p)) => self.absorb(&p),
                Ok(Err(e)) => tracing::debug!(error = %e, "could not re-read the pauses"),
                Err(_) => tracing::debug!("re-reading the pauses timed out"),
            }
        }
    }

    /// Forgets a hold whose stored pause was lifted because it had ended by `ended_by`; a
    /// hold set since (a 402 another job of this runner just heard) stays.
    pub fn release_ended(&self, scope: PauseScope, ended_by: DateTime<Utc>) {
        let by = ended_by.timestamp_millis();
        let _ = self
            .slot(scope)
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |until| {
                (until <= by).then_some(0)
            });
    }
}

fn pause_blocks(pause: &Pause, kind: &JobKind, now: DateTime<Utc>) -> bool {
    pause.until > now
        && match pause.scope {
            PauseScope::All => true,
            PauseScope::NewConversations => !matches!(kind, JobKind::FollowUp { .. }),
            PauseScope::FollowUps => matches!(kind, JobKind::FollowUp { .. }),
        }
}

/// The pause, if any, that stops `job` at `now`.
pub fn blocking_pause<'a>(pauses: &'a [Pause], job: &Job, now: DateTime<Utc>) -> Option<&'a Pause> {
    pauses.iter().find(|p| pause_blocks(p, &job.kind, now))
}

/// A pause in words, for a run's summary.
pub fn held_by(p: &Pause) -> String {
    format!(
        "held: {} paused until {}",
        p.scope.as_str().replace('_', " "),
        p.until.format("%Y-%m-%d %H:%M UTC")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_stops_its_scope_until_it_ends() {
        let holds = Holds::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        holds.hold(
            PauseScope::NewConversations,
            now + chrono::Duration::minutes(15),
        );
        assert!(holds.blocks(Action::Opener, now));
        assert!(holds.blocks(Action::Event, now));
        assert!(!holds.blocks(Action::FollowUp, now));
        assert!(!holds.blocks(Action::Opener, now + chrono::Duration::minutes(15)));
        // A shorter hold never shortens a longer one.
        holds.hold(
            PauseScope::NewConversations,
            now + chrono::Duration::minutes(1),
        );
        assert!(holds.blocks(Action::Opener, now + chrono::Duration::minutes(10)));
        holds.hold(PauseScope::All, now + chrono::Duration::hours(1));
        assert!(holds.blocks(Action::FollowUp, now));
    }

    /// Issue 9: a success that lifts an ended pause must not wipe a hold another job of
    /// the runner set a moment ago.
    #[test]
    fn lifting_an_ended_pause_keeps_a_hold_set_since() {
        let holds = Holds::default();
        let run_began = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        holds.hold(
            PauseScope::NewConversations,
            run_began - chrono::Duration::minutes(1),
        );
        holds.release_ended(PauseScope::NewConversations, run_began);
        assert_eq!(holds.until(PauseScope::NewConversations).timestamp(), 0);
        let fresh = run_began + chrono::Duration::minutes(15);
        holds.hold(PauseScope::NewConversations, fresh);
        holds.release_ended(PauseScope::NewConversations, run_began);
        assert!(holds.blocks(Action::Opener, run_began + chrono::Duration::minutes(5)));
    }
}
