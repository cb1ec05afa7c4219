-- User roles and teams (seed 003). A role carries end-user permissions, may belong to a team
-- (its holders are members) with team permissions there; a team has channels, an avatar, and
-- can be disabled. Names are unique per account, compared case-insensitively.
CREATE TABLE user_roles (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts (id),
    name             TEXT NOT NULL,
    name_canonical   TEXT NOT NULL,
    permissions      TEXT NOT NULL,
    team_permissions TEXT NOT NULL,
    external_ref     TEXT UNIQUE,
    created_at       BIGINT NOT NULL,
    version          BIGINT NOT NULL,
    UNIQUE (account_id, name_canonical)
);

CREATE TABLE teams (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    name              TEXT NOT NULL,
    name_canonical    TEXT NOT NULL,
    avatar_media_type TEXT,
    avatar_data       TEXT,
    avatar_sha256     TEXT,
    channels          TEXT NOT NULL,
    disabled          BIGINT NOT NULL,
    external_ref      TEXT UNIQUE,
    created_at        BIGINT NOT NULL,
    version           BIGINT NOT NULL,
    UNIQUE (account_id, name_canonical)
);

-- Who holds which role.
CREATE TABLE user_role_holders (
    role_id TEXT NOT NULL REFERENCES user_roles (id),
    user_id TEXT NOT NULL REFERENCES service_users (id),
    PRIMARY KEY (role_id, user_id)
);

-- Explicit team members, as the user lists its teams ('user') or the team its members ('team'):
-- each side changes only its own rows, so a User and a Team object never undo each other.
CREATE TABLE team_members (
    team_id   TEXT NOT NULL REFERENCES teams (id),
    user_id   TEXT NOT NULL REFERENCES service_users (id),
    listed_by TEXT NOT NULL CHECK (listed_by IN ('user', 'team')),
    PRIMARY KEY (team_id, user_id, listed_by)
);

-- Roles that belong to a team, as the role names its team ('role') or the team its roles ('team').
CREATE TABLE team_roles (
    team_id   TEXT NOT NULL REFERENCES teams (id),
    role_id   TEXT NOT NULL REFERENCES user_roles (id),
    listed_by TEXT NOT NULL CHECK (listed_by IN ('role', 'team')),
    PRIMARY KEY (team_id, role_id, listed_by)
);
CREATE INDEX user_role_holders_by_user ON user_role_holders (user_id);
CREATE INDEX team_members_by_user ON team_members (user_id);
CREATE INDEX team_roles_by_role ON team_roles (role_id);
