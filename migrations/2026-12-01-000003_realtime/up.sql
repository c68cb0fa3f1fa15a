-- The transactional outbox: a change and the event it causes are written in one
-- transaction. Writers take a transaction-scoped advisory lock before appending, so
-- positions are handed out in commit order and a reader that has seen position N has
-- seen every committed event before it.
CREATE TABLE outbox (
    position   bigserial   PRIMARY KEY,
    domain     text        NOT NULL,
    name       text        NOT NULL,
    payload    jsonb       NOT NULL,
    audience   text[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_by_created_at ON outbox (created_at);

-- How far the relay (one leader among the nodes) has published the outbox to the bus.
CREATE TABLE outbox_relay (
    id       integer PRIMARY KEY CHECK (id = 1),
    position bigint  NOT NULL
);
INSERT INTO outbox_relay (id, position) VALUES (1, 0);

-- SyncTalk nodes that hold gateway sockets; a node that stops beating is gone.
CREATE TABLE gateway_nodes (
    id           uuid        PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);

-- Gateway sessions, resumable on any node. `seq` is the last sequence number
-- dispatched, `recent` the outbox positions of the last dispatched events (the last
-- is `seq`), `position` the outbox position everything up to which was considered.
-- `epoch` fences a node that lost the session to a resume elsewhere.
CREATE TABLE gateway_sessions (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    domains         text[]      NOT NULL,
    node_id         uuid,
    epoch           integer     NOT NULL DEFAULT 1,
    seq             bigint      NOT NULL DEFAULT 0,
    position        bigint      NOT NULL,
    recent          bigint[]    NOT NULL DEFAULT '{}',
    connected       boolean     NOT NULL DEFAULT true,
    status          text        NOT NULL DEFAULT 'online',
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gateway_sessions_by_user ON gateway_sessions (user_id);
CREATE INDEX gateway_sessions_by_node ON gateway_sessions (node_id);

-- Relationships, one row per side: `kind` is what `other_id` is to `user_id`.
CREATE TABLE relationships (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    other_id   uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text        NOT NULL CHECK (kind IN ('friend', 'incoming', 'outgoing', 'blocked')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, other_id),
    CHECK (user_id <> other_id)
);
CREATE INDEX relationships_by_other ON relationships (other_id);

-- The presence last announced for each user (aggregated over all their sockets).
CREATE TABLE presences (
    user_id    uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    status     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
