-- Emails about a storage unit as a whole: its monitoring stopped (the evaluator cannot judge
-- it, see evaluation_failures) or resumed. Kept with the unit so its record shows them.
ALTER TABLE outbox ADD COLUMN unit_id BIGINT;
CREATE INDEX outbox_unit ON outbox (unit_id);
