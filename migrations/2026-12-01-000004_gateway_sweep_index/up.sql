-- Every node sweeps dropped sessions past the resume window every few seconds; without
-- this index that is a scan of every session ever dropped.
CREATE INDEX gateway_sessions_dropped ON gateway_sessions (last_seen_at) WHERE NOT connected;
