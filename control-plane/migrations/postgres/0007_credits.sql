-- Credit a parent allocated to an account (net of withdrawals), and credit the account
-- passed on to its own children. For every sub-account delegated <= allocated holds;
-- each change is one conditional UPDATE per counter inside one transaction, so
-- concurrent top-ups can never over-allocate.
ALTER TABLE accounts ADD COLUMN credit_allocated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN credit_delegated BIGINT NOT NULL DEFAULT 0;

-- Every allocation, for history.
CREATE TABLE credit_ledger (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    parent_id TEXT,
    actor TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX credit_ledger_account ON credit_ledger (account_id, at);
