//! The consistent read every snapshot is compiled from.

use sqlx::Row;
use switchyard_core::ids::AccountId;
use switchyard_core::snapshot::Snapshot;
use switchyard_db::Backend;

use super::rows::{account_from_row, key_at, parse_id, provider_from_row, to_u64};
use super::{Store, StoreError};

impl Store {
    /// Everything the data planes need, read at one consistent point in time.
    pub async fn load_snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut tx = self.db.pool.begin().await?;
        if self.db.backend == Backend::Postgres {
            // One snapshot for all the reads below (SQLite's read transaction already is).
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let revision = sqlx::query("SELECT revision FROM config_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let version = to_u64(revision.try_get::<i64, _>(0)?)?;
        let accounts =
            sqlx::query("SELECT id, parent_id, name, status, policy, billing FROM accounts")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(account_from_row)
                .collect::<Result<Vec<_>, _>>()?;
        let issued_keys =
            sqlx::query("SELECT id, account_id, hash, status, expires_at FROM issued_keys")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| key_at(r, 0))
                .collect::<Result<Vec<_>, StoreError>>()?;
        let provider_keys = sqlx::query(
            "SELECT id, owner_id, kind, base_url, secret_key_id, secret_blob, level, models, weight, status, discovered_models FROM provider_keys",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(provider_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let mut rules = std::collections::BTreeMap::new();
        for row in sqlx::query("SELECT owner_id, doc FROM rules")
            .fetch_all(&mut *tx)
            .await?
        {
            let owner: AccountId = parse_id(&row.try_get::<String, _>(0)?)?;
            let doc: String = row.try_get(1)?;
            let parsed = serde_json::from_str(&doc)
                .map_err(|e| StoreError::Corrupt(format!("rules: {e}")))?;
            rules.insert(owner, parsed);
        }
        tx.commit().await?;
        Ok(Snapshot {
            version,
            accounts,
            issued_keys,
            provider_keys,
            rules,
        })
    }
}
