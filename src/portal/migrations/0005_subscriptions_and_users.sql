-- Subscriptions (seed 003): an account's licences of one licence type. One per type and account,
-- so that "assigned" and "free" have one answer.
CREATE TABLE subscriptions (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    license_type  TEXT NOT NULL,
    quantity      BIGINT NOT NULL CHECK (quantity >= 0),
    external_ref  TEXT UNIQUE,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    UNIQUE (account_id, license_type)
);

-- Service users (seed 003): each holds one licence of its type in its account. The user ID is
-- the login and unique portal-wide (with account managers' and admins' emails). Numbers are kept
-- as sent (raw) and compared in E.164; lists are JSON text.
CREATE TABLE service_users (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES accounts (id),
    user_id              TEXT NOT NULL,
    user_id_canonical    TEXT NOT NULL UNIQUE,
    first_name           TEXT NOT NULL,
    last_name            TEXT NOT NULL,
    extra                TEXT NOT NULL,
    license_type         TEXT NOT NULL,
    mobile_number        TEXT,
    landline_number      TEXT,
    linked_number        TEXT,
    mex                  BIGINT NOT NULL,
    display_numbers      TEXT NOT NULL,
    country_code         TEXT,
    permissions          TEXT NOT NULL,
    language             TEXT NOT NULL CHECK (language IN ('en', 'fr')),
    time_zone            TEXT,
    state                TEXT NOT NULL CHECK (state IN ('Prepared', 'Invited', 'ActivationExpired', 'Active', 'Disabled')),
    -- The state to return to when a Disabled user is enabled again.
    enabled_state        TEXT,
    temp_password_hash   TEXT,
    temp_expires_at      BIGINT,
    password_hash        TEXT,
    external_ref         TEXT UNIQUE,
    created_at           BIGINT NOT NULL,
    invited_at           BIGINT,
    activated_at         BIGINT,
    activation_sends     BIGINT NOT NULL,
    version              BIGINT NOT NULL
);
CREATE INDEX service_users_by_account ON service_users (account_id, id);
CREATE INDEX service_users_by_license ON service_users (account_id, license_type);
CREATE INDEX service_users_invited_by_expiry ON service_users (state, temp_expires_at);
