-- The outbox by topic. Each row is written once, to the one topic it concerns (a
-- user, a session, a guild, a channel, a call), with no global lock: a writer takes
-- only its topics' own advisory locks (see event::append), so writers of different
-- topics commit in parallel while each topic's rows keep commit order.
--
-- `position` is handed out by the relay after commit, gap-free and in insertion
-- order among committed rows ("mark, then publish"), so nothing that commits late is
-- ever skipped and readers replay by position alone. `kind` is an event, or a change of
-- who listens: `subscribe` / `unsubscribe` (payload: the topic) on a user's topic
-- apply to that user's sessions on every node in outbox order; `revoke` ends the
-- sessions listening on its topic.
DROP TABLE outbox;
CREATE TABLE outbox (
    id         bigserial   PRIMARY KEY,
    position   bigint,
    topic      text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('event', 'subscribe', 'unsubscribe', 'revoke')),
    domain     text        NOT NULL,
    name       text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX outbox_by_position ON outbox (position) WHERE position IS NOT NULL;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE position IS NULL;
-- Resume and gap filling read one session's topics, never the whole range.
CREATE INDEX outbox_by_topic ON outbox (topic, position) WHERE position IS NOT NULL;
-- Rows are numbered (updated) once, soon after they are written: vacuum early, so the
-- index of unpublished rows stays small and the planner's picture stays true.
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.01
);

-- Appends rows in order, after taking the advisory locks of their topics in one fixed
-- order (held to commit): writers of one topic commit one after the other, writers of
-- different topics never wait on each other, and two appends cannot deadlock. A
-- function, so its plans are prepared once per connection.
CREATE FUNCTION outbox_append(topics text[], kinds text[], domains text[], names text[], payloads text[])
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

-- Gateway sessions keep a base from which any node recomputes what the session was
-- sent: the sequence number and outbox position at that point, the topics it
-- listened to, and the outbox ids its READY already reflected. A session's `s` is
-- the count of matching events after the base, so nothing is written per delivery.
DROP TABLE gateway_sessions;
CREATE TABLE gateway_sessions (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    domains         text[]      NOT NULL,
    node_id         uuid,
    epoch           integer     NOT NULL DEFAULT 1,
    base_seq        bigint      NOT NULL DEFAULT 0,
    base_position   bigint      NOT NULL,
    base_topics     text[]      NOT NULL,
    base_skip       bigint[]    NOT NULL DEFAULT '{}',
    connected       boolean     NOT NULL DEFAULT true,
    status          text        NOT NULL DEFAULT 'online',
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gateway_sessions_by_user ON gateway_sessions (user_id);
CREATE INDEX gateway_sessions_by_node ON gateway_sessions (node_id);
CREATE INDEX gateway_sessions_dropped ON gateway_sessions (last_seen_at) WHERE NOT connected;

-- How far each node has delivered: the outbox is never pruned below a live node.
ALTER TABLE gateway_nodes ADD COLUMN position bigint NOT NULL DEFAULT 0;
