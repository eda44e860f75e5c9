//! The statements on the runner's hot path (and delivery's claim), each with its
//! parameters, in one place: the store runs them, and `hot_query_plans` reads the plan of
//! the very same text with the
//! same kind of parameters (`tests/it/query_plans.rs` fails on a full scan or a sort of the
//! table). Mounted by each backend (`sqlite.rs`, `postgres.rs`) over its own types.

use super::{Conn, D, DB};
use crate::store::StoreError;
use crate::store::dialect::Dialect;
use crate::store::rows::{ATTEMPT_COLUMNS, LEAD_COLUMNS};
use crate::store::types::{QueryPlan, Segment};
use crate::store::values::{Ids, Ts, ts};

use crate::store::values::Arg;

/// A hot statement and its parameters, ready to run or to explain.
pub(super) struct Hot {
    pub(super) name: &'static str,
    pub(super) sql: &'static str,
    pub(super) args: Vec<Arg>,
}

pub(super) type HotQuery<'q> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>;

impl Hot {
    pub(super) fn query<'q>(self) -> HotQuery<'q> {
        bind_all(sqlx::query(self.sql), self.args)
    }

    /// The statement's rows as `T`.
    pub(super) async fn fetch<T>(self, pool: &sqlx::Pool<DB>) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, <DB as sqlx::Database>::Row> + Send + Unpin,
    {
        Ok(self
            .query()
            .try_map(|r| T::from_row(&r))
            .fetch_all(pool)
            .await?)
    }

    /// The statement's one number (a count).
    pub(super) async fn count(self, conn: &mut Conn) -> Result<i64, StoreError> {
        use sqlx::Row;
        Ok(self
            .query()
            .fetch_one(&mut *conn)
            .await?
            .try_get::<i64, _>(0)?)
    }

    /// How many rows the statement returns, counted by the database (no row is
    /// sent or decoded).
    pub(super) async fn count_rows(self, pool: &sqlx::Pool<DB>) -> Result<i64, StoreError> {
        use sqlx::Row;
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM ({}) AS counted", self.sql));
        let row = bind_all(sqlx::query(sql), self.args)
            .fetch_one(pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// The plan the database would use, one line per step.
    pub(super) async fn plan(self, pool: &sqlx::Pool<DB>) -> Result<QueryPlan, StoreError> {
        use sqlx::Row;
        let sql = sqlx::AssertSqlSafe(format!("{} {}", D::EXPLAIN, self.sql));
        let rows = bind_all(sqlx::query(sql), self.args)
            .persistent(false)
            .fetch_all(pool)
            .await?;
        let lines = rows
            .iter()
            .map(|r| r.try_get::<String, _>(D::PLAN_COLUMN))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(QueryPlan {
            name: self.name.to_string(),
            lines,
        })
    }
}

pub(super) fn bind_all<'q>(mut q: HotQuery<'q>, args: Vec<Arg>) -> HotQuery<'q> {
    for a in args {
        q = match a {
            Arg::Ts(t) => q.bind(t),
            Arg::Int(n) => q.bind(n),
            Arg::Text(s) => q.bind(s),
            Arg::MaybeText(s) => q.bind(s),
            Arg::Ids(ids) => q.bind(ids),
        };
    }
    q
}

pub(super) type When = chrono::DateTime<chrono::Utc>;

/// SQL: a contacted lead that had its last follow-up (`$1`), quiet since before `$2`
/// and not leased at `$3`: it is exhausted.
pub(super) fn exhaustible() -> String {
    format!(
        "state = 'contacted' AND follow_ups_sent >= $1 AND {quiet} <= $2
         AND (lease_owner IS NULL OR lease_expires_at <= $3)",
        quiet = D::QUIET_SINCE
    )
}

