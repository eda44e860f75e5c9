//! Sender accounts (`[[sender]]`): the `own_username`s of the key, each with its own daily
//! cap of new conversations, a warm-up ramp and a minimum gap between two of its calls.
//!
//! The rules here are pure (what today's cap is, when the gap ends, which sender takes an
//! unassigned lead); the store applies them exactly, under a lock per sender, in the
//! statement that records a call (`RunnerStore::start_attempts_within`), and the planner
//! applies them to what it plans so that a run does not claim leads it cannot send.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How many of its gaps a sender keeps its next call for a waiting follow-up (at least a
/// minute): long enough for a follow-up job run beside the openers to take it.
const FOLLOW_UP_FIRST: u32 = 2;

/// The most `[[sender]]` tables a campaign file may hold.
pub const MAX_SENDERS: usize = 1_000;

/// One `[[sender]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRule {
    /// The `own_username` the calls are made with.
    pub username: String,
    /// New conversations (openers) a day, in `timezone`; `None`: no cap.
    pub daily_cap: Option<u32>,
    /// The zone of the sender's day (`[UTC]`).
    pub timezone: Tz,
    pub warmup: Option<Warmup>,
    /// At least this long between two calls of this sender (any kind).
    pub min_gap: Duration,
}

/// A warm-up ramp: `start` openers on the day of the sender's first opener, `step` more
/// every `every_days` days after it, up to the sender's `daily_cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Warmup {
    pub start: u32,
    pub step: u32,
    pub every_days: u32,
}

impl SenderRule {
    /// The start of the sender's day containing `now`, as UTC.
    pub fn day_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        crate::plan::day_start(now, self.timezone)
    }

    /// The day's cap on openers at `now`, given the sender's first opener (`None`: it has
    /// sent none, so today is day 0 of its ramp). `None`: no cap.
    pub fn cap_at(&self, first_opener: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<u32> {
        let cap = self.daily_cap?;
        let Some(w) = self.warmup else {
            return Some(cap);
        };
        Some(w.on_day(self.ramp_day(first_opener, now)).min(cap))
    }

    /// The day of the ramp `now` falls on: 0 on the day of the first opener (or before it).
    pub fn ramp_day(&self, first_opener: Option<DateTime<Utc>>, now: DateTime<Utc>) -> u32 {
        let Some(first) = first_opener else {
            return 0;
        };
        let day = |t: DateTime<Utc>| t.with_timezone(&self.timezone).date_naive();
        (day(now) - day(first))
            .num_days()
            .clamp(0, i64::from(u32::MAX)) as u32
    }

    /// When the sender may call again after a call at `last` (`None`: at once).
    pub fn free_at(&self, last: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        if self.min_gap.is_zero() {
            return None;
        }
        last.map(|t| crate::clock::later(t, self.min_gap))
    }

    /// The caps of today and the `days - 1` days after it, as the ramp gives them.
    pub fn ramp(
        &self,
        first_opener: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        days: u32,
    ) -> Vec<Option<u32>> {
        let first = first_opener.unwrap_or(now);
        (0..days)
            .map(|d| self.cap_at(Some(first), now + chrono::Duration::days(i64::from(d))))
            .collect()
    }
}

impl Warmup {
    /// The ramp's cap on day `day` (0-based), before the daily cap.
    pub fn on_day(&self, day: u32) -> u32 {
        let steps = day / self.every_days.max(1);
        self.start.saturating_add(self.step.saturating_mul(steps))
    }
}

/// Every `[[sender]]` of the campaign file, by username, and the default sender for
/// leads that name none (`[fluidtalk] own_username`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderBook {
    pub rules: BTreeMap<String, Arc<SenderRule>>,
    pub default: Option<String>,
}

