-- Escalation state of an alerted excursion, and the secret that signs acknowledgement links.
ALTER TABLE excursions ADD COLUMN alerted_at BIGINT;
-- 0: primary coordinator told; 1: backup told; 2: state coordinators told.
ALTER TABLE excursions ADD COLUMN escalation_level BIGINT NOT NULL DEFAULT 0;
ALTER TABLE excursions ADD COLUMN last_notified_at BIGINT;

CREATE TABLE service_secrets (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
