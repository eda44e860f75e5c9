//! The store's rules, written once for both backends: how a result meets the lead as it
//! is now, what a person's action does, the JSON batches statements unpack, and the
//! transaction discipline.

use super::StoreError;
use super::types::*;
use super::values::ts;
use crate::lead::{LeadEvent, LeadState, Refused};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A lead as `record_results` finds it, locked, before writing.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub state: LeadState,
    pub pending: Option<LeadEvent>,
    pub lease_owner: Option<String>,
}

impl Current {
    pub(crate) fn new(
        state: &str,
        pending: Option<String>,
        lease_owner: Option<String>,
    ) -> Result<Self, StoreError> {
        Ok(Current {
            state: state.parse().map_err(StoreError::Corrupt)?,
            pending: pending.as_deref().and_then(LeadEvent::from_pending_name),
            lease_owner,
        })
    }
}

/// The lead and queued-event updates of `record_results`, as two JSON batches (one row per
/// lead): which results apply, and the state each lead ends in (see `LeadResult`).
pub(crate) fn settle_json(
    results: &[LeadResult],
    mut current: HashMap<i64, Current>,
    finished: &HashSet<i64>,
    now: DateTime<Utc>,
) -> (String, String) {
    let mut rows: BTreeMap<i64, serde_json::Value> = BTreeMap::new();
    let mut events = Vec::new();
    for r in results {
        let Some(cur) = current.get_mut(&r.lead_id) else {
            continue;
        };
        let applies = match &r.attempt {
            Some(a) => finished.contains(&a.attempt_id),
            None => cur.lease_owner.as_deref() == Some(r.lease_token.as_str()),
        };
        if applies && let Some(ev) = r.event {
            (cur.state, cur.pending) = crate::lead::settle(cur.state, cur.pending, ev);
        }
        let ended = r.attempt.as_ref().map_or(now, |a| a.finished_at);
        let row = rows.entry(r.lead_id).or_insert_with(|| {
            serde_json::json!({
                "id": r.lead_id, "lease_token": clean(&r.lease_token), "contacted_at": null,
                "follow_up_inc": 0, "reset_follow_ups": false, "reopen_inc": 0,
                "transient_failures": null, "next_eligible_at": null, "session_id": null,
                "set_error": false, "last_error": null,
            })
        });
        row["state"] = cur.state.as_str().into();
        row["pending"] = cur.pending.and_then(LeadEvent::pending_name).into();
        if !applies {
            continue;
        }
        if r.contacted {
            row["contacted_at"] = ts(ended).into();
        }
        if r.follow_up_sent {
            row["follow_up_inc"] = (row["follow_up_inc"].as_i64().unwrap_or(0) + 1).into();
        }
        if r.reopened {
            row["reset_follow_ups"] = true.into();
            row["reopen_inc"] = (row["reopen_inc"].as_i64().unwrap_or(0) + 1).into();
        }
        row["transient_failures"] = r.transient_failures.into();
        if let Some(t) = r.next_eligible_at {
            row["next_eligible_at"] = ts(t).into();
        }
        if let Some(sid) = r.attempt.as_ref().and_then(|a| a.session_id.as_deref()) {
            row["session_id"] = clean(sid).into();
        }
        row["set_error"] = true.into();
        row["last_error"] = r.last_error.as_deref().map(clean).into();
        if let Some((id, state)) = r.queued_event {
            events.push(serde_json::json!({"id": id, "state": state}));
        }
    }
    let rows: Vec<serde_json::Value> = rows.into_values().collect();
    (
        serde_json::Value::Array(rows).to_string(),
        serde_json::Value::Array(events).to_string(),
    )
}

/// The lifecycle event for a person's action on `lead`.
pub(crate) fn user_event(action: UserAction, lead: &Lead) -> LeadEvent {
    let contacted = lead.last_contact_at.is_some();
    match action {
        UserAction::Block => LeadEvent::Block,
        UserAction::Unblock => LeadEvent::Unblock { contacted },
        UserAction::Retry => LeadEvent::Retry { contacted },
    }
}

