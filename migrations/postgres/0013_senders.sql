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
UPDATE attempts SET sender = leads.own_username FROM leads
WHERE leads.id = attempts.lead_id AND attempts.sender IS NULL AND leads.own_username IS NOT NULL;

-- A sender's new conversations of today, counted against its cap under its lock.
CREATE INDEX attempts_sender_openers ON attempts (sender, started_at)
    WHERE opens = 1 AND sender IS NOT NULL;

CREATE TABLE senders (
    username        TEXT PRIMARY KEY,
    first_opener_at TIMESTAMPTZ,
    last_call_at    TIMESTAMPTZ,
    follow_up_waiting_at TIMESTAMPTZ
);

-- Retention: a sender idle for `[retention] attempts` is forgotten (its ramp starts again
-- at its next opener), by its last call. Every row has one (written with the first call).
CREATE INDEX senders_idle ON senders (last_call_at);
