-- When a resting provider key is tried again (Unix ms), as a data plane last reported;
-- health may now also be 'cooling_down'.
ALTER TABLE provider_keys ADD COLUMN health_until BIGINT;
