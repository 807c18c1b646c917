-- The configuration version whose price table priced each call.
ALTER TABLE usage_events ADD COLUMN price_version BIGINT NOT NULL DEFAULT 0;
