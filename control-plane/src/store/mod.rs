//! The control plane's state: accounts, issued keys, provider keys, and the config
//! revision. One implementation over `sqlx::Any` serves Postgres and SQLite; each
//! write bumps the revision in the same transaction ([`Store::write`]). One module
//! per resource, with its records and queries; `rows` reads rows back into records.

mod accounts;
mod alerts;
mod audit;
mod credit;
mod keys;
mod news;
mod rows;
mod rules;
mod sessions;
mod snapshot;

use futures_util::future::BoxFuture;
use sqlx::{Any, Row, Transaction};
use switchyard_db::{Db, DbError};

pub use accounts::{AccountRecord, AccountUpdate};
pub use alerts::{
    AlertRuleRecord, AttemptRecord, DELIVERED, DeliveryRecord, FAILED, FiringRecord, PENDING,
    RulesOf,
};
use audit::finish;
pub use audit::{AuditEntry, AuditRecord};
pub use credit::{CreditBalance, CreditEntry};
pub use keys::{Discovery, DiscoveryRecorded, IssuedKeyRecord, KeyHealthReport, ProviderKeyRecord};
pub use news::NewsItem;
use rows::to_u64;
pub use sessions::SessionRecord;

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

#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

impl Store {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let migrations = switchyard_db::crate_migrations!();
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

    /// A configuration write whose body returns nothing: [`Self::write_with`],
    /// answering the new revision.
    async fn write<'a>(
        &self,
        audit: &AuditEntry,
        body: impl for<'t> FnOnce(&'t mut Transaction<'a, Any>) -> BoxFuture<'t, Result<(), StoreError>>,
    ) -> Result<u64, StoreError> {
        self.write_with(audit, body)
            .await
            .map(|((), revision)| revision)
    }

    /// A configuration write of one statement that must change exactly one row
    /// (`what` names it in the not-found error).
    async fn write_one<'a>(
        &self,
        audit: &AuditEntry,
        what: &'static str,
        query: sqlx::query::Query<'a, Any, sqlx::any::AnyArguments>,
    ) -> Result<u64, StoreError> {
        self.write(audit, |tx: &mut Transaction<'a, Any>| {
            Box::pin(async move {
                let changed = query.execute(&mut **tx).await?.rows_affected();
                rows::one_changed(changed, what)
            })
        })
        .await
    }

    /// Every configuration write goes through here: begin, run `body`, then on
    /// success record `audit`, bump the revision and commit, all at once; on failure
    /// roll back at once so no lock outlives the request (a dropped transaction would
    /// hold SQLite's write lock until its connection is next used).
    async fn write_with<'a, T>(
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
}
