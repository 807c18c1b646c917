-- Daily totals per endpoint (the route's path: a fixed, bounded set) and served
-- model, for the owner's whole tree: token counting apart from generation. Updated in
-- the same transaction as usage_daily, from the same new events.
CREATE TABLE usage_daily_endpoints (
    main_account_id TEXT NOT NULL,
    day TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL,
    billed_nanos BIGINT NOT NULL,
    PRIMARY KEY (main_account_id, day, endpoint, model)
);
