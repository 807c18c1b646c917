//! Accounts and their tree.

use sqlx::Row;
use switchyard_core::billing::Billing;
use switchyard_core::ids::AccountId;
use switchyard_core::policy::Policy;
use switchyard_core::snapshot::{Account, Status};

use super::keys::insert_issued_key;
use super::rows::{parse_id, policy_json, record_from_row, to_u32};
use super::{AuditEntry, IssuedKeyRecord, Store, StoreError};

/// An account row with its bookkeeping fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRecord {
    pub account: Account,
    pub created_at_ms: i64,
}

/// A change to an account; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct AccountUpdate {
    pub name: Option<String>,
    pub status: Option<Status>,
    pub policy: Option<Policy>,
    pub billing: Option<Billing>,
}

impl Store {
    /// Create an account and its first issued key, atomically.
    pub async fn create_account(
        &self,
        account: &AccountRecord,
        key: &IssuedKeyRecord,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        self.write(audit, |tx| {
            Box::pin(async move {
                if let Some(parent) = account.account.parent {
                    let found = sqlx::query("SELECT 1 FROM accounts WHERE id = $1")
                        .bind(parent.to_string())
                        .fetch_optional(&mut **tx)
                        .await?;
                    if found.is_none() {
                        return Err(StoreError::NotFound("parent account"));
                    }
                }
                sqlx::query("INSERT INTO accounts (id, parent_id, name, status, created_at, policy, billing) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(account.account.id.to_string())
                    .bind(account.account.parent.map(|p| p.to_string()))
                    .bind(account.account.name.clone())
                    .bind(account.account.status.as_str())
                    .bind(account.created_at_ms)
                    .bind(policy_json(&account.account.policy)?)
                    .bind(
                        serde_json::to_string(&account.account.billing)
                            .map_err(|e| StoreError::Corrupt(format!("billing: {e}")))?,
                    )
                    .execute(&mut **tx)
                    .await?;
                insert_issued_key(tx, key).await?;
                Ok(())
            })
        })
        .await
    }

    /// The ancestors of an account, nearest first (empty for a main account).
    pub async fn ancestors(&self, id: AccountId) -> Result<Vec<AccountRecord>, StoreError> {
        let rows = sqlx::query(
            "WITH RECURSIVE up(id, parent_id, name, status, created_at, policy, billing, depth) AS ( \
               SELECT id, parent_id, name, status, created_at, policy, billing, 0 FROM accounts WHERE id = $1 \
               UNION ALL \
               SELECT a.id, a.parent_id, a.name, a.status, a.created_at, a.policy, a.billing, up.depth + 1 \
               FROM accounts a JOIN up ON a.id = up.parent_id \
             ) SELECT id, parent_id, name, status, policy, billing, created_at FROM up WHERE depth > 0 ORDER BY depth",
        )
        .bind(id.to_string())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Change an account's name, status or own policy.
    pub async fn update_account(
        &self,
        id: AccountId,
        update: &AccountUpdate,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        self.write(audit, |tx| {
            Box::pin(async move {
                let found = sqlx::query("SELECT 1 FROM accounts WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
                if found.is_none() {
                    return Err(StoreError::NotFound("account"));
                }
                if let Some(name) = &update.name {
                    sqlx::query("UPDATE accounts SET name = $1 WHERE id = $2")
                        .bind(name.clone())
                        .bind(id.to_string())
                        .execute(&mut **tx)
                        .await?;
                }
                if let Some(status) = update.status {
                    sqlx::query("UPDATE accounts SET status = $1 WHERE id = $2")
                        .bind(status.as_str())
                        .bind(id.to_string())
                        .execute(&mut **tx)
                        .await?;
                }
                if let Some(billing) = &update.billing {
                    let text = serde_json::to_string(billing)
                        .map_err(|e| StoreError::Corrupt(format!("billing: {e}")))?;
                    sqlx::query("UPDATE accounts SET billing = $1 WHERE id = $2")
                        .bind(text)
                        .bind(id.to_string())
                        .execute(&mut **tx)
                        .await?;
                }
                if let Some(policy) = &update.policy {
                    sqlx::query("UPDATE accounts SET policy = $1 WHERE id = $2")
                        .bind(policy_json(policy)?)
                        .bind(id.to_string())
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Descendants of `top` (or every account, main accounts at depth 1, for `None`),
    /// breadth first, at most `max_depth` below, paged by `offset` and `limit`.
    pub async fn descendants(
        &self,
        top: Option<AccountId>,
        max_depth: u32,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<(AccountRecord, u32)>, StoreError> {
        self.descendants_named(top, max_depth, None, offset, limit)
            .await
    }

    /// Like [`Self::descendants`], only those whose name contains `name` (ignoring
    /// case as the database's `LOWER` does: every letter on Postgres, ASCII on
    /// SQLite). The walk follows the parent index; the filter keeps its rows.
    pub async fn descendants_named(
        &self,
        top: Option<AccountId>,
        max_depth: u32,
        name: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<(AccountRecord, u32)>, StoreError> {
        let query = match top {
            Some(_) => {
                "WITH RECURSIVE down(id, depth) AS ( \
                   SELECT id, 0 FROM accounts WHERE id = $1 \
                   UNION ALL \
                   SELECT a.id, down.depth + 1 FROM accounts a JOIN down ON a.parent_id = down.id WHERE down.depth < $2 \
                 ) SELECT a.id, a.parent_id, a.name, a.status, a.policy, a.billing, a.created_at, down.depth \
                 FROM down JOIN accounts a ON a.id = down.id WHERE down.depth > 0 \
                 AND ($5 = '' OR LOWER(a.name) LIKE LOWER($6) ESCAPE '\\') \
                 ORDER BY down.depth, a.created_at, a.id LIMIT $3 OFFSET $4"
            }
            None => {
                "WITH RECURSIVE down(id, depth) AS ( \
                   SELECT id, 1 FROM accounts WHERE parent_id IS NULL AND $1 = $1 \
                   UNION ALL \
                   SELECT a.id, down.depth + 1 FROM accounts a JOIN down ON a.parent_id = down.id WHERE down.depth < $2 \
                 ) SELECT a.id, a.parent_id, a.name, a.status, a.policy, a.billing, a.created_at, down.depth \
                 FROM down JOIN accounts a ON a.id = down.id \
                 WHERE ($5 = '' OR LOWER(a.name) LIKE LOWER($6) ESCAPE '\\') \
                 ORDER BY down.depth, a.created_at, a.id LIMIT $3 OFFSET $4"
            }
        };
        let name = name.unwrap_or_default();
        let rows = sqlx::query(query)
            .bind(top.map(|t| t.to_string()).unwrap_or_default())
            .bind(i64::from(max_depth))
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .bind(name.to_owned())
            .bind(contains_pattern(name))
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let depth: i64 = r.try_get(7)?;
                Ok((record_from_row(r)?, to_u32(depth)?))
            })
            .collect()
    }

    /// Delete an account with its keys; with `cascade`, its whole subtree too.
    /// Returns how many accounts went. Refused while it has descendants otherwise.
    pub async fn delete_account(
        &self,
        id: AccountId,
        cascade: bool,
        audit: &AuditEntry,
    ) -> Result<(u64, usize), StoreError> {
        self.write_with(audit, |tx| {
            Box::pin(async move {
                let rows = sqlx::query(
                    "WITH RECURSIVE down(id, depth) AS ( \
                   SELECT id, 0 FROM accounts WHERE id = $1 \
                   UNION ALL \
                   SELECT a.id, down.depth + 1 FROM accounts a JOIN down ON a.parent_id = down.id \
                 ) SELECT id FROM down ORDER BY depth DESC",
                )
                .bind(id.to_string())
                .fetch_all(&mut **tx)
                .await?;
                if rows.is_empty() {
                    return Err(StoreError::NotFound("account"));
                }
                if rows.len() > 1 && !cascade {
                    return Err(StoreError::HasDescendants(rows.len() - 1));
                }
                // The subtree's credit goes back to the parent's pool.
                sqlx::query(
                    "UPDATE accounts SET credit_delegated = credit_delegated - \
                 (SELECT credit_allocated FROM accounts WHERE id = $1) \
                 WHERE id = (SELECT parent_id FROM accounts WHERE id = $2)",
                )
                .bind(id.to_string())
                .bind(id.to_string())
                .execute(&mut **tx)
                .await?;
                // Deepest first, so no row is left pointing at a deleted parent.
                for row in &rows {
                    let account: String = row.try_get(0)?;
                    for statement in [
                        "DELETE FROM credit_ledger WHERE account_id = $1",
                        "DELETE FROM news WHERE author_id = $1",
                        "DELETE FROM rules WHERE owner_id = $1",
                        "DELETE FROM issued_keys WHERE account_id = $1",
                        "DELETE FROM provider_keys WHERE owner_id = $1",
                        "DELETE FROM accounts WHERE id = $1",
                    ] {
                        sqlx::query(statement)
                            .bind(account.clone())
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                Ok(rows.len())
            })
        })
        .await
        .map(|(deleted, revision)| (revision, deleted))
    }

    /// An account and every descendant, at any depth.
    pub async fn subtree(&self, id: AccountId) -> Result<Vec<AccountId>, StoreError> {
        let rows = sqlx::query(
            "WITH RECURSIVE down(id) AS ( \
               SELECT id FROM accounts WHERE id = $1 \
               UNION ALL \
               SELECT a.id FROM accounts a JOIN down ON a.parent_id = down.id \
             ) SELECT id FROM down",
        )
        .bind(id.to_string())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| parse_id(&r.try_get::<String, _>(0)?))
            .collect()
    }

    /// Every account of `id`'s subtree with the account its usage is summed under in
    /// a bill per direct child: the direct child of `id` whose subtree holds it (`id`
    /// itself for `id`).
    pub async fn subtree_by_child(
        &self,
        id: AccountId,
    ) -> Result<Vec<(AccountId, AccountId)>, StoreError> {
        let rows = sqlx::query(
            "WITH RECURSIVE down(id, child) AS ( \
               SELECT id, id FROM accounts WHERE id = $1 \
               UNION ALL \
               SELECT a.id, CASE WHEN down.id = $2 THEN a.id ELSE down.child END \
               FROM accounts a JOIN down ON a.parent_id = down.id \
             ) SELECT id, child FROM down",
        )
        .bind(id.to_string())
        .bind(id.to_string())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_id(&r.try_get::<String, _>(0)?)?,
                    parse_id(&r.try_get::<String, _>(1)?)?,
                ))
            })
            .collect()
    }

    pub async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, parent_id, name, status, policy, billing, created_at FROM accounts WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Every main account's id.
    pub async fn main_accounts(&self) -> Result<Vec<AccountId>, StoreError> {
        let rows =
            sqlx::query("SELECT id FROM accounts WHERE parent_id IS NULL ORDER BY created_at, id")
                .fetch_all(&self.db.pool)
                .await?;
        rows.iter()
            .map(|r| parse_id(&r.try_get::<String, _>(0)?))
            .collect()
    }
}

/// A `LIKE` pattern (escape character `\`) matching any text that contains `text`.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_patterns_match_the_text_literally() {
        assert_eq!(contains_pattern("team"), "%team%");
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
