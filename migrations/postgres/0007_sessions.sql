-- Dashboard sessions held in the database (issue 20), so a logout ends a session for every
-- daemon on the database, not only in the browser that logged out. A row is the SHA-256
-- of the cookie's secret (the database never holds a usable cookie) and its end; a session
-- is alive while its row is. Rows past their end are deleted at each login, and at most
-- the newest thousand are kept.
CREATE TABLE dashboard_sessions (
    id         TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX dashboard_sessions_created ON dashboard_sessions (created_at);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
