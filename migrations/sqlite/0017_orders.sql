-- Orders (README, "Ordering"; docs/domain.md, "Ordering (VFC)"): each suffix location orders
-- its VFC (and state-funded) stock on its own profile, the state reviews, the distributor's
-- files say what shipped, and the clinic receives against the shipment.

-- A location's ordering profile, as the state set it (JSON: frequency, window, order sets,
-- months of cover, ship-to). Absent: the program's defaults.
CREATE TABLE ordering_profiles (
    location_code   TEXT PRIMARY KEY REFERENCES locations (code),
    profile         TEXT NOT NULL,
    updated_by      TEXT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE orders (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    location_code       TEXT NOT NULL REFERENCES locations (code),
    pin                 TEXT NOT NULL,
    set_name            TEXT NOT NULL,
    status              TEXT NOT NULL,      -- draft | pending_local_approval | in_review | returned | approved | denied | cancelled | expired | sent | backordered | partially_shipped | shipped | received
    urgent              BIGINT NOT NULL,    -- 0/1
    urgent_reason       TEXT,
    note                TEXT,
    created_by          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    submitted_at        BIGINT,
    approved_at         BIGINT,
    returned_at         BIGINT,
    decision_reason     TEXT,               -- why denied, returned or cancelled
    export_batch_id     BIGINT,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX orders_location ON orders (location_code, id);
CREATE INDEX orders_status ON orders (status, id);

CREATE TABLE order_lines (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id            BIGINT NOT NULL REFERENCES orders (id),
    ndc                 TEXT NOT NULL,
    funding             TEXT NOT NULL,      -- vfc | state
    doses               BIGINT NOT NULL,    -- as the clinic asked
    approved_doses      BIGINT,             -- as the state approved (null: not yet)
    reduction_reason    TEXT,
    suggested           BIGINT,             -- the suggestion when submitted
    closed_at           BIGINT,             -- will not ship (a cancelled backorder)
    closed_by           TEXT,
    closed_reason       TEXT
);
CREATE INDEX order_lines_order ON order_lines (order_id);

-- The order's history: every transition, who, when and why.
CREATE TABLE order_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id    BIGINT NOT NULL REFERENCES orders (id),
    status      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    at          BIGINT NOT NULL,
    note        TEXT
);
CREATE INDEX order_events_order ON order_events (order_id, id);

-- A state coordinator's waiver of one prerequisite for one location: good for the next
-- submission or until it expires.
CREATE TABLE order_waivers (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    location_code   TEXT NOT NULL REFERENCES locations (code),
    check_name      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    granted_by      TEXT NOT NULL,
    granted_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    order_id        BIGINT REFERENCES orders (id)   -- the submission that used it
);
CREATE INDEX order_waivers_location ON order_waivers (location_code, order_id);

-- "We administered no doses since …": what satisfies the doses-reported check when a clinic
-- gave none.
CREATE TABLE no_dose_reports (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    location_code   TEXT NOT NULL REFERENCES locations (code),
    since           TEXT NOT NULL,      -- YYYY-MM-DD
    reported_by     TEXT NOT NULL,
    reported_at     BIGINT NOT NULL
);
CREATE INDEX no_dose_reports_location ON no_dose_reports (location_code, reported_at);

-- A location's prerequisite status as last computed, for lists that must not recompute it.
CREATE TABLE order_readiness (
    location_code   TEXT PRIMARY KEY REFERENCES locations (code),
    ready           BIGINT NOT NULL,    -- 0/1
    checks          TEXT NOT NULL,      -- JSON, as GET …/orders/prerequisites answers
    computed_at     BIGINT NOT NULL
);
CREATE INDEX order_readiness_computed ON order_readiness (computed_at);

-- What was sent to the distributor, kept so a lost response loses nothing.
CREATE TABLE order_exports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    csv         TEXT NOT NULL,
    orders      BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- A row of the distributor's shipment file, against one order line. `row_key` is the row as
-- imported: the same row imported again is not counted twice.
CREATE TABLE shipment_lines (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id            BIGINT NOT NULL REFERENCES orders (id),
    order_line_id       BIGINT NOT NULL REFERENCES order_lines (id),
    ndc                 TEXT NOT NULL,
    lot                 TEXT,
    expires_on          TEXT,
    doses               BIGINT NOT NULL,
    backordered_doses   BIGINT NOT NULL,
    carrier             TEXT,
    tracking_number     TEXT,
    ship_date           TEXT,
    direct_ship         BIGINT NOT NULL,    -- 0/1: shipped by the manufacturer (frozen varicella)
    row_key             TEXT NOT NULL UNIQUE,
    imported_by         TEXT NOT NULL,
    imported_at         BIGINT NOT NULL
);
CREATE INDEX shipment_lines_order ON shipment_lines (order_id);
CREATE INDEX shipment_lines_line ON shipment_lines (order_line_id);

-- What arrived of a shipment line: once per line, with the stock it became.
CREATE TABLE order_receipts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    shipment_line_id    BIGINT NOT NULL UNIQUE REFERENCES shipment_lines (id),
    order_id            BIGINT NOT NULL REFERENCES orders (id),
    order_line_id       BIGINT NOT NULL REFERENCES order_lines (id),
    unit_id             BIGINT REFERENCES units (id),   -- null when none arrived
    lot_id              BIGINT,             -- null when none arrived
    doses_received      BIGINT NOT NULL,
    condition           TEXT NOT NULL,      -- ok | too_warm | too_cold | damaged
    shortfall_reason    TEXT,
    stock_event_id      BIGINT,
    hold_id             BIGINT,
    received_by         TEXT NOT NULL,
    received_at         BIGINT NOT NULL
);
CREATE INDEX order_receipts_order ON order_receipts (order_id);
CREATE INDEX order_receipts_line ON order_receipts (order_line_id);

-- An email about an order is listed with it.
ALTER TABLE outbox ADD COLUMN order_id BIGINT;
CREATE INDEX outbox_order ON outbox (order_id);

-- Suggestions read a location's administrations, wastage and receipts of the last year, and
-- the doses-reported check its latest dose.
CREATE INDEX stock_events_location_kind ON stock_events (location_code, kind, occurred_at);
CREATE INDEX administrations_location_created ON administrations (location_code, created_at);
-- The stored prerequisite statuses follow excursions as they open and close.
CREATE INDEX excursions_updated ON excursions (updated_at);
