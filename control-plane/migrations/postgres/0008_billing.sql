-- What an account's parent bills it (JSON; `{}` bills the provider cost as is).
ALTER TABLE accounts ADD COLUMN billing TEXT NOT NULL DEFAULT '{}';
