//! Which leads are due for a job at time T, and why. One planner serves dry and live runs:
//! a dry run prints what `next_batch` returns; a live run claims exactly those leads.
//!
//! Selection is a database query (state, eligibility, quiet time, lease) plus checks in
//! Rust that SQL cannot do portably: the send window in each lead's own time zone, the
//! daily cap in the job's zone, and `max_per_run`. Oldest eligible first; pages are read
//! with a cursor, so leads skipped for their window are not read again in the same run.

use crate::config::{Job, JobKind};
use crate::store::EventsQuery;
use crate::store::Exhaustion;
use crate::store::{Action, Due, DueLead, DueQuery, Lead, RunnerStore, StoreError};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::ops::ControlFlow;

/// A dry run's view of one job: the calls it would make and what else would happen.
#[derive(Debug, Default)]
pub struct JobPlan {
    pub calls: Vec<PlannedCall>,
    pub notes: Vec<String>,
    /// Due leads a calendar holds.
    pub held: Vec<HeldLead>,
}

/// One thing a dry run would do, in the order it would happen.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one at a time, moved to the caller at once
pub enum Preview {
    /// A call, as soon as it is planned.
    Call(PlannedCall),
    /// Something else that would happen (recovery, exhaustion, a pause, a cap).
    Note(String),
    /// A due lead passed over for a day off, as soon as it is read.
    Held(HeldLead),
}

