-- Review: a proposal can be superseded (a person triaged the ticket first), keeps the ticket's
-- triage fields as triage read them (to tell what a person changed since), the category and
-- confidence of its decision as columns (to filter the review list), and the decision a reviewer
-- approved when they edited it. Every review action is kept with who and when.
--
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt.
CREATE TABLE proposals_v5 (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id     TEXT    NOT NULL,
    ticket_id         TEXT    NOT NULL,
    event_id          TEXT    NOT NULL,
    decision          TEXT    NOT NULL,     -- Decision JSON
    report            TEXT    NOT NULL,     -- triage Report JSON
    mode              TEXT    NOT NULL,
    why_shadowed      TEXT    NOT NULL,
    ticket_subject    TEXT,
    ticket_url        TEXT,
    status            TEXT    NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'approved', 'rejected', 'applied', 'superseded')),
    reviewed_by       TEXT,
    review_reason     TEXT,
    reviewed_at       INTEGER,
    applied_note_id   TEXT,
    applied_at        INTEGER,
    created_at        INTEGER NOT NULL,
    category_id       TEXT,
    confidence        REAL,
    ticket_before     TEXT,                 -- TriageFields JSON
    approved_decision TEXT,                 -- Decision JSON as a reviewer edited it
    UNIQUE (connection_id, ticket_id, event_id)
);
INSERT INTO proposals_v5 (id, connection_id, ticket_id, event_id, decision, report, mode, why_shadowed,
    ticket_subject, ticket_url, status, reviewed_by, review_reason, reviewed_at, applied_note_id,
    applied_at, created_at, category_id, confidence)
SELECT id, connection_id, ticket_id, event_id, decision, report, mode, why_shadowed, ticket_subject,
    ticket_url, status, reviewed_by, review_reason, reviewed_at, applied_note_id, applied_at, created_at,
    json_extract(decision, '$.category_id'), json_extract(decision, '$.confidence')
FROM proposals;
DROP TABLE proposals;
ALTER TABLE proposals_v5 RENAME TO proposals;
CREATE INDEX proposals_status_id ON proposals (status, id);
CREATE INDEX proposals_connection_status_id ON proposals (connection_id, status, id);

CREATE TABLE review_actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    proposal_id INTEGER NOT NULL,
    action      TEXT    NOT NULL,   -- approved, rejected, superseded, applied, apply_failed
    actor       TEXT    NOT NULL,
    reason      TEXT,
    detail      TEXT,               -- JSON: the edits of an approval, what applying did
    at          INTEGER NOT NULL
);
CREATE INDEX review_actions_proposal_id ON review_actions (proposal_id, id);
