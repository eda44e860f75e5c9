-- The runner as an HTTP service (issue 12).
--
-- 1. An attempt may be an `inbound` call: a lead wrote to the persona and the HTTP relay
--    asked for its answer. Inbound calls answer a message each; the never-send-twice
--    index covers the campaign's steps, not them (a retried HTTP request is kept from
--    calling twice by its Idempotency-Key instead).
-- 2. Idempotency keys of HTTP requests, with the first request's answer.
ALTER TABLE attempts DROP CONSTRAINT attempts_action_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_action_check
    CHECK (action IN ('opener', 'follow_up', 'event', 'inbound'));

DROP INDEX attempts_once;
CREATE UNIQUE INDEX attempts_once ON attempts (lead_id, action, step)
    WHERE status IN ('in_flight', 'sent', 'continued', 'ignored', 'sealed', 'failed', 'unknown')
      AND released_at IS NULL AND action <> 'inbound';

CREATE TABLE idempotency (
    scope        TEXT        NOT NULL,
    key          TEXT        NOT NULL,
    -- SHA-256 of the request body: the same key with another body is refused.
    request_hash TEXT        NOT NULL,
    -- NULL while the first request is still being answered.
    status       INTEGER,
    response     TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_age ON idempotency (created_at);
