//! Issued keys (what accounts call with) and provider keys (what a main account
//! calls upstreams with), with the health data planes report.

use sqlx::{Any, Row, Transaction};
use switchyard_core::apikey::{self, KeyHash};
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use switchyard_core::secret::Secret;
use switchyard_core::snapshot::{Account, IssuedKey, ProviderKey, Status};

use super::rows::{account_at, key_at, models_json, one_changed, provider_record_from_row};
use super::{AuditEntry, Store, StoreError};

#[derive(Clone, Debug)]
pub struct IssuedKeyRecord {
    pub key: IssuedKey,
    /// A non-secret tail for display.
    pub tail: String,
    pub created_at_ms: i64,
}

impl IssuedKeyRecord {
    /// A fresh key for `account`: the record to store and the clear text to show once.
    pub fn fresh(
        account: AccountId,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> (Self, Secret<String>) {
        let new_key = apikey::generate();
        let record = Self {
            key: IssuedKey {
                id: IssuedKeyId::new(),
                account,
                hash: new_key.hash,
                expires_at_ms,
                status: Status::Active,
            },
            tail: apikey::display_tail(new_key.clear.expose()),
            created_at_ms: now_ms,
        };
        (record, new_key.clear)
    }
}

#[derive(Clone, Debug)]
pub struct ProviderKeyRecord {
    pub key: ProviderKey,
    /// The last characters of the secret, for recognition.
    pub secret_hint: String,
    /// What data planes last reported: `unknown`, `healthy`, `cooling_down` or
    /// `unhealthy`.
    pub health: String,
    /// When a resting key is tried again (Unix ms).
    pub health_until_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// A data plane's word on one provider key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyHealthReport {
    pub id: ProviderKeyId,
    pub health: &'static str,
    pub until_ms: Option<i64>,
}

/// The query of an issued key and its account by one column of the key (`$1`).
macro_rules! key_and_account_by {
    ($column:literal) => {
        concat!(
            "SELECT k.id, k.account_id, k.hash, k.status, k.expires_at, a.id, a.parent_id, a.name, a.status, a.policy, a.billing \
             FROM issued_keys k JOIN accounts a ON a.id = k.account_id WHERE k.",
            $column,
            " = $1"
        )
    };
}
pub(super) use key_and_account_by;

impl Store {
    /// Another key for an account; with `retire`, the key that key replaces expires at
    /// the given time (now for an immediate stop) in the same transaction.
    pub async fn add_issued_key(
        &self,
        key: &IssuedKeyRecord,
        retire: Option<(IssuedKeyId, i64)>,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        self.write(audit, |tx| {
            Box::pin(async move {
                insert_issued_key(tx, key).await?;
                if let Some((old, at)) = retire {
                    // Never lengthen a key's life: keep an earlier expiry if it has one.
                    sqlx::query(
                        "UPDATE issued_keys SET expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at < $1 \
                         THEN expires_at ELSE $2 END WHERE id = $3 AND account_id = $4",
                    )
                    .bind(at)
                    .bind(at)
                    .bind(old.to_string())
                    .bind(key.key.account.to_string())
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// The issued keys of an account, oldest first.
    pub async fn issued_keys(
        &self,
        account: AccountId,
    ) -> Result<Vec<IssuedKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, hash, status, expires_at, tail, created_at FROM issued_keys \
             WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account.to_string())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IssuedKeyRecord {
                    key: key_at(r, 0)?,
                    tail: r.try_get(5)?,
                    created_at_ms: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Revoke one key of an account.
    pub async fn revoke_key(
        &self,
        account: AccountId,
        key: IssuedKeyId,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        self.write(audit, |tx| {
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE issued_keys SET status = $1 WHERE id = $2 AND account_id = $3",
                )
                .bind(Status::Disabled.as_str())
                .bind(key.to_string())
                .bind(account.to_string())
                .execute(&mut **tx)
                .await?
                .rows_affected();
                one_changed(changed, "key")
            })
        })
        .await
    }

    /// The issued key with this hash and the account holding it.
    pub async fn find_key(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<(IssuedKey, Account)>, StoreError> {
        self.key_and_account(key_and_account_by!("hash"), hash.to_hex())
            .await
    }

    /// An issued key and its account, read by [`key_and_account_by`]'s query.
    pub(super) async fn key_and_account(
        &self,
        sql: &'static str,
        value: String,
    ) -> Result<Option<(IssuedKey, Account)>, StoreError> {
        let row = sqlx::query(sql)
            .bind(value)
            .fetch_optional(&self.db.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((key_at(&row, 0)?, account_at(&row, 5)?)))
    }

    /// The provider keys of a main account, oldest first.
    pub async fn provider_keys(
        &self,
        owner: AccountId,
    ) -> Result<Vec<ProviderKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, owner_id, kind, base_url, secret_key_id, secret_blob, level, models, weight, status, secret_hint, health, created_at, health_until \
             FROM provider_keys WHERE owner_id = $1 ORDER BY created_at, id",
        )
        .bind(owner.to_string())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(provider_record_from_row).collect()
    }

    pub async fn provider_key(
        &self,
        owner: AccountId,
        id: ProviderKeyId,
    ) -> Result<Option<ProviderKeyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, owner_id, kind, base_url, secret_key_id, secret_blob, level, models, weight, status, secret_hint, health, created_at, health_until \
             FROM provider_keys WHERE owner_id = $1 AND id = $2",
        )
        .bind(owner.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(provider_record_from_row).transpose()
    }

    /// Replace a provider key's settings (its id, owner and creation time stay).
    pub async fn update_provider_key(
        &self,
        record: &ProviderKeyRecord,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        let k = &record.key;
        self.write(audit, |tx| {
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE provider_keys SET kind = $1, base_url = $2, secret_key_id = $3, secret_blob = $4, secret_hint = $5, \
                     level = $6, models = $7, weight = $8, status = $9 WHERE id = $10 AND owner_id = $11",
                )
                .bind(k.kind.as_str())
                .bind(k.base_url.clone())
                .bind(k.secret.key_id.clone())
                .bind(k.secret.blob.clone())
                .bind(record.secret_hint.clone())
                .bind(i64::from(k.level))
                .bind(models_json(&k.models)?)
                .bind(i64::from(k.weight))
                .bind(k.status.as_str())
                .bind(k.id.to_string())
                .bind(k.owner.to_string())
                .execute(&mut **tx)
                .await?
                .rows_affected();
                one_changed(changed, "provider key")
            })
        })
        .await
    }

    pub async fn delete_provider_key(
        &self,
        owner: AccountId,
        id: ProviderKeyId,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        self.write(audit, |tx| {
            Box::pin(async move {
                let changed =
                    sqlx::query("DELETE FROM provider_keys WHERE id = $1 AND owner_id = $2")
                        .bind(id.to_string())
                        .bind(owner.to_string())
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                one_changed(changed, "provider key")
            })
        })
        .await
    }

    pub async fn add_provider_key(
        &self,
        record: &ProviderKeyRecord,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        let k = &record.key;
        let models = models_json(&k.models)?;
        self.write(audit, |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO provider_keys (id, owner_id, kind, base_url, secret_key_id, secret_blob, secret_hint, level, models, weight, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(k.id.to_string())
                .bind(k.owner.to_string())
                .bind(k.kind.as_str())
                .bind(k.base_url.clone())
                .bind(k.secret.key_id.clone())
                .bind(k.secret.blob.clone())
                .bind(record.secret_hint.clone())
                .bind(i64::from(k.level))
                .bind(models)
                .bind(i64::from(k.weight))
                .bind(k.status.as_str())
                .bind(record.created_at_ms)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Record what a data plane reported about provider keys. Health is an observation,
    /// not configuration: no revision bump, no audit entry. Unknown ids are skipped
    /// (a key deleted since the report).
    pub async fn record_key_health(&self, reports: &[KeyHealthReport]) -> Result<(), StoreError> {
        let mut tx = self.db.pool.begin().await?;
        for r in reports {
            sqlx::query("UPDATE provider_keys SET health = $1, health_until = $2 WHERE id = $3")
                .bind(r.health)
                .bind(r.until_ms)
                .bind(r.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

pub(super) async fn insert_issued_key(
    tx: &mut Transaction<'_, Any>,
    key: &IssuedKeyRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO issued_keys (id, account_id, hash, tail, status, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(key.key.id.to_string())
    .bind(key.key.account.to_string())
    .bind(key.key.hash.to_hex())
    .bind(key.tail.clone())
    .bind(key.key.status.as_str())
    .bind(key.key.expires_at_ms)
    .bind(key.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