/// A page of leads in `key` order after the cursor (`$2`, `$3`), up to `upper`.
/// PostgreSQL seeks the row value `(key, id) > ($2, $3)` in the index. SQLite seeks
/// it on `key` alone, so where many leads share a key each page reads again every
/// lead of that key before the cursor; with `ties` (an import stamps one
/// eligibility time on all its leads) it is two index ranges merged in order
/// there, `key = $2 AND id > $3` then `key > $2 AND key <= upper`. (Without: when a
/// lead went quiet is its answer's time, which leads seldom share, and SQLite
/// cannot merge ranges of an expression index without sorting.)
pub(super) fn keyset_page(key: &str, upper: &str, filter: &str, ties: bool) -> String {
    if D::ROW_VALUE_SEEK || !ties {
        return format!(
            "SELECT {LEAD_COLUMNS}, {key} AS since FROM leads
             WHERE {filter} AND {key} <= {upper} AND ({key}, id) > ($2, $3)
             ORDER BY since, id LIMIT $4"
        );
    }
    format!(
        "SELECT {LEAD_COLUMNS}, {key} AS since FROM leads
         WHERE {filter} AND {key} = $2 AND id > $3
         UNION ALL
         SELECT {LEAD_COLUMNS}, {key} AS since FROM leads
         WHERE {filter} AND {key} > $2 AND {key} <= {upper}
         ORDER BY since, id LIMIT $4"
    )
}

/// Whether the store reads a page of due leads as one row (`one_row_page`): on SQLite.
pub(super) fn page_is_one_row() -> bool {
    D::NAME == "sqlite"
}

/// The page of `rows` (a `keyset_page`) as the store reads it. On SQLite one row: the
/// page as one JSON array of arrays (`rows::due_page` reads it), because sqlx's SQLite
/// driver runs a statement on a worker thread and hands each row back through a channel
/// (~10 µs a row on a small VM: most of a dry run's time), so the page crosses once. The
/// query inside is the same index range (its plan adds a scan of the page, at most its
/// `LIMIT` rows). PostgreSQL sends rows in one answer as it is: `rows`.
fn one_row_page(rows: &str) -> String {
    if !page_is_one_row() {
        return rows.to_string();
    }
    let columns: Vec<&str> = LEAD_COLUMNS
        .split(',')
        .map(str::trim)
        .map(|c| if c == "tags" { "json(tags)" } else { c })
        .collect();
    format!(
        "SELECT json_group_array(json_array({}, since)) FROM ({rows}) AS page",
        columns.join(", ")
    )
}

/// SQL: the lead (`leads.id`) is in the segment whose tags are the JSON array `$n` and
/// whose excluded tags are `$n+1` (each tag once): it carries as many of the tags as
/// there are, and none of the excluded. Each count is a point lookup per tag in
/// `lead_tags`' primary key (tag, lead), per lead read in the due query's own index
/// order (docs/ARCHITECTURE.md, "Segments"). Counted in a scalar subquery, not
/// `[NOT] EXISTS`: PostgreSQL turns those into a join that hashes the whole of lead_tags
/// and then sorts every due lead for each page. Compared with `>=` and `< 1`, the same
/// as `=` and `= 0` here (a lead has each tag once), because PostgreSQL guesses a third
/// of rows pass an inequality on a subquery but 1 in 200 an equality: with the lower
/// guess a page's `LIMIT` seems never reached, and reading the whole table unordered
/// and sorting it looks cheaper than the index in order.
fn in_segment(n: u8) -> String {
    format!(
        "(SELECT COUNT(*) FROM lead_tags
          WHERE lead_tags.tag {in_want} AND lead_tags.lead_id = leads.id)
           >= (SELECT COUNT(*) FROM {want} AS want)
         AND (SELECT COUNT(*) FROM lead_tags
              WHERE lead_tags.tag {in_unwanted} AND lead_tags.lead_id = leads.id) < 1",
        in_want = D::in_texts(n),
        want = D::texts(n),
        in_unwanted = D::in_texts(n + 1)
    )
}

