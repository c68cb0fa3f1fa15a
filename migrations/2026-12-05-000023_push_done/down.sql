ALTER TABLE notifications DROP COLUMN push_done;
