-- Prompt tokens written to the provider's cache: a part of input_tokens, priced apart.
ALTER TABLE usage_events ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;

-- Daily totals per provider key and served model, for the owner of the keys; updated
-- in the same transaction as usage_daily. Calls that reached no key are not here.
CREATE TABLE usage_daily_keys (
    main_account_id TEXT NOT NULL,
    day TEXT NOT NULL,
    provider_key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL,
    PRIMARY KEY (main_account_id, day, provider_key_id, model)
);
