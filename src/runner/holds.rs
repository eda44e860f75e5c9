//! Holds: until when this runner keeps calls back, per pause scope, and why.
//!
//! A hold is set the moment a 402 or 401 arrives (before its pause is even stored), so
//! every job of the runner stops before its next call. Otherwise holds follow the stored
//! pauses, read at each claim, while calls go out and at every daemon heartbeat (at most
//! once a second): up, when another runner stored a pause, and down, when a person lifted
//! it (`pause clear`) or shortened it. Only a hold this runner set and has not stored (its
//! pause is being written, or could not be) is kept whatever the table says, until it
//! ends: no other runner knows of it, so no `pause clear` could lift it.
//!
//! `held_now` tells what the runner holds and why; the daemon publishes it with its
//! heartbeat (`RunnerStore::publish_runner`) for `status`.

use crate::store::{Action, HeldPause, Pause, PauseScope, RunnerStore};
use chrono::{DateTime, Utc};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// How often the stored pauses are re-read while calls are going out.
const PAUSE_REFRESH: chrono::Duration = chrono::Duration::seconds(1);

const SCOPES: [PauseScope; 3] = [
    PauseScope::NewConversations,
    PauseScope::FollowUps,
    PauseScope::All,
];

/// One scope's hold.
#[derive(Debug, Clone, Default)]
struct Hold {
    /// Until when calls of the scope wait; `None`: not held.
    until: Option<DateTime<Utc>>,
    reason: String,
    /// Set by this runner from an answer and not (yet) stored as a pause.
    unstored: bool,
}

/// Until when this runner holds back calls, per pause scope.
pub struct Holds {
    /// New conversations, follow-ups, all (in `SCOPES` order).
    holds: Mutex<[Hold; 3]>,
    /// When (unix ms) the stored pauses were last read.
    refreshed: AtomicI64,
}

impl Default for Holds {
    fn default() -> Self {
        Holds {
            holds: Mutex::default(),
            // Never read: the first refresh is due whatever the clock says (a clock moved
            // before 1970 has negative milliseconds).
            refreshed: AtomicI64::new(i64::MIN),
        }
    }
}

fn index(scope: PauseScope) -> usize {
    match scope {
        PauseScope::NewConversations => 0,
        PauseScope::FollowUps => 1,
        PauseScope::All => 2,
    }
}

