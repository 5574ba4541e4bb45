-- A transfer request to another PIN may name any well-formed location code: it is recorded
-- whether or not that location exists (the sender learns nothing of another PIN), and the state
-- approves or rejects it. So `to_location` no longer references `locations`. SQLite cannot drop
-- a foreign key in place: the table is rebuilt as it was, less that reference (nothing
-- references `transfers`).
CREATE TABLE transfers_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    from_location   TEXT NOT NULL REFERENCES locations (code),
    to_location     TEXT NOT NULL,
    from_unit_id    BIGINT NOT NULL REFERENCES units (id),
    to_unit_id      BIGINT REFERENCES units (id),
    lines           TEXT NOT NULL,              -- JSON [{"lot_id","doses"}]
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL,              -- pending | completed | rejected
    requested_by    TEXT NOT NULL,
    requested_at    BIGINT NOT NULL,
    decided_by      TEXT,
    decided_at      BIGINT,
    decision_note   TEXT
);
INSERT INTO transfers_new (id, from_location, to_location, from_unit_id, to_unit_id, lines, reason, status,
                           requested_by, requested_at, decided_by, decided_at, decision_note)
SELECT id, from_location, to_location, from_unit_id, to_unit_id, lines, reason, status,
       requested_by, requested_at, decided_by, decided_at, decision_note FROM transfers;
DROP TABLE transfers;
ALTER TABLE transfers_new RENAME TO transfers;
CREATE INDEX transfers_from ON transfers (from_location, status);
CREATE INDEX transfers_to ON transfers (to_location, status);
