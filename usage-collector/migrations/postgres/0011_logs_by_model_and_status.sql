-- A whole tree's events newest first by served model and by status, so the logs
-- filtered by either (or both: the planner walks one and checks the other) read
-- their own rows instead of every event of the tree by time.
CREATE INDEX usage_events_main_model_at ON usage_events (main_account_id, model_served, at_ms);
CREATE INDEX usage_events_main_status_at ON usage_events (main_account_id, status, at_ms);
-- Daily rows by account and day: a bill per direct child looks up each account of
-- the subtree it maps to a child, instead of every row of the tree per account.
CREATE INDEX usage_daily_account_day ON usage_daily (account_id, day);
