-- The reviewer's sign-off of a unit's daily min/max record (what staff check each workday).
CREATE TABLE daily_signoffs (
    unit_id     BIGINT NOT NULL REFERENCES units (id),
    day         TEXT NOT NULL,              -- YYYY-MM-DD in the location's time zone
    signed_by   TEXT NOT NULL,
    signed_at   BIGINT NOT NULL,
    note        TEXT,
    source      TEXT NOT NULL,              -- api | import (a logger's own "Checked" stamp)
    PRIMARY KEY (unit_id, day)
);
