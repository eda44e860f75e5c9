-- Segments by tag: a job's `tags` (a lead must carry all) and `exclude_tags` (none of
-- them) are checked against this index of every lead's tags, one row per (tag, lead).
--
-- The due-lead queries still read leads in their order (`leads_new_due`,
-- `leads_quiet_due`) and ask the primary key here, per lead, whether it carries a tag:
-- a point lookup, never a scan or sort of either table (docs/ARCHITECTURE.md,
-- "Segments"). `leads.tags` stays the lead's own list; the triggers below keep this
-- table exactly its contents on every insert, update of tags and delete, whoever writes.

CREATE TABLE lead_tags (
    tag     TEXT    NOT NULL,
    lead_id INTEGER NOT NULL,
    PRIMARY KEY (tag, lead_id)
) WITHOUT ROWID;

-- Existing leads.
INSERT OR IGNORE INTO lead_tags (tag, lead_id)
    SELECT t.value, leads.id FROM leads, json_each(leads.tags) AS t WHERE t.type = 'text';

-- A lead's old rows are found through the primary key from its old tags (no second
-- index by lead): the table holds exactly those.
CREATE TRIGGER lead_tags_insert AFTER INSERT ON leads BEGIN
    INSERT OR IGNORE INTO lead_tags (tag, lead_id)
        SELECT value, NEW.id FROM json_each(NEW.tags) WHERE type = 'text';
END;

CREATE TRIGGER lead_tags_update AFTER UPDATE OF tags ON leads
WHEN OLD.tags IS NOT NEW.tags BEGIN
    DELETE FROM lead_tags WHERE lead_id = OLD.id
        AND tag IN (SELECT value FROM json_each(OLD.tags) WHERE type = 'text');
    INSERT OR IGNORE INTO lead_tags (tag, lead_id)
        SELECT value, NEW.id FROM json_each(NEW.tags) WHERE type = 'text';
END;

CREATE TRIGGER lead_tags_delete AFTER DELETE ON leads BEGIN
    DELETE FROM lead_tags WHERE lead_id = OLD.id
        AND tag IN (SELECT value FROM json_each(OLD.tags) WHERE type = 'text');
END;
