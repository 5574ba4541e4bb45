-- A unit that stores vaccine with no primary logger raises "no data" like a silent logger
-- (docs/domain.md, "Data loggers"). Such an episode is the unit's, not a logger's: serial ''
-- (no logger), one open per unit and kind. A logger's episodes keep one open per serial and kind.
DROP INDEX device_alerts_one_open;
CREATE UNIQUE INDEX device_alerts_one_open ON device_alerts (serial, kind) WHERE ended_at IS NULL AND serial <> '';
CREATE UNIQUE INDEX device_alerts_one_open_unit ON device_alerts (unit_id, kind) WHERE ended_at IS NULL AND serial = '';
