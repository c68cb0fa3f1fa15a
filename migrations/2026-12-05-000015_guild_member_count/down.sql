DROP TRIGGER members_count ON members;
DROP FUNCTION members_count();
ALTER TABLE guilds DROP COLUMN member_count;
