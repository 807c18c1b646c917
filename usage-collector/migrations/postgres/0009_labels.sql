-- The end user a call's body named and the call's tag (x-switchyard-tag); NULL when
-- it carried none. The logs filter by each.
ALTER TABLE usage_events ADD COLUMN end_user TEXT;
ALTER TABLE usage_events ADD COLUMN tag TEXT;
CREATE INDEX usage_events_end_user ON usage_events (end_user, at_ms) WHERE end_user IS NOT NULL;
CREATE INDEX usage_events_tag ON usage_events (tag, at_ms) WHERE tag IS NOT NULL;

-- Daily totals per calling account, label kind ('user', 'session' or 'tag'), label
-- value and served model, updated in the same transaction as usage_daily from the
-- same new events. Every call counts once under each kind: under its value, under ''
-- when it carried none, or, past the day's cap of distinct values, under 'other'
-- with folded = 1 (so a value that is itself "other" keeps a row of its own). Keyed
-- by calling account, so a bill can be restricted to a subtree as usage_daily is.
CREATE TABLE usage_daily_labels (
    day TEXT NOT NULL,
    main_account_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    folded BIGINT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL,
    billed_nanos BIGINT NOT NULL,
    PRIMARY KEY (account_id, day, kind, label, folded, model)
);
CREATE INDEX usage_daily_labels_main_day ON usage_daily_labels (main_account_id, day, kind);

-- How many distinct values of a label kind an account's day admitted (kept rows of
-- their own); the cap is checked against it. Its row is also the lock that
-- serialises admission for that account, day and kind across writers and replicas.
CREATE TABLE usage_label_days (
    account_id TEXT NOT NULL,
    day TEXT NOT NULL,
    kind TEXT NOT NULL,
    admitted BIGINT NOT NULL,
    PRIMARY KEY (account_id, day, kind)
);
