-- The logger's own conditions (no data, battery low, probe disconnected, calibration expiring
-- or expired): one row per episode, one email when it opens.
CREATE TABLE device_alerts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    serial      TEXT NOT NULL,
    unit_id     BIGINT NOT NULL REFERENCES units (id),
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT
);
CREATE UNIQUE INDEX device_alerts_one_open ON device_alerts (serial, kind) WHERE ended_at IS NULL;
CREATE INDEX device_alerts_unit ON device_alerts (unit_id, started_at);
ALTER TABLE outbox ADD COLUMN device_alert_id BIGINT;
