-- no-transaction
-- The runner as an HTTP service (issue 12).
--
-- 1. An attempt may be an `inbound` call: a lead wrote to the persona and the HTTP relay
--    asked for its answer. SQLite cannot change a CHECK constraint in place, so the table
--    is rebuilt (sqlite.org/lang_altertable.html, "other kinds of table schema changes"):
--    foreign keys are off for the copy (outbox rows point at attempts by id, which the
--    copy keeps), and the indexes are made again. Inbound calls answer a message each;
--    the never-send-twice index covers the campaign's steps, not them (a retried HTTP
--    request is kept from calling twice by its Idempotency-Key instead).
-- 2. Idempotency keys of HTTP requests, with the first request's answer.
--
-- Without a transaction around it, sqlx records the migration only after the script: a
-- process killed in between, or a second process that migrated the same file at the same
-- time, runs it again. So it can run again: the copy is redone from the current table.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

DROP TABLE IF EXISTS attempts_new;
CREATE TABLE attempts_new (
    id           INTEGER PRIMARY KEY,
    lead_id      INTEGER NOT NULL REFERENCES leads (id),
    job          TEXT    NOT NULL,
    action       TEXT    NOT NULL CHECK (action IN ('opener','follow_up','event','inbound')),
    step         INTEGER NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('in_flight','sent','continued',
                 'ignored','sealed','no_conversation','out_of_tokens','unauthorized','rate_limited',
                 'transient_error','failed','unknown','cancelled')),
    http_status  INTEGER,
    error_kind   TEXT,
    error_detail TEXT,
    session_id   TEXT,
    started_at   TEXT    NOT NULL,
    finished_at  TEXT,
    runner_id    TEXT    NOT NULL,
    released_at  TEXT,
    released_by  TEXT
);
INSERT INTO attempts_new (id, lead_id, job, action, step, status, http_status, error_kind,
                          error_detail, session_id, started_at, finished_at, runner_id,
                          released_at, released_by)
SELECT id, lead_id, job, action, step, status, http_status, error_kind, error_detail,
       session_id, started_at, finished_at, runner_id, released_at, released_by
FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_new RENAME TO attempts;

CREATE UNIQUE INDEX attempts_once ON attempts (lead_id, action, step)
    WHERE status IN ('in_flight', 'sent', 'continued', 'ignored', 'sealed', 'failed', 'unknown')
      AND released_at IS NULL AND action <> 'inbound';
CREATE INDEX attempts_by_lead ON attempts (lead_id, id);
CREATE INDEX attempts_started ON attempts (job, started_at);
CREATE INDEX attempts_in_flight ON attempts (lead_id) WHERE status = 'in_flight';

CREATE TABLE IF NOT EXISTS idempotency (
    scope        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    -- SHA-256 of the request body: the same key with another body is refused.
    request_hash TEXT    NOT NULL,
    -- NULL while the first request is still being answered.
    status       INTEGER,
    response     TEXT,
    created_at   TEXT    NOT NULL,
    finished_at  TEXT,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency (created_at);

COMMIT;
PRAGMA foreign_keys = ON;