/// What `job` would do at `now`, read only: the same planner the live run uses.
pub async fn preview(
    store: &dyn RunnerStore,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<JobPlan, StoreError> {
    let mut out = JobPlan::default();
    preview_each(store, job, now, &mut |p| {
        match p {
            Preview::Call(c) => out.calls.push(c),
            Preview::Note(n) => out.notes.push(n),
            Preview::Held(h) => out.held.push(h),
        }
        ControlFlow::Continue(())
    })
    .await?;
    Ok(out)
}

/// `preview`, handing each call to `each` as soon as its page is read: the first call
/// comes at once, memory stays flat and the time is linear in the calls (each page is an
/// index range after the last). `each` may break to stop early (a closed output).
/// Returns the number of calls planned.
pub async fn preview_each(
    store: &dyn RunnerStore,
    job: &Job,
    now: DateTime<Utc>,
    each: &mut (dyn FnMut(Preview) -> ControlFlow<()> + Send),
) -> Result<u64, StoreError> {
    preview_with(store, job, now, &mut dry_cursor(), each).await
}

/// `preview_each` with the caller's (dry) cursor, left where the preview stopped: what it
/// passed over, for `why::of_preview`.
pub async fn preview_with(
    store: &dyn RunnerStore,
    job: &Job,
    now: DateTime<Utc>,
    cursor: &mut Cursor,
    each: &mut (dyn FnMut(Preview) -> ControlFlow<()> + Send),
) -> Result<u64, StoreError> {
    let lost = store.orphans(now).await?.len();
    if lost > 0 {
        let note = format!(
            "first, {lost} call(s) left in flight by runners that stopped would be settled: their leads to needs_review (outcome unknown)"
        );
        if each(Preview::Note(note)).is_break() {
            return Ok(0);
        }
    }
    let pauses = store.pauses().await?;
    if let Some(p) = crate::policy::blocking_pause(&pauses, job, now) {
        let _ = each(Preview::Note(format!(
            "paused ({}) until {}: {}",
            p.scope.as_str(),
            p.until.format("%Y-%m-%d %H:%M UTC"),
            p.reason
        )));
        return Ok(0);
    }
    // A job a person paused does nothing: the words its live run's summary holds.
    if let Some(p) = store.job_pause(&job.name, now).await? {
        let _ = each(Preview::Note(p.describe()));
        return Ok(0);
    }
    if let JobKind::FollowUp { max_follow_ups, .. } = &job.kind {
        let quiet = job.quiet_before(*max_follow_ups).unwrap_or_default();
        let cutoff = crate::clock::earlier(now, quiet);
        let n = store
            .exhaust(&Exhaustion {
                max: *max_follow_ups,
                cutoff,
                now,
                dry: true,
            })
            .await?;
        if n > 0 {
            let note = format!("{n} lead(s) quiet after the last follow-up would become exhausted");
            if each(Preview::Note(note)).is_break() {
                return Ok(0);
            }
        }
    }
    let mut planned = 0u64;
    if !matches!(job.kind, JobKind::Event { .. }) {
        if preview_due_leads(store, job, now, cursor, &mut planned, each)
            .await?
            .is_break()
        {
            return Ok(planned);
        }
    } else {
        loop {
            let left = remaining(store, job, now, cursor).await?;
            let batch = next_batch(store, job, now, left.min(job.batch_size), cursor).await?;
            for h in std::mem::take(&mut cursor.held) {
                if each(Preview::Held(h)).is_break() {
                    return Ok(planned);
                }
            }
            if batch.is_empty() {
                if left == 0 && each(Preview::Note(AT_THE_CAP.into())).is_break() {
                    return Ok(planned);
                }
                break;
            }
            for call in batch {
                planned += 1;
                if each(Preview::Call(call)).is_break() {
                    return Ok(planned);
                }
            }
        }
    }
    if cursor.outside_window > 0 {
        let _ = each(Preview::Note(format!(
            "{} due lead(s) outside their send window now",
            cursor.outside_window
        )));
    }
    for (hold, n) in &cursor.sender_held {
        let _ = each(Preview::Note(format!(
            "{n} due lead(s) held: {}",
            hold.reason()
        )));
    }
    for (name, c) in &cursor.day_off {
        let days: Vec<String> = c.dates.iter().map(ToString::to_string).collect();
        let _ = each(Preview::Note(format!(
            "{} due lead(s) on a day off of calendar {name:?} ({} in their zone)",
            c.leads,
            days.join(", ")
        )));
    }
    Ok(planned)
}

const AT_THE_CAP: &str = "stops at the daily cap or max_per_run";

/// Due leads a preview reads at a time: more than a batch, for fewer statements (round
/// trips on PostgreSQL) over a large campaign; bounded, so memory stays flat: this page
/// and the next, read while this one is planned.
pub const PREVIEW_PAGE: u32 = 5_000;

/// Calls planned between two chances for the next page's read to go on (its answer to be
/// taken in, on PostgreSQL) while a page is planned.
const YIELD_EVERY: u32 = 256;

/// `preview_each`'s calls of an opener or follow-up job: exactly those of `next_batch`
/// called with the limit `remaining` gives until it returns none (batches of
/// `batch_size`, the cap and `max_per_run` counted again after each), but the due leads
/// are read in pages of `PREVIEW_PAGE` and the next page is read while this one is
/// planned and printed. Breaks when `each` does.
async fn preview_due_leads(
    store: &dyn RunnerStore,
    job: &Job,
    now: DateTime<Utc>,
    cursor: &mut Cursor,
    planned: &mut u64,
    each: &mut (dyn FnMut(Preview) -> ControlFlow<()> + Send),
) -> Result<ControlFlow<()>, StoreError> {
    let page_size = PREVIEW_PAGE.max(job.batch_size);
    let due = due_of(job, now);
    let read = |after| {
        let q = DueQuery {
            due: due.clone(),
            now,
            limit: page_size,
            after,
            segment: job.segment.clone(),
        };
        async move { store.due_leads(&q).await }
    };
    // The batch being planned: its limit, and the calls in it so far.
    let mut limit = remaining(store, job, now, cursor)
        .await?
        .min(job.batch_size);
    let mut in_batch = 0u32;
    if limit == 0 {
        return Ok(each(Preview::Note(AT_THE_CAP.into())));
    }
    let mut stamps = Stamps::default();
    read_rooms(store, job, now, cursor).await?;
    let mut page = read(cursor.lead).await?;
    loop {
        // A short page is the last; else the next is read from the last lead of this one.
        let more = page.len() >= page_size as usize;
        let after = page.last().map(|d| (d.since, d.lead.id));
        let next = async { if more { Some(read(after).await) } else { None } };
        // Plans this page: `Some` ends the preview's calls (at the cap, or `each` broke).
        let plan = async {
            let mut since_yield = 0u32;
            for d in page {
                cursor.lead = Some((d.since, d.lead.id));
                if cursor.held(job, &d.lead, now) {
                    for h in cursor.held.drain(..) {
                        if each(Preview::Held(h)).is_break() {
                            return Ok(Some(ControlFlow::Break(())));
                        }
                    }
                    continue;
                }
                let mut call = planned_call(job, now, d, &mut stamps);
                if !give_sender(job, &mut call, now, cursor) {
                    for h in cursor.held.drain(..) {
                        if each(Preview::Held(h)).is_break() {
                            return Ok(Some(ControlFlow::Break(())));
                        }
                    }
                    continue;
                }
                *planned += 1;
                cursor.planned += 1;
                if each(Preview::Call(call)).is_break() {
                    return Ok(Some(ControlFlow::Break(())));
                }
                in_batch += 1;
                if in_batch == limit {
                    // The batch is full: `next_batch` would be called again.
                    limit = remaining(store, job, now, cursor)
                        .await?
                        .min(job.batch_size);
                    in_batch = 0;
                    if limit == 0 {
                        return Ok(Some(each(Preview::Note(AT_THE_CAP.into()))));
                    }
                }
                since_yield += 1;
                if since_yield == YIELD_EVERY {
                    since_yield = 0;
                    tokio::task::yield_now().await;
                }
            }
            // On to the next page.
            Ok::<_, StoreError>(None)
        };
        let (next, planned_page) = tokio::join!(next, plan);
        if let Some(end) = planned_page? {
            return Ok(end);
        }
        match next {
            Some(next) => page = next?,
            None => break,
        }
    }
    // The last batch was short: `next_batch` would be called once more, and finds
    // nothing; the limit it is called with may have reached 0 meanwhile.
    if in_batch > 0 && remaining(store, job, now, cursor).await? == 0 {
        return Ok(each(Preview::Note(AT_THE_CAP.into())));
    }
    Ok(ControlFlow::Continue(()))
}

/// The call `job` would make to the due lead `d` at `now`.
fn planned_call(job: &Job, now: DateTime<Utc>, d: DueLead, stamps: &mut Stamps) -> PlannedCall {
    let (action, step, reason) = match &job.kind {
        JobKind::FollowUp { .. } => {
            let nth = d.lead.follow_ups_sent + 1;
            let quiet = job.quiet_before(nth as u32).unwrap_or_default();
            (
                Action::FollowUp,
                i64::from(d.lead.follow_ups_total) + 1,
                format!(
                    "quiet {} since {} (follow-up {nth} is due after {})",
                    hours(now - d.since),
                    stamps.of(d.since),
                    humantime::format_duration(quiet)
                ),
            )
        }
        _ => (
            Action::Opener,
            i64::from(d.lead.reopens),
            ["new lead, eligible since ", stamps.of(d.since)].concat(),
        ),
    };
    PlannedCall {
        job: job.name.clone(),
        target: d.lead.target.clone(),
        action,
        step,
        reason,
        sender: None,
        assign: false,
        event: None,
        lead: d.lead,
    }
}

/// One call the job would make.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedCall {
    pub job: String,
    pub target: String,
    /// `opener`, `follow_up` or `event`.
    pub action: Action,
    /// An opener's step counts the lead's reopens (0 for its first), a follow-up's counts
    /// follow-ups over the lead's life, an event's is the queued event's id.
    pub step: i64,
    /// Why the lead is due, in words.
    pub reason: String,
    /// The sender the call is made with (its `own_username`), when one is known: the
    /// lead's, the one a job's `senders` give it, or `[fluidtalk] own_username`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The call gives its lead `sender` (the lead named none; a job's `senders` chose).
    #[serde(skip)]
    pub assign: bool,
    #[serde(skip)]
    pub lead: Lead,
    #[serde(skip)]
    pub event: Option<(i64, String, Option<String>)>,
}

