-- Ending a session (revoked_at set) or deleting an account (deleted_at set) announces
-- itself on synctalk_session_ended when the transaction commits, whoever does it: a
-- route, a future one, or an operator by hand. The nodes' session caches listen.
CREATE FUNCTION synctalk_announce_session_end() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'sessions' THEN
        PERFORM pg_notify('synctalk_session_ended', 'session:' || NEW.id::text);
    ELSE
        PERFORM pg_notify('synctalk_session_ended', 'user:' || NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_announce_end
    AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION synctalk_announce_session_end();

CREATE TRIGGER users_announce_deletion
    AFTER UPDATE OF deleted_at ON users
    FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)
    EXECUTE FUNCTION synctalk_announce_session_end();
