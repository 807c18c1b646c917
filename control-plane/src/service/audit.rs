//! The audit trail: the entry every write records, and reading it back.

use serde::{Deserialize, Serialize};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::AccountId;

use super::{ApiError, Caller, Service};
use crate::store::{AuditEntry, AuditRecord};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries older than this sequence number (for paging).
    pub before: Option<i64>,
    /// At most this many (1-1000, default 100).
    pub limit: Option<u32>,
}

impl Service {
    pub(super) fn audit(
        &self,
        caller: &Caller,
        owner: Option<AccountId>,
        action: &'static str,
        target: String,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> AuditEntry {
        AuditEntry {
            at_ms: switchyard_runtime::now_ms(),
            actor: caller.actor(),
            owner,
            action,
            target,
            before,
            after,
        }
    }

    /// `GET /x-audit`: the caller's tree's changes, newest first. Main accounts and
    /// the operator only.
    pub async fn audit_log(
        &self,
        caller: &Caller,
        query: AuditQuery,
    ) -> Result<Vec<AuditRecord>, ApiError> {
        let owner = match caller {
            Caller::Root => None,
            Caller::Account { account, .. } if account.parent.is_none() => Some(account.id),
            Caller::Account { .. } => {
                return Err(ApiError::new(
                    ErrorCode::PermissionDenied,
                    "only a main account reads its audit log",
                ));
            }
        };
        let limit = query.limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(ApiError::invalid_field("limit", "limit must be 1-1000"));
        }
        Ok(self.store.audit_log(owner, query.before, limit).await?)
    }
}

/// A redacted view as audit state.
pub(super) fn state(view: impl Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(view).ok()
}
