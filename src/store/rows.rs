//! Rows as both backends return them (`FromRow`, with `Ts` and `Tags` decoding each
//! backend's form), and their conversion into the store's types.

use super::StoreError;
use super::types::*;
use super::values::{Tags, Ts, parse_ts};
use chrono::{DateTime, Utc};
use std::borrow::Cow;

/// The columns of a lead, in `LeadRow`'s order.
pub(crate) const LEAD_COLUMNS: &str = "id, target, own_username, state, timezone, profile_image, \
     tags, created_at, updated_at, last_contact_at, last_reply_at, next_eligible_at, \
     follow_ups_sent, follow_ups_total, reopens, transient_failures, session_id, last_error, \
     lease_owner, lease_expires_at, pending_event";

/// The columns of an attempt.
pub(crate) const ATTEMPT_COLUMNS: &str = "id, lead_id, job, action, step, status, http_status, \
     error_kind, error_detail, session_id, started_at, finished_at, runner_id AS lease_token, released_at, \
     released_by, sender";

#[derive(sqlx::FromRow)]
pub(crate) struct LeadRow {
    id: i64,
    target: String,
    own_username: Option<String>,
    state: String,
    timezone: Option<String>,
    profile_image: Option<String>,
    tags: Tags,
    created_at: Ts,
    updated_at: Ts,
    last_contact_at: Option<Ts>,
    last_reply_at: Option<Ts>,
    next_eligible_at: Ts,
    follow_ups_sent: i32,
    follow_ups_total: i32,
    reopens: i32,
    transient_failures: i32,
    session_id: Option<String>,
    last_error: Option<String>,
    lease_owner: Option<String>,
    lease_expires_at: Option<Ts>,
    pending_event: Option<String>,
}

impl TryFrom<LeadRow> for Lead {
    type Error = StoreError;
    fn try_from(r: LeadRow) -> Result<Lead, StoreError> {
        Ok(Lead {
            id: r.id,
            target: r.target,
            own_username: r.own_username,
            state: r.state.parse().map_err(StoreError::Corrupt)?,
            timezone: r.timezone,
            profile_image: r.profile_image,
            tags: r.tags.0,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
            last_contact_at: r.last_contact_at.map(|t| t.0),
            last_reply_at: r.last_reply_at.map(|t| t.0),
            next_eligible_at: r.next_eligible_at.0,
            follow_ups_sent: r.follow_ups_sent,
            follow_ups_total: r.follow_ups_total,
            reopens: r.reopens,
            transient_failures: r.transient_failures,
            session_id: r.session_id,
            last_error: r.last_error,
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at.map(|t| t.0),
            pending_event: r.pending_event,
        })
    }
}

/// A due lead's row: the lead and the time it is ordered by.
#[derive(sqlx::FromRow)]
pub(crate) struct DueRow {
    #[sqlx(flatten)]
    lead: LeadRow,
    since: Ts,
}

impl TryFrom<DueRow> for DueLead {
    type Error = StoreError;
    fn try_from(r: DueRow) -> Result<DueLead, StoreError> {
        Ok(DueLead {
            lead: r.lead.try_into()?,
            since: r.since.0,
        })
    }
}

/// A due lead as one element of a page read as one row of JSON (`sql/hot.rs`,
/// `one_row_page`): an array of the lead's columns in `LEAD_COLUMNS` order (tags as an
/// array), then `since`. Text that needs no unescaping (the times, the state) is
/// borrowed from the page, not copied.
#[derive(serde::Deserialize)]
struct DueJson<'a> {
    id: i64,
    target: String,
    own_username: Option<String>,
    #[serde(borrow)]
    state: Cow<'a, str>,
    timezone: Option<String>,
    profile_image: Option<String>,
    tags: Vec<String>,
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    #[serde(borrow)]
    updated_at: Cow<'a, str>,
    #[serde(borrow)]
    last_contact_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    last_reply_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    next_eligible_at: Cow<'a, str>,
    follow_ups_sent: i32,
    follow_ups_total: i32,
    reopens: i32,
    transient_failures: i32,
    session_id: Option<String>,
    last_error: Option<String>,
    lease_owner: Option<String>,
    #[serde(borrow)]
    lease_expires_at: Option<Cow<'a, str>>,
    pending_event: Option<String>,
    #[serde(borrow)]
    since: Cow<'a, str>,
}

