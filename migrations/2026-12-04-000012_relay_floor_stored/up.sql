-- The relay's floor (see relay::Floor: every outbox row with an id at or below it is
-- published), stored beside its cursor. Whoever looks for unpublished rows (a resume
-- waiting for what was committed before it) starts there too, instead of walking the
-- index entries that a million rows published since the last vacuum leave behind; a
-- new leader starts from it.
ALTER TABLE outbox_relay ADD COLUMN floor bigint NOT NULL DEFAULT 0;
