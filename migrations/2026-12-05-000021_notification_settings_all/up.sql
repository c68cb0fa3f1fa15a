-- Who asked for every message of a channel or guild: read on every guild message.
CREATE INDEX notification_settings_all ON notification_settings (target_id, user_id) WHERE level = 'all';
