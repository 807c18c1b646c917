-- What data planes last reported about a provider key: unknown, healthy, unhealthy.
ALTER TABLE provider_keys ADD COLUMN health TEXT NOT NULL DEFAULT 'unknown';
