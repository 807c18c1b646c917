//! Issued keys (what accounts call with) and provider keys (what a main account
//! calls upstreams with), with the health data planes report.

use sqlx::{Any, Row, Transaction};
use switchyard_core::apikey::{self, KeyHash};
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use switchyard_core::passthrough;
use switchyard_core::secret::Secret;
use switchyard_core::snapshot::{Account, IssuedKey, ProviderKey, Status};

use super::audit::bump;
use super::rows::{
    account_at, key_at, models_json, names_from_json, provider_from_row, provider_record_from_row,
};
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
    /// When its upstream was last asked for its models (Unix ms).
    pub discovered_at_ms: Option<i64>,
    /// Why that failed; `None` when it answered.
    pub discovery_error: Option<String>,
}

/// What asking a key's upstream for its models came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// The models it listed (kept as `core::model_list::kept` keeps them).
    Listed(Vec<String>),
    /// It has no model list (404): the key's list is emptied.
    NoList,
    /// Any other failure: the list last learnt stays.
    Failed(String),
}

impl Discovery {
    /// The key's list after this outcome; `None`: the one it had stays.
    pub fn models(&self) -> Option<&[String]> {
        match self {
            Self::Listed(models) => Some(models),
            Self::NoList => Some(&[]),
            Self::Failed(_) => None,
        }
    }

    /// Why the asking failed, as the key shows it.
    pub fn error(&self) -> Option<String> {
        match self {
            Self::Listed(_) => None,
            Self::NoList => Some("no model list".to_owned()),
            Self::Failed(why) => Some(why.clone()),
        }
    }
}

impl ProviderKeyRecord {
    /// Take in what the upstream said at `at_ms`, as [`Store::record_discovery`]
    /// stores it.
    pub fn learn(&mut self, outcome: &Discovery, at_ms: i64) {
        if let Some(models) = outcome.models() {
            self.key.discovered_models = models.to_vec();
        }
        self.discovered_at_ms = Some(at_ms);
        self.discovery_error = outcome.error();
    }
}