impl TryFrom<DueJson<'_>> for DueLead {
    type Error = StoreError;
    fn try_from(r: DueJson<'_>) -> Result<DueLead, StoreError> {
        let opt = |t: Option<Cow<'_, str>>| t.as_deref().map(stored_ts).transpose();
        Ok(DueLead {
            lead: Lead {
                id: r.id,
                target: r.target,
                own_username: r.own_username,
                state: r.state.parse().map_err(StoreError::Corrupt)?,
                timezone: r.timezone,
                profile_image: r.profile_image,
                tags: r.tags,
                created_at: stored_ts(&r.created_at)?,
                updated_at: stored_ts(&r.updated_at)?,
                last_contact_at: opt(r.last_contact_at)?,
                last_reply_at: opt(r.last_reply_at)?,
                next_eligible_at: stored_ts(&r.next_eligible_at)?,
                follow_ups_sent: r.follow_ups_sent,
                follow_ups_total: r.follow_ups_total,
                reopens: r.reopens,
                transient_failures: r.transient_failures,
                session_id: r.session_id,
                last_error: r.last_error,
                lease_owner: r.lease_owner,
                lease_expires_at: opt(r.lease_expires_at)?,
                pending_event: r.pending_event,
            },
            since: stored_ts(&r.since)?,
        })
    }
}

/// A page of due leads read as one row of JSON text (see `DueJson`), in the page's order
/// (`since`, then id).
pub(crate) fn due_page(json: &str) -> Result<Vec<DueLead>, StoreError> {
    let rows: Vec<DueJson<'_>> = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("a page of due leads: {e}")))?;
    let mut page: Vec<DueLead> = all(rows)?;
    // SQLite's json_group_array takes the rows in the order its subquery returns them,
    // which it does not promise: put the page in order if it is not (already sorted,
    // this is one pass).
    if !page.is_sorted_by_key(|d| (d.since, d.lead.id)) {
        page.sort_by_key(|d| (d.since, d.lead.id));
    }
    Ok(page)
}

/// A time as SQLite stores it, `2026-11-24T09:00:00.000000Z` (`values::ts`), read without
/// a general parser; anything else (hand-written text) through `values::parse_ts`.
pub(crate) fn stored_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    fast_ts(s.as_bytes()).map_or_else(|| parse_ts(s), Ok)
}

fn fast_ts(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() != 27
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[26] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = chrono::NaiveTime::from_hms_micro_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
        num(20..26)?,
    )?;
    Some(date.and_time(time).and_utc())
}

#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    id: i64,
    lead_id: i64,
    job: String,
    action: String,
    step: i64,
    status: String,
    http_status: Option<i32>,
    error_kind: Option<String>,
    error_detail: Option<String>,
    session_id: Option<String>,
    started_at: Ts,
    finished_at: Option<Ts>,
    lease_token: String,
    released_at: Option<Ts>,
    released_by: Option<String>,
    sender: Option<String>,
}

impl TryFrom<AttemptRow> for Attempt {
    type Error = StoreError;
    fn try_from(r: AttemptRow) -> Result<Attempt, StoreError> {
        Ok(Attempt {
            id: r.id,
            lead_id: r.lead_id,
            job: r.job,
            action: Action::parse(&r.action)?,
            step: r.step,
            status: AttemptStatus::parse(&r.status)?,
            http_status: r.http_status,
            error_kind: r.error_kind,
            error_detail: r.error_detail,
            session_id: r.session_id,
            started_at: r.started_at.0,
            finished_at: r.finished_at.map(|t| t.0),
            lease_token: r.lease_token,
            released_at: r.released_at.map(|t| t.0),
            released_by: r.released_by,
            sender: r.sender,
        })
    }
}

