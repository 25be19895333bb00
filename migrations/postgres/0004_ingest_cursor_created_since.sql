-- Ingest cursors (keep in step with migrations/sqlite/0004_ingest_cursor_created_since.sql):
-- while a poll is cut short between pages, the start of its window. A ticket created after it has
-- not been reported as created yet, even if the position has moved past its creation; the next
-- poll resumes the walk and still reports it as `ticket.created`. NULL once a poll walked to the
-- end of the list.
ALTER TABLE ingest_cursors ADD COLUMN created_since_ms BIGINT;
