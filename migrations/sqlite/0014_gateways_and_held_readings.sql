-- Identity on the broker (README, "MQTT contract"): a gateway publishes under its own broker
-- username on vfc/gateways/{gateway}/loggers/{serial}/..., and speaks for a logger only when
-- it is registered at a location of the PIN the logger serves. A gateway seen on the broker
-- before it is registered has a row with no location: its readings are held.
CREATE TABLE gateways (
    id              TEXT PRIMARY KEY,                 -- gw-[A-Za-z0-9-]{1,60}, its broker username
    location_code   TEXT REFERENCES locations (code), -- null: not registered (or removed)
    name            TEXT,
    registered_at   BIGINT,
    registered_by   TEXT,
    first_seen_at   BIGINT,                           -- first message on the broker
    last_seen_at    BIGINT,
    warning         TEXT,                             -- the gateway's own latest spool warning
    warning_at      BIGINT,
    gaps_dropped    BIGINT NOT NULL DEFAULT 0         -- out-of-order seqs past the cap, not kept
);
CREATE INDEX gateways_location ON gateways (location_code);

-- Readings kept in full but in no unit's record, because who sent them may not speak for the
-- logger: an unregistered gateway, a gateway of another PIN than the logger's unit at that
-- time, a payload naming another gateway than its topic, a gateway past its cap of
-- unassigned loggers. Never judged; re-filed into the record when the registry makes them
-- acceptable (the gateway registered, the logger assigned at the gateway's PIN).
CREATE TABLE held_readings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway         TEXT NOT NULL,                    -- the topic's gateway; '' on a logger's own topic
    serial          TEXT NOT NULL,
    ts              BIGINT NOT NULL,
    temp_c          DOUBLE PRECISION NOT NULL,
    reason          TEXT NOT NULL,
    claimed_gateway TEXT,                             -- the payload's "gateway" when it differed
    received_at     BIGINT NOT NULL,
    UNIQUE (gateway, serial, ts)
);
CREATE INDEX held_readings_serial ON held_readings (serial);
CREATE INDEX held_readings_received ON held_readings (received_at);

-- An unassigned serial is listed for the location of the gateway it was first seen through.
ALTER TABLE loggers ADD COLUMN seen_via TEXT;
CREATE INDEX loggers_seen_via ON loggers (seen_via);
