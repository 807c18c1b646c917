//! The keys accounts call with: the caller's own view, new keys, revocation and
//! rotation.

use serde::{Deserialize, Serialize};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::{AccountId, IssuedKeyId};
use switchyard_core::snapshot::{Account, Status};

use super::accounts::AccountInfo;
use super::audit::state;
use super::{ApiError, Caller, Service, present};
use crate::store::IssuedKeyRecord;

#[derive(Debug, Serialize)]
pub struct IssuedKeyView {
    pub id: IssuedKeyId,
    /// The recognisable prefix and the checksum characters; never the key.
    pub tail: String,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
    pub expires_at_unix_ms: Option<i64>,
    pub created_at_unix_ms: i64,
    /// Whether this is the key the request was made with.
    pub in_use: bool,
}

/// `GET /x-self`.
#[derive(Debug, Serialize)]
pub struct SelfView {
    #[serde(flatten)]
    pub info: AccountInfo,
    pub keys: Vec<IssuedKeyView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    #[serde(default, deserialize_with = "present")]
    pub expires_at_unix_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the key used for this call keeps working; 0 (default) stops it with
    /// the next snapshot.
    #[serde(default, deserialize_with = "present")]
    pub overlap_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct CreatedKey {
    /// Shown once.
    pub api_key: String,
    pub key: IssuedKeyView,
}

const MAX_OVERLAP_SECONDS: u64 = 7 * 24 * 3600;
const MAX_KEY_LIFETIME_MS: i64 = 10 * 366 * 24 * 3600 * 1000;

impl Service {
    pub(super) fn own_account(caller: &Caller) -> Result<(&Account, IssuedKeyId), ApiError> {
        match caller {
            Caller::Root => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "the operator has no account of its own; call with an account's key",
            )),
            Caller::Account { account, key } => Ok((account, *key)),
        }
    }

    /// `GET /x-self`: the caller's account, policies and keys.
    pub async fn self_view(&self, caller: &Caller, now_ms: i64) -> Result<SelfView, ApiError> {
        let (account, in_use) = Self::own_account(caller)?;
        let info = self.info(caller, Some(account.id)).await?;
        let keys = self.store.issued_keys(account.id).await?;
        Ok(SelfView {
            info,
            keys: keys
                .iter()
                .map(|k| key_view(k, Some(in_use), now_ms))
                .collect(),
        })
    }

    /// `POST /x-self/keys` (target `None`) or `POST /x-users/{id}/keys` (a descendant).
    pub async fn create_key(
        &self,
        caller: &Caller,
        target: Option<AccountId>,
        req: NewKey,
        now_ms: i64,
    ) -> Result<CreatedKey, ApiError> {
        let account = match target {
            None => Self::own_account(caller)?.0.id,
            Some(id) => self.descendant(caller, id, false).await?.account.id,
        };
        if let Some(at) = req.expires_at_unix_ms
            && (at <= now_ms || at > now_ms.saturating_add(MAX_KEY_LIFETIME_MS))
        {
            return Err(ApiError::invalid_field(
                "expires_at_unix_ms",
                "expires_at_unix_ms must be in the future and within ten years",
            ));
        }
        let (record, clear) = IssuedKeyRecord::fresh(account, req.expires_at_unix_ms, now_ms);
        let audit = self.audit(
            caller,
            Some(self.main_of(account).await?),
            "issued_key.create",
            record.key.id.to_string(),
            None,
            state(key_view(&record, None, now_ms)),
        );
        let revision = self.store.add_issued_key(&record, None, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(account = %account, key = %record.key.id, revision, "issued key created");
        Ok(CreatedKey {
            api_key: clear.expose().clone(),
            key: key_view(&record, None, now_ms),
        })
    }

    /// `DELETE /x-self/keys/{key}`: revoke one of the caller's keys.
    pub async fn revoke_key(&self, caller: &Caller, key: IssuedKeyId) -> Result<(), ApiError> {
        let (account, _) = Self::own_account(caller)?;
        let audit = self.audit(
            caller,
            Some(self.main_of(account.id).await?),
            "issued_key.revoke",
            key.to_string(),
            None,
            None,
        );
        let revision = self.store.revoke_key(account.id, key, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(account = %account.id, key = %key, revision, "issued key revoked");
        Ok(())
    }

    /// `POST /x-self/rotate`: a new key now; the key of this call stops after the
    /// overlap the caller asks for (immediately by default).
    pub async fn rotate(
        &self,
        caller: &Caller,
        req: Rotate,
        now_ms: i64,
    ) -> Result<CreatedKey, ApiError> {
        let (account, old) = Self::own_account(caller)?;
        let overlap = req.overlap_seconds.unwrap_or(0);
        if overlap > MAX_OVERLAP_SECONDS {
            return Err(ApiError::invalid_field(
                "overlap_seconds",
                format!("overlap_seconds must be at most {MAX_OVERLAP_SECONDS}"),
            ));
        }
        let overlap_ms = i64::try_from(overlap * 1000).unwrap_or(i64::MAX);
        let (record, clear) = IssuedKeyRecord::fresh(account.id, None, now_ms);
        let retire_at = now_ms.saturating_add(overlap_ms);
        let audit = self.audit(
            caller,
            Some(self.main_of(account.id).await?),
            "issued_key.rotate",
            old.to_string(),
            None,
            Some(serde_json::json!({"new_key": key_view(&record, None, now_ms), "old_key_expires_at_unix_ms": retire_at})),
        );
        let revision = self
            .store
            .add_issued_key(&record, Some((old, retire_at)), &audit)
            .await?;
        self.publisher.changed(revision);
        tracing::info!(account = %account.id, old = %old, new = %record.key.id, overlap, revision, "issued key rotated");
        Ok(CreatedKey {
            api_key: clear.expose().clone(),
            key: key_view(&record, None, now_ms),
        })
    }
}

fn key_view(r: &IssuedKeyRecord, in_use: Option<IssuedKeyId>, now_ms: i64) -> IssuedKeyView {
    let expired = r.key.expires_at_ms.is_some_and(|at| at <= now_ms);
    IssuedKeyView {
        id: r.key.id,
        tail: r.tail.clone(),
        status: if r.key.status != Status::Active {
            "revoked"
        } else if expired {
            "expired"
        } else {
            "active"
        },
        expires_at_unix_ms: r.key.expires_at_ms,
        created_at_unix_ms: r.created_at_ms,
        in_use: in_use == Some(r.key.id),
    }
}
