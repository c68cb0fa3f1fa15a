DROP INDEX notifications_push_pending;
UPDATE notifications SET push_state = 'done' WHERE push_state = 'failed';
ALTER TABLE notifications DROP COLUMN push_at;
ALTER TABLE notifications DROP COLUMN push_attempts;
ALTER TABLE notifications DROP CONSTRAINT notifications_push_state_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_push_state_check
    CHECK (push_state IN ('none', 'pending', 'done'));
CREATE INDEX notifications_push_pending ON notifications (id) WHERE push_state = 'pending';