impl SenderBook {
    pub fn get(&self, username: &str) -> Option<&Arc<SenderRule>> {
        self.rules.get(username)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// A job's senders: the book, and the senders (in the file's order) the job's openers
/// give unassigned leads to. Empty `of_job`: unassigned leads use the default sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobSenders {
    pub book: Arc<SenderBook>,
    pub of_job: Vec<Arc<SenderRule>>,
}

impl JobSenders {
    /// Whether any sender rule can apply to this job's calls.
    pub fn any(&self) -> bool {
        !self.book.is_empty()
    }
}

/// What the store knows of a sender at a moment: its openers counted against today's cap,
/// its first opener ever (the warm-up's day 0) and its last call (the gap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SenderUse {
    pub username: String,
    pub openers_today: u64,
    pub first_opener_at: Option<DateTime<Utc>>,
    pub last_call_at: Option<DateTime<Utc>>,
    /// When a follow-up of this sender was last passed over for its gap (`FollowUpFirst`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_up_waiting_at: Option<DateTime<Utc>>,
}

/// Why a sender cannot take a call now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderHold {
    /// Its cap for today (`cap`, the warm-up's if lower) is used; it resets at `resets`.
    Cap {
        sender: String,
        cap: u32,
        resets: DateTime<Utc>,
    },
    /// Its last call was less than `min_gap` ago; it may call again at `until`.
    Gap {
        sender: String,
        until: DateTime<Utc>,
    },
    /// A follow-up of this sender has waited for its gap since its last call: openers
    /// let it go first, until `until` at the latest.
    FollowUpFirst {
        sender: String,
        until: DateTime<Utc>,
    },
}

impl SenderHold {
    pub fn sender(&self) -> &str {
        match self {
            SenderHold::Cap { sender, .. }
            | SenderHold::Gap { sender, .. }
            | SenderHold::FollowUpFirst { sender, .. } => sender,
        }
    }

    /// The hold in words, as the dry run and `run` print it.
    pub fn reason(&self) -> String {
        match self {
            SenderHold::Cap {
                sender,
                cap,
                resets,
            } => format!(
                "sender {sender} is at its daily cap of {cap} (resets {})",
                resets.format("%Y-%m-%d %H:%M UTC")
            ),
            SenderHold::Gap { sender, until } => format!(
                "sender {sender} waits for its min_gap (free at {})",
                until.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            SenderHold::FollowUpFirst { sender, until } => format!(
                "sender {sender} keeps its next call for a follow-up that waits for it (openers go on by {})",
                until.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        }
    }

    /// A short name for counts (`held` in JSON): `sender_cap` or `sender_gap`.
    pub fn kind(&self) -> &'static str {
        match self {
            SenderHold::Cap { .. } => "sender_cap",
            SenderHold::Gap { .. } => "sender_gap",
            SenderHold::FollowUpFirst { .. } => "sender_follow_up_first",
        }
    }
}

/// A sender's room at one moment, kept up to date as calls are planned or started: the
/// one bookkeeping the planner and the store's check share.
#[derive(Debug, Clone)]
pub struct Room {
    pub rule: Arc<SenderRule>,
    /// Openers it may still start today (`None`: no cap).
    pub left: Option<u64>,
    pub cap: Option<u32>,
    /// Openers (calls that opened a conversation) it started today.
    pub used: u64,
    pub last_call_at: Option<DateTime<Utc>>,
    pub first_opener_at: Option<DateTime<Utc>>,
    pub follow_up_waiting_at: Option<DateTime<Utc>>,
}

impl Room {
    /// The room `u` leaves `rule` at `now`.
    pub fn of(rule: Arc<SenderRule>, u: Option<&SenderUse>, now: DateTime<Utc>) -> Room {
        let first = u.and_then(|u| u.first_opener_at);
        let cap = rule.cap_at(first, now);
        let used = u.map_or(0, |u| u.openers_today);
        Room {
            left: cap.map(|c| u64::from(c).saturating_sub(used)),
            cap,
            used,
            last_call_at: u.and_then(|u| u.last_call_at),
            first_opener_at: first,
            follow_up_waiting_at: u.and_then(|u| u.follow_up_waiting_at),
            rule,
        }
    }

