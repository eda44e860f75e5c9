-- Webhook delivery of the outbox (issue 12, part 3).
--
-- A message is delivered once `acked_at` is set, whether by a webhook answering 2xx or by
-- a pull consumer's `outbox ack`; `delivered_by` says which. A daemon claims a message
-- like a lead (`lease_owner` + `lease_expires_at`), tries to POST it, and records the
-- result only under its lease: delivered, or failed with its next try, or parked once
-- `[delivery] max_age` has passed since `first_try_at`. A parked message waits for
-- `outbox redeliver`, and holds back the later messages of its lead (order per target).

ALTER TABLE outbox ADD COLUMN delivered_by     TEXT CHECK (delivered_by IN ('webhook', 'ack'));
ALTER TABLE outbox ADD COLUMN delivery_tries   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN first_try_at     TEXT;   -- NULL: never tried (max_age counts from here)
ALTER TABLE outbox ADD COLUMN next_try_at      TEXT;   -- NULL: due now
ALTER TABLE outbox ADD COLUMN last_error       TEXT;
ALTER TABLE outbox ADD COLUMN parked_at        TEXT;
ALTER TABLE outbox ADD COLUMN lease_owner      TEXT;
ALTER TABLE outbox ADD COLUMN lease_expires_at TEXT;

-- Rows delivered before this migration were all acked by hand.
UPDATE outbox SET delivered_by = 'ack' WHERE acked_at IS NOT NULL;

-- A lead's undelivered messages in id order: a message goes out only when none before it
-- for its lead is still undelivered.
CREATE INDEX outbox_pending_by_lead ON outbox (lead_id, id) WHERE acked_at IS NULL;
