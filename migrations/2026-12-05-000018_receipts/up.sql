-- Delivery and read receipts of messages in DMs and group DMs: one row per message per
-- member other than its author, written with the message. `delivered_at` is set when
-- the first node queues the message to one of the member's sockets, `read_at` when the
-- member acks it or a later message.
CREATE TABLE receipts (
    channel_id   uuid        NOT NULL,
    message_id   uuid        NOT NULL,
    user_id      uuid        NOT NULL REFERENCES users (id),
    delivered_at timestamptz,
    read_at      timestamptz,
    PRIMARY KEY (channel_id, message_id, user_id),
    FOREIGN KEY (channel_id, message_id) REFERENCES messages (channel_id, id)
);
-- An ack marks the acker's unread receipts of the channel up to a message.
CREATE INDEX receipts_unread ON receipts (channel_id, user_id, message_id) WHERE read_at IS NULL;
CREATE INDEX receipts_user ON receipts (user_id);
