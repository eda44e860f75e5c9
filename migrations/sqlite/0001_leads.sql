-- The lead database. Timestamps are UTC text in one fixed-width format
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ), so text order is time order and indexes work on them.

CREATE TABLE leads (
    id                 INTEGER PRIMARY KEY,
    target             TEXT    NOT NULL UNIQUE,
    own_username       TEXT,
    state              TEXT    NOT NULL DEFAULT 'new' CHECK (state IN
                         ('new','contacted','exhausted','done','ignored','blocked','failed','needs_review')),
    timezone           TEXT,
    profile_image      TEXT,
    tags               TEXT    NOT NULL DEFAULT '[]',      -- a JSON array of strings
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    last_contact_at    TEXT,
    last_reply_at      TEXT,
    next_eligible_at   TEXT    NOT NULL,
    follow_ups_sent    INTEGER NOT NULL DEFAULT 0,   -- since the last reply
    follow_ups_total   INTEGER NOT NULL DEFAULT 0,   -- ever: numbers follow-up steps
    reopens            INTEGER NOT NULL DEFAULT 0,   -- times sent back to new (404): numbers opener steps
    transient_failures INTEGER NOT NULL DEFAULT 0,
    session_id         TEXT,
    last_error         TEXT,
    lease_owner        TEXT,
    lease_expires_at   TEXT
);

-- Due leads are found by state and time, oldest first; only workable states are indexed.
CREATE INDEX leads_due ON leads (state, next_eligible_at, id)
    WHERE state IN ('new', 'contacted');

-- One row per API call.
CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY,
    lead_id      INTEGER NOT NULL REFERENCES leads (id),
    job          TEXT    NOT NULL,
    action       TEXT    NOT NULL CHECK (action IN ('opener','follow_up','event')),
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
    runner_id    TEXT    NOT NULL
);

-- Never send twice: the database itself refuses a second attempt of the same step while
-- one is in flight or has been answered.
CREATE UNIQUE INDEX attempts_once ON attempts (lead_id, action, step)
    WHERE status IN ('in_flight', 'sent', 'continued');
CREATE INDEX attempts_by_lead ON attempts (lead_id, id);

-- The text the persona produced, for the user's platform to deliver.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    lead_id     INTEGER NOT NULL REFERENCES leads (id),
    attempt_id  INTEGER NOT NULL UNIQUE REFERENCES attempts (id),
    target      TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    session_id  TEXT,
    created_at  TEXT    NOT NULL,
    acked_at    TEXT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE acked_at IS NULL;

-- Platform events queued for event-trigger jobs.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    lead_id       INTEGER NOT NULL REFERENCES leads (id),
    event_type    TEXT    NOT NULL,
    context       TEXT,                                      -- a JSON object, or NULL
    state         TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued','sent','dropped','failed')),
    created_at    TEXT    NOT NULL,
    processed_at  TEXT
);
CREATE INDEX events_queued ON events (event_type, id) WHERE state = 'queued';

-- Account pauses (402 out of tokens, 401 bad key) that every runner honours.
CREATE TABLE pauses (
    scope      TEXT    PRIMARY KEY CHECK (scope IN ('new_conversations','follow_ups','all')),
    until      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    strikes    INTEGER NOT NULL DEFAULT 1,
    set_at     TEXT    NOT NULL,
    set_by     TEXT
);
