-- The suppression list (a global do-not-contact list): a target here is never called.
--
-- The statement that records a call in flight (`insert_attempts` in
-- src/store/sql/helpers.rs) refuses a target found here, by this table's primary key, in
-- the same statement; `suppress add` also blocks the target's lead, and an import creates a
-- suppressed target `blocked`. Rows are kept until `suppress remove` (that is their
-- purpose): retention never prunes them.
CREATE TABLE suppressions (
    target     TEXT NOT NULL PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL
);
