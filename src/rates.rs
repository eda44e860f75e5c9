//! Reply rates per job, step and sender: what was sent, what was replied to, sealed or
//! ignored, and the reply rate with its 95% Wilson score interval. For `status` (text and
//! `--json`), the dashboard and `/metrics`.
//!
//! - **sent**: attempts answered `sent` or `continued` (the message went out).
//! - **replied**: sent attempts a reply was credited to. A reply (`leads reply`,
//!   `POST /v1/leads/{target}/reply`, the inbound relay) is credited, in the transaction
//!   that records it, to the lead's last job step sent before it (`attempts.replied_at`),
//!   once: a second reply to the same step is not counted again.
//! - **sealed**: attempts refused because the conversation is sealed (400).
//! - **ignored**: attempts answered `ignored` (the lead belongs to another account).
//! - **reply_rate**: replied / sent, with its 95% Wilson interval (none when nothing was
//!   sent).
//!
//! The sender of a step is the lead's `own_username`, or the campaign's
//! `[fluidtalk] own_username` when the lead has none. The figures count the attempts the
//! database keeps: retention (`[retention] attempts`) prunes old follow-ups and events, so
//! they cover the retention window (each contacted lead's opener is kept for good).

use std::collections::BTreeMap;

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959964;

/// The most sender label values on `/metrics` and rows per job and step on the dashboard:
/// senders come from lead data, so past this the least used are summed under `OTHER`.
pub const MAX_SENDERS: usize = 20;

/// The sender the senders past `MAX_SENDERS` are summed under.
pub const OTHER: &str = "(other)";

/// The sender shown for steps sent with no sender named (neither the lead nor the
/// campaign names one: the account's default).
pub const NO_SENDER: &str = "(none)";

/// The 95% Wilson score interval of `successes` out of `trials`: `None` with no trials.
/// Bounds are clamped to [0, 1].
pub fn wilson(successes: u64, trials: u64) -> Option<(f64, f64)> {
    wilson_z(successes, trials, Z95)
}

/// The Wilson score interval for `z`.
pub fn wilson_z(successes: u64, trials: u64, z: f64) -> Option<(f64, f64)> {
    if trials == 0 {
        return None;
    }
    let n = trials as f64;
    let p = successes.min(trials) as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // At 0 and n the bound is 0 or 1 exactly; computed, it may miss by a rounding (4 of 4
    // gave 0.9999999999999999, an interval without its own point).
    let lo = if successes == 0 {
        0.0
    } else {
        (center - margin).max(0.0)
    };
    let hi = if successes >= trials {
        1.0
    } else {
        (center + margin).min(1.0)
    };
    Some((lo, hi))
}

/// The figures of one job, step and sender, as the store counts them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepCount {
    pub job: String,
    /// `opener`, `follow_up`, `event` (`inbound` is not a job's step and is not counted).
    pub action: String,
    /// The attempt's step: an opener's counts the lead's reopens (0 first), a
    /// follow-up's the follow-ups over the lead's life (1 first); events are one step (0:
    /// their attempts' step is the event's id).
    pub step: i64,
    /// `None`: no sender named.
    pub sender: Option<String>,
    pub sent: u64,
    pub replied: u64,
    pub sealed: u64,
    pub ignored: u64,
}

impl StepCount {
    /// The step's name: `opener_0`, `follow_up_2`, `event`.
    pub fn step_name(&self) -> String {
        if self.action == "event" {
            "event".to_string()
        } else {
            format!("{}_{}", self.action, self.step)
        }
    }

    /// The sender's name for people and labels.
    pub fn sender_name(&self) -> &str {
        self.sender.as_deref().unwrap_or(NO_SENDER)
    }

    /// replied / sent; `None` when nothing was sent.
    pub fn reply_rate(&self) -> Option<f64> {
        (self.sent > 0).then(|| self.replied.min(self.sent) as f64 / self.sent as f64)
    }

    /// The reply rate's 95% Wilson interval.
    pub fn interval(&self) -> Option<(f64, f64)> {
        wilson(self.replied, self.sent)
    }

