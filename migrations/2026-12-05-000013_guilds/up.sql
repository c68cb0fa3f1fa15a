-- Guilds (servers) with their roles, members, bans, invites and audit log, and the
-- channels table every kind of channel lives in (guild text, voice and category
-- channels, 1:1 DMs and group DMs) with permission overwrites and DM recipients.
-- Guilds and channels are deleted softly: they vanish from every read.

CREATE TABLE guilds (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL,
    owner_id   uuid        NOT NULL REFERENCES users (id),
    icon_url   text,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);

-- A guild's `@everyone` role has the guild's id and position 0; the others sit above.
-- `permissions` is the u64 bitfield stored as its two's-complement bigint.
CREATE TABLE roles (
    id          uuid        PRIMARY KEY,
    guild_id    uuid        NOT NULL REFERENCES guilds (id),
    name        text        NOT NULL,
    color       integer     NOT NULL DEFAULT 0,
    permissions bigint      NOT NULL,
    position    integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (guild_id, id)
);
CREATE INDEX roles_guild ON roles (guild_id, position);

CREATE TABLE members (
    guild_id  uuid        NOT NULL REFERENCES guilds (id),
    user_id   uuid        NOT NULL REFERENCES users (id),
    nick      text,
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (guild_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE member_roles (
    guild_id uuid NOT NULL,
    user_id  uuid NOT NULL,
    role_id  uuid NOT NULL,
    PRIMARY KEY (guild_id, user_id, role_id),
    FOREIGN KEY (guild_id, role_id) REFERENCES roles (guild_id, id) ON DELETE CASCADE,
    FOREIGN KEY (guild_id, user_id) REFERENCES members (guild_id, user_id) ON DELETE CASCADE
);
CREATE INDEX member_roles_role ON member_roles (role_id);

CREATE TABLE bans (
    guild_id   uuid        NOT NULL REFERENCES guilds (id),
    user_id    uuid        NOT NULL REFERENCES users (id),
    reason     text,
    banned_by  uuid        NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (guild_id, user_id)
);

-- `max_uses` 0 is unlimited; `expires_at` null never expires.
CREATE TABLE invites (
    code           text        PRIMARY KEY,
    guild_id       uuid        NOT NULL REFERENCES guilds (id),
    inviter_id     uuid        NOT NULL REFERENCES users (id),
    max_uses       integer     NOT NULL DEFAULT 0 CHECK (max_uses >= 0),
    uses           integer     NOT NULL DEFAULT 0 CHECK (uses >= 0),
    expires_at     timestamptz,
    target_user_id uuid        REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invites_guild ON invites (guild_id);

CREATE TABLE audit_log (
    id         uuid        PRIMARY KEY,
    guild_id   uuid        NOT NULL REFERENCES guilds (id),
    actor_id   uuid        NOT NULL REFERENCES users (id),
    action     text        NOT NULL,
    target_id  uuid,
    reason     text,
    changes    jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_guild ON audit_log (guild_id, id DESC);

-- A 1:1 DM has its two users in (dm_low, dm_high), ordered, so the same pair always
-- finds the same channel.
CREATE TABLE channels (
    id         uuid        PRIMARY KEY,
    kind       text        NOT NULL CHECK (kind IN ('text', 'voice', 'category', 'dm', 'group_dm')),
    guild_id   uuid        REFERENCES guilds (id),
    name       text,
    topic      text,
    parent_id  uuid        REFERENCES channels (id),
    position   integer     NOT NULL DEFAULT 0,
    owner_id   uuid        REFERENCES users (id),
    dm_low     uuid        REFERENCES users (id),
    dm_high    uuid        REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CHECK ((guild_id IS NULL) = (kind IN ('dm', 'group_dm'))),
    CHECK ((kind = 'dm') = (dm_low IS NOT NULL AND dm_high IS NOT NULL))
);
CREATE INDEX channels_guild ON channels (guild_id, position) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX channels_dm_pair ON channels (dm_low, dm_high) WHERE kind = 'dm';

CREATE TABLE channel_overwrites (
    channel_id uuid   NOT NULL REFERENCES channels (id),
    target_id  uuid   NOT NULL,
    kind       text   NOT NULL CHECK (kind IN ('role', 'member')),
    allow      bigint NOT NULL DEFAULT 0,
    deny       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, target_id)
);

CREATE TABLE channel_recipients (
    channel_id uuid        NOT NULL REFERENCES channels (id),
    user_id    uuid        NOT NULL REFERENCES users (id),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_recipients_user ON channel_recipients (user_id);
