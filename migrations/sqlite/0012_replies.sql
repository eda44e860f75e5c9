-- Reply rates (src/rates.rs): a reply is credited, in the transaction that records it, to
-- the lead's last job step sent before it. `replied_at` is the credited reply's time; a
-- step is credited once (a second reply to it is not counted again).
ALTER TABLE attempts ADD COLUMN replied_at TEXT;

-- The rates read every kept attempt of these statuses, grouped by job and step: this
-- index holds all the columns they read from attempts, so the table's rows (wide, with
-- error texts) are not read. The WHERE repeats the query's, term by term (SQLite uses a
-- partial index only then).
CREATE INDEX attempts_rates ON attempts (job, action, step, lead_id, status, replied_at)
    WHERE status IN ('sent', 'continued', 'sealed', 'ignored');
