-- The alert email, as a coordinator reads it: the unit's place carries the location's street
-- address (the view gains a column at its end), and an email may carry a chart (a PNG, hex).
DROP VIEW unit_places;
CREATE VIEW unit_places AS
SELECT u.id AS unit_id, u.name AS unit_name, u.kind AS unit_kind, u.range_min_c, u.range_max_c,
       u.location_code, l.pin, l.name AS location_name, l.timezone,
       l.primary_name, l.primary_email, l.backup_name, l.backup_email, l.address
FROM units u JOIN locations l ON l.code = u.location_code;

ALTER TABLE outbox ADD COLUMN chart_png TEXT;
