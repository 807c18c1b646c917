//! Accounts and their tree: create, change, delete, list and inspect, with the
//! policy bounds a parent sets for its children.

use serde::{Deserialize, Serialize};
use switchyard_core::billing::{Billing, BillingError};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::{AccountId, IssuedKeyId};
use switchyard_core::policy::Policy;
use switchyard_core::snapshot::{Account, Status};

use super::{ApiError, Caller, Placed, Service, present, present_object};
use crate::store::{AccountRecord, AccountUpdate, IssuedKeyRecord};

const MAX_NAME: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub name: String,
    /// The child's own policy; it must stay within the caller's effective policy.
    #[serde(default, deserialize_with = "present_object")]
    pub policy: Option<Policy>,
    /// What the caller bills the child (default: the provider cost as is).
    #[serde(default, deserialize_with = "present_object")]
    pub billing: Option<Billing>,
}

/// `PATCH /x-users/{id}`: rename, disable or enable, or set the own policy of a
/// descendant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "present_object")]
    pub policy: Option<Policy>,
    /// Only the direct parent sets it.
    #[serde(default, deserialize_with = "present_object")]
    pub billing: Option<Billing>,
}

/// `GET /x-info`: an account with its own and effective policy, so an admin sees why
/// a call would be refused.
#[derive(Debug, Serialize)]
pub struct AccountInfo {
    pub account: AccountView,
    pub policy: Policy,
    pub effective_policy: Policy,
    /// What its parent bills it.
    pub billing: Billing,
    /// Ancestors, nearest first.
    pub ancestors: Vec<AccountId>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AccountView {
    pub id: AccountId,
    pub parent_id: Option<AccountId>,
    pub name: String,
    pub status: &'static str,
    pub created_at_unix_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct CreatedAccount {
    pub account: AccountView,
    /// Shown once.
    pub api_key: String,
    pub api_key_id: IssuedKeyId,
}

#[derive(Debug, Serialize)]
pub struct DeletedAccounts {
    /// Accounts removed (the target and, with cascade, its descendants).
    pub deleted: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeQuery {
    /// Whose tree (the caller's by default; a descendant's).
    pub id: Option<String>,
    pub offset: Option<u32>,
    pub limit: Option<u32>,
    /// Only accounts whose name contains this (ignoring case); empty: every one.
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TreeEntry {
    #[serde(flatten)]
    pub account: AccountView,
    /// 1 for a direct child.
    pub depth: u32,
}

impl Service {
    /// `POST /x-users`: a child of the caller; a main account when the operator calls.
    pub async fn create_account(
        &self,
        caller: &Caller,
        req: CreateAccount,
        now_ms: i64,
    ) -> Result<CreatedAccount, ApiError> {
        let name = validate_name(&req.name)?;
        let policy = req.policy.unwrap_or_default();
        self.check_bounds(caller.account().map(|a| a.id), &policy)
            .await?;
        let account = Account {
            id: AccountId::new(),
            parent: caller.account().map(|a| a.id),
            name,
            status: Status::Active,
            policy,
            billing: validate_billing(req.billing)?,
        };
        let (key, clear) = IssuedKeyRecord::fresh(account.id, None, now_ms);
        let record = AccountRecord {
            account,
            created_at_ms: now_ms,
        };
        let owner = match caller.account() {
            Some(parent) => self.main_of(parent.id).await?,
            None => record.account.id,
        };
        let audit = self.audit(
            caller,
            Some(owner),
            "account.create",
            record.account.id.to_string(),
            None,
            Some(account_state(&record)),
        );
        let revision = self.store.create_account(&record, &key, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(account = %record.account.id, parent = ?record.account.parent, revision, "account created");
        Ok(CreatedAccount {
            account: account_view(&record),
            api_key: clear.expose().clone(),
            api_key_id: key.key.id,
        })
    }

    /// The effective policy of `account` (the intersection along its chain), or the
    /// unrestricted policy for the operator (`None`).
    async fn effective_policy(&self, account: Option<AccountId>) -> Result<Policy, ApiError> {
        let Some(id) = account else {
            return Ok(Policy::default());
        };
        let own =
            self.store.account(id).await?.ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("account {id} not found"))
            })?;
        let ancestors = self.store.ancestors(id).await?;
        self.effective_of(&own, &ancestors).await
    }

    /// The policy the data plane enforces for `record`: its main account's rules
    /// (Resources, ModelLimits), then every own policy from the top down — the same
    /// intersection `Compiled::build` computes.
    pub(super) async fn effective_of(
        &self,
        record: &AccountRecord,
        ancestors: &[AccountRecord],
    ) -> Result<Policy, ApiError> {
        let main = ancestors.last().unwrap_or(record).account.id;
        let bound = self.store.rules(main).await?.0.as_policy();
        let chain = std::iter::once(&bound)
            .chain(ancestors.iter().rev().map(|a| &a.account.policy))
            .chain(std::iter::once(&record.account.policy));
        Ok(Policy::effective(chain))
    }

    /// Refuse a policy that gives a child of `parent` more than `parent` has.
    async fn check_bounds(
        &self,
        parent: Option<AccountId>,
        policy: &Policy,
    ) -> Result<(), ApiError> {
        policy
            .validate()
            .map_err(|e| ApiError::invalid_field("policy", format!("policy: {e}")))?;
        let bound = self.effective_policy(parent).await?;
        let excesses = bound.excesses(policy);
        if excesses.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = excesses.iter().map(ToString::to_string).collect();
        Err(ApiError::new(
            ErrorCode::Unprocessable,
            format!("policy exceeds the parent's: {}", listed.join("; ")),
        )
        .about("policy"))
    }

    /// A descendant of the caller (any account for the operator). Anything else is
    /// "not found", so accounts outside a tenant's tree stay invisible.
    pub(super) async fn descendant(
        &self,
        caller: &Caller,
        id: AccountId,
        include_self: bool,
    ) -> Result<AccountRecord, ApiError> {
        Ok(self.placed(caller, id, include_self).await?.record)
    }

    /// Like [`Self::descendant`], keeping the ancestors it had to read anyway.
    pub(super) async fn placed(
        &self,
        caller: &Caller,
        id: AccountId,
        include_self: bool,
    ) -> Result<Placed, ApiError> {
        let not_found = || ApiError::new(ErrorCode::NotFound, format!("account {id} not found"));
        let record = self.store.account(id).await?.ok_or_else(not_found)?;
        if let Caller::Account { account, .. } = caller
            && account.id == id
            && !include_self
        {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "an account cannot change itself; its parent can",
            ));
        }
        let ancestors = self.store.ancestors(id).await?;
        match caller {
            Caller::Account { account, .. }
                if account.id != id && !ancestors.iter().any(|a| a.account.id == account.id) =>
            {
                Err(not_found())
            }
            _ => Ok(Placed { record, ancestors }),
        }
    }

