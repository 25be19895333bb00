-- deskpilot store, SQLite flavour (keep in step with migrations/postgres/0001_store.sql).
-- Timestamps are epoch milliseconds (INTEGER), JSON is TEXT: the sqlx Any driver carries only
-- integers, floats, text and blobs. Flags are INTEGER 0/1 (Any cannot decode SQLite BOOLEAN).

-- Idempotency ledger: one row per (connection, ticket, event kind), the steps done so far and
-- the lease of the worker currently on it.
CREATE TABLE ledger (
    connection_id     TEXT    NOT NULL,
    ticket_id         TEXT    NOT NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('ticket.created', 'ticket.updated')),
    event_id          TEXT    NOT NULL,   -- the event that first claimed the key
    step              TEXT    NOT NULL DEFAULT 'claimed'
                      CHECK (step IN ('claimed', 'decided', 'ticket_updated', 'note_posted', 'done')),
    failed            INTEGER NOT NULL DEFAULT 0 CHECK (failed IN (0, 1)),  -- permanent failure
    claimed_by        TEXT,
    lease_ms          INTEGER NOT NULL DEFAULT 0,
    lease_until       INTEGER,            -- NULL = released
    attempts          INTEGER NOT NULL DEFAULT 0,  -- failures recorded
    last_error        TEXT,
    decision          TEXT,               -- Decision JSON
    report            TEXT,               -- triage Report JSON
    origin            TEXT CHECK (origin IN ('llm', 'rules')),
    prompt_version    TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cost_usd          REAL,
    latency_ms        INTEGER,
    decided_at        INTEGER,
    note_id           TEXT,
    outcome           TEXT,               -- "applied", "shadowed: ...", "skipped: ..."
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    PRIMARY KEY (connection_id, ticket_id, kind)
);

-- Shadow proposals, once per (connection, ticket, event), and their review.
CREATE TABLE proposals (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id   TEXT    NOT NULL,
    ticket_id       TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    decision        TEXT    NOT NULL,     -- Decision JSON
    report          TEXT    NOT NULL,     -- triage Report JSON
    mode            TEXT    NOT NULL,
    why_shadowed    TEXT    NOT NULL,
    ticket_subject  TEXT,
    ticket_url      TEXT,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'approved', 'rejected', 'applied')),
    reviewed_by     TEXT,
    review_reason   TEXT,
    reviewed_at     INTEGER,
    applied_note_id TEXT,
    applied_at      INTEGER,
    created_at      INTEGER NOT NULL,
    UNIQUE (connection_id, ticket_id, event_id)
);
CREATE INDEX proposals_status_id ON proposals (status, id);
CREATE INDEX proposals_connection_status_id ON proposals (connection_id, status, id);

-- The poller's `updated_gte` cursor per connection.
CREATE TABLE poll_cursors (
    connection_id TEXT    PRIMARY KEY,
    cursor        TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL
);
