-- Retention (issue 19): old rows are pruned in small statements, each reading an index on
-- the row's age, so a prune costs the rows it removes, not the table's size.
--
-- The SQL each prune runs is in `src/store/sql/retention.rs`; what may be pruned is in
-- docs/ARCHITECTURE.md ("Retention"). A partial index is used by SQLite only when the
-- query's WHERE repeats the index's, term by term: the prune statements do.

CREATE INDEX ticks_age ON ticks (claimed_at);
CREATE INDEX job_runs_age ON job_runs (started_at);
CREATE INDEX outbox_acked_age ON outbox (acked_at) WHERE acked_at IS NOT NULL;
CREATE INDEX events_done_age ON events (processed_at) WHERE state IN ('sent', 'dropped');
-- Attempts: only those a prune may find are indexed by age, so that no prune reads the
-- attempts kept for good (each contacted lead's opener) again each hour.
CREATE INDEX attempts_steps_age ON attempts (started_at) WHERE action <> 'opener';
CREATE INDEX attempts_free_openers_age ON attempts (started_at)
    WHERE action = 'opener' AND released_at IS NULL
      AND status NOT IN ('in_flight', 'sent', 'continued', 'ignored', 'sealed', 'failed', 'unknown');
CREATE INDEX leads_reopened ON leads (id) WHERE reopens > 0;

-- One row per clock hour (UTC) in which a daemon pruned: claimed like a cron tick, so of
-- several daemons on one database exactly one prunes in a given hour. Pruned itself with
-- the runs (`[retention] runs`).
CREATE TABLE prunes (
    hour        TEXT NOT NULL PRIMARY KEY,
    runner_id   TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    finished_at TEXT,
    removed     TEXT                                   -- JSON: rows removed per table
);
