-- A topic's newest row, published or not: history pages ask it whether the messages a
-- node keeps in memory for a channel are still current (messaging's tail.rs). Writers of
-- a topic hold its lock to commit, so its ids grow in commit order.
CREATE INDEX outbox_newest_by_topic ON outbox (topic, id);