/// The segment's parameters (`in_segment`): its tags and excluded tags as JSON arrays,
/// each tag once.
fn segment_args(segment: &Segment) -> [Arg; 2] {
    let once = |tags: &[String]| {
        let mut seen: Vec<&String> = Vec::with_capacity(tags.len());
        for t in tags {
            if !seen.contains(&t) {
                seen.push(t);
            }
        }
        serde_json::Value::from(seen.into_iter().cloned().collect::<Vec<_>>()).to_string()
    };
    [
        Arg::Text(once(&segment.tags)),
        Arg::Text(once(&segment.exclude_tags)),
    ]
}

/// Which leads an opener selects at `now` (`$1`), after the cursor (`$2`, `$3`), up to
/// `$4`, oldest eligible first; with `segmented`, only those in the segment `$5`, `$6`.
fn due_openers_rows(segmented: bool) -> String {
    let segment = if segmented {
        format!("AND {}", in_segment(5))
    } else {
        String::new()
    };
    keyset_page(
        "next_eligible_at",
        "$1",
        &format!(
            "state = 'new' AND next_eligible_at <= $1
             AND NOT EXISTS (SELECT 1 FROM events WHERE events.lead_id = leads.id AND events.state = 'queued')
             AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = leads.id AND attempts.status = 'in_flight')
             AND (lease_owner IS NULL OR lease_expires_at <= $1)
             {segment}"
        ),
        true,
    )
}

fn due_openers_args(now: When, after: (When, i64), limit: u32, segment: &Segment) -> Vec<Arg> {
    let mut args = vec![
        Arg::Ts(Ts(now)),
        Arg::Ts(Ts(after.0)),
        Arg::Int(after.1),
        Arg::Int(i64::from(limit)),
    ];
    if !segment.is_everyone() {
        args.extend(segment_args(segment));
    }
    args
}

/// New leads of `segment` due at `now`, after the cursor `after`, oldest eligible first,
/// as a page (`one_row_page`). No cursor is the beginning of time. A job for every lead
/// runs the statement without the segment's lookups.
pub(super) fn hot_due_openers_page(
    now: When,
    after: (When, i64),
    limit: u32,
    segment: &Segment,
) -> Hot {
    if segment.is_everyone() {
        return Hot {
            name: "due openers",
            sql: stmt!("{}", one_row_page(&due_openers_rows(false))),
            args: due_openers_args(now, after, limit, segment),
        };
    }
    Hot {
        name: "due openers in a segment",
        sql: stmt!("{}", one_row_page(&due_openers_rows(true))),
        args: due_openers_args(now, after, limit, segment),
    }
}

/// `hot_due_openers_page` a row a lead (what `count_due` counts).
pub(super) fn hot_due_openers(now: When, after: (When, i64), limit: u32, segment: &Segment) -> Hot {
    if segment.is_everyone() {
        return Hot {
            name: "due openers, a row each",
            sql: stmt!("{}", due_openers_rows(false)),
            args: due_openers_args(now, after, limit, segment),
        };
    }
    Hot {
        name: "due openers in a segment, a row each",
        sql: stmt!("{}", due_openers_rows(true)),
        args: due_openers_args(now, after, limit, segment),
    }
}

/// Which contacted leads are due a follow-up at `now` (`$1`), after the cursor (`$2`,
/// `$3`), up to `$4`; `$5` follow-ups at most, `$6` the cutoffs, `$7` the latest; with
/// `segmented`, only those in the segment `$8`, `$9`.
fn due_follow_ups_rows(segmented: bool) -> String {
    let segment = if segmented {
        format!("AND {}", in_segment(8))
    } else {
        String::new()
    };
    keyset_page(
        D::QUIET_SINCE,
        "$7",
        &format!(
            "state = 'contacted' AND follow_ups_sent < $5 AND next_eligible_at <= $1
             AND COALESCE(last_contact_at, last_reply_at) IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = leads.id AND attempts.status = 'in_flight')
             AND (lease_owner IS NULL OR lease_expires_at <= $1)
             AND {quiet} <= {cutoff}
             {segment}",
            quiet = D::QUIET_SINCE,
            cutoff = D::ts_at(6, "follow_ups_sent")
        ),
        false,
    )
}

