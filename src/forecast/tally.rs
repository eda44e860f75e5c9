//! The forecast's accounting: the scratch database's attempts counted per day (in the
//! forecast's zone, by when each call started), replies drawn for answered calls, and
//! what stands at each day's end (exhausted leads, leads still due, pauses, bottlenecks).

use super::{Assumptions, Options};
use crate::config::{Config, Job, JobKind};
use crate::lead::LeadState;
use crate::plan::day_start;
use crate::store::{Action, AttemptStatus, DueQuery, Store, StoreError};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::BTreeMap;

/// Attempts read per page.
const PAGE: u32 = 5_000;

/// The most senders a day of the forecast lists (a lead file may name any number of
/// `own_username`s; the `[[sender]]`s are at most `senders::MAX_SENDERS`).
const MAX_SENDERS_A_DAY: usize = crate::senders::MAX_SENDERS;

/// One day of the forecast.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Day {
    pub date: NaiveDate,
    /// Openers the API acted on (or may have: the answer was lost).
    pub openers: u64,
    /// Follow-ups the API acted on, by step (1 = the first follow-up).
    pub follow_ups: BTreeMap<i64, u64>,
    /// Event triggers the API acted on.
    pub events: u64,
    /// New conversations, each a token: openers and events answered as sent (not
    /// `continued`, which reuses a conversation).
    pub tokens: u64,
    /// Calls answered `ignored` (another account owns the lead) and 400 (sealed).
    pub ignored: u64,
    pub sealed: u64,
    /// Calls answered 402, and the first of them: when the tokens ran out.
    pub out_of_tokens: u64,
    pub out_of_tokens_at: Option<DateTime<Utc>>,
    /// Replies drawn for the day's answered calls (`--reply-rate`).
    pub replies: u64,
    /// Leads that became `exhausted` this day.
    pub exhausted: u64,
    /// Leads due at the day's end that no job reached, in all and per job.
    pub due_at_end: u64,
    pub due_by_job: BTreeMap<String, u64>,
    /// The end of the latest 402 pause set this day.
    pub paused_until: Option<DateTime<Utc>>,
    /// Why due leads were left waiting: a job's daily cap, its calls meeting 402 (or a
    /// pause in force), a day off of one of its calendars, or its send window.
    pub bottleneck: Option<String>,
    /// The day's calls per sender (`own_username`), for calls whose sender is known.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_sender: BTreeMap<String, SenderDay>,
}

/// One sender's calls on one day of the forecast (those the API acted on).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SenderDay {
    pub openers: u64,
    pub follow_ups: u64,
    pub events: u64,
}

impl Day {
    pub fn follow_ups_total(&self) -> u64 {
        self.follow_ups.values().sum()
    }
}

/// The leads `job` would take at `now` if its window were open and no cap held it:
/// what is due and not yet reached.
pub async fn due_now(store: &dyn Store, job: &Job, now: DateTime<Utc>) -> Result<u64, StoreError> {
    match &job.kind {
        JobKind::Event { event_type, .. } => store.count_due_events(event_type, now).await,
        _ => {
            let q = DueQuery {
                due: crate::plan::due_of(job, now),
                now,
                // count_due counts them all, whatever the limit.
                limit: u32::MAX,
                after: None,
                segment: job.segment.clone(),
            };
            store.count_due(&q).await
        }
    }
}

pub(super) struct Tally {
    jobs: Vec<Job>,
    zone: Tz,
    days: Vec<Day>,
    ends: Vec<DateTime<Utc>>,
    last_attempt: i64,
    last_run: i64,
    exhausted: u64,
    /// Jobs that passed over due leads for their send window, per day.
    windowed: BTreeMap<usize, Vec<String>>,
    /// Jobs that passed over due leads for a day off, and the calendars, per day.
    days_off: BTreeMap<usize, Vec<(String, String)>>,
    /// Jobs whose calls met 402, per day.
    refused: BTreeMap<usize, Vec<String>>,
}