/// What a person's action does to `lead`: its new state and pending event. Checked by the
/// lifecycle (`lead::next`); unblocking applies what arrived while the lead was blocked, and
/// blocking remembers a review or failure to return to.
pub(crate) fn user_change(
    action: UserAction,
    lead: &Lead,
) -> Result<(LeadState, Option<LeadEvent>), Refused> {
    let event = user_event(action, lead);
    let to = crate::lead::next(lead.state, event)?;
    let pending = lead
        .pending_event
        .as_deref()
        .and_then(LeadEvent::from_pending_name);
    Ok(match action {
        UserAction::Block => (to, crate::lead::pending_on_block(lead.state, pending)),
        UserAction::Unblock => (
            crate::lead::unblocked(lead.last_contact_at.is_some(), pending),
            None,
        ),
        UserAction::Retry => (to, None),
    })
}

/// How far ahead of the clock a time a person gives (a reply's time) may be: more is a
/// mistake that would stall the lead, and is refused.
pub const FUTURE_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Refuses a reply time further in the future than `FUTURE_SKEW`.
pub(crate) fn check_reply_time(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), StoreError> {
    if at > now + FUTURE_SKEW {
        return Err(StoreError::InTheFuture {
            what: "the reply time",
            at,
        });
    }
    Ok(())
}

/// Leads per state from `(state, count)` rows, with every state present.
pub(crate) fn counts_by_state(
    rows: Vec<(String, i64)>,
) -> Result<BTreeMap<LeadState, u64>, StoreError> {
    let mut counts: BTreeMap<LeadState, u64> = LeadState::ALL.iter().map(|s| (*s, 0)).collect();
    for (state, n) in rows {
        let state: LeadState = state.parse().map_err(StoreError::Corrupt)?;
        counts.insert(state, n.max(0) as u64);
    }
    Ok(counts)
}

/// Text bound into a statement: PostgreSQL text and jsonb cannot hold NUL, so it becomes
/// U+FFFD on both backends alike.
pub(crate) fn clean(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

/// Runs `work` in a write transaction (begun with `begin`) on a connection of its own from
/// `pool`, and ends it explicitly: commit on success, rollback on error. (A transaction
/// merely dropped only queues its rollback, leaving the connection holding its locks, a
/// PostgreSQL row lock or SQLite's write lock, until it is reused.)
///
/// A connection whose transaction state is unknown is closed, never put back in the pool:
/// a BEGIN, COMMIT or ROLLBACK that failed (SQLite's disk full, an I/O error, a server
/// switched read-only) may leave the transaction open, and the next user of that
/// connection would find itself inside it ("begin_with at non-zero transaction depth") or
/// commit someone else's half-written work.
pub(crate) async fn in_tx<DB: sqlx::Database, T>(
    pool: &sqlx::Pool<DB>,
    begin: &'static str,
    work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    use sqlx::{Connection, SqlSafeStr};
    // Made a `SqlStr` here: `&'static str` alone trips the compiler's check that the
    // callers' futures are `Send` (a higher-ranked lifetime it cannot prove).
    let begin = begin.into_sql_str();
    let mut conn = pool.acquire().await?;
    // Whether the transaction's end is in doubt: then the connection is closed.
    let mut doubt = false;
    let result = async {
        let mut tx = match (*conn).begin_with(begin).await {
            Ok(tx) => tx,
            Err(e) => {
                doubt = true;
                return Err(e.into());
            }
        };
        match work(&mut tx).await {
            Ok(value) => match tx.commit().await {
                Ok(()) => Ok(value),
                Err(e) => {
                    tracing::warn!(error = %e, "commit failed; the connection is closed, not reused");
                    doubt = true;
                    Err(e.into())
                }
            },
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed; the connection is closed, not reused");
                    doubt = true;
                }
                Err(e)
            }
        }
    }
    .await;
    if doubt {
        conn.close_on_drop();
    }
    result
}

