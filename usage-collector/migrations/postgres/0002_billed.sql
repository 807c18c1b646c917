-- What the calling account's parent bills it, beside what the providers cost.
ALTER TABLE usage_events ADD COLUMN billed_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN billed_nanos BIGINT NOT NULL DEFAULT 0;