impl Tally {
    pub fn new(config: &Config, opts: &Options, last_attempt: i64) -> Self {
        let first = opts.from.with_timezone(&opts.zone).date_naive();
        let dates: Vec<NaiveDate> = first.iter_days().take(opts.days as usize).collect();
        let ends = dates
            .iter()
            .map(|d| start_of(d.succ_opt().unwrap_or(*d), opts.zone))
            .collect();
        Tally {
            jobs: config.jobs.clone(),
            zone: opts.zone,
            days: dates
                .into_iter()
                .map(|date| Day {
                    date,
                    ..Day::default()
                })
                .collect(),
            ends,
            last_attempt,
            last_run: 0,
            exhausted: 0,
            windowed: BTreeMap::new(),
            days_off: BTreeMap::new(),
            refused: BTreeMap::new(),
        }
    }

    /// The instants each day ends, in order.
    pub fn day_ends(&self) -> Vec<DateTime<Utc>> {
        self.ends.clone()
    }

    pub async fn start(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        self.exhausted = exhausted(store).await?;
        self.last_run = store
            .last_runs()
            .await?
            .iter()
            .map(|r| r.id)
            .max()
            .unwrap_or(0);
        Ok(())
    }

    fn day_of(&self, t: DateTime<Utc>) -> Option<usize> {
        let date = t.with_timezone(&self.zone).date_naive();
        self.days.iter().position(|d| d.date == date)
    }

