ALTER TABLE messages DROP COLUMN has_reactions, DROP COLUMN has_attachments;