/// Where a paged selection stands.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    lead: Option<(DateTime<Utc>, i64)>,
    event: i64,
    /// A dry run's cursor: its planned calls are not in the database, so they count
    /// against the daily cap here.
    dry: bool,
    /// Calls planned so far in this run (for `max_per_run` and the daily cap).
    pub planned: u32,
    /// Due leads passed over because they are outside their send window.
    pub outside_window: u32,
    /// The zone of the first lead passed over for its window (when it opens is said in it).
    window_zone: Option<Tz>,
    /// Senders' room as this run plans (`None`: not read yet, or no `[[sender]]`).
    senders: Option<Tally>,
    /// Due leads passed over because their sender is held, by why (the first hold of each
    /// sender and kind, and how many leads it held).
    pub sender_held: Vec<(crate::senders::SenderHold, u32)>,
    /// Due leads passed over for a day off, per calendar (`Job::calendars`).
    pub day_off: std::collections::BTreeMap<String, DayOffCount>,
    /// A dry run's held leads not yet shown (`preview_each` takes them).
    held: Vec<HeldLead>,
    /// Senders a follow-up of this run waited for (noted once a run), and those not yet
    /// written (`RunnerStore::note_follow_ups_waiting`).
    waiting_noted: std::collections::BTreeSet<String>,
    waiting_new: Vec<String>,
}