    /// The row of `status --json` and `GET /v1/status` (`reply_rates`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "job": self.job,
            "step": self.step_name(),
            "sender": self.sender,
            "sent": self.sent,
            "replied": self.replied,
            "sealed": self.sealed,
            "ignored": self.ignored,
            "reply_rate": self.reply_rate(),
            "interval": self.interval().map(|(lo, hi)| [lo, hi]),
        })
    }

    /// One line of `status`, with the JSON's names.
    pub fn describe(&self) -> String {
        let rate = match (self.reply_rate(), self.interval()) {
            (Some(r), Some((lo, hi))) => format!("reply_rate={r:.4} interval=[{lo:.4}, {hi:.4}]"),
            _ => "reply_rate=- interval=-".to_string(),
        };
        format!(
            "job={} step={} sender={} sent={} replied={} sealed={} ignored={} {rate}",
            self.job,
            self.step_name(),
            self.sender_name(),
            self.sent,
            self.replied,
            self.sealed,
            self.ignored
        )
    }
}

/// Sort key: job, action (opener, follow_up, event), step, sender.
fn order(a: &StepCount, b: &StepCount) -> std::cmp::Ordering {
    let rank = |x: &str| match x {
        "opener" => 0,
        "follow_up" => 1,
        _ => 2,
    };
    (a.job.as_str(), rank(&a.action), a.step, a.sender.as_deref()).cmp(&(
        b.job.as_str(),
        rank(&b.action),
        b.step,
        b.sender.as_deref(),
    ))
}

/// `rows` in order: job, then opener, follow-ups, events by step, then sender.
pub fn sorted(mut rows: Vec<StepCount>) -> Vec<StepCount> {
    rows.sort_by(order);
    rows
}

/// `rows` with at most `max` senders: those with the most sent (all steps together; ties
/// by name) keep their own rows, the others are summed per job and step under `OTHER`.
pub fn fold_senders(rows: &[StepCount], max: usize) -> Vec<StepCount> {
    let mut per_sender: BTreeMap<Option<&str>, u64> = BTreeMap::new();
    for r in rows {
        *per_sender.entry(r.sender.as_deref()).or_default() += r.sent;
    }
    if per_sender.len() <= max {
        return sorted(rows.to_vec());
    }
    let mut ranked: Vec<(Option<&str>, u64)> = per_sender.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // One place goes to `OTHER`.
    let kept: std::collections::BTreeSet<Option<&str>> = ranked
        .iter()
        .take(max.saturating_sub(1))
        .map(|(s, _)| *s)
        .collect();
    let mut out: Vec<StepCount> = Vec::new();
    let mut other: BTreeMap<(String, String, i64), StepCount> = BTreeMap::new();
    for r in rows {
        if kept.contains(&r.sender.as_deref()) {
            out.push(r.clone());
            continue;
        }
        let o = other
            .entry((r.job.clone(), r.action.clone(), r.step))
            .or_insert_with(|| StepCount {
                job: r.job.clone(),
                action: r.action.clone(),
                step: r.step,
                sender: Some(OTHER.to_string()),
                ..StepCount::default()
            });
        o.sent += r.sent;
        o.replied += r.replied;
        o.sealed += r.sealed;
        o.ignored += r.ignored;
    }
    out.extend(other.into_values());
    sorted(out)
}

