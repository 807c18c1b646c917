-- An account's own policy as JSON (`{}` restricts nothing of its own).
ALTER TABLE accounts ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
