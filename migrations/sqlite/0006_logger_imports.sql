-- Logger export files imported into a unit: the file's own summary (device alarm limits, daily
-- history, alarm episodes) kept beside the readings taken from it. The service's figures are
-- computed from the readings, never copied from here.
CREATE TABLE logger_imports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    unit_id     BIGINT NOT NULL REFERENCES units (id),
    serial      TEXT NOT NULL,
    device      TEXT NOT NULL,
    file_name   TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    summary     TEXT NOT NULL,
    readings    BIGINT NOT NULL,
    first_ts    BIGINT,
    last_ts     BIGINT,
    imported_by TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    UNIQUE (unit_id, sha256)
);
