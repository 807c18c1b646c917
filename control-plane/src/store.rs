//! The control plane's state: accounts, issued keys, provider keys, and the config
//! revision. One implementation over `sqlx::Any` serves Postgres and SQLite; each
//! write bumps the revision in the same transaction.

use futures_util::future::BoxFuture;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use switchyard_core::apikey::KeyHash;
use switchyard_core::billing::Billing;
use switchyard_core::crypto::Sealed;
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use switchyard_core::model::ModelPattern;
use switchyard_core::policy::Policy;
use switchyard_core::rules::Rules;
use switchyard_core::snapshot::{Account, IssuedKey, ProviderKey, ProviderKind, Snapshot, Status};
use switchyard_db::{Backend, Db, DbError, Migrations};

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] DbError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the account has {0} descendants")]
    HasDescendants(usize),
    #[error("{0} changed concurrently")]
    Conflict(&'static str),
    #[error("credit refused: {0}")]
    Credit(&'static str),
}

/// An account row with its bookkeeping fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRecord {
    pub account: Account,
    pub created_at_ms: i64,
}

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

/// An announcement.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NewsItem {
    pub id: String,
    /// `None` for the operator.
    pub author_id: Option<String>,
    pub at_unix_ms: i64,
    pub title: String,
    pub body: String,
}

/// A change to an account; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct AccountUpdate {
    pub name: Option<String>,
    pub status: Option<Status>,
    pub policy: Option<Policy>,
    pub billing: Option<Billing>,
}

#[derive(Clone, Debug)]
pub struct IssuedKeyRecord {
    pub key: IssuedKey,
    /// A non-secret tail for display.
    pub tail: String,
    pub created_at_ms: i64,
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

#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

impl Store {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let migrations = Migrations {
            postgres: &POSTGRES,
            sqlite: &SQLITE,
        };
        let db = switchyard_db::open(url, &migrations, 8).await?;
        Ok(Self { db })
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(switchyard_db::ping(&self.db.pool).await?)
    }

    pub async fn revision(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT revision FROM config_revision WHERE id = 1")
            .fetch_one(&self.db.pool)
            .await?;
        to_u64(row.try_get::<i64, _>(0)?)
    }

