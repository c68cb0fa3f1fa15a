DROP TRIGGER IF EXISTS reactions_mark_message ON reactions;
DROP TRIGGER IF EXISTS attachments_mark_message ON attachments;
DROP FUNCTION IF EXISTS messages_mark_reactions();
DROP FUNCTION IF EXISTS messages_mark_attachments();
ALTER TABLE messages DROP COLUMN IF EXISTS has_reactions, DROP COLUMN IF EXISTS has_attachments;