    /// Counts the calls made since the last look, and draws the leads' replies; returns
    /// how many replies it recorded.
    pub async fn answers(
        &mut self,
        store: &dyn Store,
        a: &Assumptions,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut new_402 = false;
        let mut replies = 0;
        loop {
            let page = store.attempts_after(self.last_attempt, PAGE).await?;
            let Some(last) = page.last() else { break };
            self.last_attempt = last.attempt.id;
            for of in page {
                let t = &of.attempt;
                let Some(i) = self.day_of(t.started_at) else {
                    continue;
                };
                let day = &mut self.days[i];
                if t.status.holds_step() {
                    match t.action {
                        Action::Opener => day.openers += 1,
                        Action::FollowUp => *day.follow_ups.entry(t.step).or_default() += 1,
                        Action::Event => day.events += 1,
                        Action::Inbound => {}
                    }
                    if let Some(sender) = &t.sender
                        && (day.by_sender.len() < MAX_SENDERS_A_DAY
                            || day.by_sender.contains_key(sender))
                    {
                        let s = day.by_sender.entry(sender.clone()).or_default();
                        match t.action {
                            Action::Opener => s.openers += 1,
                            Action::FollowUp => s.follow_ups += 1,
                            Action::Event => s.events += 1,
                            Action::Inbound => {}
                        }
                    }
                }
                match t.status {
                    AttemptStatus::Sent if t.action != Action::FollowUp => day.tokens += 1,
                    AttemptStatus::Ignored => day.ignored += 1,
                    AttemptStatus::Sealed => day.sealed += 1,
                    AttemptStatus::OutOfTokens => {
                        new_402 = true;
                        let jobs = self.refused.entry(i).or_default();
                        if !jobs.contains(&t.job) {
                            jobs.push(t.job.clone());
                        }
                        day.out_of_tokens += 1;
                        day.out_of_tokens_at = day
                            .out_of_tokens_at
                            .min(Some(t.started_at))
                            .or(Some(t.started_at));
                    }
                    _ => {}
                }
                let answered = matches!(t.status, AttemptStatus::Sent | AttemptStatus::Continued);
                if answered
                    && a.reply_rate > 0.0
                    && crate::sim::draw(a.seed, t.action.as_str(), &of.target, t.step)
                        < a.reply_rate
                {
                    let at = t.finished_at.unwrap_or(now);
                    match store.record_reply(&of.target, at, now).await {
                        Ok(_) => {
                            day.replies += 1;
                            replies += 1;
                        }
                        Err(StoreError::Refused(_) | StoreError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        if let Some(i) = self.day_of(now).filter(|_| new_402) {
            let until = store
                .pauses()
                .await?
                .into_iter()
                .filter(|p| p.scope != crate::store::PauseScope::All)
                .map(|p| p.until)
                .max();
            let day = &mut self.days[i];
            day.paused_until = day.paused_until.max(until);
        }
        for run in store.last_runs().await? {
            if run.id <= self.last_run {
                continue;
            }
            self.last_run = self.last_run.max(run.id);
            let outside = run
                .summary
                .as_ref()
                .and_then(|s| s.get("outside_window"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if let Some(i) = self.day_of(run.started_at).filter(|_| outside > 0) {
                self.windowed.entry(i).or_default().push(run.job.clone());
            }
            let held = run
                .summary
                .as_ref()
                .and_then(|s| s.get("day_off"))
                .and_then(serde_json::Value::as_object);
            if let (Some(i), Some(held)) = (self.day_of(run.started_at), held) {
                for (calendar, n) in held {
                    let pair = (run.job.clone(), calendar.clone());
                    let list = self.days_off.entry(i).or_default();
                    if n.as_u64().unwrap_or(0) > 0 && !list.contains(&pair) {
                        list.push(pair);
                    }
                }
            }
        }
        Ok(replies)
    }

    /// What stands at the end of day `i` (read at `now`: later than the day's end when a
    /// run went on past it).
    pub async fn day_end(
        &mut self,
        store: &dyn Store,
        i: usize,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if i >= self.days.len() {
            return Ok(());
        }
        let total = exhausted(store).await?;
        let pauses = store.pauses().await?;
        let before = now - chrono::Duration::seconds(1);
        let mut reasons = Vec::new();
        let mut due_total = 0;
        for job in &self.jobs {
            let due = due_now(store, job, now).await?;
            self.days[i].due_by_job.insert(job.name.clone(), due);
            due_total += due;
            if due == 0 {
                continue;
            }
            if store.job_pause(&job.name, before).await?.is_some() {
                reasons.push(format!("job {} paused", job.name));
                continue;
            }
            if let JobKind::Opener {
                daily_cap: Some(cap),
                ..
            } = &job.kind
            {
                let cap = u64::from(*cap);
                let used = store
                    .count_started_since(&job.name, day_start(before, job.timezone))
                    .await?;
                if used >= cap {
                    reasons.push(format!("daily cap of {}", job.name));
                    continue;
                }
            }
            let refused = self
                .refused
                .get(&i)
                .is_some_and(|js| js.contains(&job.name));
            let paused = crate::policy::blocking_pause(&pauses, job, before);
            if let Some(p) = paused.filter(|p| p.scope == crate::store::PauseScope::All) {
                let until = p.until.format("%Y-%m-%d %H:%M UTC");
                reasons.push(format!("the key is refused (401): paused until {until}"));
            } else if refused || paused.is_some() {
                reasons.push(format!("out of tokens ({})", job.name));
            } else if let Some((_, calendar)) = self
                .days_off
                .get(&i)
                .and_then(|l| l.iter().find(|(j, _)| *j == job.name))
            {
                reasons.push(format!("day off ({calendar}) of {}", job.name));
            } else if self
                .windowed
                .get(&i)
                .is_some_and(|js| js.contains(&job.name))
            {
                reasons.push(format!("send window of {}", job.name));
            }
        }
        let day = &mut self.days[i];
        day.exhausted = total.saturating_sub(self.exhausted);
        day.due_at_end = due_total;
        day.bottleneck = (!reasons.is_empty()).then(|| reasons.join("; "));
        self.exhausted = total;
        Ok(())
    }

    pub fn finish(self) -> Vec<Day> {
        self.days
    }
}

async fn exhausted(store: &dyn Store) -> Result<u64, StoreError> {
    Ok(store
        .count_by_state()
        .await?
        .get(&LeadState::Exhausted)
        .copied()
        .unwrap_or(0))
}

/// The first instant of `date` in `zone`, as UTC.
fn start_of(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let noon = date.and_hms_opt(12, 0, 0).unwrap_or_default();
    let at = zone
        .from_local_datetime(&noon)
        .earliest()
        .map_or_else(|| Utc.from_utc_datetime(&noon), |t| t.with_timezone(&Utc));
    day_start(at, zone)
}
