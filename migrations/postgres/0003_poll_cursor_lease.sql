-- Ingest cursors (keep in step with migrations/sqlite/0003_poll_cursor_lease.sql).
--
-- 0001's `poll_cursors` (one opaque text per connection, never written by a release) becomes
-- `ingest_cursors`: one row per walk over a helpdesk's `updated_at` order, either a connection's
-- poller (`poll/<connection>`) or one backfill (`backfill/<connection>/<since>/<until>/<kind>`).
-- A row holds where the walk stands, the changes it already handled at that point, and the lease
-- of the one replica allowed to move it (times from the database clock, epoch ms).
DROP TABLE poll_cursors;

CREATE TABLE ingest_cursors (
    name          TEXT    PRIMARY KEY,
    connection_id TEXT    NOT NULL,
    position_ms   BIGINT,                  -- newest `updated_at` handled (helpdesk clock); NULL = not started
    seen          TEXT    NOT NULL DEFAULT '[]',  -- JSON [[ticket_id, updated_ms], ...] handled near the position
    tickets_seen  BIGINT  NOT NULL DEFAULT 0,     -- tickets looked at, over the walk's life
    published     BIGINT  NOT NULL DEFAULT 0,     -- events confirmed by the bus, over the walk's life
    lease_holder  TEXT,
    lease_ms      BIGINT  NOT NULL DEFAULT 0,
    lease_until   BIGINT,                  -- NULL = released
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    finished_at   BIGINT                   -- a backfill that reached its end
);
CREATE INDEX ingest_cursors_connection ON ingest_cursors (connection_id);
