DROP INDEX outbox_unpublished;
ALTER TABLE outbox DROP COLUMN xid;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE position IS NULL;
