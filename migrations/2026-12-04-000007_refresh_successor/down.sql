ALTER TABLE refresh_tokens
    DROP COLUMN successor_hash,
    DROP COLUMN successor_sealed;
