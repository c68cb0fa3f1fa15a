-- A spent refresh token remembers its successor, so that a client retrying the same
-- refresh within the grace window gets the same successor back instead of having its
-- session revoked. The successor is kept sealed with a key only the spent token's
-- holder can derive (see crates/auth/src/tokens.rs); its hash finds whether it was
-- used since.
ALTER TABLE refresh_tokens
    ADD COLUMN successor_hash bytea,
    ADD COLUMN successor_sealed bytea;
