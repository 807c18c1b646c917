-- What a provider key's upstream itself lists as its models: a JSON array of names
-- (at most 1000, each one a call may carry), when the list was last asked for (Unix
-- ms), and why that failed (NULL: it answered).
ALTER TABLE provider_keys ADD COLUMN discovered_models TEXT NOT NULL DEFAULT '[]';
ALTER TABLE provider_keys ADD COLUMN discovered_at BIGINT;
ALTER TABLE provider_keys ADD COLUMN discovery_error TEXT;
