-- Messages of every channel kind (guild text, DM, group DM), keyed by (channel_id, id):
-- every query names its channel, so the table can later be distributed by channel.
CREATE TABLE messages (
    channel_id       uuid        NOT NULL REFERENCES channels (id),
    id               uuid        NOT NULL,
    author_id        uuid        NOT NULL REFERENCES users (id),
    content          text        NOT NULL,
    -- The sender's retry key: a retried send with it returns this message.
    nonce            text,
    reply_to         uuid,
    -- Live users mentioned as <@id>, roles as <@&id>, and @everyone (MENTION_EVERYONE).
    mentions         uuid[]      NOT NULL DEFAULT '{}',
    mention_roles    uuid[]      NOT NULL DEFAULT '{}',
    mention_everyone boolean     NOT NULL DEFAULT false,
    pinned_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    edited_at        timestamptz,
    deleted_at       timestamptz,
    -- Full-text search ('simple': no language stemming, any language).
    search           tsvector    GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
    PRIMARY KEY (channel_id, id),
    FOREIGN KEY (channel_id, reply_to) REFERENCES messages (channel_id, id),
    CHECK (char_length(content) <= 4000),
    CHECK (nonce IS NULL OR char_length(nonce) <= 64)
);
CREATE UNIQUE INDEX messages_nonce ON messages (channel_id, author_id, nonce) WHERE nonce IS NOT NULL;
CREATE INDEX messages_pinned ON messages (channel_id, pinned_at) WHERE pinned_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX messages_search ON messages USING gin (search) WHERE deleted_at IS NULL;
CREATE INDEX messages_author ON messages (author_id);

-- One reaction per user per emoji per message.
CREATE TABLE reactions (
    channel_id uuid        NOT NULL,
    message_id uuid        NOT NULL,
    emoji      text        NOT NULL,
    user_id    uuid        NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, message_id, emoji, user_id),
    FOREIGN KEY (channel_id, message_id) REFERENCES messages (channel_id, id)
);
CREATE INDEX reactions_user ON reactions (user_id);

-- How far each user has read each channel.
CREATE TABLE read_states (
    user_id      uuid        NOT NULL REFERENCES users (id),
    channel_id   uuid        NOT NULL REFERENCES channels (id),
    last_read_id uuid        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, channel_id)
);
