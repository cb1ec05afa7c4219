-- A browser's sign-in with the identity provider on behalf of one invitation: created when the
-- invitee presses "Sign in", consumed once by the callback, good for ten minutes. The state is
-- stored hashed (it is the attempt's handle in a URL); the nonce and PKCE verifier are single-use
-- values the callback needs back. `browser_hash` binds the attempt to the browser that started
-- it (a cookie), and `retry_hash` is the handle a failure page offers to start again.
CREATE TABLE sign_in_attempts (
    state_hash    TEXT PRIMARY KEY,
    invitation_id TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    browser_hash  TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    authority     TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT,
    retry_hash    TEXT UNIQUE
);

CREATE INDEX sign_in_attempts_by_expiry ON sign_in_attempts (expires_at);