/// A follow-up job's due leads: how many follow-ups at most, and when each is due.
pub(super) struct FollowUpDue<'a> {
    pub(super) cutoffs: &'a [When],
    pub(super) max: u32,
    pub(super) segment: &'a Segment,
}

fn due_follow_ups_args(
    now: When,
    after: (When, i64),
    limit: u32,
    due: &FollowUpDue<'_>,
) -> Vec<Arg> {
    let latest = due.cutoffs.iter().max().copied().unwrap_or(now);
    let cutoffs: Vec<String> = due.cutoffs.iter().map(|t| ts(*t)).collect();
    let mut args = vec![
        Arg::Ts(Ts(now)),
        Arg::Ts(Ts(after.0)),
        Arg::Int(after.1),
        Arg::Int(i64::from(limit)),
        Arg::Int(i64::from(due.max)),
        Arg::Text(serde_json::Value::from(cutoffs).to_string()),
        Arg::Ts(Ts(latest)),
    ];
    if !due.segment.is_everyone() {
        args.extend(segment_args(due.segment));
    }
    args
}

/// Contacted leads of the segment due a follow-up at `now` (`cutoffs[n]`: quiet since
/// before it for follow-up n + 1), after the cursor, quiet longest first, as a page
/// (`one_row_page`). The latest cutoff bounds the range read from `leads_quiet_due`:
/// the read stops there.
pub(super) fn hot_due_follow_ups_page(
    now: When,
    after: (When, i64),
    limit: u32,
    due: &FollowUpDue<'_>,
) -> Hot {
    let args = due_follow_ups_args(now, after, limit, due);
    if due.segment.is_everyone() {
        return Hot {
            name: "due follow-ups",
            sql: stmt!("{}", one_row_page(&due_follow_ups_rows(false))),
            args,
        };
    }
    Hot {
        name: "due follow-ups in a segment",
        sql: stmt!("{}", one_row_page(&due_follow_ups_rows(true))),
        args,
    }
}

/// `hot_due_follow_ups_page` a row a lead (what `count_due` counts).
pub(super) fn hot_due_follow_ups(
    now: When,
    after: (When, i64),
    limit: u32,
    due: &FollowUpDue<'_>,
) -> Hot {
    let args = due_follow_ups_args(now, after, limit, due);
    if due.segment.is_everyone() {
        return Hot {
            name: "due follow-ups, a row each",
            sql: stmt!("{}", due_follow_ups_rows(false)),
            args,
        };
    }
    Hot {
        name: "due follow-ups in a segment, a row each",
        sql: stmt!("{}", due_follow_ups_rows(true)),
        args,
    }
}

/// The oldest queued event of `event_type` per lead (one call per lead at a time)
/// whose lead is workable at `now`, after event id `after`.
pub(super) fn hot_due_events(event_type: &str, now: When, limit: u32, after: i64) -> Hot {
    Hot {
        name: "due events",
        sql: "SELECT e.id, e.lead_id, l.target, e.event_type, e.context, e.state, e.created_at
             FROM events e JOIN leads l ON l.id = e.lead_id
             WHERE e.state = 'queued' AND e.event_type = $1 AND e.id > $3
               AND e.id = (SELECT MIN(e2.id) FROM events e2
                           WHERE e2.lead_id = e.lead_id AND e2.state = 'queued'
                             AND e2.event_type = e.event_type)
               AND l.state IN ('new', 'contacted', 'exhausted') AND l.next_eligible_at <= $2
               AND (l.lease_owner IS NULL OR l.lease_expires_at <= $2)
               AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.lead_id = l.id AND attempts.status = 'in_flight')
             ORDER BY e.id LIMIT $4",
        args: vec![
            Arg::Text(event_type.to_string()),
            Arg::Ts(Ts(now)),
            Arg::Int(after),
            Arg::Int(i64::from(limit)),
        ],
    }
}

