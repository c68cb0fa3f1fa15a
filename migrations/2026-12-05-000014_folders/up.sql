-- Folders: a user's own grouping of their guilds, DMs and group DMs. An item sits in at
-- most one folder of its user.
CREATE TABLE folders (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    name       text        NOT NULL,
    position   integer     NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX folders_user ON folders (user_id, position);

CREATE TABLE folder_items (
    folder_id uuid        NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    user_id   uuid        NOT NULL REFERENCES users (id),
    item_id   uuid        NOT NULL,
    kind      text        NOT NULL CHECK (kind IN ('guild', 'channel')),
    position  integer     NOT NULL DEFAULT 0,
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (folder_id, item_id),
    UNIQUE (user_id, item_id)
);
