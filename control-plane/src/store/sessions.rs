//! Console sessions (they do not reach data planes: no revision bump, no audit).

use sqlx::Row;
use switchyard_core::ids::IssuedKeyId;
use switchyard_core::snapshot::{Account, IssuedKey};

use super::keys::key_and_account_by;
use super::{Store, StoreError};

/// One signed-in browser. `id_hash` is the SHA-256 (hex) of the cookie's id; the id
/// itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    /// The account signed in; `None` for the operator.
    pub account_id: Option<String>,
    /// The issued key signed in with; `None` for the operator.
    pub key_id: Option<String>,
    /// The operator's root key fingerprint when the operator signed in.
    pub root_mark: Option<String>,
    pub created_at_ms: i64,
    pub last_seen_at_ms: i64,
    /// The absolute end, whatever the activity.
    pub expires_at_ms: i64,
    pub csrf_token: String,
}

impl Store {
    pub async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, account_id, key_id, root_mark, created_at, last_seen_at, expires_at, csrf_token) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(s.id_hash.clone())
        .bind(s.account_id.clone())
        .bind(s.key_id.clone())
        .bind(s.root_mark.clone())
        .bind(s.created_at_ms)
        .bind(s.last_seen_at_ms)
        .bind(s.expires_at_ms)
        .bind(s.csrf_token.clone())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id_hash, account_id, key_id, root_mark, created_at, last_seen_at, expires_at, csrf_token \
             FROM console_sessions WHERE id_hash = $1",
        )
        .bind(id_hash.to_owned())
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(SessionRecord {
            id_hash: r.try_get(0)?,
            account_id: r.try_get(1)?,
            key_id: r.try_get(2)?,
            root_mark: r.try_get(3)?,
            created_at_ms: r.try_get(4)?,
            last_seen_at_ms: r.try_get(5)?,
            expires_at_ms: r.try_get(6)?,
            csrf_token: r.try_get(7)?,
        }))
    }

    /// The issued key a session was opened with, and its account, as they are now.
    pub async fn session_key(
        &self,
        id: IssuedKeyId,
    ) -> Result<Option<(IssuedKey, Account)>, StoreError> {
        self.key_and_account(key_and_account_by!("id"), id.to_string())
            .await
    }

    /// Record activity (the idle expiry counts from here).
    pub async fn touch_session(&self, id_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id_hash = $2")
            .bind(now_ms)
            .bind(id_hash.to_owned())
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash.to_owned())
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Remove sessions past their absolute end or idle since before `idle_before_ms`.
    pub async fn purge_sessions(
        &self,
        now_ms: i64,
        idle_before_ms: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at <= $2",
        )
        .bind(now_ms)
        .bind(idle_before_ms)
        .execute(&self.db.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
