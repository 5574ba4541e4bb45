-- A serial serves at most one unit at a time: enforced by the database, not only by the
-- checks in the API, so two concurrent assignments cannot both win.
CREATE UNIQUE INDEX logger_assignments_one_open ON logger_assignments (serial) WHERE to_ts IS NULL;
