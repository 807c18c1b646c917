-- Raw events newest first by who they are of: the main account's (the logs of a
-- whole tree) and the listed accounts' (the logs of a subtree the control plane
-- knows), so a page of either walks its own rows instead of every event by time.
CREATE INDEX usage_events_main_at ON usage_events (main_account_id, at_ms);
CREATE INDEX usage_events_account_at ON usage_events (account_id, at_ms);
