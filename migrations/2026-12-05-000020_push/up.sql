-- Browsers' Web Push subscriptions: one row per endpoint (a browser profile), its keys
-- as the browser gave them (RFC 8291).
CREATE TABLE push_subscriptions (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    endpoint   text        NOT NULL UNIQUE,
    p256dh     bytea       NOT NULL,
    auth       bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (char_length(endpoint) <= 2048),
    CHECK (octet_length(p256dh) = 65),
    CHECK (octet_length(auth) = 16)
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

-- Whether a notification waits to be pushed: `pending` when it was made for a user
-- with subscriptions, `done` once a node claimed it (pushed, or skipped because the
-- user was connected).
ALTER TABLE notifications ADD COLUMN push_state text NOT NULL DEFAULT 'none'
    CHECK (push_state IN ('none', 'pending', 'done'));
CREATE INDEX notifications_push_pending ON notifications (id) WHERE push_state = 'pending';