/// The senders' room a run plans with.
#[derive(Debug, Clone, Default)]
struct Tally {
    rooms: std::collections::BTreeMap<String, crate::senders::Room>,
}

/// Reads the senders' room at `now` into `cursor` (a dry run: once, then counts what it
/// plans; a live run: before each batch, the store counting what has started).
async fn read_rooms(
    store: &dyn RunnerStore,
    job: &Job,
    now: DateTime<Utc>,
    cursor: &mut Cursor,
) -> Result<(), StoreError> {
    if !job.senders.any() || (cursor.dry && cursor.senders.is_some()) {
        return Ok(());
    }
    let rules: Vec<_> = job.senders.book.rules.values().cloned().collect();
    let uses = store.sender_uses(&rules, now).await?;
    cursor.senders = Some(Tally {
        rooms: crate::senders::rooms(rules, &uses, now),
    });
    Ok(())
}

/// The sender of `call` at `now`, counted in `cursor`'s room; or why its sender is held
/// (counted in `cursor.sender_held`, and the lead is passed over).
fn give_sender(job: &Job, call: &mut PlannedCall, now: DateTime<Utc>, cursor: &mut Cursor) -> bool {
    // A call that opens a conversation counts against its sender's cap: an opener, or an
    // event sent to a lead still `new`.
    let opener = call.action == Action::Opener
        || (call.action == Action::Event && call.lead.state == crate::lead::LeadState::New);
    let named = call
        .lead
        .own_username
        .clone()
        .filter(|u| !u.trim().is_empty());
    let Some(tally) = cursor.senders.as_mut() else {
        call.sender = named.or_else(|| job.senders.book.default.clone());
        return true;
    };
    let held = match named {
        Some(name) => hold_or_take(tally, &name, opener, now).map(|()| (name, false)),
        None if opener && !job.senders.of_job.is_empty() => {
            let candidates = job
                .senders
                .of_job
                .iter()
                .filter_map(|r| tally.rooms.get(&r.username));
            match crate::senders::choose(candidates, now) {
                Some(room) => {
                    let name = room.rule.username.clone();
                    hold_or_take(tally, &name, opener, now).map(|()| (name, true))
                }
                // Every sender of the job is held: the one free soonest says why.
                None => Err(job
                    .senders
                    .of_job
                    .iter()
                    .filter_map(|r| tally.rooms.get(&r.username)?.hold(true, now))
                    .min_by_key(|h| match h {
                        crate::senders::SenderHold::Gap { until, .. }
                        | crate::senders::SenderHold::FollowUpFirst { until, .. } => *until,
                        crate::senders::SenderHold::Cap { resets, .. } => *resets,
                    })
                    .unwrap_or(crate::senders::SenderHold::Cap {
                        sender: job.senders.of_job[0].username.clone(),
                        cap: 0,
                        resets: now,
                    })),
            }
        }
        None => match job.senders.book.default.clone() {
            Some(name) => hold_or_take(tally, &name, opener, now).map(|()| (name, false)),
            None => {
                call.sender = None;
                return true;
            }
        },
    };
    match held {
        Ok((name, assign)) => {
            call.sender = Some(name);
            call.assign = assign;
            true
        }
        Err(hold) => {
            // A live run's follow-up that waits for its sender's gap: openers are told to
            // leave the sender's next call to it (`next_batch` writes it).
            if !cursor.dry
                && call.action != Action::Opener
                && matches!(hold, crate::senders::SenderHold::Gap { .. })
                && cursor.waiting_noted.insert(hold.sender().to_string())
            {
                cursor.waiting_new.push(hold.sender().to_string());
            }
            if cursor.dry && cursor.held.len() < HELD_KEPT {
                cursor.held.push(HeldLead {
                    job: job.name.clone(),
                    target: call.target.clone(),
                    held: hold.kind(),
                    calendar: None,
                    date: None,
                    zone: None,
                    sender: Some(hold.sender().to_string()),
                    reason: hold.reason(),
                });
            }
            match cursor
                .sender_held
                .iter_mut()
                .find(|(h, _)| h.kind() == hold.kind() && h.sender() == hold.sender())
            {
                Some((_, n)) => *n += 1,
                None => {
                    if cursor.sender_held.len() < MAX_HOLDS_SHOWN {
                        cursor.sender_held.push((hold, 1));
                    }
                }
            }
            false
        }
    }
}