impl Holds {
    fn with<T>(&self, f: impl FnOnce(&mut [Hold; 3]) -> T) -> T {
        f(&mut self.holds.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Holds `scope` until `until` at once, for an answer this runner just got (`why`);
    /// its pause is not stored yet (`stored` says when it is). A shorter hold never
    /// shortens a longer one.
    pub fn hold(&self, scope: PauseScope, until: DateTime<Utc>, why: &str) {
        self.with(|h| {
            let hold = &mut h[index(scope)];
            if hold.until.is_none_or(|t| t < until) {
                hold.until = Some(until);
                hold.reason = why.to_string();
            }
            hold.unstored = true;
        });
    }

    /// The pause this runner's hold of `pause.scope` was stored as: from now on the hold
    /// follows the table.
    pub fn stored(&self, pause: &Pause) {
        self.with(|h| {
            let hold = &mut h[index(pause.scope)];
            hold.until = Some(pause.until);
            hold.reason = pause.reason.clone();
            hold.unstored = false;
        });
    }

    /// Takes the stored pauses as read: each scope is held until its pause's end, longer
    /// or shorter than before; a scope without a pause is released, unless this runner's
    /// own unstored hold is on it.
    pub fn absorb(&self, pauses: &[Pause]) {
        self.with(|h| {
            for scope in SCOPES {
                let hold = &mut h[index(scope)];
                let stored = pauses.iter().find(|p| p.scope == scope);
                match (stored, hold.unstored) {
                    (Some(p), true) => {
                        if hold.until.is_none_or(|t| t < p.until) {
                            hold.until = Some(p.until);
                            hold.reason = p.reason.clone();
                        }
                    }
                    (Some(p), false) => {
                        hold.until = Some(p.until);
                        hold.reason = p.reason.clone();
                    }
                    (None, true) => {}
                    (None, false) => *hold = Hold::default(),
                }
            }
        });
    }

    pub fn held(&self, scope: PauseScope, now: DateTime<Utc>) -> bool {
        self.with(|h| h[index(scope)].until.is_some_and(|t| t > now))
    }

    /// Until when `scope` is held (the Unix epoch if it is not).
    pub fn until(&self, scope: PauseScope) -> DateTime<Utc> {
        self.with(|h| h[index(scope)].until.unwrap_or_default())
    }

    /// Whether a call of `action` must wait at `now`.
    pub fn blocks(&self, action: Action, now: DateTime<Utc>) -> bool {
        SCOPES
            .iter()
            .any(|&scope| crate::policy::scope_stops(scope, action) && self.held(scope, now))
    }

    /// What this runner holds at `now`, and why.
    pub fn held_now(&self, now: DateTime<Utc>) -> Vec<HeldPause> {
        self.with(|h| {
            SCOPES
                .iter()
                .zip(h.iter())
                .filter_map(|(scope, hold)| {
                    let until = hold.until.filter(|t| *t > now)?;
                    Some(HeldPause {
                        scope: *scope,
                        until,
                        reason: hold.reason.clone(),
                        stored: !hold.unstored,
                    })
                })
                .collect()
        })
    }

    /// Reads the stored pauses if they were last read more than `PAUSE_REFRESH` ago (one
    /// caller reads; the others go on). A read that fails keeps the holds as they are.
    pub async fn refresh(&self, store: &dyn RunnerStore, now: DateTime<Utc>) {
        let last = self.refreshed.load(Ordering::SeqCst);
        let due = now.timestamp_millis().saturating_sub(last) >= PAUSE_REFRESH.num_milliseconds();
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
        self.with(|h| {
            let hold = &mut h[index(scope)];
            if hold.until.is_some_and(|t| t <= ended_by) {
                *hold = Hold::default();
            }
        });
    }
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
            "402",
        );
        assert!(holds.blocks(Action::Opener, now));
        assert!(holds.blocks(Action::Event, now));
        assert!(!holds.blocks(Action::FollowUp, now));
        assert!(!holds.blocks(Action::Opener, now + chrono::Duration::minutes(15)));
        // A shorter hold never shortens a longer one.
        holds.hold(
            PauseScope::NewConversations,
            now + chrono::Duration::minutes(1),
            "402",
        );
        assert!(holds.blocks(Action::Opener, now + chrono::Duration::minutes(10)));
        holds.hold(PauseScope::All, now + chrono::Duration::hours(1), "401");
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
            "402",
        );
        holds.release_ended(PauseScope::NewConversations, run_began);
        assert_eq!(holds.until(PauseScope::NewConversations).timestamp(), 0);
        let fresh = run_began + chrono::Duration::minutes(15);
        holds.hold(PauseScope::NewConversations, fresh, "402");
        holds.release_ended(PauseScope::NewConversations, run_began);
        assert!(holds.blocks(Action::Opener, run_began + chrono::Duration::minutes(5)));
    }

    fn pause(scope: PauseScope, until: DateTime<Utc>) -> Pause {
        Pause {
            scope,
            until,
            reason: "402 out of tokens".into(),
            strikes: 1,
            set_at: until,
            set_by: Some("r".into()),
        }
    }

    /// Issue 19: holds only grew (`fetch_max`), so a daemon kept holding for hours after
    /// `pause clear`. They follow the stored pauses down as well as up.
    #[test]
    fn holds_follow_the_stored_pauses_down_as_well_as_up() {
        let holds = Holds::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let hours = |h| now + chrono::Duration::hours(h);
        // Another runner stored a pause: held.
        holds.absorb(&[pause(PauseScope::NewConversations, hours(6))]);
        assert!(holds.blocks(Action::Opener, now));
        assert_eq!(holds.held_now(now).len(), 1);
        // Shortened: the shorter one holds.
        holds.absorb(&[pause(PauseScope::NewConversations, hours(1))]);
        assert_eq!(holds.until(PauseScope::NewConversations), hours(1));
        // Cleared: released.
        holds.absorb(&[]);
        assert!(!holds.blocks(Action::Opener, now));
        assert!(holds.held_now(now).is_empty());
        // This runner's own 402, not stored yet: kept whatever the table says ...
        holds.hold(PauseScope::NewConversations, hours(2), "402 heard here");
        holds.absorb(&[]);
        assert!(holds.blocks(Action::Opener, now));
        let held = holds.held_now(now);
        assert_eq!(
            (held[0].stored, held[0].reason.as_str()),
            (false, "402 heard here")
        );
        // ... until it is stored: then the table decides, and a cleared pause lets go.
        holds.stored(&pause(PauseScope::NewConversations, hours(2)));
        holds.absorb(&[]);
        assert!(!holds.blocks(Action::Opener, now));
    }

    /// A runner whose clock reads before 1970 (`FLUIDTALK_CLOCK_OFFSET=-60years`) has
    /// negative milliseconds: its first refresh must still read the pauses.
    #[tokio::test]
    async fn a_clock_before_1970_still_refreshes_the_holds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("h.db").display());
        let store = crate::store::open(&url).await.expect("store");
        let now = DateTime::from_timestamp(-1_000_000_000, 0).unwrap_or_default();
        let hour = std::time::Duration::from_secs(3600);
        store
            .set_pause(&crate::store::NewPause {
                scope: PauseScope::NewConversations,
                reason: "402",
                set_by: "r",
                now,
                length: &|_| hour,
            })
            .await
            .expect("pause");
        let holds = Holds::default();
        holds.refresh(&*store, now).await;
        assert!(holds.blocks(Action::Opener, now));
    }
}
