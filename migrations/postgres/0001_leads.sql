-- The lead database. Timestamps are timestamptz (stored in UTC).

CREATE TABLE leads (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target             TEXT        NOT NULL UNIQUE,
    own_username       TEXT,
    state              TEXT        NOT NULL DEFAULT 'new' CHECK (state IN
                         ('new','contacted','exhausted','done','ignored','blocked','failed','needs_review')),
    timezone           TEXT,
    profile_image      TEXT,
    tags               JSONB       NOT NULL DEFAULT '[]',
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    last_contact_at    TIMESTAMPTZ,
    last_reply_at      TIMESTAMPTZ,
    next_eligible_at   TIMESTAMPTZ NOT NULL,
    follow_ups_sent    INTEGER     NOT NULL DEFAULT 0,   -- since the last reply
    follow_ups_total   INTEGER     NOT NULL DEFAULT 0,   -- ever: numbers follow-up steps
    reopens            INTEGER NOT NULL DEFAULT 0,   -- times sent back to new (404): numbers opener steps
    transient_failures INTEGER     NOT NULL DEFAULT 0,
    session_id         TEXT,
    last_error         TEXT,
    lease_owner        TEXT,
    lease_expires_at   TIMESTAMPTZ
);

CREATE INDEX leads_due ON leads (state, next_eligible_at, id)
    WHERE state IN ('new', 'contacted');

CREATE TABLE attempts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id      BIGINT      NOT NULL REFERENCES leads (id),
    job          TEXT        NOT NULL,
    action       TEXT        NOT NULL CHECK (action IN ('opener','follow_up','event')),
    step         BIGINT      NOT NULL,
    status       TEXT        NOT NULL CHECK (status IN ('in_flight','sent','continued',
                 'ignored','sealed','no_conversation','out_of_tokens','unauthorized','rate_limited',
                 'transient_error','failed','unknown','cancelled')),
    http_status  INTEGER,
    error_kind   TEXT,
    error_detail TEXT,
    session_id   TEXT,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    runner_id    TEXT        NOT NULL
);

CREATE UNIQUE INDEX attempts_once ON attempts (lead_id, action, step)
    WHERE status IN ('in_flight', 'sent', 'continued');
CREATE INDEX attempts_by_lead ON attempts (lead_id, id);

CREATE TABLE outbox (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id     BIGINT      NOT NULL REFERENCES leads (id),
    attempt_id  BIGINT      NOT NULL UNIQUE REFERENCES attempts (id),
    target      TEXT        NOT NULL,
    action      TEXT        NOT NULL,
    message     TEXT        NOT NULL,
    session_id  TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    acked_at    TIMESTAMPTZ
);
CREATE INDEX outbox_pending ON outbox (id) WHERE acked_at IS NULL;

CREATE TABLE events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id       BIGINT      NOT NULL REFERENCES leads (id),
    event_type    TEXT        NOT NULL,
    context       TEXT,                                      -- JSON object text, key order kept
    state         TEXT        NOT NULL DEFAULT 'queued' CHECK (state IN ('queued','sent','dropped','failed')),
    created_at    TIMESTAMPTZ NOT NULL,
    processed_at  TIMESTAMPTZ
);
CREATE INDEX events_queued ON events (event_type, id) WHERE state = 'queued';

CREATE TABLE pauses (
    scope      TEXT        PRIMARY KEY CHECK (scope IN ('new_conversations','follow_ups','all')),
    until      TIMESTAMPTZ NOT NULL,
    reason     TEXT        NOT NULL,
    strikes    INTEGER     NOT NULL DEFAULT 1,
    set_at     TIMESTAMPTZ NOT NULL,
    set_by     TEXT
);
