-- Announcements an account posts for its descendants (the operator's, author_id NULL,
-- reach every account).
CREATE TABLE news (
    id TEXT PRIMARY KEY,
    author_id TEXT REFERENCES accounts (id),
    at INTEGER NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX news_author ON news (author_id, at);
