//! What a job's run did, counted per outcome, and the words `run` and the daemon print.

use serde::Serialize;

/// What a run did, per outcome.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Summary {
    pub calls: u64,
    pub sent: u64,
    pub continued: u64,
    pub ignored: u64,
    pub sealed: u64,
    /// Follow-ups answered 404: back to `new` for an opener.
    pub reopened: u64,
    /// Calls answered 402.
    pub paused: u64,
    /// Transient failures to be retried later.
    pub retried: u64,
    pub failed: u64,
    /// Unknown outcomes sent to `needs_review`.
    pub review: u64,
    pub rate_limited: u64,
    pub unauthorized: u64,
    /// Leads claimed but given back without a call (the run stopped, a pause, the cap,
    /// their sender's room used by another runner since the plan).
    pub given_back: u64,
    /// Deprecated: `given_back`, by its old name (always the same value).
    pub cancelled: u64,
    /// Leads that became `exhausted` (follow-up jobs).
    pub exhausted: u64,
    /// Queued events dropped because their lead will not be worked.
    pub dropped: u64,
    /// Due leads passed over for their send window.
    pub outside_window: u64,
    /// Due leads passed over because their sender was at its cap or within its gap.
    pub sender_held: u64,
    /// Why, for the first sender that held leads (`sender_held`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_hold: Option<String>,
    /// Due leads passed over for a day off, per calendar (`"day off (de) 3"` in words).
    pub day_off: std::collections::BTreeMap<String, u64>,
    /// Attempts found in flight from a runner that died.
    pub recovered: u64,
    /// Calls whose connection could not be made (refused, no route, no DNS answer): the
    /// API never saw them. Also counted in `calls` (and `retried` or `failed`).
    pub unreachable: u64,
    /// Why the job could not work, if a pause held it.
    pub held: Option<String>,
    /// The run was stopped (SIGTERM, Ctrl-C) before it had worked every due lead.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// Why calls were not made (or no more): each named as the text names it.
    pub reasons: Vec<crate::why::Reason>,
}

/// One counter of a `Summary`, as judging an answer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    Sent,
    Continued,
    Ignored,
    Sealed,
    Reopened,
    Paused,
    Retried,
    Failed,
    Review,
    RateLimited,
    Unauthorized,
    /// Counted nowhere but in `calls` (e.g. a 402's lead, counted as `paused` already).
    Nothing,
}

impl Summary {
    pub fn add(&mut self, o: &Summary) {
        macro_rules! sum { ($($f:ident),*) => { $( self.$f += o.$f; )* } }
        sum!(
            calls,
            sent,
            continued,
            ignored,
            sealed,
            reopened,
            paused,
            retried,
            failed,
            review,
            rate_limited,
            unauthorized,
            given_back,
            cancelled,
            exhausted,
            dropped,
            outside_window,
            sender_held,
            recovered,
            unreachable
        );
        for (k, n) in &o.day_off {
            *self.day_off.entry(k.clone()).or_default() += n;
        }
        if self.held.is_none() {
            self.held = o.held.clone();
        }
        if self.sender_hold.is_none() {
            self.sender_hold = o.sender_hold.clone();
        }
        self.stopped |= o.stopped;
        self.reasons.extend(o.reasons.iter().cloned());
    }

    /// Counts `n` leads given back without a call (`given_back`, and its old name).
    pub fn give_back(&mut self, n: u64) {
        self.given_back += n;
        self.cancelled += n;
    }

    /// Whether a reason of this name was given.
    pub fn has_reason(&self, name: &str) -> bool {
        self.reasons.iter().any(|r| r.reason == name)
    }

    /// Takes in the sender holds a run's planner has counted so far.
    pub fn note_sender_holds(&mut self, cursor: &crate::plan::Cursor) {
        self.sender_held = cursor.sender_held.iter().map(|(_, n)| u64::from(*n)).sum();
        self.sender_hold = cursor.sender_held.first().map(|(h, _)| h.reason());
    }