/// The most distinct sender holds a run keeps to report (one per sender and kind).
const MAX_HOLDS_SHOWN: usize = 64;

/// Whether `name` (if a configured sender) can take a call now; if so, counts it.
fn hold_or_take(
    tally: &mut Tally,
    name: &str,
    opener: bool,
    now: DateTime<Utc>,
) -> Result<(), crate::senders::SenderHold> {
    let Some(room) = tally.rooms.get_mut(name) else {
        return Ok(());
    };
    if let Some(h) = room.hold(opener, now) {
        return Err(h);
    }
    room.take(opener, now);
    Ok(())
}

/// The start of the day containing `now` in `tz`, as UTC (for daily caps).
pub fn day_start(now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let midnight = now
        .with_timezone(&tz)
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default();
    // Where the clocks jump forward at midnight (America/Santiago, Asia/Beirut, ...) the
    // day begins at the first local time that exists.
    (0..=24 * 4)
        .map(|q| midnight + chrono::Duration::minutes(15 * q))
        .find_map(|t| tz.from_local_datetime(&t).earliest())
        .map_or(now, |t| t.with_timezone(&Utc))
}

/// Why a due lead is passed over at `now`, if it is: a day off of one of the job's
/// calendars (first: on a holiday that is the answer, whatever the hour), else the send
/// window; both in the lead's zone if known, else the job's.
fn hold<'j>(job: &'j Job, lead: &Lead, now: DateTime<Utc>) -> Option<Hold<'j>> {
    let window = job.kind.send_window();
    if window.is_none() && job.calendars.is_empty() {
        return None;
    }
    let tz = zone_of(job, lead);
    let local = now.with_timezone(&tz);
    if let Some(c) = job.day_off(local.date_naive()) {
        return Some(Hold::DayOff {
            calendar: &c.name,
            date: local.date_naive(),
            zone: tz,
        });
    }
    match window {
        Some(w) if !w.contains(local.weekday(), local.time()) => Some(Hold::Window),
        _ => None,
    }
}

/// The zone a lead's window and days are judged in: its own, else the job's.
fn zone_of(job: &Job, lead: &Lead) -> Tz {
    lead.timezone
        .as_deref()
        .and_then(|z| z.parse::<Tz>().ok())
        .unwrap_or(job.timezone)
}

/// Why a due lead waits.
enum Hold<'j> {
    Window,
    DayOff {
        calendar: &'j str,
        date: NaiveDate,
        zone: Tz,
    },
}

impl Cursor {
    /// Counts a due lead passed over; true if it was (`hold` found a reason).
    fn held(&mut self, job: &Job, lead: &Lead, now: DateTime<Utc>) -> bool {
        match hold(job, lead, now) {
            None => false,
            Some(Hold::Window) => {
                self.outside_window += 1;
                self.window_zone.get_or_insert(zone_of(job, lead));
                true
            }
            Some(Hold::DayOff {
                calendar,
                date,
                zone,
            }) => {
                let e = self.day_off.entry(calendar.to_string()).or_default();
                e.leads += 1;
                e.dates.insert(date);
                if self.dry && self.held.len() < HELD_KEPT {
                    self.held.push(HeldLead {
                        job: job.name.clone(),
                        target: lead.target.clone(),
                        held: "day_off",
                        calendar: Some(calendar.to_string()),
                        date: Some(date),
                        zone: Some(zone.name().to_string()),
                        sender: None,
                        reason: format!(
                            "calendar {calendar:?}: {date} is a day off in {}",
                            zone.name()
                        ),
                    });
                }
                true
            }
        }
    }