/// Leases the leads `ids` to `runner` until `lease_until`, those still workable and
/// free at `now`. On PostgreSQL rows another runner is claiming right now are
/// skipped, not waited on; on SQLite the statement holds the write lock.
pub(super) fn hot_claim(ids: &[i64], lease_token: &str, now: When, lease_until: When) -> Hot {
    Hot {
        name: "claim leads",
        sql: stmt!(
            "UPDATE leads SET lease_owner = $2, lease_expires_at = $4
             WHERE id IN (SELECT id FROM leads
                          WHERE id {ids} AND state IN ('new', 'contacted', 'exhausted')
                            AND (lease_owner IS NULL OR lease_expires_at <= $3 OR lease_owner = $2){skip})
             RETURNING {LEAD_COLUMNS}",
            ids = D::in_ids(1),
            skip = D::FOR_UPDATE_SKIP_LOCKED
        ),
        args: vec![
            Arg::Ids(Ids(ids.to_vec())),
            Arg::Text(lease_token.to_string()),
            Arg::Ts(Ts(now)),
            Arg::Ts(Ts(lease_until)),
        ],
    }
}

/// Contacted leads that had their last follow-up (`max`), quiet since before
/// `cutoff` and not leased at `now`: counted (`dry`) or marked exhausted.
pub(super) fn hot_exhaust(max: u32, cutoff: When, now: When, dry: bool) -> Hot {
    let (name, sql) = if dry {
        (
            "count exhausted",
            stmt!(
                "SELECT COUNT(*) FROM leads WHERE {due}",
                due = exhaustible()
            ),
        )
    } else {
        (
            "mark exhausted",
            stmt!(
                "UPDATE leads SET state = 'exhausted', updated_at = $3 WHERE {due}",
                due = exhaustible()
            ),
        )
    };
    Hot {
        name,
        sql,
        args: vec![
            Arg::Int(i64::from(max)),
            Arg::Ts(Ts(cutoff)),
            Arg::Ts(Ts(now)),
        ],
    }
}

/// Calls of `job` that count against its daily cap since `since`.
pub(super) fn hot_cap(job: &str, since: When) -> Hot {
    Hot {
        name: "daily cap",
        sql: "SELECT COUNT(*) FROM attempts
              WHERE job = $1 AND started_at >= $2
                AND status IN ('in_flight', 'sent', 'continued', 'unknown')",
        args: vec![Arg::Text(job.to_string()), Arg::Ts(Ts(since))],
    }
}

/// Attempts in flight that nobody holds the lead for at `now`: its lease ran out
/// (the runner died mid-call), or it was given back before a timed-out insert
/// committed. Unordered: the few rows found are sorted by the caller, so no plan
/// sorts by id.
pub(super) fn hot_orphans(now: When) -> Hot {
    Hot {
        name: "orphans",
        sql: stmt!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts
             WHERE status = 'in_flight'
               AND id IN (SELECT a.id FROM attempts a JOIN leads l ON l.id = a.lead_id
                          WHERE a.status = 'in_flight'
                            AND (l.lease_owner IS NULL OR l.lease_expires_at <= $1
                                 OR l.lease_owner <> a.runner_id))"
        ),
        args: vec![Arg::Ts(Ts(now))],
    }
}