/// An attempt's row with its lead's target (the forecast reads its own attempts so).
#[derive(sqlx::FromRow)]
pub(crate) struct AttemptOfRow {
    #[sqlx(flatten)]
    attempt: AttemptRow,
    target: String,
}

impl TryFrom<AttemptOfRow> for super::snapshot::AttemptOf {
    type Error = StoreError;
    fn try_from(r: AttemptOfRow) -> Result<Self, StoreError> {
        Ok(Self {
            attempt: r.attempt.try_into()?,
            target: r.target,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OutboxRow {
    id: i64,
    lead_id: i64,
    attempt_id: i64,
    target: String,
    action: String,
    message: String,
    session_id: Option<String>,
    created_at: Ts,
    acked_at: Option<Ts>,
    lead_state: String,
    sender: Option<String>,
}

impl TryFrom<OutboxRow> for OutboxItem {
    type Error = StoreError;
    fn try_from(r: OutboxRow) -> Result<OutboxItem, StoreError> {
        Ok(OutboxItem {
            id: r.id,
            lead_id: r.lead_id,
            attempt_id: r.attempt_id,
            target: r.target,
            action: r.action,
            message: r.message,
            session_id: r.session_id,
            created_at: r.created_at.0,
            acked_at: r.acked_at.map(|t| t.0),
            lead_state: r.lead_state.parse().map_err(StoreError::Corrupt)?,
            sender: r.sender,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: i64,
    lead_id: i64,
    target: String,
    event_type: String,
    context: Option<String>,
    state: String,
    created_at: Ts,
}

impl From<EventRow> for QueuedEvent {
    fn from(r: EventRow) -> QueuedEvent {
        QueuedEvent {
            id: r.id,
            lead_id: r.lead_id,
            target: r.target,
            event_type: r.event_type,
            context: r.context,
            state: r.state,
            created_at: r.created_at.0,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PauseRow {
    scope: String,
    until: Ts,
    reason: String,
    strikes: i32,
    set_at: Ts,
    set_by: Option<String>,
}

impl TryFrom<PauseRow> for Pause {
    type Error = StoreError;
    fn try_from(r: PauseRow) -> Result<Pause, StoreError> {
        Ok(Pause {
            scope: PauseScope::parse(&r.scope)?,
            until: r.until.0,
            reason: r.reason,
            strikes: r.strikes,
            set_at: r.set_at.0,
            set_by: r.set_by,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    id: i64,
    job: String,
    runner_id: String,
    scheduled_at: Option<Ts>,
    started_at: Ts,
    finished_at: Option<Ts>,
    summary: Option<String>,
}

impl From<RunRow> for JobRun {
    fn from(r: RunRow) -> JobRun {
        JobRun {
            id: r.id,
            job: r.job,
            runner_id: r.runner_id,
            scheduled_at: r.scheduled_at.map(|t| t.0),
            started_at: r.started_at.0,
            finished_at: r.finished_at.map(|t| t.0),
            summary: r.summary.and_then(|t| serde_json::from_str(&t).ok()),
        }
    }
}

/// Converts fetched rows.
pub(crate) fn all<R, T: TryFrom<R, Error = StoreError>>(
    rows: Vec<R>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(T::try_from).collect()
}

/// Rows from `rows`, converted, until their size (`size`) passes `max_bytes` (the first
/// is always taken): the items, and whether rows were left unread for the size. What it
/// leaves is not read into memory, so one page of huge rows costs no more than its budget.
pub(crate) async fn within<R, T>(
    rows: impl futures_util::Stream<Item = Result<R, sqlx::Error>>,
    max_bytes: usize,
    convert: impl Fn(R) -> Result<T, StoreError>,
    size: impl Fn(&T) -> usize,
) -> Result<(Vec<T>, bool), StoreError> {
    use futures_util::TryStreamExt;
    let mut rows = std::pin::pin!(rows);
    let mut out = Vec::new();
    let mut used = 0usize;
    while let Some(row) = rows.try_next().await? {
        let item = convert(row)?;
        let n = size(&item);
        if !out.is_empty() && used.saturating_add(n) > max_bytes {
            return Ok((out, true));
        }
        used = used.saturating_add(n);
        out.push(item);
    }
    Ok((out, false))
}

/// About how many bytes a lead takes in an answer: its text and a fixed share for the rest.
pub(crate) fn lead_size(l: &Lead) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    512 + l.target.len()
        + text(&l.own_username)
        + text(&l.timezone)
        + text(&l.profile_image)
        + l.tags.iter().map(|t| t.len() + 4).sum::<usize>()
        + text(&l.session_id)
        + text(&l.last_error)
        + text(&l.lease_owner)
        + text(&l.pending_event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_read_fast_are_the_times_the_general_parser_reads() {
        for text in [
            "2026-11-24T09:00:00.000000Z",
            "0001-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "2024-02-29T23:59:59.123456Z",
        ] {
            let fast = fast_ts(text.as_bytes());
            assert!(fast.is_some(), "{text}");
            assert_eq!(
                fast.map(Ok),
                Some(parse_ts(text).map_err(|e| e.to_string()))
            );
        }
        // Anything else goes to the general parser, or is refused.
        assert!(fast_ts(b"2026-11-24T09:00:00Z").is_none());
        assert!(fast_ts(b"2026-11-24T09:00:00.000000+01:00").is_none());
        assert!(fast_ts(b"2026-02-30T09:00:00.000000Z").is_none());
        assert!(fast_ts(b"2026-11-24T09:00:6x.000000Z").is_none());
        assert_eq!(
            stored_ts("2026-11-24T10:00:00+01:00").ok(),
            stored_ts("2026-11-24T09:00:00.000000Z").ok()
        );
        assert!(stored_ts("2026-02-30T09:00:00.000000Z").is_err());
    }

    fn element(id: i64, target: &str, since: &str) -> String {
        format!(
            r#"[{id},{target},null,"new","Europe/Berlin",null,["a\"b"],"2026-11-24T09:00:00.000000Z","2026-11-24T09:00:00.000000Z",null,null,"{since}",0,1,2,3,null,null,null,null,null,"{since}"]"#,
            target = serde_json::Value::from(target)
        )
    }

    #[test]
    fn a_page_read_as_json_is_its_leads_in_order() {
        let a = element(7, "@a\u{1}\"", "2026-11-24T09:00:00.000000Z");
        let b = element(3, "@b", "2026-11-24T10:00:00.000000Z");
        let c = element(9, "@c", "2026-11-24T10:00:00.000000Z");
        // Out of order, as SQLite does not promise it: read in order (since, then id).
        let page = due_page(&format!("[{c},{a},{b}]")).expect("a page");
        let ids: Vec<i64> = page.iter().map(|d| d.lead.id).collect();
        assert_eq!(ids, [7, 3, 9]);
        let first = &page[0].lead;
        assert_eq!(first.target, "@a\u{1}\"");
        assert_eq!(first.tags, ["a\"b"]);
        assert_eq!(first.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(
            (first.follow_ups_sent, first.follow_ups_total, first.reopens),
            (0, 1, 2)
        );
        assert_eq!(first.transient_failures, 3);
        assert!(due_page("[]").expect("an empty page").is_empty());
        // A malformed page is an error, not a short page.
        assert!(matches!(due_page("[[1]]"), Err(StoreError::Corrupt(_))));
        let bad_state =
            element(1, "@x", "2026-11-24T09:00:00.000000Z").replace("\"new\"", "\"old\"");
        assert!(due_page(&format!("[{bad_state}]")).is_err());
    }
}
