-- The protocol a call's client spoke and the one its provider key spoke (they differ
-- when the call was translated); NULL for events stored before they were recorded.
ALTER TABLE usage_events ADD COLUMN client_protocol TEXT;
ALTER TABLE usage_events ADD COLUMN upstream_protocol TEXT;
