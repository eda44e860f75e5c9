-- Due leads found through indexes whose cost does not grow with the table (issue 11).
--
-- leads_due (state, next_eligible_at, id) served both states from one index; SQLite never
-- used it (a partial index must be implied term by term), and the follow-up query orders
-- by when a lead went quiet, which no index held. One index per state, in the order each
-- query reads, replaces it.

DROP INDEX leads_due;

-- Openers: new leads in eligibility order.
CREATE INDEX leads_new_due ON leads (next_eligible_at, id) WHERE state = 'new';

-- Follow-ups: contacted leads in the order they went quiet (the expression the query
-- orders by, `Dialect::QUIET_SINCE`).
CREATE INDEX leads_quiet_due ON leads (
    GREATEST(last_contact_at, last_reply_at),
    id
) WHERE state = 'contacted';

-- Statistics of that expression (PostgreSQL 14+): without them the planner guesses how
-- many leads went quiet before a cutoff (a third of them), and a guess too low makes it
-- sort every quiet lead for each page instead of reading the index in order.
CREATE STATISTICS leads_quiet_since ON (GREATEST(last_contact_at, last_reply_at)) FROM leads;

-- A lead's queued events (openers wait for them; an event job sends the oldest first).
CREATE INDEX events_queued_by_lead ON events (lead_id, event_type, id) WHERE state = 'queued';

-- A lead's attempts in flight (due leads skip them; recovery finds them).
CREATE INDEX attempts_in_flight ON attempts (lead_id) WHERE status = 'in_flight';
