ALTER TABLE outbox_relay DROP COLUMN floor;
