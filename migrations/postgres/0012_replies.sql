-- Reply rates (src/rates.rs): a reply is credited, in the transaction that records it, to
-- the lead's last job step sent before it. `replied_at` is the credited reply's time; a
-- step is credited once (a second reply to it is not counted again).
ALTER TABLE attempts ADD COLUMN replied_at TIMESTAMPTZ;

-- No index for the rates here, unlike SQLite: on 1,000,000 attempts PostgreSQL reads
-- them with a parallel sequential scan and a hash join to the leads (0.9 s), and chose
-- no covering index over it (docs/BENCHMARKS.md, "Reply rates"). One would only cost
-- every attempt's writes.
