-- Inventory (domain.md, "Inventory" and "Doses administered over HL7"): the vaccine catalog
-- (CDC's CVX, MVX and NDC code sets), lots, an append-only stock ledger with on-hand per
-- (storage unit, lot) kept in the same transaction, doses administered from EHRs with the
-- decrement-exceptions queue and borrowing records, "Do Not Use" holds, transfers and
-- reconciliations.

CREATE TABLE cvx_codes (
    cvx         TEXT PRIMARY KEY,
    short_name  TEXT NOT NULL,
    full_name   TEXT NOT NULL,
    status      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE mvx_codes (
    mvx         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- A product as ordered and shipped: its unit-of-sale NDC (NDC11, 5-4-2 with dashes).
CREATE TABLE products (
    ndc                 TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    cvx                 TEXT NOT NULL,
    mvx                 TEXT,
    doses_per_package   BIGINT,
    source              TEXT NOT NULL,          -- shipped | cdc | api
    updated_at          BIGINT NOT NULL
);
CREATE INDEX products_cvx ON products (cvx);

-- Unit-of-use NDCs (the vial or syringe an EHR reports) and their unit of sale (CDC's linker).
CREATE TABLE product_use_ndcs (
    use_ndc     TEXT PRIMARY KEY,
    ndc         TEXT NOT NULL REFERENCES products (ndc)
);

-- A manufacturer's lot of one product, held with one funding. The same lot number may exist as
-- VFC and as private stock: they are kept apart.
CREATE TABLE lots (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ndc         TEXT NOT NULL REFERENCES products (ndc),
    lot_number  TEXT NOT NULL,                  -- as first written
    lot_key     TEXT NOT NULL,                  -- trimmed, upper case: how doses find their lot
    funding     TEXT NOT NULL,                  -- vfc | private | state
    expires_on  TEXT NOT NULL,                  -- YYYY-MM-DD
    created_at  BIGINT NOT NULL,
    UNIQUE (ndc, lot_key, funding)
);
CREATE INDEX lots_key ON lots (lot_key);

-- On hand per (unit, lot): derived from stock_events, updated in the same transaction.
CREATE TABLE stock (
    unit_id         BIGINT NOT NULL REFERENCES units (id),
    lot_id          BIGINT NOT NULL REFERENCES lots (id),
    location_code   TEXT NOT NULL REFERENCES locations (code),
    on_hand         BIGINT NOT NULL CHECK (on_hand >= 0),
    first_at        BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (unit_id, lot_id)
);
CREATE INDEX stock_location ON stock (location_code);
CREATE INDEX stock_lot ON stock (lot_id);

-- The ledger. Rows are never updated or deleted; a mistake is corrected by a reversing row.
CREATE TABLE stock_events (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    location_code       TEXT NOT NULL,
    unit_id             BIGINT NOT NULL,
    lot_id              BIGINT NOT NULL REFERENCES lots (id),
    kind                TEXT NOT NULL,          -- receipt | administration | wastage | return | transfer_in | transfer_out | adjustment | hold | release | reversal
    doses               BIGINT NOT NULL,        -- change to on hand; negative leaves the shelf
    reason_code         TEXT,
    note                TEXT,
    source              TEXT NOT NULL,          -- api | hl7 | json | order | excursion | reconciliation
    source_ref          TEXT,
    reverses            BIGINT REFERENCES stock_events (id),
    administration_id   BIGINT,
    transfer_id         BIGINT,
    hold_id             BIGINT,
    from_unit_id        BIGINT,                 -- transfer_in: where the doses came from
    occurred_at         BIGINT NOT NULL,
    recorded_at         BIGINT NOT NULL,
    actor               TEXT NOT NULL
);
CREATE INDEX stock_events_lot ON stock_events (lot_id, occurred_at);
CREATE INDEX stock_events_unit_lot ON stock_events (unit_id, lot_id, occurred_at);
CREATE UNIQUE INDEX stock_events_reversed_once ON stock_events (reverses);

-- The unit a location's daily doses of a product come from.
CREATE TABLE location_product_units (
    location_code   TEXT NOT NULL REFERENCES locations (code),
    ndc             TEXT NOT NULL REFERENCES products (ndc),
    unit_id         BIGINT NOT NULL REFERENCES units (id),
    PRIMARY KEY (location_code, ndc)
);

-- Facility ids an EHR uses for a location (MSH-4, RXA-11.4), besides the location code itself.
CREATE TABLE facility_ids (
    facility_id     TEXT PRIMARY KEY,           -- upper case
    location_code   TEXT NOT NULL REFERENCES locations (code)
);

-- Every HL7 message taken, keyed as the sender keys it within what the sender may report for,
-- with the ACK it got: a message sent again gets the same ACK and changes nothing, and another
-- PIN's sender can neither collide with it nor read its ACK.
CREATE TABLE hl7_messages (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    sender_scope        TEXT NOT NULL,          -- * | pin:012345 | location:012345A
    sending_app         TEXT NOT NULL,
    sending_facility    TEXT NOT NULL,
    control_id          TEXT NOT NULL,
    sender              TEXT NOT NULL,
    ack_code            TEXT NOT NULL,
    ack                 TEXT NOT NULL,
    received_at         BIGINT NOT NULL,
    UNIQUE (sender_scope, sending_app, sending_facility, control_id)
);

-- A dose administered here (RXA-9 = 00, CP/PA), as the inventory needs it: no names or
-- addresses, only the EHR's patient id and the date, for the review lists.
CREATE TABLE administrations (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    location_code       TEXT NOT NULL REFERENCES locations (code),
    orc_key             TEXT,                   -- ORC-3 id and namespace
    natural_key         TEXT NOT NULL,          -- PID-3, vaccine, date, lot
    patient_id          TEXT NOT NULL,
    cvx                 TEXT,
    ndc                 TEXT,
    lot_number          TEXT NOT NULL,
    administered_at     BIGINT NOT NULL,
    eligibility         TEXT,                   -- HL7 table 0064: V01..V07
    funding_source      TEXT,                   -- VXC50 | VXC2 | PHC70
    status              TEXT NOT NULL,          -- decremented | exception | deleted | not_given
    lot_id              BIGINT REFERENCES lots (id),
    unit_id             BIGINT,
    review              TEXT,                   -- expired_lot | lot_on_hold: for revaccination review
    source              TEXT NOT NULL,          -- hl7 | json
    message_id          TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE UNIQUE INDEX administrations_orc ON administrations (location_code, orc_key);
CREATE INDEX administrations_natural ON administrations (location_code, natural_key);
CREATE INDEX administrations_lot ON administrations (lot_id, administered_at);

-- Doses that could not be matched to stock: never dropped, resolved by assigning a lot.
CREATE TABLE decrement_exceptions (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    location_code       TEXT NOT NULL REFERENCES locations (code),
    administration_id   BIGINT NOT NULL REFERENCES administrations (id),
    reason_code         TEXT NOT NULL,          -- unknown_vaccine | unknown_lot | lot_not_here | no_stock | ambiguous_funding
    reason              TEXT NOT NULL,
    message_id          TEXT,
    created_at          BIGINT NOT NULL,
    resolved_at         BIGINT,
    resolved_by         TEXT,
    resolution          TEXT                    -- assigned | deleted | dismissed: why
);
CREATE INDEX decrement_exceptions_location ON decrement_exceptions (location_code, resolved_at);

-- A dose given from stock of the other funding (domain.md: borrowing), with its reason to complete.
CREATE TABLE borrowing (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    location_code       TEXT NOT NULL REFERENCES locations (code),
    administration_id   BIGINT NOT NULL UNIQUE REFERENCES administrations (id),
    lot_id              BIGINT NOT NULL REFERENCES lots (id),
    eligibility         TEXT NOT NULL,
    stock_funding       TEXT NOT NULL,
    reason              TEXT,
    note                TEXT,
    reason_by           TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

-- "Do Not Use": stock of a lot in a unit, held until someone decides.
CREATE TABLE holds (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    location_code   TEXT NOT NULL REFERENCES locations (code),
    unit_id         BIGINT NOT NULL REFERENCES units (id),
    lot_id          BIGINT NOT NULL REFERENCES lots (id),
    excursion_id    BIGINT REFERENCES excursions (id),
    reason          TEXT NOT NULL,
    placed_at       BIGINT NOT NULL,
    placed_by       TEXT NOT NULL,
    ended_at        BIGINT,
    ended_by        TEXT,
    outcome         TEXT,                       -- released | wasted | returned
    determination   TEXT,                       -- JSON: the manufacturer's determination
    UNIQUE (excursion_id, unit_id, lot_id)
);
CREATE INDEX holds_stock ON holds (unit_id, lot_id, ended_at);

CREATE TABLE transfers (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    from_location   TEXT NOT NULL REFERENCES locations (code),
    to_location     TEXT NOT NULL REFERENCES locations (code),
    from_unit_id    BIGINT NOT NULL REFERENCES units (id),
    to_unit_id      BIGINT REFERENCES units (id),
    lines           TEXT NOT NULL,              -- JSON [{"lot_id","doses"}]
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL,              -- pending | completed | rejected
    requested_by    TEXT NOT NULL,
    requested_at    BIGINT NOT NULL,
    decided_by      TEXT,
    decided_at      BIGINT,
    decision_note   TEXT
);
CREATE INDEX transfers_from ON transfers (from_location, status);
CREATE INDEX transfers_to ON transfers (to_location, status);

-- A physical count as of a stated time, and the adjustments it wrote.
CREATE TABLE reconciliations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    location_code   TEXT NOT NULL REFERENCES locations (code),
    as_of           BIGINT NOT NULL,
    counted_by      TEXT NOT NULL,
    lines           TEXT NOT NULL,              -- JSON: counted, expected, adjustment per stock row
    note            TEXT,
    recorded_by     TEXT NOT NULL,
    recorded_at     BIGINT NOT NULL
);
CREATE INDEX reconciliations_location ON reconciliations (location_code, as_of);