    /// `PATCH /x-users/{id}`.
    pub async fn update_account(
        &self,
        caller: &Caller,
        id: AccountId,
        req: UpdateAccount,
    ) -> Result<AccountInfo, ApiError> {
        let placed = self.placed(caller, id, false).await?;
        let target = &placed.record;
        let name = req.name.as_deref().map(validate_name).transpose()?;
        let status = match req.status.as_deref() {
            None => None,
            Some(text) => Some(Status::parse(text).ok_or_else(|| {
                ApiError::invalid_field(
                    "status",
                    format!("status must be \"active\" or \"disabled\", not {text:?}"),
                )
            })?),
        };
        if let Some(policy) = &req.policy {
            self.check_bounds(target.account.parent, policy).await?;
        }
        if req.billing.is_some() && !caller.is_parent_of(&target.account) {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "only an account's parent sets what it bills it",
            ));
        }
        let billing = req.billing.map(|b| validate_billing(Some(b))).transpose()?;
        if name.is_none() && status.is_none() && req.policy.is_none() && billing.is_none() {
            return Err(ApiError::invalid(
                "nothing to change: give name, status, policy or billing",
            ));
        }
        let update = AccountUpdate {
            name,
            status,
            policy: req.policy,
            billing,
        };
        let mut after = target.clone();
        if let Some(name) = &update.name {
            after.account.name.clone_from(name);
        }
        if let Some(status) = update.status {
            after.account.status = status;
        }
        if let Some(policy) = &update.policy {
            after.account.policy = policy.clone();
        }
        if let Some(billing) = &update.billing {
            after.account.billing = billing.clone();
        }
        let audit = self.audit(
            caller,
            Some(placed.main()),
            "account.update",
            id.to_string(),
            Some(account_state(target)),
            Some(account_state(&after)),
        );
        let revision = self.store.update_account(id, &update, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(account = %id, revision, "account updated");
        self.info(caller, Some(id)).await
    }

    /// `DELETE /x-users/{id}[?cascade=true]`.
    pub async fn delete_account(
        &self,
        caller: &Caller,
        id: AccountId,
        cascade: bool,
    ) -> Result<DeletedAccounts, ApiError> {
        let placed = self.placed(caller, id, false).await?;
        let target = &placed.record;
        let owner = placed.main();
        let audit = self.audit(
            caller,
            Some(owner),
            "account.delete",
            id.to_string(),
            Some(account_state(target)),
            Some(serde_json::json!({"cascade": cascade})),
        );
        let (revision, deleted) = self.store.delete_account(id, cascade, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(account = %id, deleted, revision, "account deleted");
        Ok(DeletedAccounts { deleted })
    }

    /// `GET /x-dna` (the whole tree below) and `GET /x-users` (direct children).
    pub async fn descendants(
        &self,
        caller: &Caller,
        query: TreeQuery,
        max_depth: u32,
    ) -> Result<Vec<TreeEntry>, ApiError> {
        let top = match (query.id.as_deref(), caller) {
            (Some(text), _) => {
                let id: AccountId = text.parse().map_err(|_| {
                    ApiError::invalid_field("id", format!("{text:?} is not an account id"))
                })?;
                Some(self.descendant(caller, id, true).await?.account.id)
            }
            (None, Caller::Account { account, .. }) => Some(account.id),
            (None, Caller::Root) => None,
        };
        let limit = query.limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(ApiError::invalid_field("limit", "limit must be 1-1000"));
        }
        let name = match query.name.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(validate_name(text).map_err(|_| {
                ApiError::invalid_field(
                    "name",
                    format!("name must be at most {MAX_NAME} printable characters"),
                )
            })?),
        };
        let rows = self
            .store
            .descendants_named(
                top,
                max_depth,
                name.as_deref(),
                query.offset.unwrap_or(0),
                limit,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(record, depth)| TreeEntry {
                account: account_view(&record),
                depth,
            })
            .collect())
    }

    /// `GET /x-info`: the caller, or one of its descendants.
    pub async fn info(
        &self,
        caller: &Caller,
        id: Option<AccountId>,
    ) -> Result<AccountInfo, ApiError> {
        let id = match (id, caller.account()) {
            (Some(id), _) => id,
            (None, Some(me)) => me.id,
            (None, None) => {
                return Err(ApiError::invalid_field(
                    "id",
                    "the operator has no account; pass ?id=<account>",
                ));
            }
        };
        let Placed { record, ancestors } = self.placed(caller, id, true).await?;
        let effective_policy = self.effective_of(&record, &ancestors).await?;
        Ok(AccountInfo {
            account: account_view(&record),
            policy: record.account.policy.clone(),
            effective_policy,
            billing: record.account.billing.clone(),
            ancestors: ancestors.iter().map(|a| a.account.id).collect(),
        })
    }

    /// The main account at the top of `id`'s tree.
    pub(super) async fn main_of(&self, id: AccountId) -> Result<AccountId, ApiError> {
        Ok(self
            .store
            .ancestors(id)
            .await?
            .last()
            .map_or(id, |top| top.account.id))
    }
}

