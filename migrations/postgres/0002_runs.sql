-- Job runs (for `status`) and claimed cron ticks (so two runners never run one tick).

CREATE TABLE job_runs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job           TEXT        NOT NULL,
    runner_id     TEXT        NOT NULL,
    scheduled_at  TIMESTAMPTZ,
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    summary       TEXT
);
CREATE INDEX job_runs_by_job ON job_runs (job, id);

CREATE TABLE ticks (
    job           TEXT        NOT NULL,
    scheduled_at  TIMESTAMPTZ NOT NULL,
    runner_id     TEXT        NOT NULL,
    claimed_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job, scheduled_at)
);

CREATE INDEX leads_leased ON leads (lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX attempts_started ON attempts (job, started_at);
