DROP FUNCTION outbox_append(text[], text[], text[], text[], text[]);
ALTER TABLE gateway_nodes DROP COLUMN position;

DROP TABLE gateway_sessions;
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
CREATE INDEX gateway_sessions_dropped ON gateway_sessions (last_seen_at) WHERE NOT connected;

DROP TABLE outbox;
CREATE TABLE outbox (
    position   bigserial   PRIMARY KEY,
    domain     text        NOT NULL,
    name       text        NOT NULL,
    payload    jsonb       NOT NULL,
    audience   text[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_by_created_at ON outbox (created_at);
UPDATE outbox_relay SET position = 0;
