DROP TABLE notification_settings;
DROP TABLE notifications;
