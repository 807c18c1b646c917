//! Credit a parent allocates to its children, and the ledger of it.

use serde::{Deserialize, Serialize};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::AccountId;

use super::audit::state;
use super::{ApiError, Caller, Service, present};
use crate::store::CreditEntry;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocateCredit {
    /// Positive: a top-up; negative: a withdrawal. Nano-dollars.
    pub amount_nanos: i64,
    #[serde(default, deserialize_with = "present")]
    pub note: Option<String>,
}

/// `GET /x-users/{id}/credits?offset=&limit=`: which page of the ledger.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// Entries skipped, newest first.
    pub offset: Option<u32>,
    /// At most this many (1-1000, default 100).
    pub limit: Option<u32>,
}

/// An account's credit: what its parent allocated, what it passed on, and the history.
#[derive(Debug, Serialize)]
pub struct CreditView {
    pub account_id: AccountId,
    pub allocated_nanos: i64,
    pub delegated_nanos: i64,
    /// What it may still pass on to its children (absent for a main account, which
    /// funds its tree from its own provider keys).
    pub available_to_delegate_nanos: Option<i64>,
    /// Newest first, the page asked for.
    pub ledger: Vec<CreditEntry>,
}

/// The largest single allocation: a billion dollars.
const MAX_CREDIT_NANOS: u64 = 1_000_000_000_000_000_000;

impl Service {
    /// `POST /x-users/{id}/credits`: the parent tops up (positive) or withdraws
    /// (negative) a child's credit; the operator does so for main accounts.
    pub async fn allocate_credit(
        &self,
        caller: &Caller,
        id: AccountId,
        req: AllocateCredit,
        now_ms: i64,
    ) -> Result<CreditView, ApiError> {
        let placed = self.placed(caller, id, false).await?;
        let parent = placed.record.account.parent;
        if !caller.is_parent_of(&placed.record.account) {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "only an account's parent allocates its credit",
            ));
        }
        if req.amount_nanos == 0 || req.amount_nanos.unsigned_abs() > MAX_CREDIT_NANOS {
            return Err(ApiError::invalid_field(
                "amount_nanos",
                format!("amount_nanos must be non-zero and at most {MAX_CREDIT_NANOS} either way"),
            ));
        }
        let note = req.note.unwrap_or_default();
        if note.chars().count() > 500 || note.chars().any(char::is_control) {
            return Err(ApiError::invalid_field(
                "note",
                "note must be at most 500 printable characters",
            ));
        }
        // The parent is a main account when it is the only ancestor.
        let parent_is_main = placed.ancestors.len() == 1;
        let entry = CreditEntry {
            id: uuid::Uuid::now_v7().to_string(),
            at_unix_ms: now_ms,
            account_id: id.to_string(),
            parent_id: parent.map(|p| p.to_string()),
            actor: caller.actor(),
            amount_nanos: req.amount_nanos,
            note,
        };
        let audit = self.audit(
            caller,
            Some(placed.main()),
            "credit.allocate",
            id.to_string(),
            None,
            state(&entry),
        );
        let revision = self
            .store
            .allocate_credit(&entry, parent_is_main, &audit)
            .await?;
        self.publisher.changed(revision);
        tracing::info!(account = %id, amount_nanos = entry.amount_nanos, revision, "credit allocated");
        self.credit(caller, id).await
    }

    /// An account's credit (itself or a descendant) with the newest 100 entries.
    pub async fn credit(&self, caller: &Caller, id: AccountId) -> Result<CreditView, ApiError> {
        self.credit_page(caller, id, LedgerQuery::default()).await
    }

    /// `GET /x-users/{id}/credits`: an account's credit (itself or a descendant) and
    /// a page of its ledger.
    pub async fn credit_page(
        &self,
        caller: &Caller,
        id: AccountId,
        query: LedgerQuery,
    ) -> Result<CreditView, ApiError> {
        let target = self.descendant(caller, id, true).await?;
        let limit = query.limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(ApiError::invalid_field("limit", "limit must be 1-1000"));
        }
        let (balance, ledger) = self
            .store
            .credit_page(id, query.offset.unwrap_or(0), limit)
            .await?;
        let main = target.account.parent.is_none();
        Ok(CreditView {
            account_id: id,
            allocated_nanos: balance.allocated_nanos,
            delegated_nanos: balance.delegated_nanos,
            available_to_delegate_nanos: (!main)
                .then(|| balance.allocated_nanos - balance.delegated_nanos),
            ledger,
        })
    }
}
