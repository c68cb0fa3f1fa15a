DROP TABLE presences;
DROP TABLE relationships;
DROP TABLE gateway_sessions;
DROP TABLE gateway_nodes;
DROP TABLE outbox_relay;
DROP TABLE outbox;