    /// Why this sender cannot take a call of kind `opener` (true) or any other at `now`.
    pub fn hold(&self, opener: bool, now: DateTime<Utc>) -> Option<SenderHold> {
        if let Some(until) = self.rule.free_at(self.last_call_at)
            && until > now
        {
            return Some(SenderHold::Gap {
                sender: self.rule.username.clone(),
                until,
            });
        }
        if opener && let Some(until) = self.follow_up_first_until(now) {
            return Some(SenderHold::FollowUpFirst {
                sender: self.rule.username.clone(),
                until,
            });
        }
        if opener && self.left == Some(0) {
            return Some(SenderHold::Cap {
                sender: self.rule.username.clone(),
                cap: self.cap.unwrap_or(0),
                resets: next_day_start(&self.rule, now),
            });
        }
        None
    }

    /// Until when openers leave this sender's next call to a follow-up that waits for it:
    /// one passed over for the gap since the sender's last call, for at most
    /// `FOLLOW_UP_FIRST` gaps after it was (a follow-up job that no longer runs does not
    /// hold the openers for good). `None`: openers may go.
    fn follow_up_first_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let waiting = self.follow_up_waiting_at?;
        if self.rule.min_gap.is_zero() || self.last_call_at.is_some_and(|t| t > waiting) {
            return None;
        }
        let until = crate::clock::later(
            waiting,
            self.rule
                .min_gap
                .saturating_mul(FOLLOW_UP_FIRST)
                .max(Duration::from_secs(60)),
        );
        (now < until).then_some(until)
    }

    /// Counts a call started at `now`.
    pub fn take(&mut self, opener: bool, now: DateTime<Utc>) {
        if opener {
            self.left = self.left.map(|l| l.saturating_sub(1));
            self.first_opener_at.get_or_insert(now);
        }
        self.last_call_at = Some(self.last_call_at.map_or(now, |t| t.max(now)));
    }
}

/// Each of `rules`' room at `now` given what the store read of them (`uses`), by username.
pub fn rooms(
    rules: impl IntoIterator<Item = Arc<SenderRule>>,
    uses: &[SenderUse],
    now: DateTime<Utc>,
) -> BTreeMap<String, Room> {
    rules
        .into_iter()
        .map(|rule| {
            let u = uses.iter().find(|u| u.username == rule.username);
            (rule.username.clone(), Room::of(rule, u, now))
        })
        .collect()
}

/// When the sender's next day begins after `now`.
pub fn next_day_start(rule: &SenderRule, now: DateTime<Utc>) -> DateTime<Utc> {
    // A day is 23 to 25 hours: 26 hours on is always within the next day.
    let today = rule.day_start(now);
    rule.day_start(today + chrono::Duration::hours(26))
}

