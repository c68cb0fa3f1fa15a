-- Accounts and profiles. Deletes are soft: a deleted user keeps its row (so what it
-- wrote keeps an author) but vanishes from every read, and its username and email are
-- free to be taken again.
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    username      text        NOT NULL,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    display_name  text,
    avatar_url    text,
    bio           text,
    status_text   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);

-- text_pattern_ops so that the same index serves `username LIKE 'prefix%'`.
CREATE UNIQUE INDEX users_username_key ON users (username text_pattern_ops)
    WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_email_key ON users (lower(email))
    WHERE deleted_at IS NULL;
