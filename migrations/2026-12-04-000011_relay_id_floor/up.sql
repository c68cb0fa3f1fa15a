-- The relay scans unpublished rows in id order from a floor below which every row is
-- published (see relay::Floor), through an index of unpublished rows by id: no sort of
-- the backlog, and no walk over rows published before the floor. It replaces the scan
-- by transaction id, which sorted every unpublished row above its floor for each batch
-- and fell further behind the longer it was behind.
DROP INDEX outbox_unpublished;
ALTER TABLE outbox DROP COLUMN xid;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE position IS NULL;

-- The floor needs every row's transaction id handed out before the row's id: the id's
-- default takes the transaction id first, whoever inserts. (Without it, a transaction
-- whose first write is to the outbox would take its first id before it has a
-- transaction id: a row's defaults are computed before the row is written.)
CREATE FUNCTION outbox_next_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('outbox_id_seq') END
$$;
ALTER TABLE outbox ALTER COLUMN id SET DEFAULT outbox_next_id();
