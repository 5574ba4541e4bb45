-- The spine: registry (organisations, locations, units, loggers and who served which unit when),
-- access tokens, and the raw telemetry (readings, dead letters, gateway confirmation marks).
-- Instants are integer epoch milliseconds UTC so that dedupe and ordering never depend on how a
-- time was written; temperatures are degrees Celsius.

CREATE TABLE organisations (
    pin         TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

CREATE TABLE locations (
    code            TEXT PRIMARY KEY,          -- PIN + suffix, e.g. 012345A
    pin             TEXT NOT NULL REFERENCES organisations (pin),
    suffix          TEXT,
    name            TEXT NOT NULL,
    timezone        TEXT NOT NULL,             -- IANA, e.g. America/New_York
    address         TEXT,
    primary_name    TEXT NOT NULL,
    primary_email   TEXT NOT NULL,
    primary_phone   TEXT,
    backup_name     TEXT NOT NULL,
    backup_email    TEXT NOT NULL,
    backup_phone    TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX locations_pin ON locations (pin);

CREATE TABLE units (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    location_code   TEXT NOT NULL REFERENCES locations (code),
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,             -- refrigerator | freezer | ultra_cold | other
    range_min_c     DOUBLE PRECISION NOT NULL,
    range_max_c     DOUBLE PRECISION NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX units_location ON units (location_code);

-- Every serial ever seen or registered. Readings of a serial no unit has are kept.
CREATE TABLE loggers (
    serial                  TEXT PRIMARY KEY,
    make                    TEXT,
    model                   TEXT,
    reading_interval_s      BIGINT,
    calibrated_on           TEXT,             -- YYYY-MM-DD
    calibration_expires_on  TEXT,             -- YYYY-MM-DD
    battery_pct             DOUBLE PRECISION,
    probe_connected         BIGINT,           -- 0/1, null = never reported
    firmware                TEXT,
    gateway                 TEXT,
    spool_depth             BIGINT,
    status_at               BIGINT,
    first_seen_at           BIGINT NOT NULL
);

-- Which logger served which unit, and when: [from_ts, to_ts). A serial has at most one open
-- assignment; a unit at most one open assignment per role.
CREATE TABLE logger_assignments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    unit_id     BIGINT NOT NULL REFERENCES units (id),
    serial      TEXT NOT NULL REFERENCES loggers (serial),
    role        TEXT NOT NULL,                -- primary | backup
    from_ts     BIGINT NOT NULL,
    to_ts       BIGINT,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX logger_assignments_unit ON logger_assignments (unit_id, from_ts);
CREATE INDEX logger_assignments_serial ON logger_assignments (serial, from_ts);

CREATE TABLE api_tokens (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,            -- state-coordinator | clinic
    pin             TEXT,                     -- clinic token for a whole PIN
    location_code   TEXT,                     -- clinic token for one location
    secret_sha256   TEXT NOT NULL UNIQUE,     -- the secret itself is shown once, never stored
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);

-- One row per (serial, instant): the same reading redelivered is stored once.
CREATE TABLE readings (
    serial      TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    temp_c      DOUBLE PRECISION NOT NULL,
    received_at BIGINT NOT NULL,
    gateway     TEXT,
    PRIMARY KEY (serial, ts)
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT NOT NULL,
    payload     TEXT NOT NULL,                -- truncated to 4 KiB, lossy UTF-8
    payload_bytes BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);

-- End-to-end confirmation (design.md): every reading of (gateway, epoch, serial) with seq <= seq
-- is committed. Seqs that arrived past a gap wait in gateway_pending until the gap fills.
CREATE TABLE gateway_marks (
    gateway     TEXT NOT NULL,
    epoch       TEXT NOT NULL,
    serial      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (gateway, epoch, serial)
);

CREATE TABLE gateway_pending (
    gateway     TEXT NOT NULL,
    epoch       TEXT NOT NULL,
    serial      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (gateway, epoch, serial, seq)
);
