-- A location's borrowing records, and those still without their reason (the location's home
-- counts them on every view), are found by location, not by reading every record of the
-- program.
CREATE INDEX borrowing_location ON borrowing (location_code, reason);
