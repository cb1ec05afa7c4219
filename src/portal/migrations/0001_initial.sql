-- The portal's schema. Portable between SQLite and PostgreSQL: ids are TEXT (UUIDv7, so they
-- sort by creation), times are BIGINT milliseconds since the Unix epoch, flags are BIGINT 0/1.

-- Monotonic counters. Bumping the 'events' row at the start of every write transaction orders
-- the change feed by commit order and serialises writers that check tree-wide invariants.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('events', 0);

CREATE TABLE accounts (
    id           TEXT PRIMARY KEY,
    parent_id    TEXT REFERENCES accounts (id),
    kind         TEXT NOT NULL CHECK (kind IN ('Partner', 'Client')),
    display_name TEXT NOT NULL,
    tenant_id    TEXT,
    sub_contract BIGINT NOT NULL,
    external_id  TEXT UNIQUE,
    version      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX accounts_by_parent ON accounts (parent_id, id);

-- Who can call the API: the platform principal (root of the tree) and admins.
CREATE TABLE principals (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('platform', 'admin')),
    email           TEXT,
    email_canonical TEXT UNIQUE,
    first_name      TEXT,
    last_name       TEXT,
    oidc_subject    TEXT UNIQUE,
    created_at      BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals (id),
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_by_principal ON api_keys (principal_id, id);

CREATE TABLE grants (
    id           TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals (id),
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    role         TEXT NOT NULL,
    scope        TEXT NOT NULL CHECK (scope IN ('AccountAndDescendants', 'AccountOnly')),
    source       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (principal_id, account_id, role, scope, source)
);
CREATE INDEX grants_by_account ON grants (account_id, id);
CREATE INDEX grants_by_principal ON grants (principal_id);
CREATE INDEX grants_by_source ON grants (account_id, source);

CREATE TABLE invitations (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts (id),
    email            TEXT NOT NULL,
    email_canonical  TEXT NOT NULL,
    first_name       TEXT NOT NULL,
    last_name        TEXT NOT NULL,
    roles            TEXT NOT NULL,
    delivery         TEXT NOT NULL CHECK (delivery IN ('Email', 'Link')),
    state            TEXT NOT NULL CHECK (state IN ('Pending', 'Accepted', 'Revoked', 'Expired')),
    token_hash       TEXT UNIQUE,
    external_ref     TEXT UNIQUE,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    accepted_at      BIGINT,
    accepted_by      TEXT,
    revoked_at       BIGINT,
    -- The last failed attempt to accept (wrong tenant, identity provider refusal), for the operator.
    failure_reason   TEXT,
    failure_message  TEXT,
    failure_at       BIGINT,
    sends            BIGINT NOT NULL,
    version          BIGINT NOT NULL
);
CREATE INDEX invitations_by_account ON invitations (account_id, id);
CREATE INDEX invitations_pending_by_expiry ON invitations (state, expires_at);

-- The change feed. seq is assigned from counters.events inside the writing transaction.
CREATE TABLE events (
    seq          BIGINT PRIMARY KEY,
    type         TEXT NOT NULL,
    object_kind  TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    account_id   TEXT,
    external_ref TEXT,
    data         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

-- Replays of POSTs that carried an Idempotency-Key.
CREATE TABLE idempotency_keys (
    principal_id  TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        BIGINT NOT NULL,
    response_body TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (principal_id, idem_key)
);

-- Messages the portal sends; delivered over SMTP when configured, else kept here to be read.
-- A delivered message's body (it may carry a link or a temporary password) is erased.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    to_address      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX outbox_undelivered ON outbox (delivered_at, next_attempt_at);

-- Account managers (seed 004): account-wide access, no voice service, activated with a
-- temporary password sent by email.
CREATE TABLE account_managers (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES accounts (id),
    email                TEXT NOT NULL,
    email_canonical      TEXT NOT NULL UNIQUE,
    first_name           TEXT NOT NULL,
    last_name            TEXT NOT NULL,
    language             TEXT NOT NULL CHECK (language IN ('en', 'fr')),
    branding_domain      TEXT,
    state                TEXT NOT NULL CHECK (state IN ('ActivationPending', 'Active', 'ActivationExpired')),
    temp_password_hash   TEXT,
    temp_expires_at      BIGINT,
    password_hash        TEXT,
    external_ref         TEXT UNIQUE,
    created_at           BIGINT NOT NULL,
    activated_at         BIGINT,
    activation_sends     BIGINT NOT NULL,
    version              BIGINT NOT NULL
);
CREATE INDEX account_managers_by_account ON account_managers (account_id, id);
CREATE INDEX account_managers_pending_by_expiry ON account_managers (state, temp_expires_at);
