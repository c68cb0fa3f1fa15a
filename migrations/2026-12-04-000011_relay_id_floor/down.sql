ALTER TABLE outbox ALTER COLUMN id SET DEFAULT nextval('outbox_id_seq');
DROP FUNCTION outbox_next_id();
DROP INDEX outbox_unpublished;
ALTER TABLE outbox ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX outbox_unpublished ON outbox (xid, id) WHERE position IS NULL;
