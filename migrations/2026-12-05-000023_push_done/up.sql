-- The subscriptions a notification's push is done with (taken, refused for good): a
-- retry, after another subscription of the user failed for the moment, goes only to
-- those not in it, so one that took the push does not get it twice.
ALTER TABLE notifications ADD COLUMN push_done uuid[] NOT NULL DEFAULT '{}';
