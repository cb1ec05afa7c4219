-- SCIM 2.0 provisioning (RFC 7643/7644) and users waiting for a licence.
--
-- A user created through SCIM when no licence of its type is free is created anyway and waits
-- for one (an identity provider quarantines a sync whose creates keep failing); it takes a
-- licence, oldest first, as soon as one is free. Waiting users do not count as assigned.
ALTER TABLE service_users ADD COLUMN license_waiting BIGINT NOT NULL DEFAULT 0;

-- The SCIM resource as the identity provider sent it (JSON, without id and meta), for users and
-- teams provisioned through SCIM; NULL for those made through the REST API. The portal's own
-- columns hold what the portal understands of it (a phone number that is not E.164 stays only
-- here, exactly as sent).
ALTER TABLE service_users ADD COLUMN scim_document TEXT;
-- When SCIM (or anyone) last changed the resource, for meta.lastModified.
ALTER TABLE service_users ADD COLUMN scim_modified_at BIGINT;
-- userName, unique per account regardless of case (RFC 7643 §4.1.1: caseExact false).
ALTER TABLE service_users ADD COLUMN scim_user_name_canonical TEXT;
CREATE UNIQUE INDEX service_users_by_scim_user_name ON service_users (account_id, scim_user_name_canonical);
CREATE INDEX service_users_waiting ON service_users (account_id, license_type, license_waiting, created_at);

ALTER TABLE teams ADD COLUMN scim_document TEXT;
ALTER TABLE teams ADD COLUMN scim_modified_at BIGINT;

-- A SCIM token is an API key bound to one account: it acts only at /scim/v2, only on that
-- account, and only while the admin who minted it may still write the account's users.
ALTER TABLE api_keys ADD COLUMN scim_account_id TEXT REFERENCES accounts (id);
