CREATE OR REPLACE FUNCTION outbox_append(topics text[], kinds text[], domains text[], names text[], payloads text[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(k)
    FROM (SELECT DISTINCT hashtextextended(t, 7307) AS k FROM unnest(topics) AS t ORDER BY k) AS keys;
    INSERT INTO outbox (topic, kind, domain, name, payload)
    SELECT u.topic, u.kind, u.domain, u.name, u.payload::jsonb
    FROM unnest(topics, kinds, domains, names, payloads) WITH ORDINALITY AS u(topic, kind, domain, name, payload, n)
    ORDER BY u.n;
END
$$;
ALTER TABLE outbox ALTER COLUMN payload TYPE jsonb USING payload::jsonb;
ALTER TABLE outbox ADD COLUMN position bigint;
UPDATE outbox o SET position = p.position FROM outbox_published p WHERE p.id = o.id;
CREATE UNIQUE INDEX outbox_by_position ON outbox (position) WHERE position IS NOT NULL;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE position IS NULL;
CREATE INDEX outbox_by_topic ON outbox (topic, position) WHERE position IS NOT NULL;
DROP TABLE outbox_published;
