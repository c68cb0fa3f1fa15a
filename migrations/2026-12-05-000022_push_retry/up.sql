-- Pushes are delivered at least once: a claim leases a notification (`push_at` moves
-- past the time its sends can take) instead of marking it done, so a node that dies
-- while pushing leaves it to another; a push service that fails for a while (network,
-- 429, 5xx) is tried again later, `push_attempts` times at most; `failed` when it
-- never took it.
ALTER TABLE notifications DROP CONSTRAINT notifications_push_state_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_push_state_check
    CHECK (push_state IN ('none', 'pending', 'done', 'failed'));
ALTER TABLE notifications ADD COLUMN push_attempts smallint NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN push_at timestamptz NOT NULL DEFAULT now();
DROP INDEX notifications_push_pending;
CREATE INDEX notifications_push_pending ON notifications (push_at) WHERE push_state = 'pending';
