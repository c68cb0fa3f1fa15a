DROP INDEX refresh_tokens_sealed;