/// An account's auditable state.
fn account_state(r: &AccountRecord) -> serde_json::Value {
    serde_json::json!({
        "name": r.account.name,
        "parent_id": r.account.parent,
        "status": r.account.status.as_str(),
        "policy": r.account.policy,
        "billing": r.account.billing,
    })
}

fn validate_billing(billing: Option<Billing>) -> Result<Billing, ApiError> {
    let billing = billing.unwrap_or_default();
    billing.validate().map_err(|e| {
        let field = match e {
            BillingError::Multiplier => "billing.multiplier_ppm",
            BillingError::TooManyPrices => "billing.prices",
        };
        ApiError::invalid_field(field, e.to_string())
    })?;
    Ok(billing)
}

fn account_view(r: &AccountRecord) -> AccountView {
    AccountView {
        id: r.account.id,
        parent_id: r.account.parent,
        name: r.account.name.clone(),
        status: r.account.status.as_str(),
        created_at_unix_ms: r.created_at_ms,
    }
}

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "name",
            format!("name must be 1-{MAX_NAME} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(validate_name("  acme ").unwrap(), "acme");
        assert!(validate_name("").is_err());
        assert!(validate_name("a\u{0}b").is_err());
        assert!(validate_name(&"x".repeat(101)).is_err());
    }
}
