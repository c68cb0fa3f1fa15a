DROP INDEX notification_settings_all;
