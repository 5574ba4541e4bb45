-- The evaluator judges each unit on its own (docs/architecture.md, "Alarms that cannot silently
-- stop"): a unit whose evaluation fails is kept here with the error and retried with backoff,
-- while every other unit is judged as usual. A row is removed once the unit is judged again.
CREATE TABLE evaluation_failures (
    unit_id          BIGINT PRIMARY KEY REFERENCES units (id),
    since_ts         BIGINT NOT NULL,          -- earliest reading not judged yet
    error            TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    first_failed_at  BIGINT NOT NULL,
    last_failed_at   BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL
);

-- The registry's published read model: where a storage unit is and who looks after it. Other
-- capabilities join this view rather than the registry's tables, so the tables keep one owner.
CREATE VIEW unit_places AS
SELECT u.id AS unit_id, u.name AS unit_name, u.kind AS unit_kind, u.range_min_c, u.range_max_c,
       u.location_code, l.pin, l.name AS location_name, l.timezone,
       l.primary_name, l.primary_email, l.backup_name, l.backup_email
FROM units u JOIN locations l ON l.code = u.location_code;
