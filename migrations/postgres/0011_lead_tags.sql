-- Segments by tag: a job's `tags` (a lead must carry all) and `exclude_tags` (none of
-- them) are checked against this index of every lead's tags, one row per (tag, lead).
--
-- The due-lead queries still read leads in their order (`leads_new_due`,
-- `leads_quiet_due`) and ask the primary key here, per lead, whether it carries a tag:
-- a point lookup, never a scan or sort of either table (docs/ARCHITECTURE.md,
-- "Segments"). `leads.tags` (JSONB) stays the lead's own list; the trigger below keeps
-- this table exactly its contents on every insert, update of tags and delete.

CREATE TABLE lead_tags (
    tag     TEXT   NOT NULL,
    lead_id BIGINT NOT NULL,
    PRIMARY KEY (tag, lead_id)
);

-- Existing leads.
INSERT INTO lead_tags (tag, lead_id)
    SELECT DISTINCT t.value, leads.id
    FROM leads, jsonb_array_elements_text(
             CASE WHEN jsonb_typeof(leads.tags) = 'array' THEN leads.tags ELSE '[]'::jsonb END
         ) AS t(value);

-- A lead's old rows are found through the primary key from its old tags (no second
-- index by lead): the table holds exactly those.
CREATE FUNCTION lead_tags_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM lead_tags WHERE lead_id = OLD.id AND tag IN (
            SELECT jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(OLD.tags) = 'array' THEN OLD.tags ELSE '[]'::jsonb END));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO lead_tags (tag, lead_id)
            SELECT DISTINCT t.value, NEW.id FROM jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(NEW.tags) = 'array' THEN NEW.tags ELSE '[]'::jsonb END
            ) AS t(value)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER lead_tags_insert AFTER INSERT ON leads
    FOR EACH ROW EXECUTE FUNCTION lead_tags_sync();
CREATE TRIGGER lead_tags_update AFTER UPDATE OF tags ON leads
    FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags) EXECUTE FUNCTION lead_tags_sync();
CREATE TRIGGER lead_tags_delete AFTER DELETE ON leads
    FOR EACH ROW EXECUTE FUNCTION lead_tags_sync();
