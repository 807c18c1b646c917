-- Raw events, stored once per id. The primary key is what makes replays harmless.
CREATE TABLE usage_events (
    id TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    day TEXT NOT NULL,
    account_id TEXT NOT NULL,
    main_account_id TEXT NOT NULL,
    account_chain TEXT NOT NULL,
    issued_key_id TEXT NOT NULL,
    provider_key_id TEXT,
    model_requested TEXT NOT NULL,
    model_served TEXT NOT NULL,
    level INTEGER NOT NULL,
    status INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    ttfb_ms INTEGER,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    usage_source TEXT NOT NULL,
    cost_nanos INTEGER NOT NULL,
    path TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    streamed INTEGER NOT NULL
);
CREATE INDEX usage_events_main_day ON usage_events (main_account_id, day);

-- Daily totals per account and served model, updated in the transaction that
-- inserts the raw event (and only when the insert was new).
CREATE TABLE usage_daily (
    day TEXT NOT NULL,
    main_account_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    PRIMARY KEY (day, account_id, model)
);
CREATE INDEX usage_daily_main_day ON usage_daily (main_account_id, day);