    /// Whether this is a dry run's cursor (its planned calls count against the cap).
    pub fn is_dry(&self) -> bool {
        self.dry
    }

    /// The zone of the first lead passed over for its send window, if any.
    pub fn window_zone(&self) -> Option<Tz> {
        self.window_zone
    }

    /// Due leads passed over for a day off, per calendar.
    pub fn day_off_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.day_off
            .iter()
            .map(|(k, v)| (k.clone(), u64::from(v.leads)))
            .collect()
    }
}

/// Held leads a dry run's cursor keeps between two looks of the preview (it takes them
/// after each lead of an opener or follow-up job, after each batch of an event job). Past
/// it a held lead is counted in the note but not listed: memory stays bounded.
const HELD_KEPT: usize = 20_000;

/// A due lead a dry run passes over for a day off: which calendar holds it, and the day
/// in the zone that decides. In `run --dry-run --json` it is an element of the array with
/// `"held": "day_off"` (and no `action`): not a call.
///
/// A lead held by its sender has `"held": "sender_cap"` or `"sender_gap"` and names the
/// `sender` instead.
#[derive(Debug, Clone, Serialize)]
pub struct HeldLead {
    pub job: String,
    pub target: String,
    pub held: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// In words, as the text dry run prints it.
    pub reason: String,
}

/// Leads held by one calendar in a run, and the (local) days they were held on.
#[derive(Debug, Clone, Default)]
pub struct DayOffCount {
    pub leads: u32,
    pub dates: std::collections::BTreeSet<NaiveDate>,
}

/// `t` as a reason prints it (`2026-11-24 09:00 UTC`), formatted once per minute seen
/// last: the leads of a page mostly share it (an import stamps one eligibility time on all
/// its leads), and chrono's formatter reads its pattern again at every call.
#[derive(Default)]
struct Stamps {
    last: Option<(i64, String)>,
}

impl Stamps {
    fn of(&mut self, t: DateTime<Utc>) -> &str {
        let minute = t.timestamp().div_euclid(60);
        if self.last.as_ref().is_none_or(|(m, _)| *m != minute) {
            self.last = Some((minute, t.format("%Y-%m-%d %H:%M UTC").to_string()));
        }
        self.last.as_ref().map_or("", |(_, text)| text)
    }
}

fn hours(d: chrono::Duration) -> String {
    let h = d.num_minutes() as f64 / 60.0;
    if h >= 48.0 {
        format!("{:.1}d", h / 24.0)
    } else {
        format!("{h:.1}h")
    }
}

/// Which leads an opener or follow-up job selects at `now` (before windows and caps).
pub fn due_of(job: &Job, now: DateTime<Utc>) -> Due {
    match &job.kind {
        JobKind::FollowUp { max_follow_ups, .. } => Due::FollowUp {
            cutoffs: (1..=*max_follow_ups)
                .map(|step| {
                    let quiet = job.quiet_before(step).unwrap_or_default();
                    crate::clock::earlier(now, quiet)
                })
                .collect(),
            max: *max_follow_ups,
        },
        _ => Due::Opener,
    }
}

/// How many more calls this run may make, given `max_per_run` and the daily cap.
pub async fn remaining(
    store: &dyn RunnerStore,
    job: &Job,
    now: DateTime<Utc>,
    cursor: &Cursor,
) -> Result<u32, StoreError> {
    let mut left = job
        .max_per_run
        .map_or(u32::MAX, |m| m.saturating_sub(cursor.planned));
    if let JobKind::Opener {
        daily_cap: Some(cap),
        ..
    } = &job.kind
    {
        let used = store
            .count_started_since(&job.name, day_start(now, job.timezone))
            .await?;
        // Calls planned in a dry run are not in the database yet.
        let used = used
            + if cursor.dry {
                u64::from(cursor.planned)
            } else {
                0
            };
        left = left.min(cap.saturating_sub(used.min(u64::from(u32::MAX)) as u32));
    }
    Ok(left)
}

