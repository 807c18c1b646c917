//! Credit allocations and the balances they add up to.

use sqlx::Row;
use switchyard_core::ids::AccountId;

use super::{AuditEntry, Store, StoreError};

/// One allocation of credit to an account.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CreditEntry {
    pub id: String,
    pub at_unix_ms: i64,
    pub account_id: String,
    /// `None` when the operator granted it.
    pub parent_id: Option<String>,
    pub actor: String,
    /// Positive: a top-up; negative: a withdrawal.
    pub amount_nanos: i64,
    pub note: String,
}

/// An account's credit counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CreditBalance {
    /// Allocated to it by its parent (net of withdrawals).
    pub allocated_nanos: i64,
    /// Passed on to its children.
    pub delegated_nanos: i64,
}

impl Store {
    /// Allocate `entry.amount_nanos` (negative: withdraw) to `entry.account_id` from its
    /// parent, all or nothing: the account keeps at least what it delegated, and a parent
    /// that is a sub-account never delegates more than it was allocated.
    pub async fn allocate_credit(
        &self,
        entry: &CreditEntry,
        parent_is_main: bool,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        self.write(audit, |tx| {
            Box::pin(async move {
                let amount = entry.amount_nanos;
                let child = sqlx::query(
                    "UPDATE accounts SET credit_allocated = credit_allocated + $1 \
                     WHERE id = $2 AND credit_allocated + $3 >= credit_delegated AND credit_allocated + $4 >= 0",
                )
                .bind(amount)
                .bind(entry.account_id.clone())
                .bind(amount)
                .bind(amount)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if child == 0 {
                    return Err(StoreError::Credit("the account would hold less than it has passed on to its children"));
                }
                if let Some(parent) = &entry.parent_id {
                    let bounded = if parent_is_main {
                        // Main accounts fund their trees from their own provider keys.
                        sqlx::query("UPDATE accounts SET credit_delegated = credit_delegated + $1 WHERE id = $2")
                            .bind(amount)
                            .bind(parent.clone())
                            .execute(&mut **tx)
                            .await?
                    } else {
                        sqlx::query(
                            "UPDATE accounts SET credit_delegated = credit_delegated + $1 \
                             WHERE id = $2 AND credit_delegated + $3 <= credit_allocated",
                        )
                        .bind(amount)
                        .bind(parent.clone())
                        .bind(amount)
                        .execute(&mut **tx)
                        .await?
                    };
                    if bounded.rows_affected() == 0 {
                        return Err(StoreError::Credit("the parent cannot cover it: it would pass on more than it was allocated"));
                    }
                }
                sqlx::query(
                    "INSERT INTO credit_ledger (id, at, account_id, parent_id, actor, amount_nanos, note) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(entry.id.clone())
                .bind(entry.at_unix_ms)
                .bind(entry.account_id.clone())
                .bind(entry.parent_id.clone())
                .bind(entry.actor.clone())
                .bind(amount)
                .bind(entry.note.clone())
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// An account's credit counters and its newest ledger entries.
    pub async fn credit(
        &self,
        account: AccountId,
        limit: u32,
    ) -> Result<(CreditBalance, Vec<CreditEntry>), StoreError> {
        self.credit_page(account, 0, limit).await
    }

    /// Like [`Self::credit`], the ledger's entries after the newest `offset`.
    pub async fn credit_page(
        &self,
        account: AccountId,
        offset: u32,
        limit: u32,
    ) -> Result<(CreditBalance, Vec<CreditEntry>), StoreError> {
        let row =
            sqlx::query("SELECT credit_allocated, credit_delegated FROM accounts WHERE id = $1")
                .bind(account.to_string())
                .fetch_optional(&self.db.pool)
                .await?
                .ok_or(StoreError::NotFound("account"))?;
        let balance = CreditBalance {
            allocated_nanos: row.try_get(0)?,
            delegated_nanos: row.try_get(1)?,
        };
        let rows = sqlx::query(
            "SELECT id, at, account_id, parent_id, actor, amount_nanos, note FROM credit_ledger \
             WHERE account_id = $1 ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3",
        )
        .bind(account.to_string())
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.db.pool)
        .await?;
        let entries = rows
            .iter()
            .map(|r| {
                Ok(CreditEntry {
                    id: r.try_get(0)?,
                    at_unix_ms: r.try_get(1)?,
                    account_id: r.try_get(2)?,
                    parent_id: r.try_get(3)?,
                    actor: r.try_get(4)?,
                    amount_nanos: r.try_get(5)?,
                    note: r.try_get(6)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((balance, entries))
    }
}