/// What recording a [`Discovery`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryRecorded {
    /// The key is gone, or its kind or base URL changed since it was asked: nothing.
    Stale,
    /// The list is as it was: the time and error only, no new revision.
    Unchanged,
    /// The list changed, at this configuration revision.
    Changed(u64),
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
        let query =
            sqlx::query("UPDATE issued_keys SET status = $1 WHERE id = $2 AND account_id = $3")
                .bind(Status::Disabled.as_str())
                .bind(key.to_string())
                .bind(account.to_string());
        self.write_one(audit, "key", query).await
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
            "SELECT id, owner_id, kind, base_url, secret_key_id, secret_blob, level, models, weight, status, discovered_models, \
             secret_hint, health, created_at, health_until, discovered_at, discovery_error \
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
            "SELECT id, owner_id, kind, base_url, secret_key_id, secret_blob, level, models, weight, status, discovered_models, \
             secret_hint, health, created_at, health_until, discovered_at, discovery_error \
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
        let query = sqlx::query(
            // A list learnt from another upstream is not this one's: it goes
            // when the kind or base URL changes (SET sees the old row).
            "UPDATE provider_keys SET \
             discovered_models = CASE WHEN kind = $12 AND base_url = $13 THEN discovered_models ELSE '[]' END, \
             discovered_at = CASE WHEN kind = $12 AND base_url = $13 THEN discovered_at ELSE NULL END, \
             discovery_error = CASE WHEN kind = $12 AND base_url = $13 THEN discovery_error ELSE NULL END, \
             kind = $1, base_url = $2, secret_key_id = $3, secret_blob = $4, secret_hint = $5, \
             level = $6, models = $7, weight = $8, status = $9 WHERE id = $10 AND owner_id = $11",
        );
        let query = bind_settings(query, record, models_json(&k.models)?)
            .bind(k.id.to_string())
            .bind(k.owner.to_string())
            .bind(passthrough::stored_kind(k.kind, k.passthrough))
            .bind(k.base_url.clone());
        self.write_one(audit, "provider key", query).await
    }

    /// Record what `key`'s upstream said of its models, if the key still has the kind
    /// and base URL it was asked with. A changed list bumps the configuration revision
    /// (it travels in the snapshot); it is an observation, not a change anyone made,
    /// so it has no audit entry, as health has none.
    pub async fn record_discovery(
        &self,
        key: &ProviderKey,
        outcome: &Discovery,
        at_ms: i64,
    ) -> Result<DiscoveryRecorded, StoreError> {
        let error = outcome.error();
        let mut tx = self.db.pool.begin().await?;
        // A write first: on SQLite the transaction then holds the write lock (and
        // waits for it), rather than failing to upgrade a read lock later.
        let matched = sqlx::query(
            "UPDATE provider_keys SET discovered_at = $1, discovery_error = $2 \
             WHERE id = $3 AND owner_id = $4 AND kind = $5 AND base_url = $6",
        )
        .bind(at_ms)
        .bind(error)
        .bind(key.id.to_string())
        .bind(key.owner.to_string())
        .bind(passthrough::stored_kind(key.kind, key.passthrough))
        .bind(key.base_url.clone())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if matched == 0 {
            tx.rollback().await?;
            return Ok(DiscoveryRecorded::Stale);
        }
        let Some(after) = outcome.models() else {
            tx.commit().await?;
            return Ok(DiscoveryRecorded::Unchanged);
        };
        let stored = sqlx::query("SELECT discovered_models FROM provider_keys WHERE id = $1")
            .bind(key.id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let recorded = if names_from_json(&stored.try_get::<String, _>(0)?)? == after {
            DiscoveryRecorded::Unchanged
        } else {
            let text = serde_json::to_string(after)
                .map_err(|e| StoreError::Corrupt(format!("discovered models: {e}")))?;
            sqlx::query("UPDATE provider_keys SET discovered_models = $1 WHERE id = $2")
                .bind(text)
                .bind(key.id.to_string())
                .execute(&mut *tx)
                .await?;
            DiscoveryRecorded::Changed(bump(&mut tx).await?)
        };
        tx.commit().await?;
        Ok(recorded)
    }

    /// Every provider key of every main account, for the leader's rounds.
    pub async fn all_provider_keys(&self) -> Result<Vec<ProviderKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, owner_id, kind, base_url, secret_key_id, secret_blob, level, models, weight, status, discovered_models \
             FROM provider_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(provider_from_row).collect()
    }

    pub async fn delete_provider_key(
        &self,
        owner: AccountId,
        id: ProviderKeyId,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        let query = sqlx::query("DELETE FROM provider_keys WHERE id = $1 AND owner_id = $2")
            .bind(id.to_string())
            .bind(owner.to_string());
        self.write_one(audit, "provider key", query).await
    }

    pub async fn add_provider_key(
        &self,
        record: &ProviderKeyRecord,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        let k = &record.key;
        let models = models_json(&k.models)?;
        let discovered = serde_json::to_string(&k.discovered_models)
            .map_err(|e| StoreError::Corrupt(format!("discovered models: {e}")))?;
        self.write(audit, |tx| {
            Box::pin(async move {
                let query = sqlx::query(
                    "INSERT INTO provider_keys (id, owner_id, kind, base_url, secret_key_id, secret_blob, secret_hint, level, models, weight, status, created_at, \
                     discovered_models, discovered_at, discovery_error) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(k.id.to_string())
                .bind(k.owner.to_string());
                bind_settings(query, record, models)
                    .bind(record.created_at_ms)
                    .bind(discovered)
                    .bind(record.discovered_at_ms)
                    .bind(record.discovery_error.clone())
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

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// Binds a provider key's settings, in the column order both its insert and its
/// update name them: kind, base URL, secret (key id, blob, hint), level, `models`
/// (as JSON), weight, status.
fn bind_settings<'q>(
    query: AnyQuery<'q>,
    record: &'q ProviderKeyRecord,
    models: String,
) -> AnyQuery<'q> {
    let k = &record.key;
    query
        .bind(passthrough::stored_kind(k.kind, k.passthrough))
        .bind(k.base_url.clone())
        .bind(k.secret.key_id.clone())
        .bind(k.secret.blob.clone())
        .bind(record.secret_hint.clone())
        .bind(i64::from(k.level))
        .bind(models)
        .bind(i64::from(k.weight))
        .bind(k.status.as_str())
}