    /// Every configuration write goes through here: begin, run `body`, then on
    /// success record `audit`, bump the revision and commit, all at once; on failure
    /// roll back at once so no lock outlives the request (a dropped transaction would
    /// hold SQLite's write lock until its connection is next used).
    async fn write<'a, T>(
        &self,
        audit: &AuditEntry,
        body: impl for<'t> FnOnce(&'t mut Transaction<'a, Any>) -> BoxFuture<'t, Result<T, StoreError>>,
    ) -> Result<(T, u64), StoreError> {
        // Named `'a` (not `'static`) so `body` may borrow what the caller holds.
        let mut tx: Transaction<'a, Any> = self.db.pool.begin().await?;
        match body(&mut tx).await {
            Ok(value) => Ok((value, finish(tx, audit).await?)),
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::error!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

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
        .map(|((), revision)| revision)
    }

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
                if changed == 0 {
                    return Err(StoreError::NotFound("key"));
                }
                Ok(())
            })
        })
        .await
        .map(|((), revision)| revision)
    }

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
        .map(|((), revision)| revision)
    }

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
        .map(|((), revision)| revision)
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

    /// Post an announcement (news does not reach data planes: no revision bump).
    pub async fn post_news(&self, item: &NewsItem) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO news (id, author_id, at, title, body) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(item.id.clone())
        .bind(item.author_id.clone())
        .bind(item.at_unix_ms)
        .bind(item.title.clone())
        .bind(item.body.clone())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Delete an announcement of `author` (`None`: the operator's).
    pub async fn delete_news(&self, author: Option<AccountId>, id: &str) -> Result<(), StoreError> {
        let deleted = match author {
            Some(a) => {
                sqlx::query("DELETE FROM news WHERE id = $1 AND author_id = $2")
                    .bind(id.to_owned())
                    .bind(a.to_string())
                    .execute(&self.db.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM news WHERE id = $1 AND author_id IS NULL")
                    .bind(id.to_owned())
                    .execute(&self.db.pool)
                    .await?
            }
        };
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("announcement"));
        }
        Ok(())
    }

    /// Announcements that reach `account` (posted by it or any ancestor, or by the
    /// operator), newest first; the operator (`None`) sees its own.
    pub async fn news_for(
        &self,
        account: Option<AccountId>,
        limit: u32,
    ) -> Result<Vec<NewsItem>, StoreError> {
        let rows = sqlx::query(
            "WITH RECURSIVE up(id, parent_id) AS ( \
               SELECT id, parent_id FROM accounts WHERE id = $1 \
               UNION ALL \
               SELECT a.id, a.parent_id FROM accounts a JOIN up ON a.id = up.parent_id \
             ) SELECT n.id, n.author_id, n.at, n.title, n.body FROM news n \
             WHERE n.author_id IS NULL OR n.author_id IN (SELECT id FROM up) \
             ORDER BY n.at DESC, n.id DESC LIMIT $2",
        )
        .bind(account.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NewsItem {
                    id: r.try_get(0)?,
                    author_id: r.try_get(1)?,
                    at_unix_ms: r.try_get(2)?,
                    title: r.try_get(3)?,
                    body: r.try_get(4)?,
                })
            })
            .collect()
    }

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
        .map(|((), revision)| revision)
    }

    /// An account's credit counters and its newest ledger entries.
    pub async fn credit(
        &self,
        account: AccountId,
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
             WHERE account_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(account.to_string())
        .bind(i64::from(limit))
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
                if changed == 0 {
                    return Err(StoreError::NotFound("provider key"));
                }
                Ok(())
            })
        })
        .await
        .map(|((), revision)| revision)
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
                if changed == 0 {
                    return Err(StoreError::NotFound("provider key"));
                }
                Ok(())
            })
        })
        .await
        .map(|((), revision)| revision)
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
        .map(|((), revision)| revision)
    }

    /// The issued key with this hash and the account holding it.
    pub async fn find_key(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<(IssuedKey, Account)>, StoreError> {
        let row = sqlx::query(
            "SELECT k.id, k.account_id, k.hash, k.status, k.expires_at, a.id, a.parent_id, a.name, a.status, a.policy, a.billing \
             FROM issued_keys k JOIN accounts a ON a.id = k.account_id WHERE k.hash = $1",
        )
        .bind(hash.to_hex())
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((key_at(&row, 0)?, account_at(&row, 5)?)))
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
        .map(|((), revision)| revision)
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
        let query = match top {
            Some(_) => {
                "WITH RECURSIVE down(id, depth) AS ( \
                   SELECT id, 0 FROM accounts WHERE id = $1 \
                   UNION ALL \
                   SELECT a.id, down.depth + 1 FROM accounts a JOIN down ON a.parent_id = down.id WHERE down.depth < $2 \
                 ) SELECT a.id, a.parent_id, a.name, a.status, a.policy, a.billing, a.created_at, down.depth \
                 FROM down JOIN accounts a ON a.id = down.id WHERE down.depth > 0 \
                 ORDER BY down.depth, a.created_at, a.id LIMIT $3 OFFSET $4"
            }
            None => {
                "WITH RECURSIVE down(id, depth) AS ( \
                   SELECT id, 1 FROM accounts WHERE parent_id IS NULL AND $1 = $1 \
                   UNION ALL \
                   SELECT a.id, down.depth + 1 FROM accounts a JOIN down ON a.parent_id = down.id WHERE down.depth < $2 \
                 ) SELECT a.id, a.parent_id, a.name, a.status, a.policy, a.billing, a.created_at, down.depth \
                 FROM down JOIN accounts a ON a.id = down.id \
                 ORDER BY down.depth, a.created_at, a.id LIMIT $3 OFFSET $4"
            }
        };
        let rows = sqlx::query(query)
            .bind(top.map(|t| t.to_string()).unwrap_or_default())
            .bind(i64::from(max_depth))
            .bind(i64::from(limit))
            .bind(i64::from(offset))
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
        self.write(audit, |tx| {
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

    pub async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, parent_id, name, status, policy, billing, created_at FROM accounts WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

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
            "SELECT id, owner_id, kind, base_url, secret_key_id, secret_blob, level, models, weight, status FROM provider_keys",
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

async fn insert_issued_key(
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

/// Record the change in the audit log, bump the revision, and commit, all at once.
async fn finish(mut tx: Transaction<'_, Any>, audit: &AuditEntry) -> Result<u64, StoreError> {
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

async fn bump(tx: &mut Transaction<'_, Any>) -> Result<u64, StoreError> {
    let row = sqlx::query(
        "UPDATE config_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
    )
    .fetch_one(&mut **tx)
    .await?;
    to_u64(row.try_get::<i64, _>(0)?)
}

fn policy_json(policy: &Policy) -> Result<String, StoreError> {
    serde_json::to_string(policy).map_err(|e| StoreError::Corrupt(format!("policy: {e}")))
}

/// Columns: id, parent_id, name, status, policy, created_at.
fn record_from_row(row: &AnyRow) -> Result<AccountRecord, StoreError> {
    Ok(AccountRecord {
        account: account_from_row(row)?,
        created_at_ms: row.try_get(6)?,
    })
}

/// Columns from `at`: id, account_id, hash, status, expires_at.
fn key_at(row: &AnyRow, at: usize) -> Result<IssuedKey, StoreError> {
    Ok(IssuedKey {
        id: parse_id(&row.try_get::<String, _>(at)?)?,
        account: parse_id(&row.try_get::<String, _>(at + 1)?)?,
        hash: parse_hash(&row.try_get::<String, _>(at + 2)?)?,
        status: parse_status(&row.try_get::<String, _>(at + 3)?)?,
        expires_at_ms: row.try_get::<Option<i64>, _>(at + 4)?,
    })
}

fn account_from_row(row: &AnyRow) -> Result<Account, StoreError> {
    account_at(row, 0)
}

/// Columns from `at`: id, parent_id, name, status, policy, billing.
fn account_at(row: &AnyRow, at: usize) -> Result<Account, StoreError> {
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

fn models_json(models: &[ModelPattern]) -> Result<String, StoreError> {
    serde_json::to_string(models).map_err(|e| StoreError::Corrupt(format!("models: {e}")))
}

/// Columns: the provider columns, then secret_hint, health, created_at, health_until.
fn provider_record_from_row(row: &AnyRow) -> Result<ProviderKeyRecord, StoreError> {
    Ok(ProviderKeyRecord {
        key: provider_from_row(row)?,
        secret_hint: row.try_get(10)?,
        health: row.try_get(11)?,
        created_at_ms: row.try_get(12)?,
        health_until_ms: row.try_get(13)?,
    })
}

fn provider_from_row(row: &AnyRow) -> Result<ProviderKey, StoreError> {
    let kind: String = row.try_get(2)?;
    let models: String = row.try_get(7)?;
    let models: Vec<String> =
        serde_json::from_str(&models).map_err(|e| StoreError::Corrupt(format!("models: {e}")))?;
    Ok(ProviderKey {
        id: parse_id(&row.try_get::<String, _>(0)?)?,
        owner: parse_id(&row.try_get::<String, _>(1)?)?,
        kind: ProviderKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("provider kind {kind:?}")))?,
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
    })
}

fn parse_id<T: std::str::FromStr>(text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("id {text:?}")))
}

fn parse_hash(text: &str) -> Result<KeyHash, StoreError> {
    KeyHash::from_hex(text).ok_or_else(|| StoreError::Corrupt("key hash".into()))
}

fn parse_status(text: &str) -> Result<Status, StoreError> {
    Status::parse(text).ok_or_else(|| StoreError::Corrupt(format!("status {text:?}")))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative number {v}")))
}

fn to_u32(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("number out of range {v}")))
}
