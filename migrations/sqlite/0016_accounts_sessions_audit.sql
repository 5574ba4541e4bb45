-- People (README, "Accounts and sign-in"): one account per person, signing in with their own
-- email and password, holding one or more grants (a role at the program, a PIN or a location).
-- Roles are one vocabulary shared with API tokens; `clinic` is the role of tokens made before
-- accounts existed, and acts as `vfc-coordinator` without the right to manage accounts.
CREATE TABLE roles (
    name            TEXT PRIMARY KEY,
    scope_kind      TEXT NOT NULL,                    -- program | pin_or_location | location
    description     TEXT NOT NULL
);
INSERT INTO roles (name, scope_kind, description) VALUES
    ('state-admin', 'program', 'everything a state coordinator does, plus anyone''s account'),
    ('state-coordinator', 'program', 'every PIN: read, review, approve, hold and release, program settings'),
    ('state-viewer', 'program', 'read every PIN'),
    ('provider-of-record', 'pin_or_location', 'everything a clinic does, its staff''s accounts, tokens for its EHR'),
    ('vfc-coordinator', 'pin_or_location', 'everything a clinic does, its staff''s accounts, tokens for its EHR'),
    ('backup-coordinator', 'pin_or_location', 'everything a clinic does and its EHR tokens; no accounts'),
    ('clinic-staff', 'location', 'record stock, doses, daily checks and reviews; no accounts, no tokens'),
    ('clinic', 'pin_or_location', 'a token made before accounts: a vfc-coordinator without accounts');

CREATE TABLE accounts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    email               TEXT NOT NULL UNIQUE,         -- NFKC, trimmed, lower case
    name                TEXT NOT NULL,
    status              TEXT NOT NULL,                -- invited | active | disabled
    disabled_reason     TEXT,                         -- e.g. inactive for 90 days
    password_hash       TEXT,                         -- Argon2id, PHC string
    password_changed_at BIGINT,
    totp_secret         TEXT,                         -- base32; set when enrolment starts
    totp_enabled_at     BIGINT,                       -- null: no second factor yet
    totp_last_step      BIGINT,                       -- a code is accepted once
    last_sign_in_at     BIGINT,
    created_by          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

CREATE TABLE account_grants (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id      BIGINT NOT NULL REFERENCES accounts (id),
    role            TEXT NOT NULL REFERENCES roles (name),
    pin             TEXT,                             -- a PIN and all its locations
    location_code   TEXT                              -- one location; both null: the program
);
CREATE INDEX account_grants_account ON account_grants (account_id);
CREATE INDEX account_grants_pin ON account_grants (pin);
CREATE INDEX account_grants_location ON account_grants (location_code);

-- Single-use links by email: an invitation (72 h) or a password reset (1 h). Only the hash of
-- the link's secret is kept.
CREATE TABLE account_links (
    token_sha256    TEXT PRIMARY KEY,
    account_id      BIGINT NOT NULL REFERENCES accounts (id),
    purpose         TEXT NOT NULL,                    -- invite | reset
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX account_links_account ON account_links (account_id);

CREATE TABLE recovery_codes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id      BIGINT NOT NULL REFERENCES accounts (id),
    code_sha256     TEXT NOT NULL,
    used_at         BIGINT
);
CREATE INDEX recovery_codes_account ON recovery_codes (account_id);

-- Browser sessions, in the database so they survive a restart and every instance shares them.
-- The cookie holds a random secret; only its hash is kept.
CREATE TABLE sessions (
    id_sha256           TEXT PRIMARY KEY,
    account_id          BIGINT NOT NULL REFERENCES accounts (id),
    csrf_token          TEXT NOT NULL,
    client_addr         TEXT,
    second_factor_at    BIGINT,                       -- null: signed in without one (not enrolled)
    created_at          BIGINT NOT NULL,
    last_seen_at        BIGINT NOT NULL,
    ended_at            BIGINT,
    end_reason          TEXT
);
CREATE INDEX sessions_account ON sessions (account_id);

-- Failed sign-ins per (email as typed, normalised; client address), for an existing account or
-- not, so the delay reveals nothing.
CREATE TABLE sign_in_failures (
    email           TEXT NOT NULL,
    client_addr     TEXT NOT NULL,
    failures        BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    PRIMARY KEY (email, client_addr)
);

-- Published by the registry for the accounts: who each location's contacts are (a contact
-- whose email has an account is linked to it; a disabled token maker's places are told).
CREATE VIEW location_contacts AS
    SELECT code, pin, primary_name, primary_email, backup_name, backup_email FROM locations;

-- Tokens name their maker (an account; null for `vfc token create`) and their last use.
ALTER TABLE api_tokens ADD COLUMN account_id BIGINT REFERENCES accounts (id);
ALTER TABLE api_tokens ADD COLUMN created_by TEXT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;

-- The audit trail: one row per request or message that changed something, written in the same
-- transaction as the change. Append-only: the triggers below refuse UPDATE and DELETE.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              BIGINT NOT NULL,
    actor           TEXT NOT NULL,                    -- account:{id}:{email} | token:{id}:{name} | hl7:{facility} | cli | system | anonymous
    account_id      BIGINT,
    token_id        BIGINT,
    client_addr     TEXT,
    action          TEXT NOT NULL,                    -- e.g. account.create, session.sign_in_failed
    object_type     TEXT NOT NULL,
    object_ids      TEXT NOT NULL,                    -- JSON array of the ids it changed
    pin             TEXT,                             -- whose records these are, for clinic scopes
    location_code   TEXT,
    changes         TEXT                              -- JSON {"field":[before, after]}
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_pin ON audit_log (pin, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_object ON audit_log (object_type, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
