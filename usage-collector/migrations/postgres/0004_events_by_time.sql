-- Retention deletes raw events by age.
CREATE INDEX usage_events_at ON usage_events (at_ms);
