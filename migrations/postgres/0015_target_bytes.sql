-- The dashboard's leads table pages along `target` and searches it by prefix. A prefix is
-- exactly a range only in byte (code point) order, and that is the order SQLite's text
-- has; PostgreSQL's unique index on target follows the database's collation (in
-- en_US.UTF-8 a range from "@ab" can miss "@ab-c" or take "@a b"). So this index orders
-- targets byte by byte, as the statements compare them (`target COLLATE "C"`): the same
-- order and the same matches on both backends. Targets never change, so it costs one
-- entry per lead inserted.
CREATE INDEX leads_target_bytes ON leads (target COLLATE "C");
