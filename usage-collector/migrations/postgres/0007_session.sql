-- The client's session, from its session header (Claude Code's, Codex CLI's or
-- x-switchyard-session); NULL when the call named none. The logs filter by it.
ALTER TABLE usage_events ADD COLUMN session TEXT;
CREATE INDEX usage_events_session ON usage_events (session, at_ms) WHERE session IS NOT NULL;
