-- Sealed successors are kept only through the grace window: a minute-by-minute sweep
-- forgets older ones (so a copy of the database and an old spent token never open a
-- live one), through this index of the few rows that still hold one.
CREATE INDEX refresh_tokens_sealed ON refresh_tokens (used_at) WHERE successor_sealed IS NOT NULL;
