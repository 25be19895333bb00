-- The ticket's triage fields (priority, category, assignee, tags, status) as triage read them,
-- recorded with the decision: acting compares the ticket re-read just before writing with this,
-- and a field that changed since belongs to the person who changed it. JSON, NULL on rows
-- decided before this column existed.
ALTER TABLE ledger ADD COLUMN ticket_before TEXT;