/// A label value in the Prometheus text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The reply-rate gauges in the Prometheus text format, for `/metrics`: senders folded to
/// `MAX_SENDERS` label values. Gauges, not counters: they are read from the attempts the
/// database keeps, which retention prunes, so they may go down.
pub fn prometheus(rows: &[StepCount]) -> String {
    use crate::metrics::{
        REPLY_RATE, REPLY_RATE_HIGH, REPLY_RATE_LOW, STEPS_IGNORED, STEPS_REPLIED, STEPS_SEALED,
        STEPS_SENT,
    };
    let rows = fold_senders(rows, MAX_SENDERS);
    let mut out = String::new();
    type Value = fn(&StepCount) -> Option<f64>;
    let series: [(&str, &str, Value); 7] = [
        (
            STEPS_SENT,
            "Steps sent (answered sent or continued), by job, step and sender; attempts kept by retention.",
            |r| Some(r.sent as f64),
        ),
        (
            STEPS_REPLIED,
            "Sent steps a reply was credited to (the last step sent before the reply, once), by job, step and sender.",
            |r| Some(r.replied as f64),
        ),
        (
            STEPS_SEALED,
            "Steps refused because the conversation is sealed, by job, step and sender.",
            |r| Some(r.sealed as f64),
        ),
        (
            STEPS_IGNORED,
            "Steps answered ignored (the lead belongs to another account), by job, step and sender.",
            |r| Some(r.ignored as f64),
        ),
        (
            REPLY_RATE,
            "Replied / sent, by job, step and sender (absent when nothing was sent).",
            StepCount::reply_rate,
        ),
        (
            REPLY_RATE_LOW,
            "Lower bound of the reply rate's 95% Wilson score interval.",
            |r| r.interval().map(|i| i.0),
        ),
        (
            REPLY_RATE_HIGH,
            "Upper bound of the reply rate's 95% Wilson score interval.",
            |r| r.interval().map(|i| i.1),
        ),
    ];
    for (name, help, value) in series {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for r in &rows {
            if let Some(v) = value(r) {
                out.push_str(&format!(
                    "{name}{{job=\"{}\",step=\"{}\",sender=\"{}\"}} {v}\n",
                    label(&r.job),
                    label(&r.step_name()),
                    label(r.sender_name())
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn wilson_matches_known_values() {
        assert_eq!(wilson(0, 0), None);
        let (lo, hi) = wilson(5, 10).expect("an interval");
        assert!(near(lo, 0.2366) && near(hi, 0.7634), "{lo} {hi}");
        let (lo, hi) = wilson(0, 20).expect("an interval");
        assert!(lo == 0.0 && near(hi, 0.1611), "{lo} {hi}");
        let (lo, hi) = wilson(20, 20).expect("an interval");
        assert!(near(lo, 0.8389) && hi == 1.0, "{lo} {hi}");
        let (lo, hi) = wilson(1, 1).expect("an interval");
        assert!(near(lo, 0.2065) && hi == 1.0, "{lo} {hi}");
        // A larger sample (worked by hand: centre 0.31075, margin 0.05546).
        let (lo, hi) = wilson(81, 263).expect("an interval");
        assert!(near(lo, 0.2553) && near(hi, 0.3662), "{lo} {hi}");
    }

    #[test]
    fn wilson_is_symmetric_and_holds_its_point() {
        for n in 1..60u64 {
            for k in 0..=n {
                let (lo, hi) = wilson(k, n).expect("an interval");
                let (lo2, hi2) = wilson(n - k, n).expect("an interval");
                let p = k as f64 / n as f64;
                assert!(lo <= p && p <= hi, "{k}/{n}");
                assert!(near(lo, 1.0 - hi2) && near(hi, 1.0 - lo2), "{k}/{n}");
            }
        }
    }

    fn row(sender: Option<&str>, sent: u64, replied: u64) -> StepCount {
        StepCount {
            job: "openers".into(),
            action: "opener".into(),
            step: 0,
            sender: sender.map(str::to_string),
            sent,
            replied,
            ..StepCount::default()
        }
    }

    #[test]
    fn step_names_and_lines() {
        let mut r = row(Some("@me"), 10, 5);
        assert_eq!(r.step_name(), "opener_0");
        assert_eq!(
            r.describe(),
            "job=openers step=opener_0 sender=@me sent=10 replied=5 sealed=0 ignored=0 reply_rate=0.5000 interval=[0.2366, 0.7634]"
        );
        r.action = "event".into();
        r.step = 0;
        assert_eq!(r.step_name(), "event");
        let none = row(None, 0, 0);
        assert!(none.describe().ends_with("reply_rate=- interval=-"));
        assert_eq!(none.to_json()["interval"], serde_json::Value::Null);
        assert_eq!(none.to_json()["sender"], serde_json::Value::Null);
    }

    #[test]
    fn senders_past_the_cap_are_summed_under_other() {
        let rows: Vec<StepCount> = (0..5u64)
            .map(|i| row(Some(&format!("@s{i}")), 10 + i, i))
            .collect();
        assert_eq!(fold_senders(&rows, 5), sorted(rows.clone()));
        let folded = fold_senders(&rows, 3);
        let names: Vec<&str> = folded.iter().map(StepCount::sender_name).collect();
        assert_eq!(names, ["(other)", "@s3", "@s4"]);
        let other = &folded[0];
        assert_eq!((other.sent, other.replied), (10 + 11 + 12, 3));
        let text = prometheus(&rows);
        assert!(text.contains(
            "fluidtalk_runner_steps_sent{job=\"openers\",step=\"opener_0\",sender=\"@s4\"} 14\n"
        ));
        // Label values from lead data are escaped.
        let odd = prometheus(&[row(Some("a\"b\\c\nd"), 1, 0)]);
        assert!(odd.contains("sender=\"a\\\"b\\\\c\\nd\""), "{odd}");
    }
}
