DROP INDEX outbox_newest_by_topic;
