//! `impl RunnerStore`: the runner's hot path. Mounted by each backend (`sqlite.rs`,
//! `postgres.rs`) over its own types.

use super::helpers::{claim_states, count_started_in, finish_in, insert_attempts};
use super::hot::{
    FollowUpDue, hot_claim, hot_due_events, hot_due_follow_ups_page, hot_due_openers_page,
    hot_exhaust, hot_orphans, page_is_one_row,
};
use super::{Conn, D, DB, Store};
use crate::store::Lead;
use crate::store::RunnerStore;
use crate::store::dialect::Col;
use crate::store::dialect::Dialect;
use crate::store::params::{EventsQuery, Exhaustion, Heartbeat, Lease, NewPause, StepOf, Tick};
use crate::store::rules::{
    Current, already_sent, attempts_json, cap_allows, clean, in_tx, is_unique_violation,
    settle_json, still_claimed,
};
use crate::store::types::{
    Attempt, AttemptEnd, DailyCap, Due, DueEvent, DueLead, DueQuery, LeadResult, NewAttempt,
    Orphan, Pause, PauseScope, QueuedEvent, Recorded,
};
use crate::store::values::{Ids, Ts};
use crate::store::{HOLDS_STEP, StoreError, rows};
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
impl RunnerStore for Store {
    async fn start_attempts_within(
        &self,
        attempts: &[NewAttempt],
        cap: Option<DailyCap>,
    ) -> Result<Vec<Recorded>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let started = match cap {
            // One statement, one round trip: the common case.
            None if !under_senders(attempts) => {
                insert_attempts(&mut *self.pool.acquire().await?, attempts)
                    .await
                    .map(|ids| {
                        ids.into_iter()
                            .map(|id| id.map_or(Recorded::Changed, Recorded::Started))
                            .collect()
                    })
            }
            _ => {
                in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
                    start_within_in(tx, attempts, cap).await
                })
                .await
            }
        };
        refused_if_sent(&self.pool, attempts, started).await
    }

    async fn finish_attempts(&self, ends: &[AttemptEnd]) -> Result<Vec<i64>, StoreError> {
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            finish_in(tx, ends).await
        })
        .await
    }

    async fn due_leads(&self, q: &DueQuery) -> Result<Vec<DueLead>, StoreError> {
        // No cursor: before every stored time (a lead contacted in year 1, a CRM's
        // "empty date", is due like any other).
        let after = q
            .after
            .unwrap_or((chrono::DateTime::<chrono::Utc>::MIN_UTC, 0));
        let hot = match &q.due {
            Due::Opener => hot_due_openers_page(q.now, after, q.limit, &q.segment),
            Due::FollowUp { cutoffs, max } => hot_due_follow_ups_page(
                q.now,
                after,
                q.limit,
                &FollowUpDue {
                    cutoffs,
                    max: *max,
                    segment: &q.segment,
                },
            ),
        };
        if page_is_one_row() {
            // The page as one row of JSON (see `one_row_page`).
            use sqlx::Row;
            let page = hot.query().fetch_one(&self.pool).await?;
            return rows::due_page(page.try_get::<&str, _>(0)?);
        }
        let found: Vec<rows::DueRow> = hot.fetch(&self.pool).await?;
        rows::all(found)
    }

    async fn claim_leads(&self, ids: &[i64], lease: Lease<'_>) -> Result<Vec<Lead>, StoreError> {
        let Lease {
            lease_token,
            now,
            until: lease_until,
        } = lease;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<rows::LeadRow> = hot_claim(ids, lease_token, now, lease_until)
            .fetch(&self.pool)
            .await?;
        let mut leads: Vec<Lead> = rows::all(found)?;
        leads.sort_by_key(|l| ids.iter().position(|id| *id == l.id));
        Ok(leads)
    }

    async fn release_leads(
        &self,
        ids: &[i64],
        lease_token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = Ids(ids.to_vec());
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            sqlx::query(stmt!(
                "UPDATE attempts SET status = 'cancelled', finished_at = $3,
                        error_detail = 'not called: the lead was given back'
                 WHERE lead_id {ids} AND runner_id = $2 AND status = 'in_flight'",
                ids = D::in_ids(1)
            ))
            .bind(&ids)
            .bind(lease_token)
            .bind(Ts(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query(stmt!(
                "UPDATE leads SET lease_owner = NULL, lease_expires_at = NULL
                 WHERE id {ids} AND lease_owner = $2",
                ids = D::in_ids(1)
            ))
            .bind(&ids)
            .bind(lease_token)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
    }

    async fn due_events(&self, q: &EventsQuery<'_>) -> Result<Vec<DueEvent>, StoreError> {
        let EventsQuery {
            event_type,
            now,
            limit,
            after,
        } = *q;
        let found: Vec<rows::EventRow> = hot_due_events(event_type, now, limit, after)
            .fetch(&self.pool)
            .await?;
        let events: Vec<QueuedEvent> = found.into_iter().map(QueuedEvent::from).collect();
        let leads = self.leads_by_id(events.iter().map(|e| e.lead_id)).await?;
        Ok(events
            .into_iter()
            .filter_map(|event| {
                let lead = leads.get(&event.lead_id)?.clone();
                Some(DueEvent { event, lead })
            })
            .collect())
    }

    async fn drop_dead_events(
        &self,
        event_type: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE events SET state = 'dropped', processed_at = $2
             WHERE state = 'queued' AND event_type = $1
               AND lead_id IN (SELECT id FROM leads
                               WHERE state IN ('done', 'ignored', 'blocked', 'failed'))",
        )
        .bind(event_type)
        .bind(Ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn exhaust(&self, q: &Exhaustion) -> Result<u64, StoreError> {
        let Exhaustion {
            max,
            cutoff,
            now,
            dry,
        } = *q;
        let hot = hot_exhaust(max, cutoff, now, dry);
        if dry {
            let mut conn = self.pool.acquire().await?;
            return Ok(hot.count(&mut conn).await?.max(0) as u64);
        }
        let done = hot.query().execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn record_results(
        &self,
        results: &[LeadResult],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            settle_in(tx, results, now).await
        })
        .await
    }

    async fn note_follow_ups_waiting(
        &self,
        senders: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if senders.is_empty() {
            return Ok(());
        }
        // Under each sender's lock, in name order, as every writer of `senders` takes them.
        let names: std::collections::BTreeSet<String> = senders.iter().map(|s| clean(s)).collect();
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            take_sender_locks(tx, names.iter()).await?;
            // Only a sender that has called can hold a follow-up for its gap: its row is there.
            sqlx::query(stmt!(
                "UPDATE senders SET follow_up_waiting_at = $2 WHERE username IN {names}",
                names = D::texts(1)
            ))
            .bind(serde_json::Value::from(names.iter().cloned().collect::<Vec<_>>()).to_string())
            .bind(Ts(now))
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
    }

    fn group_commit(&self) -> bool {
        D::GROUP_COMMIT
    }

    async fn settle_and_start(
        &self,
        results: &[LeadResult],
        now: chrono::DateTime<chrono::Utc>,
        attempts: &[NewAttempt],
        cap: Option<DailyCap>,
    ) -> Result<(Vec<i64>, Vec<Recorded>), StoreError> {
        let done = in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            // Under a cap its lock comes first, as in `start_attempts_within`: then the
            // answers' leads, then the next group's (one order for every writer).
            if cap.is_some()
                && let Some(a) = attempts.first()
            {
                take_cap_lock(tx, &a.job).await?;
            }
            let names: std::collections::BTreeSet<&String> = attempts
                .iter()
                .filter_map(|a| Some(&a.sender.as_ref()?.rule.as_ref()?.username))
                .collect();
            take_sender_locks(tx, names.into_iter()).await?;
            let finished = settle_in(tx, results, now).await?;
            let started = start_within_in(tx, attempts, cap).await?;
            Ok((finished, started))
        })
        .await;
        refused_if_sent(&self.pool, attempts, done).await
    }

    async fn step_released_by(&self, step: &StepOf, by: &str) -> Result<bool, StoreError> {
        let StepOf {
            lead_id,
            action,
            step,
        } = *step;
        // Read through `attempts_by_lead (lead_id, id)`: a lead's attempts only.
        let found: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM attempts
             WHERE lead_id = $1 AND action = $2 AND step = $3 AND released_by = $4",
        )
        .bind(lead_id)
        .bind(action.as_str())
        .bind(step)
        .bind(by)
        .fetch_one(&self.pool)
        .await?;
        Ok(found > 0)
    }

    async fn orphans(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<Orphan>, StoreError> {
        let found: Vec<rows::AttemptRow> = hot_orphans(now).fetch(&self.pool).await?;
        let mut attempts: Vec<Attempt> = rows::all(found)?;
        attempts.sort_by_key(|a| a.id);
        let leads = self.leads_by_id(attempts.iter().map(|a| a.lead_id)).await?;
        Ok(attempts
            .into_iter()
            .filter_map(|attempt| {
                let lead = leads.get(&attempt.lead_id)?.clone();
                Some(Orphan { lead, attempt })
            })
            .collect())
    }

    async fn clear_expired_leases(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE leads SET lease_owner = NULL, lease_expires_at = NULL
             WHERE lease_owner IS NOT NULL AND lease_expires_at <= $1
               AND NOT EXISTS (SELECT 1 FROM attempts
                               WHERE attempts.lead_id = leads.id AND attempts.status = 'in_flight')",
        )
        .bind(Ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn set_pause(&self, pause: &NewPause<'_>) -> Result<Pause, StoreError> {
        let NewPause {
            scope,
            reason,
            set_by,
            now,
            length,
        } = *pause;
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            // A row to lock: concurrent 402s from several runners settle one by one.
            sqlx::query(
                "INSERT INTO pauses (scope, until, reason, strikes, set_at) VALUES ($1, $2, '', 0, $2)
                 ON CONFLICT (scope) DO NOTHING",
            )
            .bind(scope.as_str())
            .bind(Ts(now))
            .execute(&mut *tx)
            .await?;
            let held: rows::PauseRow = sqlx::query_as(stmt!(
                "SELECT scope, until, reason, strikes, set_at, set_by FROM pauses
                 WHERE scope = $1{lock}",
                lock = D::FOR_UPDATE
            ))
            .bind(scope.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let held = Pause::try_from(held)?;
            // A pause in force already answers this 402 (another runner, or a call
            // already in flight, heard the same news): it is not a further strike.
            if held.strikes > 0 && held.until > now {
                return Ok(held);
            }
            let strikes = held.strikes.max(0) + 1;
            let until = crate::clock::later(now, length(strikes as u32));
            sqlx::query(
                "UPDATE pauses SET until = $2, reason = $3, strikes = $4, set_at = $5, set_by = $6
                 WHERE scope = $1",
            )
            .bind(scope.as_str())
            .bind(Ts(until))
            .bind(clean(reason))
            .bind(strikes)
            .bind(Ts(now))
            .bind(set_by)
            .execute(&mut *tx)
            .await?;
            Ok(Pause {
                scope,
                until,
                reason: clean(reason),
                strikes,
                set_at: now,
                set_by: Some(set_by.to_string()),
            })
        })
        .await
    }

    async fn clear_pause(
        &self,
        scope: PauseScope,
        ended_by: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM pauses WHERE scope = $1 AND until <= $2")
            .bind(scope.as_str())
            .bind(Ts(ended_by))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn publish_runner(&self, beat: &Heartbeat<'_>) -> Result<(), StoreError> {
        let Heartbeat {
            runner_id,
            started_at,
            holds,
            now,
        } = *beat;
        let holds = serde_json::to_string(holds)
            .map_err(|e| StoreError::Corrupt(format!("holds as JSON: {e}")))?;
        sqlx::query(
            "INSERT INTO runners (runner_id, started_at, seen_at, holds) VALUES ($1, $2, $3, $4)
             ON CONFLICT (runner_id) DO UPDATE SET seen_at = excluded.seen_at, holds = excluded.holds",
        )
        .bind(runner_id)
        .bind(Ts(started_at))
        .bind(Ts(now))
        .bind(clean(&holds))
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM runners WHERE seen_at < $1")
            .bind(Ts(crate::clock::earlier(
                now,
                crate::store::RUNNER_ROW_KEPT.to_std().unwrap_or_default(),
            )))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn forget_runner(&self, runner_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM runners WHERE runner_id = $1")
            .bind(runner_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn claim_tick(&self, tick: &Tick<'_>) -> Result<bool, StoreError> {
        let Tick {
            job,
            scheduled_at,
            runner_id,
            now,
        } = *tick;
        let done = sqlx::query(
            "INSERT INTO ticks (job, scheduled_at, runner_id, claimed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job, scheduled_at) DO NOTHING",
        )
        .bind(job)
        .bind(Ts(scheduled_at))
        .bind(runner_id)
        .bind(Ts(now))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        // A claim retried after its answer was lost finds its own row.
        let owner: Option<String> =
            sqlx::query_scalar("SELECT runner_id FROM ticks WHERE job = $1 AND scheduled_at = $2")
                .bind(job)
                .bind(Ts(scheduled_at))
                .fetch_optional(&self.pool)
                .await?;
        Ok(owner.as_deref() == Some(runner_id))
    }

    async fn start_run(&self, tick: &Tick<'_, Option<DateTime<Utc>>>) -> Result<i64, StoreError> {
        let Tick {
            job,
            scheduled_at,
            runner_id,
            now,
        } = *tick;
        Ok(sqlx::query_scalar(
            "INSERT INTO job_runs (job, runner_id, scheduled_at, started_at) VALUES ($1, $2, $3, $4)
             RETURNING id",
        )
        .bind(job)
        .bind(runner_id)
        .bind(scheduled_at.map(Ts))
        .bind(Ts(now))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn finish_run(
        &self,
        run_id: i64,
        summary: &serde_json::Value,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE job_runs SET finished_at = $2, summary = $3 WHERE id = $1")
            .bind(run_id)
            .bind(Ts(now))
            .bind(summary.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
    async fn begin_inbound(
        &self,
        target: &str,
        own_username: Option<&str>,
        lease: Lease<'_>,
    ) -> Result<Lead, StoreError> {
        self.lease_inbound(target, own_username, lease).await
    }
}

/// Writes a group of answers in the open transaction `tx` (`RunnerStore::record_results`);
/// returns the attempts it finished.
async fn settle_in(
    tx: &mut Conn,
    results: &[LeadResult],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<i64>, StoreError> {
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let ends: Vec<AttemptEnd> = results.iter().filter_map(|r| r.attempt.clone()).collect();
    let ids = Ids(results.iter().map(|r| r.lead_id).collect());
    // The leads first (locked in id order on PostgreSQL), then their attempts:
    // the order a person's block, unblock or retry takes too, so the two cannot
    // deadlock.
    let found: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(stmt!(
        "SELECT id, state, pending_event, lease_owner FROM leads
             WHERE id {ids} ORDER BY id{lock}",
        ids = D::in_ids(1),
        lock = D::FOR_UPDATE
    ))
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let finished: std::collections::HashSet<i64> =
        finish_in(tx, &ends).await?.into_iter().collect();
    let current = found
        .into_iter()
        .map(|(id, state, pending, owner)| Ok((id, Current::new(&state, pending, owner)?)))
        .collect::<Result<std::collections::HashMap<_, _>, StoreError>>()?;
    let (leads, events) = settle_json(results, current, &finished, now);
    sqlx::query(stmt!(
        "UPDATE leads SET
            state = x.state, pending_event = x.pending,
            last_contact_at = COALESCE(x.contacted_at, leads.last_contact_at),
            follow_ups_sent = CASE WHEN x.reset_follow_ups THEN 0
                                   ELSE leads.follow_ups_sent + x.follow_up_inc END,
            follow_ups_total = leads.follow_ups_total + x.follow_up_inc,
            reopens = leads.reopens + x.reopen_inc,
            transient_failures = COALESCE(x.transient_failures, leads.transient_failures),
            next_eligible_at = COALESCE(x.next_eligible_at, leads.next_eligible_at),
            session_id = COALESCE(x.session_id, leads.session_id),
            last_error = CASE WHEN x.set_error THEN x.last_error ELSE leads.last_error END,
            lease_owner = CASE WHEN leads.lease_owner = x.lease_token THEN NULL
                               ELSE leads.lease_owner END,
            lease_expires_at = CASE WHEN leads.lease_owner = x.lease_token THEN NULL
                                    ELSE leads.lease_expires_at END,
            updated_at = $2
         FROM {x}
         WHERE leads.id = x.id",
        x = D::records(
            1,
            "x",
            &[
                Col::Int("id"),
                Col::Text("lease_token"),
                Col::Text("state"),
                Col::Text("pending"),
                Col::Ts("contacted_at"),
                Col::Int("follow_up_inc"),
                Col::Bool("reset_follow_ups"),
                Col::Int("reopen_inc"),
                Col::Int("transient_failures"),
                Col::Ts("next_eligible_at"),
                Col::Text("session_id"),
                Col::Bool("set_error"),
                Col::Text("last_error"),
            ]
        )
    ))
    .bind(&leads)
    .bind(Ts(now))
    .execute(&mut *tx)
    .await?;
    if events != "[]" {
        sqlx::query(stmt!(
            "UPDATE events SET state = x.state, processed_at = $2
             FROM {x} WHERE events.id = x.id",
            x = D::records(1, "x", &[Col::Int("id"), Col::Text("state")])
        ))
        .bind(&events)
        .bind(Ts(now))
        .execute(&mut *tx)
        .await?;
    }
    let mut finished: Vec<i64> = finished.into_iter().collect();
    finished.sort_unstable();
    Ok(finished)
}

/// Records attempts in flight in the open transaction `tx`, under `cap` if any and under
/// each configured sender's rules (`RunnerStore::start_attempts_within`).
async fn start_within_in(
    tx: &mut Conn,
    attempts: &[NewAttempt],
    cap: Option<DailyCap>,
) -> Result<Vec<Recorded>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    if cap.is_none() && !under_senders(attempts) {
        return Ok(insert_attempts(tx, attempts)
            .await?
            .into_iter()
            .map(|id| id.map_or(Recorded::Changed, Recorded::Started))
            .collect());
    }
    // Runners count and add to a job's day one at a time (SQLite: the
    // write lock; PostgreSQL: an advisory lock per job), so N runners
    // together never pass the cap; then each sender's lock, in name order.
    if cap.is_some() {
        take_cap_lock(tx, &attempts[0].job).await?;
    }
    let mut rooms = sender_rooms_in(tx, attempts, attempts[0].started_at).await?;
    let kept = still_claimed(attempts, &claim_states(tx, attempts).await?);
    let mut job_left = match cap {
        None => usize::MAX,
        Some(cap) => {
            let used = count_started_in(tx, &attempts[0].job, cap.since).await?;
            cap_allows(Some(cap), used, attempts.len())
        }
    };
    // What each attempt may do, in order: `None` to insert.
    let mut verdicts: Vec<Option<Recorded>> = Vec::with_capacity(attempts.len());
    let mut chosen: Vec<NewAttempt> = Vec::new();
    for (a, k) in attempts.iter().zip(&kept) {
        if !*k {
            verdicts.push(Some(Recorded::Changed));
            continue;
        }
        if job_left == 0 {
            verdicts.push(Some(Recorded::OverCap));
            continue;
        }
        let opener = opens(a);
        if let Some(room) = a.sender.as_ref().and_then(|s| rooms.get_mut(&s.username)) {
            if room.hold(opener, a.started_at).is_some() {
                verdicts.push(Some(Recorded::SenderHeld));
                continue;
            }
            room.take(opener, a.started_at);
        }
        job_left -= 1;
        verdicts.push(None);
        chosen.push(a.clone());
    }
    let ids = insert_attempts(tx, &chosen).await?;
    let mut ids = ids.into_iter();
    let recorded: Vec<Recorded> = verdicts
        .into_iter()
        .map(|v| {
            v.unwrap_or_else(|| {
                ids.next()
                    .flatten()
                    .map_or(Recorded::Changed, Recorded::Started)
            })
        })
        .collect();
    senders_called_in(tx, attempts, &recorded).await?;
    Ok(recorded)
}

/// Whether an attempt's call opens a conversation (counts against its sender's cap): an
/// opener, or an event sent to a lead claimed `new` (as the record statement's `opens`).
fn opens(a: &NewAttempt) -> bool {
    use crate::store::Action;
    a.action == Action::Opener
        || (a.action == Action::Event && a.claimed == Some(crate::lead::LeadState::New))
}

/// Whether any of `attempts` is made by a configured sender or gives its lead a sender.
fn under_senders(attempts: &[NewAttempt]) -> bool {
    attempts.iter().any(|a| {
        a.sender
            .as_ref()
            .is_some_and(|s| s.rule.is_some() || s.assign)
    })
}

/// Takes the lock of each configured sender of `attempts` (in name order, for one order
/// in every writer) and reads its room at `now`.
async fn sender_rooms_in(
    tx: &mut Conn,
    attempts: &[NewAttempt],
    now: DateTime<Utc>,
) -> Result<std::collections::BTreeMap<String, crate::senders::Room>, StoreError> {
    let rules: std::collections::BTreeMap<String, std::sync::Arc<crate::senders::SenderRule>> =
        attempts
            .iter()
            .filter_map(|a| a.sender.as_ref()?.rule.clone())
            .map(|r| (r.username.clone(), r))
            .collect();
    if rules.is_empty() {
        return Ok(std::collections::BTreeMap::new());
    }
    take_sender_locks(tx, rules.keys()).await?;
    let rules: Vec<_> = rules.into_values().collect();
    let uses = sender_uses_in(tx, &rules, now).await?;
    Ok(crate::senders::rooms(rules, &uses, now))
}

/// Takes the sender locks of `names` (PostgreSQL: advisory locks, taken again at no cost;
/// SQLite: the write transaction is the lock). `names` in order.
async fn take_sender_locks(
    tx: &mut Conn,
    names: impl Iterator<Item = &String>,
) -> Result<(), StoreError> {
    if let Some(lock) = D::cap_lock() {
        for name in names {
            sqlx::query(lock)
                .bind(format!("fluidtalk-runner sender: {name}"))
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// A sender's row of `sender_uses_in`: username, openers today, first opener, last call,
/// follow-up waiting since.
type UseRow = (String, i64, Option<Ts>, Option<Ts>, Option<Ts>);

/// Each sender's openers counted against its cap today, its first opener and last call.
pub(in crate::store) async fn sender_uses_in(
    conn: &mut Conn,
    rules: &[std::sync::Arc<crate::senders::SenderRule>],
    now: DateTime<Utc>,
) -> Result<Vec<crate::senders::SenderUse>, StoreError> {
    let asked: Vec<_> = rules
        .iter()
        .map(|r| serde_json::json!({"username": clean(&r.username), "since": crate::store::values::ts(r.day_start(now))}))
        .collect();
    let found: Vec<UseRow> = sqlx::query_as(stmt!(
        "SELECT x.username,
                (SELECT COUNT(*) FROM attempts a
                 WHERE a.sender = x.username AND a.opens = 1 AND a.sender IS NOT NULL
                   AND a.started_at >= x.since
                   AND a.status IN ('in_flight', 'sent', 'continued', 'unknown')),
                s.first_opener_at, s.last_call_at, s.follow_up_waiting_at
         FROM {x} LEFT JOIN senders s ON s.username = x.username",
        x = D::records(1, "x", &[Col::Text("username"), Col::Ts("since")])
    ))
    .bind(serde_json::Value::Array(asked).to_string())
    .fetch_all(&mut *conn)
    .await?;
    Ok(found
        .into_iter()
        .map(
            |(username, n, first, last, waiting)| crate::senders::SenderUse {
                username,
                openers_today: n.max(0) as u64,
                first_opener_at: first.map(|t| t.0),
                last_call_at: last.map(|t| t.0),
                follow_up_waiting_at: waiting.map(|t| t.0),
            },
        )
        .collect())
}

/// After `attempts` were recorded as `recorded`: each configured sender's first opener and
/// last call, and the sender given to leads that named none.
async fn senders_called_in(
    tx: &mut Conn,
    attempts: &[NewAttempt],
    recorded: &[Recorded],
) -> Result<(), StoreError> {
    let mut called: std::collections::BTreeMap<&str, (Option<DateTime<Utc>>, DateTime<Utc>)> =
        Default::default();
    let mut assigned = Vec::new();
    for (a, r) in attempts.iter().zip(recorded) {
        let (Recorded::Started(_), Some(s)) = (r, &a.sender) else {
            continue;
        };
        if s.rule.is_some() {
            let e = called
                .entry(s.username.as_str())
                .or_insert((None, a.started_at));
            if opens(a) {
                e.0 = Some(e.0.map_or(a.started_at, |t| t.min(a.started_at)));
            }
            e.1 = e.1.max(a.started_at);
        }
        if s.assign {
            assigned.push(serde_json::json!({"id": a.lead_id, "sender": clean(&s.username)}));
        }
    }
    if !called.is_empty() {
        let rows: Vec<_> = called
            .iter()
            .map(|(name, (first, last))| {
                serde_json::json!({
                    "username": clean(name),
                    "first_opener_at": first.map(crate::store::values::ts),
                    "last_call_at": crate::store::values::ts(*last),
                })
            })
            .collect();
        sqlx::query(stmt!(
            "INSERT INTO senders (username, first_opener_at, last_call_at)
             SELECT x.username, x.first_opener_at, x.last_call_at FROM {x} WHERE true
             ON CONFLICT (username) DO UPDATE SET
                first_opener_at = COALESCE(senders.first_opener_at, excluded.first_opener_at),
                last_call_at = CASE WHEN senders.last_call_at IS NULL
                                      OR excluded.last_call_at > senders.last_call_at
                                    THEN excluded.last_call_at ELSE senders.last_call_at END",
            x = D::records(
                1,
                "x",
                &[
                    Col::Text("username"),
                    Col::Ts("first_opener_at"),
                    Col::Ts("last_call_at")
                ]
            )
        ))
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut *tx)
        .await?;
    }
    if !assigned.is_empty() {
        sqlx::query(stmt!(
            "UPDATE leads SET own_username = x.sender
             FROM {x} WHERE leads.id = x.id AND leads.own_username IS NULL",
            x = D::records(1, "x", &[Col::Int("id"), Col::Text("sender")])
        ))
        .bind(serde_json::Value::Array(assigned).to_string())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Takes `job`'s daily cap lock for the rest of the transaction (PostgreSQL: an advisory
/// lock, taken again at no cost; SQLite: the write transaction is the lock).
async fn take_cap_lock(tx: &mut Conn, job: &str) -> Result<(), StoreError> {
    if let Some(lock) = D::cap_lock() {
        sqlx::query(lock)
            .bind(format!("fluidtalk-runner daily cap: {job}"))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// A unique violation of recording `attempts` in flight, as the step the database refused
/// (`StoreError::AlreadySent`); any other outcome as it is.
async fn refused_if_sent<T>(
    pool: &sqlx::Pool<DB>,
    attempts: &[NewAttempt],
    started: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match started {
        Err(StoreError::Db(e)) if is_unique_violation(&e) => {
            let held: Vec<(i64, String, i64)> = sqlx::query_as(stmt!(
                "SELECT a.lead_id, a.action, a.step FROM attempts a
                 JOIN {x} ON a.lead_id = x.lead_id AND a.action = x.action AND a.step = x.step
                 WHERE a.{holds}",
                x = D::records(
                    1,
                    "x",
                    &[Col::Int("lead_id"), Col::Text("action"), Col::Int("step")]
                ),
                holds = HOLDS_STEP
            ))
            .bind(attempts_json(attempts))
            .fetch_all(pool)
            .await?;
            Err(already_sent(attempts, &held))
        }
        other => other,
    }
}