/// Groups rows by target, merging duplicates in order. Returns (row, first occurrence in
/// this batch?) pairs in first-seen order, and how many rows were duplicates.
pub(crate) fn merge_batch(rows: Vec<LeadInput>) -> (Vec<LeadInput>, u64) {
    let mut order: Vec<LeadInput> = Vec::with_capacity(rows.len());
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut duplicates = 0;
    for row in rows {
        match index.get(&row.target) {
            Some(&i) => {
                order[i].merge(row);
                duplicates += 1;
            }
            None => {
                index.insert(row.target.clone(), order.len());
                order.push(row);
            }
        }
    }
    (order, duplicates)
}

/// Whether `err` is the unique index refusing an attempt.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The `AlreadySent` error for the attempt of `attempts` that conflicts: one the database
/// already holds (`held`), else one repeated within the batch itself.
pub(crate) fn already_sent(attempts: &[NewAttempt], held: &[(i64, String, i64)]) -> StoreError {
    let key = |a: &NewAttempt| (a.lead_id, a.action.as_str().to_string(), a.step);
    let conflict = attempts
        .iter()
        .find(|a| held.contains(&key(a)))
        .or_else(|| {
            attempts
                .iter()
                .enumerate()
                .find(|(i, a)| attempts[..*i].iter().any(|b| key(b) == key(a)))
                .map(|(_, a)| a)
        });
    match conflict {
        Some(a) => StoreError::AlreadySent {
            lead_id: a.lead_id,
            action: a.action.as_str(),
            step: a.step,
        },
        None => StoreError::Corrupt("the attempts index refused a batch without a conflict".into()),
    }
}

/// How many of `wanted` attempts a cap with `used` already taken lets through.
pub(crate) fn cap_allows(cap: Option<DailyCap>, used: i64, wanted: usize) -> usize {
    match cap {
        None => wanted,
        Some(cap) => (i64::from(cap.limit) - used).clamp(0, wanted as i64) as usize,
    }
}

