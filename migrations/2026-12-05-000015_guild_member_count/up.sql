-- A guild's member count, kept by a trigger on members: read at every join (GUILD_CREATE),
-- every READY and every presence change (presence goes to guilds of at most 250
-- members), so it must not cost a count over the members.
ALTER TABLE guilds ADD COLUMN member_count integer NOT NULL DEFAULT 0;
UPDATE guilds SET member_count = (SELECT count(*) FROM members WHERE members.guild_id = guilds.id);

CREATE FUNCTION members_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE guilds SET member_count = member_count + 1 WHERE id = NEW.guild_id;
    ELSE
        UPDATE guilds SET member_count = member_count - 1 WHERE id = OLD.guild_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER members_count AFTER INSERT OR DELETE ON members
    FOR EACH ROW EXECUTE FUNCTION members_count();
