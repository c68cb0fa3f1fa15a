-- Failed sign-ins per account, so that repeated failures slow down (shared by every
-- node). A login text that names no account has a row of its own, keyed by that text,
-- so the answers never tell whether an account exists.
CREATE TABLE login_failures (
    subject text PRIMARY KEY,
    failures integer NOT NULL,
    retry_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_updated_at ON login_failures (updated_at);

-- Known devices (a user's sessions by device id, ended ones too) skip the slowdown.
CREATE INDEX sessions_by_user_device ON sessions (user_id, device_id) WHERE device_id IS NOT NULL;
