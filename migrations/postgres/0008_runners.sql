-- What each running daemon holds back, and why (issue 19): one row per runner, written
-- with its heartbeat, so `status` shows a hold that no stored pause explains (a 402 heard
-- by that runner, not stored) or one a person lifted and the runner has not let go of.
-- Bounded: a clean stop deletes its row, and every heartbeat deletes rows not written for
-- a day (`store::RUNNER_ROW_KEPT`).
CREATE TABLE runners (
    runner_id  TEXT        PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL,
    -- JSON: [{"scope", "until", "reason", "stored"}]
    holds      TEXT        NOT NULL
);
