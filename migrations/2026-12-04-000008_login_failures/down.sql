DROP INDEX sessions_by_user_device;
DROP TABLE login_failures;
