-- A user's notifications: a DM or group DM message, a mention, a friend request, a
-- guild invite, a missed call, a system notice. A message notification names its
-- channel and message, so an ack past the message marks it read.
CREATE TABLE notifications (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    kind       text        NOT NULL CHECK (kind IN ('message', 'friend_request', 'guild_invite', 'call_missed', 'system')),
    title      text        NOT NULL,
    body       text        NOT NULL,
    data       jsonb       NOT NULL DEFAULT '{}',
    channel_id uuid,
    message_id uuid,
    read_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX notifications_user ON notifications (user_id, id) WHERE deleted_at IS NULL;
CREATE INDEX notifications_unread ON notifications (user_id, channel_id, message_id) WHERE read_at IS NULL AND deleted_at IS NULL;

-- How much a user wants to hear of a channel or a guild (a channel's setting wins over
-- its guild's): every message, mentions only, or nothing; muted until a time.
CREATE TABLE notification_settings (
    user_id     uuid        NOT NULL REFERENCES users (id),
    target_id   uuid        NOT NULL,
    target_kind text        NOT NULL CHECK (target_kind IN ('channel', 'guild')),
    level       text        NOT NULL CHECK (level IN ('all', 'mentions', 'nothing')),
    muted_until timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, target_id)
);
