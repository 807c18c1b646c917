//! Reading rows back into records, and the JSON columns.

use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_core::apikey::KeyHash;
use switchyard_core::crypto::Sealed;
use switchyard_core::model::ModelPattern;
use switchyard_core::passthrough;
use switchyard_core::policy::Policy;
use switchyard_core::snapshot::{Account, IssuedKey, ProviderKey, Status};

use super::{AccountRecord, ProviderKeyRecord, StoreError};

pub(super) fn policy_json(policy: &Policy) -> Result<String, StoreError> {
    serde_json::to_string(policy).map_err(|e| StoreError::Corrupt(format!("policy: {e}")))
}

/// Columns: id, parent_id, name, status, policy, created_at.
pub(super) fn record_from_row(row: &AnyRow) -> Result<AccountRecord, StoreError> {
    Ok(AccountRecord {
        account: account_from_row(row)?,
        created_at_ms: row.try_get(6)?,
    })
}

/// Columns from `at`: id, account_id, hash, status, expires_at.
pub(super) fn key_at(row: &AnyRow, at: usize) -> Result<IssuedKey, StoreError> {
    Ok(IssuedKey {
        id: parse_id(&row.try_get::<String, _>(at)?)?,
        account: parse_id(&row.try_get::<String, _>(at + 1)?)?,
        hash: parse_hash(&row.try_get::<String, _>(at + 2)?)?,
        status: parse_status(&row.try_get::<String, _>(at + 3)?)?,
        expires_at_ms: row.try_get::<Option<i64>, _>(at + 4)?,
    })
}

pub(super) fn account_from_row(row: &AnyRow) -> Result<Account, StoreError> {
    account_at(row, 0)
}

/// Columns from `at`: id, parent_id, name, status, policy, billing.
pub(super) fn account_at(row: &AnyRow, at: usize) -> Result<Account, StoreError> {
    let policy: String = row.try_get(at + 4)?;
    let billing: String = row.try_get(at + 5)?;
    Ok(Account {
        id: parse_id(&row.try_get::<String, _>(at)?)?,
        parent: row
            .try_get::<Option<String>, _>(at + 1)?
            .as_deref()
            .map(parse_id)
            .transpose()?,
        name: row.try_get(at + 2)?,
        status: parse_status(&row.try_get::<String, _>(at + 3)?)?,
        policy: serde_json::from_str(&policy)
            .map_err(|e| StoreError::Corrupt(format!("policy: {e}")))?,
        billing: serde_json::from_str(&billing)
            .map_err(|e| StoreError::Corrupt(format!("billing: {e}")))?,
    })
}

pub(super) fn models_json(models: &[ModelPattern]) -> Result<String, StoreError> {
    serde_json::to_string(models).map_err(|e| StoreError::Corrupt(format!("models: {e}")))
}

/// Columns: the provider columns, then secret_hint, health, created_at, health_until,
/// discovered_at, discovery_error.
pub(super) fn provider_record_from_row(row: &AnyRow) -> Result<ProviderKeyRecord, StoreError> {
    Ok(ProviderKeyRecord {
        key: provider_from_row(row)?,
        secret_hint: row.try_get(11)?,
        health: row.try_get(12)?,
        created_at_ms: row.try_get(13)?,
        health_until_ms: row.try_get(14)?,
        discovered_at_ms: row.try_get(15)?,
        discovery_error: row.try_get(16)?,
    })
}

/// A JSON array of names, as `discovered_models` holds them.
pub(super) fn names_from_json(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("discovered models: {e}")))
}

/// Columns: id, owner_id, kind, base_url, secret_key_id, secret_blob, level, models,
/// weight, status, discovered_models.
pub(super) fn provider_from_row(row: &AnyRow) -> Result<ProviderKey, StoreError> {
    let kind: String = row.try_get(2)?;
    let (kind, passthrough) = passthrough::parse_stored_kind(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("provider kind {kind:?}")))?;
    let models: String = row.try_get(7)?;
    let models: Vec<String> =
        serde_json::from_str(&models).map_err(|e| StoreError::Corrupt(format!("models: {e}")))?;
    Ok(ProviderKey {
        id: parse_id(&row.try_get::<String, _>(0)?)?,
        owner: parse_id(&row.try_get::<String, _>(1)?)?,
        kind,
        passthrough,
        base_url: row.try_get(3)?,
        secret: Sealed {
            key_id: row.try_get(4)?,
            blob: row.try_get(5)?,
        },
        level: to_u32(row.try_get::<i64, _>(6)?)?,
        models: models
            .iter()
            .map(|m| {
                m.parse::<ModelPattern>()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect::<Result<_, _>>()?,
        weight: to_u32(row.try_get::<i64, _>(8)?)?,
        status: parse_status(&row.try_get::<String, _>(9)?)?,
        discovered_models: names_from_json(&row.try_get::<String, _>(10)?)?,
    })
}

pub(super) fn parse_id<T: std::str::FromStr>(text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("id {text:?}")))
}

pub(super) fn parse_hash(text: &str) -> Result<KeyHash, StoreError> {
    KeyHash::from_hex(text).ok_or_else(|| StoreError::Corrupt("key hash".into()))
}

pub(super) fn parse_status(text: &str) -> Result<Status, StoreError> {
    Status::parse(text).ok_or_else(|| StoreError::Corrupt(format!("status {text:?}")))
}

pub(super) fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative number {v}")))
}

pub(super) fn to_u32(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("number out of range {v}")))
}

/// A write that had to change a row: none changed means `what` does not exist
/// (or is not the caller's).
pub(super) fn one_changed(changed: u64, what: &'static str) -> Result<(), StoreError> {
    if changed == 0 {
        return Err(StoreError::NotFound(what));
    }
    Ok(())
}
