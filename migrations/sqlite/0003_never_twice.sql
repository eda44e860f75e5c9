-- Never send twice, whatever happens to the lead meanwhile (issue 9).
--
-- A step stays taken by every attempt that may have reached the API and been acted on:
-- in flight, answered (sent, continued, ignored, sealed), failed for good, or with an
-- outcome nobody knows. It is freed only by answers that say the API did not act (402,
-- 401, 429, 404 on a follow-up, a 5xx other than 502/504, a refused connection), by giving
-- the attempt back before its call, or by a deliberate release: a person's `leads retry`,
-- or a job's `on_unknown = "retry"`, recorded in released_at / released_by.

ALTER TABLE attempts ADD COLUMN released_at TEXT;
ALTER TABLE attempts ADD COLUMN released_by TEXT;

-- The effect of an answer that arrived while its lead was blocked (a lead event's name),
-- applied when the lead is unblocked.
ALTER TABLE leads ADD COLUMN pending_event TEXT;

DROP INDEX attempts_once;

-- Attempts the old, narrower index let through twice: the older of each pair counts as
-- released by this migration, so the new index can be built and nothing is lost.
UPDATE attempts SET released_at = COALESCE(finished_at, started_at), released_by = 'migration 0003'
WHERE status IN ('in_flight', 'sent', 'continued', 'ignored', 'sealed', 'failed', 'unknown')
  AND EXISTS (SELECT 1 FROM attempts later
              WHERE later.lead_id = attempts.lead_id AND later.action = attempts.action
                AND later.step = attempts.step AND later.id > attempts.id
                AND later.status IN ('in_flight', 'sent', 'continued', 'ignored', 'sealed', 'failed', 'unknown'));

CREATE UNIQUE INDEX attempts_once ON attempts (lead_id, action, step)
    WHERE status IN ('in_flight', 'sent', 'continued', 'ignored', 'sealed', 'failed', 'unknown')
      AND released_at IS NULL;
