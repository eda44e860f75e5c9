-- Job pauses (issue 24): a person stops one job (`job pause NAME`, the dashboard,
-- `POST /v1/jobs/{name}/pause`) without stopping the daemon or editing the campaign file.
-- One row per paused job; every runner reads it at each claim. `until` NULL: until resumed.
-- A row goes when the job is resumed, or (retention) once its end has passed.
CREATE TABLE job_pauses (
    job       TEXT PRIMARY KEY,
    paused_at TEXT NOT NULL,
    until     TEXT,
    reason    TEXT
);

-- Retention: ended pauses, oldest end first.
CREATE INDEX job_pauses_until ON job_pauses (until);
