-- Whether a message has reactions and files: a page reads the reactions and the
-- attachments of the messages that have some, and of a page with none it reads
-- neither (two statements of five). Kept in the transactions that change them: set
-- with the message's files at its send, and by each reaction added or removed (under
-- the message's row lock). Never false while there is one.
ALTER TABLE messages
    ADD COLUMN has_reactions boolean NOT NULL DEFAULT false,
    ADD COLUMN has_attachments boolean NOT NULL DEFAULT false;
UPDATE messages m SET has_reactions = true
WHERE EXISTS (SELECT 1 FROM reactions r WHERE r.channel_id = m.channel_id AND r.message_id = m.id);
UPDATE messages m SET has_attachments = true
WHERE EXISTS (SELECT 1 FROM attachments a WHERE a.channel_id = m.channel_id AND a.message_id = m.id);
