-- Cold chain: the program's rules and people, unit overrides with their history, excursions
-- (every out-of-range episode), alarms (a rule met) and the email outbox written in the same
-- transaction as the alarm that needs it.

-- One program (the state immunization program) per deployment: settings as JSON, id = 1.
CREATE TABLE program (
    id          BIGINT PRIMARY KEY,
    settings    TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- A unit's own rules, replacing the program's defaults for its kind.
CREATE TABLE unit_rules (
    unit_id     BIGINT PRIMARY KEY REFERENCES units (id),
    rules       TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Every change to rules, ranges and program settings: who, when, before and after.
CREATE TABLE rule_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    subject     TEXT NOT NULL,              -- program | unit_rules | unit_range
    unit_id     BIGINT,
    before      TEXT,
    after       TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    changed_at  BIGINT NOT NULL
);
CREATE INDEX rule_changes_unit ON rule_changes (unit_id, changed_at);

-- Serials with readings not yet judged, from since_ts on; version changes on every touch so
-- the evaluator deletes a row only if nothing arrived while it worked.
CREATE TABLE coldchain_dirty (
    serial      TEXT PRIMARY KEY,
    since_ts    BIGINT NOT NULL,
    version     BIGINT NOT NULL
);

-- Out of service or maintenance: readings kept, excursions recorded, nobody paged.
CREATE TABLE unit_downtime (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    unit_id     BIGINT NOT NULL REFERENCES units (id),
    kind        TEXT NOT NULL,              -- out_of_service | maintenance
    reason      TEXT NOT NULL,
    from_ts     BIGINT NOT NULL,
    until_ts    BIGINT,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX unit_downtime_unit ON unit_downtime (unit_id, from_ts);

-- One out-of-range episode of a unit's primary logger (domain.md: from the first reading out
-- of range to the first reading back in range; gaps longer than two intervals are unknown).
CREATE TABLE excursions (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    unit_id             BIGINT NOT NULL REFERENCES units (id),
    serial              TEXT NOT NULL,
    started_at          BIGINT NOT NULL,
    ended_at            BIGINT,
    last_reading_at     BIGINT NOT NULL,
    min_c               DOUBLE PRECISION NOT NULL,
    max_c               DOUBLE PRECISION NOT NULL,
    readings            BIGINT NOT NULL,
    out_ms              BIGINT NOT NULL,
    unknown_ms          BIGINT NOT NULL,
    above_range         BIGINT NOT NULL,    -- 0/1
    below_range         BIGINT NOT NULL,    -- 0/1
    range_min_c         DOUBLE PRECISION NOT NULL,
    range_max_c         DOUBLE PRECISION NOT NULL,
    status              TEXT NOT NULL,      -- open | closed | reviewed
    alerted             BIGINT NOT NULL,    -- 0/1: a rule was met and someone was paged
    detected_late       BIGINT NOT NULL,    -- 0/1: found in readings that arrived late
    suppressed          TEXT,               -- why nobody was paged (maintenance, old readings)
    acknowledged_at     BIGINT,
    acknowledged_by     TEXT,
    review              TEXT,               -- the excursion worksheet, JSON
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (unit_id, started_at)
);
CREATE INDEX excursions_status ON excursions (status, started_at);

-- A rule met: a snapshot of the rule, when, and the excursions it covers.
CREATE TABLE alarms (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    unit_id         BIGINT NOT NULL REFERENCES units (id),
    rule_id         TEXT NOT NULL,
    rule            TEXT NOT NULL,          -- JSON snapshot at the time
    anchor_ts       BIGINT NOT NULL,        -- first reading that counted toward it
    met_at          BIGINT NOT NULL,
    severity        TEXT NOT NULL,
    paged           BIGINT NOT NULL,        -- 0/1
    created_at      BIGINT NOT NULL,
    UNIQUE (unit_id, rule_id, anchor_ts)
);

CREATE TABLE alarm_excursions (
    alarm_id        BIGINT NOT NULL REFERENCES alarms (id),
    excursion_id    BIGINT NOT NULL REFERENCES excursions (id),
    PRIMARY KEY (alarm_id, excursion_id)
);
CREATE INDEX alarm_excursions_excursion ON alarm_excursions (excursion_id);

-- Emails to send. Written in the transaction that decided they are needed; sent at least once
-- with a Message-ID derived from the row, so a retry after an uncertain send is recognisable.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    excursion_id    BIGINT,
    purpose         TEXT NOT NULL,          -- alert | escalation | reminder | back_in_range
    recipient_name  TEXT NOT NULL,
    recipient_email TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,          -- pending | sent | failed
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_excursion ON outbox (excursion_id);
