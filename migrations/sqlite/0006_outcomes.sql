-- Outcomes: what people set on a proposal's ticket after triage (category, priority, tags), kept
-- per proposal and final once the ticket is closed. The agreement report compares them with what
-- deskpilot proposed. A value deskpilot wrote itself is not a person's until the ticket closes
-- with it.
CREATE TABLE outcomes (
    proposal_id   INTEGER PRIMARY KEY,
    connection_id TEXT    NOT NULL,
    ticket_id     TEXT    NOT NULL,
    category_id   TEXT,               -- a person's category, if any
    priority      TEXT,               -- a person's priority (NONE..URGENT), if any
    tags          TEXT    NOT NULL,   -- JSON array: the ticket's tags
    observed_at   INTEGER NOT NULL,
    final_at      INTEGER             -- set when the ticket was seen closed; never changes after
);
CREATE INDEX outcomes_connection ON outcomes (connection_id, proposal_id);
