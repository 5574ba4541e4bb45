-- Logger conditions escalate like excursions until someone acknowledges them.
ALTER TABLE device_alerts ADD COLUMN acknowledged_at BIGINT;
ALTER TABLE device_alerts ADD COLUMN acknowledged_by TEXT;
ALTER TABLE device_alerts ADD COLUMN escalation_level BIGINT NOT NULL DEFAULT 0;
ALTER TABLE device_alerts ADD COLUMN last_notified_at BIGINT;
