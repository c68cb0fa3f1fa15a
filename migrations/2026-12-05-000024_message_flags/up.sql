-- Whether a message has reactions and files: a page reads the reactions and the
-- attachments of the messages that have some, and of a page with none it reads
-- neither (two statements of five). Kept by triggers, so every writer keeps them,
-- whatever its version (a node not yet upgraded, a hand-written statement): never
-- false while a reaction or a file is there. Every reaction change holds the
-- message's row lock (FOR NO KEY UPDATE) for its whole transaction, so an add and
-- the removal of the last reaction never cross.
--
-- Not in one transaction (metadata.toml): the columns come with a brief lock of the
-- table, the backfill then updates the rows that need it under row locks only, and
-- every statement may run again if the migration is interrupted.
ALTER TABLE messages
    ADD COLUMN IF NOT EXISTS has_reactions boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS has_attachments boolean NOT NULL DEFAULT false;

CREATE OR REPLACE FUNCTION messages_mark_reactions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE messages SET has_reactions = true
        WHERE channel_id = NEW.channel_id AND id = NEW.message_id AND NOT has_reactions;
    ELSE
        UPDATE messages SET has_reactions = false
        WHERE channel_id = OLD.channel_id AND id = OLD.message_id AND has_reactions
          AND NOT EXISTS (SELECT 1 FROM reactions r
                          WHERE r.channel_id = OLD.channel_id AND r.message_id = OLD.message_id);
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS reactions_mark_message ON reactions;
CREATE TRIGGER reactions_mark_message AFTER INSERT OR DELETE ON reactions
    FOR EACH ROW EXECUTE FUNCTION messages_mark_reactions();

CREATE OR REPLACE FUNCTION messages_mark_attachments() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.message_id IS NOT NULL THEN
        UPDATE messages SET has_attachments = true
        WHERE channel_id = NEW.channel_id AND id = NEW.message_id AND NOT has_attachments;
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS attachments_mark_message ON attachments;
CREATE TRIGGER attachments_mark_message AFTER INSERT OR UPDATE OF message_id ON attachments
    FOR EACH ROW EXECUTE FUNCTION messages_mark_attachments();

UPDATE messages m SET has_reactions = true
WHERE NOT m.has_reactions
  AND EXISTS (SELECT 1 FROM reactions r WHERE r.channel_id = m.channel_id AND r.message_id = m.id);
UPDATE messages m SET has_attachments = true
WHERE NOT m.has_attachments
  AND EXISTS (SELECT 1 FROM attachments a WHERE a.channel_id = m.channel_id AND a.message_id = m.id);