/// The sender an opener gives an unassigned lead: of those that can take it at `now`, the
/// one with the most room left today (no cap counts as most), ties to the one idle the
/// longest (never called first), then the file's order.
pub fn choose<'a>(
    candidates: impl IntoIterator<Item = &'a Room>,
    now: DateTime<Utc>,
) -> Option<&'a Room> {
    candidates
        .into_iter()
        .filter(|r| r.hold(true, now).is_none())
        .enumerate()
        .max_by(|(ia, a), (ib, b)| {
            let left = |r: &Room| r.left.unwrap_or(u64::MAX);
            left(a)
                .cmp(&left(b))
                // Idle longest: an earlier (or no) last call wins.
                .then_with(|| b.last_call_at.cmp(&a.last_call_at))
                // The file's order: the earlier wins.
                .then_with(|| ib.cmp(ia))
        })
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0)
            .single()
            .expect("t")
    }

    fn rule(cap: Option<u32>, warmup: Option<Warmup>, gap: u64) -> Arc<SenderRule> {
        Arc::new(SenderRule {
            username: "@a".into(),
            daily_cap: cap,
            timezone: Tz::UTC,
            warmup,
            min_gap: Duration::from_secs(gap),
        })
    }

    #[test]
    fn the_ramp_counts_days_from_the_first_opener_up_to_the_cap() {
        let w = Warmup {
            start: 2,
            step: 3,
            every_days: 1,
        };
        let r = rule(Some(10), Some(w), 0);
        assert_eq!(r.cap_at(None, t(1, 9)), Some(2));
        assert_eq!(r.cap_at(Some(t(1, 23)), t(1, 23)), Some(2));
        assert_eq!(r.cap_at(Some(t(1, 23)), t(2, 0)), Some(5));
        assert_eq!(r.cap_at(Some(t(1, 23)), t(3, 12)), Some(8));
        assert_eq!(r.cap_at(Some(t(1, 23)), t(4, 12)), Some(10));
        assert_eq!(
            r.ramp(None, t(1, 9), 5),
            vec![Some(2), Some(5), Some(8), Some(10), Some(10)]
        );
        let weekly = rule(Some(100), Some(Warmup { every_days: 7, ..w }), 0);
        assert_eq!(weekly.cap_at(Some(t(1, 9)), t(7, 9)), Some(2));
        assert_eq!(weekly.cap_at(Some(t(1, 9)), t(8, 9)), Some(5));
    }

    #[test]
    fn a_day_is_the_senders_own() {
        let mut r = (*rule(Some(5), None, 0)).clone();
        r.timezone = chrono_tz::Asia::Tokyo;
        // 16:00 UTC is 01:00 the next day in Tokyo.
        assert_eq!(r.day_start(t(1, 16)), t(1, 15));
        assert_eq!(next_day_start(&r, t(1, 16)), t(2, 15));
    }

    #[test]
    fn a_gap_holds_the_sender_until_it_has_passed() {
        let r = rule(None, None, 90);
        let mut room = Room::of(r, None, t(1, 9));
        assert_eq!(room.hold(false, t(1, 9)), None);
        room.take(false, t(1, 9));
        let until = t(1, 9) + chrono::Duration::seconds(90);
        assert_eq!(
            room.hold(false, t(1, 9)),
            Some(SenderHold::Gap {
                sender: "@a".into(),
                until
            })
        );
        assert_eq!(room.hold(false, until), None);
    }

    #[test]
    fn openers_leave_the_next_call_to_a_follow_up_that_waits_for_it() {
        let r = rule(None, None, 90);
        let u = SenderUse {
            username: "@a".into(),
            openers_today: 0,
            first_opener_at: None,
            last_call_at: Some(t(1, 9)),
            follow_up_waiting_at: Some(t(1, 9) + chrono::Duration::seconds(10)),
        };
        let after_gap = t(1, 9) + chrono::Duration::seconds(95);
        let room = Room::of(r.clone(), Some(&u), after_gap);
        assert!(matches!(
            room.hold(true, after_gap),
            Some(SenderHold::FollowUpFirst { .. })
        ));
        assert_eq!(room.hold(false, after_gap), None, "the follow-up goes");
        // Once a call came after the wait, or two gaps passed, openers go again.
        let mut called = room.clone();
        called.take(false, after_gap);
        let later = after_gap + chrono::Duration::seconds(90);
        assert_eq!(called.hold(true, later), None);
        let stale = t(1, 9) + chrono::Duration::seconds(10 + 180);
        assert_eq!(room.hold(true, stale), None);
    }

    #[test]
    fn an_unassigned_lead_goes_to_the_most_room_then_the_longest_idle() {
        let now = t(1, 9);
        let mk = |name: &str, left: u64, last: Option<DateTime<Utc>>| Room {
            rule: Arc::new(SenderRule {
                username: name.into(),
                daily_cap: Some(10),
                timezone: Tz::UTC,
                warmup: None,
                min_gap: Duration::ZERO,
            }),
            left: Some(left),
            cap: Some(10),
            used: 0,
            last_call_at: last,
            first_opener_at: None,
            follow_up_waiting_at: None,
        };
        let rooms = [
            mk("@a", 3, None),
            mk("@b", 5, Some(t(1, 8))),
            mk("@c", 5, Some(t(1, 7))),
        ];
        assert_eq!(
            choose(&rooms, now).map(|r| r.rule.username.as_str()),
            Some("@c")
        );
        let full = [mk("@a", 0, None), mk("@b", 0, None)];
        assert!(choose(&full, now).is_none());
        let tie = [mk("@a", 2, None), mk("@b", 2, None)];
        assert_eq!(
            choose(&tie, now).map(|r| r.rule.username.as_str()),
            Some("@a")
        );
    }
}
