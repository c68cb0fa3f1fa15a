-- Files uploaded for messages. The bytes live in the object store under
-- `attachments/<id>`; a row is written only once they are stored. An upload is free
-- (no channel, no message) until its uploader sends a message with it; free uploads
-- older than a day are swept with their bytes.
CREATE TABLE attachments (
    id           uuid        PRIMARY KEY,
    uploader_id  uuid        NOT NULL REFERENCES users (id),
    channel_id   uuid,
    message_id   uuid,
    filename     text        NOT NULL,
    -- Decided by the server from the bytes, never taken from the client.
    content_type text        NOT NULL,
    size         bigint      NOT NULL,
    -- For voice and video messages, as the client measured it.
    duration_ms  integer,
    -- The key its URLs are signed with (each URL: HMAC-SHA256 of id and expiry).
    url_key      bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (channel_id, message_id) REFERENCES messages (channel_id, id),
    CHECK ((channel_id IS NULL) = (message_id IS NULL)),
    CHECK (size >= 0),
    CHECK (duration_ms IS NULL OR duration_ms >= 0),
    CHECK (char_length(filename) BETWEEN 1 AND 255)
);
CREATE INDEX attachments_message ON attachments (channel_id, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX attachments_free ON attachments (created_at) WHERE message_id IS NULL;
CREATE INDEX attachments_uploader ON attachments (uploader_id);