    /// Counts one judged call (`called`: whether it reached the API at all).
    pub fn count(&mut self, tally: Tally, called: bool) {
        self.calls += u64::from(called);
        let slot = match tally {
            Tally::Sent => &mut self.sent,
            Tally::Continued => &mut self.continued,
            Tally::Ignored => &mut self.ignored,
            Tally::Sealed => &mut self.sealed,
            Tally::Reopened => &mut self.reopened,
            Tally::Paused => &mut self.paused,
            Tally::Retried => &mut self.retried,
            Tally::Failed => &mut self.failed,
            Tally::Review => &mut self.review,
            Tally::RateLimited => &mut self.rate_limited,
            Tally::Unauthorized => &mut self.unauthorized,
            Tally::Nothing => return,
        };
        *slot += 1;
    }

    /// Whether calls were tried and none of them reached the API: each failed to connect
    /// (`run` then exits 4: cron and CI see the failure).
    pub fn api_unreachable(&self) -> bool {
        self.calls > 0 && self.unreachable >= self.calls
    }

    /// "sent 3, continued 1, ..." with the counts that are not zero.
    pub fn describe(&self) -> String {
        let fields = [
            ("sent", self.sent),
            ("continued", self.continued),
            ("ignored", self.ignored),
            ("sealed", self.sealed),
            ("reopened", self.reopened),
            ("paused (402)", self.paused),
            ("retried", self.retried),
            ("failed", self.failed),
            ("to review", self.review),
            ("rate limited", self.rate_limited),
            ("unauthorized", self.unauthorized),
            ("given back", self.given_back),
            ("exhausted", self.exhausted),
            ("events dropped", self.dropped),
            ("outside window", self.outside_window),
            ("held by their sender", self.sender_held),
            ("recovered", self.recovered),
            ("could not connect", self.unreachable),
        ];
        let mut parts: Vec<String> = fields
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        // After "outside window": the same place in every summary.
        let at = fields
            .iter()
            .take_while(|(k, _)| *k != "recovered")
            .filter(|(_, n)| *n > 0)
            .count();
        for (i, (k, n)) in self.day_off.iter().filter(|(_, n)| **n > 0).enumerate() {
            parts.insert(at + i, format!("day off ({k}) {n}"));
        }
        // A reason says it again, with when it ends.
        if let Some(held) = self
            .held
            .as_ref()
            .filter(|_| !self.has_reason("paused") && !self.has_reason("job_paused"))
        {
            parts.push(held.clone());
        }
        if let Some(hold) = self
            .sender_hold
            .as_ref()
            .filter(|_| self.sender_held > 0 && !self.has_reason("sender_held"))
        {
            parts.push(hold.clone());
        }
        if self.stopped {
            parts.push("stopped before the end".into());
        }
        let why: Vec<&str> = self.reasons.iter().map(|r| r.text.as_str()).collect();
        let why = why.join("; ");
        match (parts.is_empty(), why.is_empty()) {
            (true, true) => "nothing due".into(),
            (true, false) => format!("nothing sent: {why}"),
            (false, true) => parts.join(", "),
            (false, false) if self.calls == 0 => {
                format!("nothing sent: {why} ({})", parts.join(", "))
            }
            (false, false) => format!("{}; not sent: {why}", parts.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_describes_only_what_happened() {
        let mut s = Summary::default();
        assert_eq!(s.describe(), "nothing due");
        s.count(Tally::Sent, true);
        s.count(Tally::Sent, true);
        s.count(Tally::Review, true);
        s.give_back(3);
        s.stopped = true;
        assert_eq!(s.calls, 3);
        assert_eq!(
            s.describe(),
            "sent 2, to review 1, given back 3, stopped before the end"
        );
    }

    #[test]
    fn days_off_are_named_by_calendar_after_the_window() {
        let mut s = Summary {
            outside_window: 2,
            recovered: 1,
            ..Summary::default()
        };
        s.day_off.insert("de".into(), 3);
        s.day_off.insert("us".into(), 1);
        assert_eq!(
            s.describe(),
            "outside window 2, day off (de) 3, day off (us) 1, recovered 1"
        );
        let mut t = Summary::default();
        t.day_off.insert("de".into(), 3);
        assert_eq!(t.describe(), "day off (de) 3");
        t.add(&s);
        assert_eq!(t.day_off.get("de"), Some(&6));
        let json = serde_json::to_value(&t).expect("json");
        assert_eq!(json["day_off"]["de"], 6);
    }
}
