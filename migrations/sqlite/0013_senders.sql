-- Sender accounts (issue 23): each call records the own_username it was made with, and
-- each configured sender keeps the two moments its rules need across runners and
-- restarts: its first opener (the warm-up's day 0, kept after old attempts are pruned)
-- and its last call (min_gap); and when a follow-up last waited for its gap (openers then
-- leave the sender's next call to it).

ALTER TABLE attempts ADD COLUMN sender TEXT;

-- Whether the call opened a conversation: an opener, or an event sent to a lead still
-- `new` (the API opens a conversation for it, a token). A sender's daily cap counts them.
ALTER TABLE attempts ADD COLUMN opens INTEGER NOT NULL DEFAULT 0;
UPDATE attempts SET opens = 1 WHERE action = 'opener';

-- Attempts made before this migration: the sender their lead names (a lead keeps its
-- sender), so the reply rates per sender read attempts alone.
UPDATE attempts SET sender = (SELECT own_username FROM leads WHERE leads.id = attempts.lead_id)
WHERE sender IS NULL;

-- The reply rates' covering index (0012) with the sender instead of the lead: the rates
-- no longer join each attempt to its lead.
DROP INDEX attempts_rates;
CREATE INDEX attempts_rates ON attempts (job, action, step, sender, status, replied_at)
    WHERE status IN ('sent', 'continued', 'sealed', 'ignored');

-- A sender's new conversations of today, counted against its cap under its lock.
CREATE INDEX attempts_sender_openers ON attempts (sender, started_at)
    WHERE opens = 1 AND sender IS NOT NULL;

CREATE TABLE senders (
    username        TEXT PRIMARY KEY,
    first_opener_at TEXT,
    last_call_at    TEXT,
    follow_up_waiting_at TEXT
);

-- Retention: a sender idle for `[retention] attempts` is forgotten (its ramp starts again
-- at its next opener), by its last call. Every row has one (written with the first call).
CREATE INDEX senders_idle ON senders (last_call_at);