/// Leases up to `limit` deliverable outbox messages to `token` until `lease_until`:
/// the first undelivered message of each lead, so one claim holds at most one
/// message per lead and order per target is kept even with several daemons. The
/// pick is a materialized CTE, run once: as an `IN (subquery)` PostgreSQL may run
/// it again per row, and its `LIMIT` then skips the rows this statement already
/// locked and takes more. The lease is checked again on the row being updated: on
/// PostgreSQL a row another daemon leased after this statement began is re-read.
pub(super) fn hot_claim_deliveries(
    limit: u32,
    lease_token: &str,
    now: When,
    lease_until: When,
) -> Hot {
    Hot {
        name: "claim deliveries",
        sql: stmt!(
            "WITH picked AS MATERIALIZED (
                 SELECT o.id FROM outbox o JOIN leads l ON l.id = o.lead_id
                 WHERE o.acked_at IS NULL AND o.parked_at IS NULL
                   AND (o.next_try_at IS NULL OR o.next_try_at <= $3)
                   AND (o.lease_owner IS NULL OR o.lease_expires_at <= $3 OR o.lease_owner = $2)
                   AND l.state <> 'blocked'
                   AND NOT EXISTS (SELECT 1 FROM outbox e
                                   WHERE e.lead_id = o.lead_id AND e.id < o.id
                                     AND e.acked_at IS NULL)
                 ORDER BY o.id LIMIT $1{skip})
             UPDATE outbox SET lease_owner = $2, lease_expires_at = $4,
                    first_try_at = COALESCE(first_try_at, $3)
             WHERE id IN (SELECT id FROM picked)
               AND acked_at IS NULL AND parked_at IS NULL
               AND (lease_owner IS NULL OR lease_expires_at <= $3 OR lease_owner = $2)
             RETURNING id, lead_id, target, action, message, session_id, created_at,
                       delivery_tries, first_try_at,
                       (SELECT own_username FROM leads WHERE leads.id = outbox.lead_id) AS own_username",
            skip = if D::FOR_UPDATE_SKIP_LOCKED.is_empty() {
                ""
            } else {
                " FOR UPDATE OF o SKIP LOCKED"
            }
        ),
        args: vec![
            Arg::Int(i64::from(limit)),
            Arg::Text(lease_token.to_string()),
            Arg::Ts(Ts(now)),
            Arg::Ts(Ts(lease_until)),
        ],
    }
}

/// Every hot statement with parameters like a run's at `now`.
pub(super) fn hot_samples(now: When) -> Vec<Hot> {
    let day = chrono::Duration::days(1);
    let start = (chrono::DateTime::<chrono::Utc>::MIN_UTC, 0);
    let cutoffs = [now - day, now - day * 3, now - day * 7];
    let ids: Vec<i64> = (1..=500).collect();
    let everyone = Segment::default();
    // A segment as a campaign file writes one: a tag asked for, another refused.
    let vip = Segment {
        tags: vec!["vip".into()],
        exclude_tags: vec!["competitor".into()],
    };
    let follow_ups = |segment| FollowUpDue {
        cutoffs: &cutoffs,
        max: 3,
        segment,
    };
    vec![
        hot_due_openers_page(now, start, 500, &everyone),
        hot_due_follow_ups_page(now, start, 500, &follow_ups(&everyone)),
        hot_due_openers(now, start, 500, &everyone),
        hot_due_follow_ups(now, start, 500, &follow_ups(&everyone)),
        hot_due_openers_page(now, start, 500, &vip),
        hot_due_follow_ups_page(now, start, 500, &follow_ups(&vip)),
        hot_due_openers(now, start, 500, &vip),
        hot_due_follow_ups(now, start, 500, &follow_ups(&vip)),
        hot_due_events("story_reaction", now, 500, 0),
        hot_claim(&ids, "host-1-0000000000000000/1", now, now + day),
        hot_exhaust(3, now - day * 7, now, true),
        hot_exhaust(3, now - day * 7, now, false),
        hot_cap("openers", now - day),
        hot_orphans(now),
        hot_claim_deliveries(8, "host-1-0000000000000000/delivery", now, now + day),
        hot_record_in_flight(now),
        hot_lead_page(
            "dashboard leads page",
            &crate::store::LeadSearch {
                prefix: Some("@lead1".into()),
                state: Some(crate::lead::LeadState::Contacted),
                ..Default::default()
            },
            Some("@lead10"),
            51,
        ),
        hot_lead_page(
            "dashboard leads page by tag and job",
            &crate::store::LeadSearch {
                tag: Some("vip".into()),
                job: Some("openers".into()),
                ..Default::default()
            },
            None,
            51,
        ),
    ]
}

