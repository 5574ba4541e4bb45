-- When a dose report was made (HL7 MSH-7; the JSON route's "reported_at", else when it
-- arrived), so that reports of one dose arriving out of order end where the latest says
-- (docs/domain.md, "Doses administered over HL7"): a report older than the one on record
-- changes nothing, and a delete of a dose not yet on record is kept (status 'deleted') so the
-- add it deleted, arriving later, changes nothing either. Null: recorded before this column.
ALTER TABLE administrations ADD COLUMN reported_at BIGINT;
