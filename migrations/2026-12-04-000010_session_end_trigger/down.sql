DROP TRIGGER users_announce_deletion ON users;
DROP TRIGGER sessions_announce_end ON sessions;
DROP FUNCTION synctalk_announce_session_end();
