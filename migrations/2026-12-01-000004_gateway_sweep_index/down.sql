DROP INDEX gateway_sessions_dropped;