/// SQL: the leads `LeadSearch` means, with parameters `$1` (where the walk starts: the
/// prefix, "" for any, or the page's cursor), `$2` (where it ends: the prefix's range end,
/// `LeadSearch::prefix_end("")` for none), `$3` state, `$4` tag, `$5` job (NULL for
/// any). With `after`, the walk starts after `$1` (a page's cursor), else at it. Read along
/// the target in byte order (`leads_target_bytes` on PostgreSQL, the unique index on
/// SQLite), bounded by the range; the tag asks `lead_tags`' key and the job the lead's
/// newest attempt (`attempts_by_lead`), a lead at a time, as the segments do (`>= 1`, not
/// `EXISTS`: see "Segments" in docs/ARCHITECTURE.md).
pub(super) fn lead_search(after: bool) -> String {
    let t = D::bytes("leads.target");
    let from = if after { ">" } else { ">=" };
    format!(
        "{t} {from} $1 AND {t} < $2
         AND (CAST($3 AS TEXT) IS NULL OR leads.state = $3)
         AND (CAST($4 AS TEXT) IS NULL
              OR (SELECT COUNT(*) FROM lead_tags WHERE lead_tags.tag = $4 AND lead_tags.lead_id = leads.id) >= 1)
         AND (CAST($5 AS TEXT) IS NULL
              OR (SELECT a.job FROM attempts a WHERE a.lead_id = leads.id ORDER BY a.id DESC LIMIT 1) = $5)"
    )
}

/// The parameters of `lead_search` (`lead_search(after.is_some())`) and `limit` as `$6`.
/// A cursor before the prefix (not a page of this search) starts from the prefix.
pub(super) fn lead_search_args(
    search: &crate::store::LeadSearch,
    after: Option<&str>,
    limit: i64,
) -> (bool, Vec<Arg>) {
    let prefix = search.prefix.clone().unwrap_or_default();
    let (after, from) = match after {
        Some(a) if a.as_bytes() >= prefix.as_bytes() => (true, a.to_string()),
        _ => (false, prefix.clone()),
    };
    (
        after,
        vec![
            Arg::Text(from),
            Arg::Text(crate::store::LeadSearch::prefix_end(&prefix)),
            Arg::MaybeText(search.state.map(|s| s.as_str().to_string())),
            Arg::MaybeText(search.tag.clone()),
            Arg::MaybeText(search.job.clone()),
            Arg::Int(limit),
        ],
    )
}

/// A page of the dashboard's leads table: up to `limit` leads of `search` after the
/// target `after`, in target (byte) order.
pub(super) fn hot_lead_page(
    name: &'static str,
    search: &crate::store::LeadSearch,
    after: Option<&str>,
    limit: u32,
) -> Hot {
    let (after, args) = lead_search_args(search, after, i64::from(limit));
    let sql = if after {
        stmt!(
            "SELECT {LEAD_COLUMNS} FROM leads WHERE {search} ORDER BY {t} LIMIT $6",
            search = lead_search(true),
            t = D::bytes("leads.target")
        )
    } else {
        stmt!(
            "SELECT {LEAD_COLUMNS} FROM leads WHERE {search} ORDER BY {t} LIMIT $6",
            search = lead_search(false),
            t = D::bytes("leads.target")
        )
    };
    Hot { name, sql, args }
}

/// The record statement (`helpers::insert_attempts`) for one attempt of a claimed lead:
/// its suppression check reads the suppressions' primary key.
fn hot_record_in_flight(now: When) -> Hot {
    use crate::store::types::{Action, NewAttempt};
    let attempt = NewAttempt {
        lead_id: 1,
        job: "openers".into(),
        action: Action::Opener,
        step: 0,
        lease_token: "host-1-0000000000000000/1".into(),
        started_at: now,
        claimed: Some(crate::lead::LeadState::New),
        sender: None,
    };
    Hot {
        name: "record in flight",
        sql: super::helpers::record_in_flight(),
        args: vec![Arg::Text(crate::store::rules::attempts_json(&[attempt]))],
    }
}
