//! A main account's rules document, versioned for optimistic writes.

use sqlx::Row;
use switchyard_core::ids::AccountId;
use switchyard_core::rules::Rules;

use super::{AuditEntry, Store, StoreError};

impl Store {
    /// A main account's rules and their version (0 when it has none yet).
    pub async fn rules(&self, owner: AccountId) -> Result<(Rules, i64), StoreError> {
        let row = sqlx::query("SELECT doc, version FROM rules WHERE owner_id = $1")
            .bind(owner.to_string())
            .fetch_optional(&self.db.pool)
            .await?;
        match row {
            None => Ok((Rules::default(), 0)),
            Some(r) => {
                let doc: String = r.try_get(0)?;
                let rules = serde_json::from_str(&doc)
                    .map_err(|e| StoreError::Corrupt(format!("rules: {e}")))?;
                Ok((rules, r.try_get(1)?))
            }
        }
    }

    /// Store a main account's rules if they are still at `expected` version.
    pub async fn put_rules(
        &self,
        owner: AccountId,
        rules: &Rules,
        expected: i64,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        let doc =
            serde_json::to_string(rules).map_err(|e| StoreError::Corrupt(format!("rules: {e}")))?;
        self.write(audit, |tx| {
            Box::pin(async move {
                let changed = if expected == 0 {
                    sqlx::query("INSERT INTO rules (owner_id, doc, version) VALUES ($1, $2, 1) ON CONFLICT (owner_id) DO NOTHING")
                        .bind(owner.to_string())
                        .bind(doc)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                } else {
                    sqlx::query("UPDATE rules SET doc = $1, version = version + 1 WHERE owner_id = $2 AND version = $3")
                        .bind(doc)
                        .bind(owner.to_string())
                        .bind(expected)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                };
                if changed == 0 {
                    return Err(StoreError::Conflict("rules"));
                }
                Ok(())
            })
        })
        .await
    }
}