/// Marks a cursor as a dry run's (see `remaining`).
pub fn dry_cursor() -> Cursor {
    Cursor {
        dry: true,
        ..Cursor::default()
    }
}

/// The next batch of calls for `job` at `now`, at most `limit`, after `cursor` (which it
/// advances). An empty batch means nothing more is due in this run.
pub async fn next_batch(
    store: &dyn RunnerStore,
    job: &Job,
    now: DateTime<Utc>,
    limit: u32,
    cursor: &mut Cursor,
) -> Result<Vec<PlannedCall>, StoreError> {
    let mut calls = Vec::new();
    if limit == 0 {
        return Ok(calls);
    }
    read_rooms(store, job, now, cursor).await?;
    // Read pages until the batch is full or nothing is left (window skips shrink a page).
    loop {
        let page = (limit - calls.len() as u32).max(1).max(job.batch_size);
        let found = match &job.kind {
            JobKind::Event { event_type, .. } => {
                let due = store
                    .due_events(&EventsQuery {
                        event_type,
                        now,
                        limit: page,
                        after: cursor.event,
                    })
                    .await?;
                let n = due.len();
                for d in due {
                    cursor.event = d.event.id;
                    if cursor.held(job, &d.lead, now) {
                        continue;
                    }
                    let mut call = PlannedCall {
                        job: job.name.clone(),
                        target: d.lead.target.clone(),
                        action: Action::Event,
                        step: d.event.id,
                        reason: format!(
                            "queued {} event #{} from {}",
                            d.event.event_type,
                            d.event.id,
                            d.event.created_at.format("%Y-%m-%d %H:%M UTC")
                        ),
                        sender: None,
                        assign: false,
                        event: Some((
                            d.event.id,
                            d.event.event_type.clone(),
                            d.event.context.clone(),
                        )),
                        lead: d.lead,
                    };
                    if !give_sender(job, &mut call, now, cursor) {
                        continue;
                    }
                    calls.push(call);
                    if calls.len() as u32 >= limit {
                        break;
                    }
                }
                n
            }
            JobKind::Opener { .. } | JobKind::FollowUp { .. } => {
                let q = DueQuery {
                    due: due_of(job, now),
                    now,
                    limit: page,
                    after: cursor.lead,
                    segment: job.segment.clone(),
                };
                let due = store.due_leads(&q).await?;
                let n = due.len();
                let mut stamps = Stamps::default();
                for d in due {
                    cursor.lead = Some((d.since, d.lead.id));
                    if cursor.held(job, &d.lead, now) {
                        continue;
                    }
                    let mut call = planned_call(job, now, d, &mut stamps);
                    if !give_sender(job, &mut call, now, cursor) {
                        continue;
                    }
                    calls.push(call);
                    if calls.len() as u32 >= limit {
                        break;
                    }
                }
                n
            }
        };
        if calls.len() as u32 >= limit || found < page as usize {
            break;
        }
    }
    if !cursor.waiting_new.is_empty() {
        let waiting = std::mem::take(&mut cursor.waiting_new);
        store.note_follow_ups_waiting(&waiting, now).await?;
    }
    cursor.planned += calls.len() as u32;
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_without_a_midnight_starts_at_its_first_local_time() {
        // Santiago's clocks jumped from 00:00 to 01:00 on 2026-09-06.
        let now = Utc
            .with_ymd_and_hms(2026, 9, 6, 15, 0, 0)
            .single()
            .expect("t");
        let start = day_start(now, chrono_tz::America::Santiago);
        let local = start.with_timezone(&chrono_tz::America::Santiago);
        assert_eq!(
            local.format("%Y-%m-%d %H:%M").to_string(),
            "2026-09-06 01:00"
        );
    }

    #[test]
    fn a_day_starts_at_local_midnight() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 24, 22, 30, 0)
            .single()
            .expect("t");
        // 23:30 in Berlin: the day began at 23:00 UTC the evening before.
        assert_eq!(
            day_start(now, chrono_tz::Europe::Berlin),
            Utc.with_ymd_and_hms(2026, 11, 23, 23, 0, 0)
                .single()
                .expect("t")
        );
        // 07:30 next day in Tokyo.
        assert_eq!(
            day_start(now, chrono_tz::Asia::Tokyo),
            Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0)
                .single()
                .expect("t")
        );
    }
}
