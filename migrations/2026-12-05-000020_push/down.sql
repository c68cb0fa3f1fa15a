ALTER TABLE notifications DROP COLUMN push_state;
DROP TABLE push_subscriptions;
