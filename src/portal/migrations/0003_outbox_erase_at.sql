-- When a queued message's body stops being needed (the invitation link or temporary password in
-- it can no longer be used): it is erased then, delivered or not.
ALTER TABLE outbox ADD COLUMN erase_at BIGINT;
