-- Idempotency-Keys are now recorded with the response, in the request's own transaction; the
-- placeholder rows (status 0) an earlier version wrote before running a request are dropped.
DELETE FROM idempotency_keys WHERE status = 0;
