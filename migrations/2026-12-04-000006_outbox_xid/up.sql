-- The transaction that wrote each outbox row. The relay looks for unpublished rows only
-- among those written by transactions at or above a floor (every row of an older
-- transaction is published), so it no longer walks the index entries of every row it
-- published since the last vacuum: under sustained writes that walk took seconds a
-- batch, and the relay fell tens of seconds behind.
ALTER TABLE outbox ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (xid, id) WHERE position IS NULL;
