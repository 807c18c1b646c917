//! The audit log: written with every configuration write, read back per tree.

use sqlx::{Any, Row, Transaction};
use switchyard_core::ids::AccountId;

use super::rows::to_u64;
use super::{Store, StoreError};

/// One audit log entry. `before` and `after` are redacted views, never secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// `root`, or the acting account's id.
    pub actor: String,
    /// The main account whose tree changed (`None` for operator-level changes).
    pub owner: Option<AccountId>,
    pub action: &'static str,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// A stored audit entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at_unix_ms: i64,
    pub actor: String,
    pub owner_id: Option<String>,
    pub action: String,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl Store {
    /// Audit entries of one main account's tree (or every entry for `None`), newest
    /// first, older than `before` when given.
    pub async fn audit_log(
        &self,
        owner: Option<AccountId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let before = before.unwrap_or(i64::MAX);
        let rows = match owner {
            Some(owner) => {
                sqlx::query(
                    "SELECT seq, at, actor, owner_id, action, target, before_state, after_state FROM audit_log \
                     WHERE owner_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                )
                .bind(owner.to_string())
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.db.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT seq, at, actor, owner_id, action, target, before_state, after_state FROM audit_log \
                     WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
                )
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.db.pool)
                .await?
            }
        };
        let json = |v: Option<String>| -> Result<Option<serde_json::Value>, StoreError> {
            v.map(|t| {
                serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("audit: {e}")))
            })
            .transpose()
        };
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    seq: r.try_get(0)?,
                    at_unix_ms: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    owner_id: r.try_get(3)?,
                    action: r.try_get(4)?,
                    target: r.try_get(5)?,
                    before: json(r.try_get(6)?)?,
                    after: json(r.try_get(7)?)?,
                })
            })
            .collect()
    }
}

/// Record the change in the audit log, bump the revision, and commit, all at once.
pub(super) async fn finish(
    mut tx: Transaction<'_, Any>,
    audit: &AuditEntry,
) -> Result<u64, StoreError> {
    let revision = bump(&mut tx).await?;
    let text = |v: &Option<serde_json::Value>| v.as_ref().map(ToString::to_string);
    // The revision orders entries: every write bumps it exactly once.
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, owner_id, action, target, before_state, after_state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(i64::try_from(revision).map_err(|_| StoreError::Corrupt("revision overflow".into()))?)
    .bind(audit.at_ms)
    .bind(audit.actor.clone())
    .bind(audit.owner.map(|o| o.to_string()))
    .bind(audit.action)
    .bind(audit.target.clone())
    .bind(text(&audit.before))
    .bind(text(&audit.after))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(revision)
}

pub(super) async fn bump(tx: &mut Transaction<'_, Any>) -> Result<u64, StoreError> {
    let row = sqlx::query(
        "UPDATE config_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
    )
    .fetch_one(&mut **tx)
    .await?;
    to_u64(row.try_get::<i64, _>(0)?)
}