/// The JSON batch for `start_attempts`.
pub(crate) fn attempts_json(attempts: &[NewAttempt]) -> String {
    let rows: Vec<_> = attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "lead_id": a.lead_id, "job": clean(&a.job), "action": a.action.as_str(),
                "step": a.step, "lease_token": clean(&a.lease_token), "started_at": ts(a.started_at),
                "claimed": a.claimed.map(LeadState::as_str),
                "sender": a.sender.as_ref().map(|s| clean(&s.username)),
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// The JSON batch for `finish_attempts`.
pub(crate) fn ends_json(ends: &[AttemptEnd]) -> String {
    let rows: Vec<_> = ends
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e.attempt_id, "status": e.status.as_str(), "http_status": e.http_status,
                "error_kind": e.error_kind.as_deref().map(clean),
                "error_detail": e.error_detail.as_deref().map(clean),
                "session_id": e.session_id.as_deref().map(clean),
                "finished_at": ts(e.finished_at),
                "message": e.message.as_deref().filter(|m| !m.is_empty()).map(clean),
                "released_by": e.release.as_deref().map(clean),
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// Ids returned by a batch insert, in the order of `attempts` (RETURNING promises none);
/// `None` for an attempt not inserted (its lead changed since its claim).
pub(crate) fn ids_in_order(
    attempts: &[NewAttempt],
    rows: &[(i64, i64, String, i64)],
) -> Vec<Option<i64>> {
    attempts
        .iter()
        .map(|a| {
            rows.iter()
                .find(|(_, lead, action, step)| {
                    *lead == a.lead_id && action == a.action.as_str() && *step == a.step
                })
                .map(|r| r.0)
        })
        .collect()
}

/// Which of `attempts` may still be recorded: their lead, as read now (`leads`: id,
/// state, lease owner), is still in the state it was claimed in and leased to the token.
pub(crate) fn still_claimed(
    attempts: &[NewAttempt],
    leads: &[(i64, String, Option<String>)],
) -> Vec<bool> {
    attempts
        .iter()
        .map(|a| match a.claimed {
            None => true,
            Some(state) => leads.iter().any(|(id, s, owner)| {
                *id == a.lead_id
                    && s == state.as_str()
                    && owner.as_deref() == Some(a.lease_token.as_str())
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A COMMIT that fails on a full disk or an I/O error: SQLite has already rolled the
    /// transaction back on its own, so sqlx's ROLLBACK fails too and its count of open
    /// transactions stays at one. Back in the pool, that connection refused every later
    /// transaction ("begin_with at non-zero transaction depth"): it must be closed instead.
    #[tokio::test]
    async fn a_connection_whose_commit_failed_is_closed_not_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .expect("url")
            .create_if_missing(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .expect("pool");
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .expect("create");
        let failed = in_tx(&pool, "BEGIN IMMEDIATE", async |tx| {
            sqlx::query("INSERT INTO t (id) VALUES (1)")
                .execute(&mut *tx)
                .await?;
            // What SQLite does itself when the disk fills up under a transaction.
            sqlx::query("ROLLBACK").execute(&mut *tx).await?;
            Ok(())
        })
        .await;
        assert!(failed.is_err(), "the COMMIT finds no transaction");
        for id in [2, 3] {
            in_tx(&pool, "BEGIN IMMEDIATE", async |tx| {
                sqlx::query("INSERT INTO t (id) VALUES ($1)")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
            .await
            .expect("later transactions begin on a sound connection");
        }
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM t ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("read");
        assert_eq!(ids, vec![2, 3]);
    }

    #[test]
    fn a_later_row_replaces_the_campaign_fields_as_a_group() {
        let mut contacted = LeadInput {
            target: "@a".into(),
            state: Some(LeadState::Contacted),
            last_contact_at: Some(Utc::now()),
            follow_ups_sent: Some(2),
            ..Default::default()
        };
        contacted.merge(LeadInput {
            target: "@a".into(),
            state: Some(LeadState::New),
            ..Default::default()
        });
        assert_eq!(contacted.state, Some(LeadState::New));
        assert_eq!(contacted.last_contact_at, None);
        assert_eq!(contacted.follow_ups_sent, None);
    }

    #[test]
    fn nul_cannot_reach_the_database() {
        assert_eq!(clean("a\0b"), "a\u{fffd}b");
    }

    #[test]
    fn already_sent_names_the_conflicting_attempt() {
        let a = |lead_id, step| NewAttempt {
            lead_id,
            job: "j".into(),
            action: Action::Opener,
            step,
            lease_token: "r".into(),
            claimed: None,
            started_at: Utc::now(),
            sender: None,
        };
        let batch = [a(1, 0), a(2, 0), a(3, 0)];
        let held = [(2, "opener".to_string(), 0)];
        assert!(matches!(
            already_sent(&batch, &held),
            StoreError::AlreadySent { lead_id: 2, .. }
        ));
        let repeated = [a(1, 0), a(5, 0), a(5, 0)];
        assert!(matches!(
            already_sent(&repeated, &[]),
            StoreError::AlreadySent { lead_id: 5, .. }
        ));
    }

    #[test]
    fn duplicate_targets_in_a_batch_merge_with_later_fields_winning() {
        let a = LeadInput {
            target: "@a".into(),
            timezone: Some("Europe/Berlin".into()),
            tags: Some(vec!["x".into()]),
            ..Default::default()
        };
        let a2 = LeadInput {
            target: "@a".into(),
            tags: Some(vec!["y".into()]),
            ..Default::default()
        };
        let b = LeadInput {
            target: "@b".into(),
            ..Default::default()
        };
        let (rows, dups) = merge_batch(vec![a, b, a2]);
        assert_eq!(dups, 1);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(rows[0].tags, Some(vec!["y".to_string()]));
        assert_eq!(rows[1].target, "@b");
    }
}
