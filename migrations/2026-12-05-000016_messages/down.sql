DROP TABLE read_states;
DROP TABLE reactions;
DROP TABLE messages;
