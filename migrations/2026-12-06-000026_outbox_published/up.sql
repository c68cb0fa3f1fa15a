-- Positions move out of the outbox rows into a table of their own, written once by the
-- relay: an outbox row is now inserted and never updated. Numbering used to rewrite
-- each row (its payload included) and add entries for it to four indexes; it was the
-- costliest statement of a send (28% of PostgreSQL's time), and every rewrite left a
-- dead row for vacuum. A numbering is now a narrow insert (id, position, topic).
--
-- A row is published once it has a row here. The relay still finds unpublished rows
-- from its floor (every id at or below it is published): the ids above it, and the few
-- ids below its scan's reach that it has not numbered yet (see relay::Scan).
CREATE TABLE outbox_published (
    id       bigint PRIMARY KEY,
    position bigint NOT NULL UNIQUE,
    topic    text   NOT NULL
);
-- Resume and gap filling read one session's topics, never the whole range.
CREATE INDEX outbox_published_by_topic ON outbox_published (topic, position);

INSERT INTO outbox_published (id, position, topic)
SELECT id, position, topic FROM outbox WHERE position IS NOT NULL;

DROP INDEX outbox_by_position;
DROP INDEX outbox_by_topic;
DROP INDEX outbox_unpublished;
ALTER TABLE outbox DROP COLUMN position;

-- Payloads are written by the server and read back as text: `json` keeps the text as
-- it came (checked, not parsed into a tree on the way in and printed again on the way
-- out, as jsonb was).
ALTER TABLE outbox ALTER COLUMN payload TYPE json USING payload::json;

CREATE OR REPLACE FUNCTION outbox_append(topics text[], kinds text[], domains text[], names text[], payloads text[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(k)
    FROM (SELECT DISTINCT hashtextextended(t, 7307) AS k FROM unnest(topics) AS t ORDER BY k) AS keys;
    INSERT INTO outbox (topic, kind, domain, name, payload)
    SELECT u.topic, u.kind, u.domain, u.name, u.payload::json
    FROM unnest(topics, kinds, domains, names, payloads) WITH ORDINALITY AS u(topic, kind, domain, name, payload, n)
    ORDER BY u.n;
END
$$;
