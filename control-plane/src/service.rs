//! The service layer: every operation of the Admin and Manage APIs, with its
//! authorisation and validation. REST and gRPC are thin faces over these methods.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_core::apikey::{self, KeyHash};
use switchyard_core::billing::Billing;
use switchyard_core::crypto::{Keyring, Sealed};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use switchyard_core::model::ModelPattern;
use switchyard_core::netguard::{Resolve, Resolving, UpstreamNetworks};
use switchyard_core::policy::Policy;
use switchyard_core::rules::{EditError, Rules};
use switchyard_core::secret::Secret;
use switchyard_core::snapshot::{Account, IssuedKey, ProviderKey, ProviderKind, Status};
use switchyard_core::usage::RollupRow;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use tonic::transport::Channel;

use crate::publisher::Publisher;
use crate::store::{
    AccountRecord, AccountUpdate, AuditEntry, AuditRecord, CreditEntry, IssuedKeyRecord, NewsItem,
    ProviderKeyRecord, Store, StoreError,
};

const MAX_NAME: usize = 100;
const MAX_SECRET: usize = 4096;
const MAX_URL: usize = 2048;
const MAX_MODELS: usize = 256;
const MAX_LEVEL: u32 = 1000;
const MAX_WEIGHT: u32 = 1000;
const MAX_BILL_DAYS: i64 = 400;

/// A failed operation: a code from the shared vocabulary and a message a user can act on.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::new(
                ErrorCode::Conflict,
                format!("{what} changed concurrently; read them again and retry"),
            ),
            StoreError::Credit(why) => {
                Self::new(ErrorCode::Unprocessable, format!("credit refused: {why}"))
            }
            StoreError::HasDescendants(n) => Self::new(
                ErrorCode::Conflict,
                format!("the account has {n} descendants; delete them first or pass cascade=true"),
            ),
            StoreError::NotFound(what) => {
                Self::new(ErrorCode::NotFound, format!("{what} not found"))
            }
            StoreError::Sql(e) if switchyard_db::is_unreachable(&e) => {
                tracing::error!(error = %e, "database unreachable");
                Self::new(
                    ErrorCode::Unavailable,
                    "the database is unreachable; retry shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                Self::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

/// An optional field of a request body: left out, it is unset; `null` is refused
/// (as the OpenAPI document says), so a body has one way to say "unchanged".
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Like [`present`], for a struct, read from a JSON object only.
fn present_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    switchyard_core::object::one(d).map(Some)
}

/// An account with its ancestors (nearest first).
struct Placed {
    record: AccountRecord,
    ancestors: Vec<AccountRecord>,
}

impl Placed {
    /// The main account at the top of its tree.
    fn main(&self) -> AccountId {
        self.ancestors.last().unwrap_or(&self.record).account.id
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The operator, holding the bootstrap root key.
    Root,
    Account {
        account: Box<Account>,
        key: IssuedKeyId,
    },
}

impl Caller {
    /// `root`, or the calling account's id: the actor in audit and credit entries.
    fn actor(&self) -> String {
        match self {
            Self::Root => "root".to_owned(),
            Self::Account { account, .. } => account.id.to_string(),
        }
    }

    /// Whether the caller is `target`'s direct parent (the operator for main accounts).
    fn is_parent_of(&self, target: &Account) -> bool {
        match self {
            Self::Root => target.parent.is_none(),
            Self::Account { account, .. } => target.parent == Some(account.id),
        }
    }

    fn account(&self) -> Option<&Account> {
        match self {
            Self::Root => None,
            Self::Account { account, .. } => Some(account),
        }
    }
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddProviderKey {
    pub provider: String,
    pub base_url: String,
    pub secret: String,
    pub models: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    pub level: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub weight: Option<u32>,
}

/// `PATCH /x-keys/{id}`: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProviderKey {
    #[serde(default, deserialize_with = "present")]
    pub provider: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub base_url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub secret: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub level: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub weight: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub status: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProviderKeyView {
    pub id: ProviderKeyId,
    pub provider: &'static str,
    pub base_url: String,
    pub secret_hint: String,
    pub models: Vec<String>,
    pub level: u32,
    pub weight: u32,
    pub status: &'static str,
    /// What data planes last reported: `unknown`, `healthy`, `cooling_down` or
    /// `unhealthy`.
    pub health: String,
    /// When a resting key is tried again (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_until_unix_ms: Option<i64>,
    pub created_at_unix_ms: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Unix milliseconds, inclusive; default: seven days before `to`.
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive; default: now.
    pub to: Option<i64>,
    /// Only this account's subtree (the caller or a descendant).
    pub account: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
    /// The `next` cursor of the previous page.
    pub before: Option<String>,
    pub limit: Option<u32>,
}

/// One metered call, as the logs show it (never prompt or completion content).
#[derive(Debug, Serialize)]
pub struct LogEntry {
    pub id: String,
    pub at_unix_ms: i64,
    pub account_id: String,
    pub account_chain: Vec<String>,
    pub issued_key_id: String,
    pub provider_key_id: Option<String>,
    pub model_requested: String,
    pub model_served: String,
    pub level: u32,
    pub status: u16,
    pub latency_ms: u32,
    pub ttfb_ms: Option<u32>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub usage_source: &'static str,
    pub cost_nanos: i64,
    pub billed_nanos: i64,
    pub price_version: u64,
    pub path: String,
    pub client_addr: String,
    pub streamed: bool,
}

impl From<&switchyard_core::usage::UsageEvent> for LogEntry {
    fn from(e: &switchyard_core::usage::UsageEvent) -> Self {
        Self {
            id: e.id.to_string(),
            at_unix_ms: e.at_unix_ms,
            account_id: e.account().map(|a| a.to_string()).unwrap_or_default(),
            account_chain: e.account_chain.iter().map(ToString::to_string).collect(),
            issued_key_id: e.issued_key.to_string(),
            provider_key_id: e.provider_key.map(|p| p.to_string()),
            model_requested: e.model_requested.clone(),
            model_served: e.model_served.clone(),
            level: e.level,
            status: e.status,
            latency_ms: e.latency_ms,
            ttfb_ms: e.ttfb_ms,
            input_tokens: e.tokens.input,
            output_tokens: e.tokens.output,
            cached_tokens: e.tokens.cached,
            cache_write_tokens: e.tokens.cache_write,
            usage_source: e.source.as_str(),
            cost_nanos: e.cost_nanos,
            billed_nanos: e.billed_nanos,
            price_version: e.price_version,
            path: e.path.clone(),
            client_addr: e.client_addr.clone(),
            streamed: e.streamed,
        }
    }
}

/// A page of raw events.
#[derive(Debug)]
pub struct LogPage {
    pub events: Vec<switchyard_core::usage::UsageEvent>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next: Option<String>,
}

/// A page of raw events as the REST API shows it.
#[derive(Debug, Serialize)]
pub struct LogPageView {
    pub events: Vec<LogEntry>,
    pub next: Option<String>,
}

impl From<LogPage> for LogPageView {
    fn from(page: LogPage) -> Self {
        Self {
            events: page.events.iter().map(LogEntry::from).collect(),
            next: page.next,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocateCredit {
    /// Positive: a top-up; negative: a withdrawal. Nano-dollars.
    pub amount_nanos: i64,
    #[serde(default, deserialize_with = "present")]
    pub note: Option<String>,
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
    /// Newest first.
    pub ledger: Vec<CreditEntry>,
}

/// The largest single allocation: a billion dollars.
const MAX_CREDIT_NANOS: u64 = 1_000_000_000_000_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostNews {
    pub title: String,
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsQuery {
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ModelList {
    /// Exact names and `prefix*` patterns.
    pub models: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DataPlaneStatus {
    pub replica: String,
    pub applied_version: u64,
    /// Versions behind the newest committed configuration.
    pub lag: u64,
    pub last_rejection: Option<String>,
    /// The control-plane replica serving its snapshot stream.
    pub control_plane: String,
}

/// `GET /dashboard/status`.
#[derive(Debug, Serialize)]
pub struct SystemStatus {
    pub snapshot_version: u64,
    /// The newest committed configuration revision; data planes are current once
    /// they applied it.
    pub config_revision: u64,
    pub data_planes: Vec<DataPlaneStatus>,
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
}

#[derive(Debug, Serialize)]
pub struct TreeEntry {
    #[serde(flatten)]
    pub account: AccountView,
    /// 1 for a direct child.
    pub depth: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries older than this sequence number (for paging).
    pub before: Option<i64>,
    /// At most this many (1-1000, default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub granularity: Option<String>,
    /// Only this account (the caller or a descendant) and its descendants.
    pub account: Option<String>,
    /// Only this served model.
    pub model: Option<String>,
    /// `account` (the default) or `provider_key`: rows per calling account, or,
    /// for the owner of the keys, per provider key across the whole tree.
    pub by: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Bill {
    pub from: String,
    pub to: String,
    pub granularity: &'static str,
    pub by: &'static str,
    pub rows: Vec<RollupRow>,
}

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

/// Operator choices that shape validation.
#[derive(Clone, Default)]
pub struct OperatorOptions {
    /// Which addresses provider base URLs may point at: never loopback, private or
    /// other special-purpose ones, unless the operator allows them (local models,
    /// tests) or some networks of them.
    pub upstream_networks: UpstreamNetworks,
    /// Resolves a base URL's host name when a key is written; `None`: the system.
    pub resolver: Option<Arc<dyn Resolve>>,
}

impl std::fmt::Debug for OperatorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorOptions")
            .field("upstream_networks", &self.upstream_networks)
            .field("resolver", &self.resolver.as_ref().map(|_| "injected"))
            .finish()
    }
}

/// Longest wait for a base URL's host name to resolve when a key is written.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Service {
    store: Store,
    keyring: Arc<Keyring>,
    root_hash: KeyHash,
    publisher: Publisher,
    usage: UsageServiceClient<Channel>,
    options: OperatorOptions,
}

impl Service {
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        root_hash: KeyHash,
        publisher: Publisher,
        usage: UsageServiceClient<Channel>,
        options: OperatorOptions,
    ) -> Self {
        Self {
            store,
            keyring,
            root_hash,
            publisher,
            usage,
            options,
        }
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Recognise the bearer of `presented`.
    pub async fn authenticate(
        &self,
        presented: Option<&str>,
        now_ms: i64,
    ) -> Result<Caller, ApiError> {
        let presented = presented.ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "missing API key: send `Authorization: Bearer <key>`",
            )
        })?;
        let hash = KeyHash::of(presented);
        if constant_time_eq(&hash.0, &self.root_hash.0) {
            return Ok(Caller::Root);
        }
        let invalid = || ApiError::new(ErrorCode::Unauthenticated, "invalid API key");
        if !apikey::is_well_formed(presented) {
            return Err(invalid());
        }
        let (key, account) = self.store.find_key(&hash).await?.ok_or_else(invalid)?;
        if key.status != Status::Active {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "this API key has been revoked",
            ));
        }
        if key.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "this API key has expired",
            ));
        }
        if account.status != Status::Active {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("account {} is disabled", account.id),
            ));
        }
        for ancestor in self.store.ancestors(account.id).await? {
            if ancestor.account.status != Status::Active {
                return Err(ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!("account {} is disabled", ancestor.account.id),
                ));
            }
        }
        Ok(Caller::Account {
            account: Box::new(account),
            key: key.id,
        })
    }

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
        let (key, clear) = new_issued_key(account.id, None, now_ms);
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
    async fn effective_of(
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
            .map_err(|e| ApiError::invalid(format!("policy: {e}")))?;
        let bound = self.effective_policy(parent).await?;
        let excesses = bound.excesses(policy);
        if excesses.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = excesses.iter().map(ToString::to_string).collect();
        Err(ApiError::new(
            ErrorCode::Unprocessable,
            format!("policy exceeds the parent's: {}", listed.join("; ")),
        ))
    }

    /// A descendant of the caller (any account for the operator). Anything else is
    /// "not found", so accounts outside a tenant's tree stay invisible.
    async fn descendant(
        &self,
        caller: &Caller,
        id: AccountId,
        include_self: bool,
    ) -> Result<AccountRecord, ApiError> {
        Ok(self.placed(caller, id, include_self).await?.record)
    }

    /// Like [`Self::descendant`], keeping the ancestors it had to read anyway.
    async fn placed(
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
                ApiError::invalid(format!(
                    "status must be \"active\" or \"disabled\", not {text:?}"
                ))
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
                let id: AccountId = text
                    .parse()
                    .map_err(|_| ApiError::invalid(format!("{text:?} is not an account id")))?;
                Some(self.descendant(caller, id, true).await?.account.id)
            }
            (None, Caller::Account { account, .. }) => Some(account.id),
            (None, Caller::Root) => None,
        };
        let limit = query.limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(ApiError::invalid("limit must be 1-1000"));
        }
        let rows = self
            .store
            .descendants(top, max_depth, query.offset.unwrap_or(0), limit)
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
                return Err(ApiError::invalid(
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
    async fn main_of(&self, id: AccountId) -> Result<AccountId, ApiError> {
        Ok(self
            .store
            .ancestors(id)
            .await?
            .last()
            .map_or(id, |top| top.account.id))
    }

    fn audit(
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
            return Err(ApiError::invalid("limit must be 1-1000"));
        }
        Ok(self.store.audit_log(owner, query.before, limit).await?)
    }

    fn own_account(caller: &Caller) -> Result<(&Account, IssuedKeyId), ApiError> {
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
            return Err(ApiError::invalid(
                "expires_at_unix_ms must be in the future and within ten years",
            ));
        }
        let (record, clear) = new_issued_key(account, req.expires_at_unix_ms, now_ms);
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
            return Err(ApiError::invalid(format!(
                "overlap_seconds must be at most {MAX_OVERLAP_SECONDS}"
            )));
        }
        let overlap_ms = i64::try_from(overlap * 1000).unwrap_or(i64::MAX);
        let (record, clear) = new_issued_key(account.id, None, now_ms);
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

    /// The main account whose provider keys the caller manages.
    fn key_owner(caller: &Caller) -> Result<AccountId, ApiError> {
        match caller {
            Caller::Root => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "the operator holds no provider keys; call with a main account's key",
            )),
            Caller::Account { account, .. } if account.parent.is_some() => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "only a main account manages provider keys",
            )),
            Caller::Account { account, .. } => Ok(account.id),
        }
    }

    /// Seal a secret for the provider key `id`. The record's id is the associated
    /// data: a sealed secret moved onto another record does not open.
    fn seal(&self, id: ProviderKeyId, secret: &str) -> Result<Sealed, ApiError> {
        self.keyring
            .seal(secret.as_bytes(), id.0.as_bytes())
            .map_err(|e| {
                tracing::error!(error = %e, "sealing a provider secret failed");
                ApiError::new(ErrorCode::Internal, "internal error")
            })
    }

    /// A base URL as [`validate_base_url`] accepts it, and whose host name does not
    /// resolve now to an address the operator does not allow: an early, clear
    /// refusal. A name that does not resolve now (or not within [`RESOLVE_TIMEOUT`])
    /// is accepted: it may exist later, and the data plane checks every address it
    /// connects to anyway, which is what keeps a name that changes its answer out.
    async fn checked_base_url(&self, raw: &str) -> Result<String, ApiError> {
        let networks = &self.options.upstream_networks;
        let base_url = validate_base_url(raw, networks)?;
        if networks.allow_private {
            return Ok(base_url);
        }
        let host = match url::Url::parse(&base_url).ok().and_then(|u| {
            u.host().and_then(|h| match h {
                url::Host::Domain(d) => Some(d.to_owned()),
                // Literal addresses were judged by `validate_base_url`.
                url::Host::Ipv4(_) | url::Host::Ipv6(_) => None,
            })
        }) {
            Some(host) => host,
            None => return Ok(base_url),
        };
        let resolving: Resolving = match &self.options.resolver {
            Some(resolver) => resolver.resolve(&host),
            None => {
                let host = host.clone();
                Box::pin(async move {
                    Ok(tokio::net::lookup_host((host.as_str(), 0))
                        .await?
                        .map(|addr| addr.ip())
                        .collect())
                })
            }
        };
        let resolved = match tokio::time::timeout(RESOLVE_TIMEOUT, resolving).await {
            Ok(Ok(resolved)) => resolved,
            Ok(Err(e)) => {
                tracing::info!(host, error = %e, "a provider base URL's host does not resolve now; accepted, checked when connecting");
                return Ok(base_url);
            }
            Err(_) => {
                tracing::info!(
                    host,
                    "a provider base URL's host did not resolve in time; accepted, checked when connecting"
                );
                return Ok(base_url);
            }
        };
        if let Some(refusal) = resolved.into_iter().find_map(|ip| networks.check(ip).err()) {
            return Err(ApiError::invalid(format!(
                "base_url {raw:?} resolves to an address upstreams may not have ({refusal}); the operator has not allowed this network for upstreams"
            )));
        }
        Ok(base_url)
    }

    /// `POST /x-keys`: an upstream provider key for the caller's main account.
    pub async fn add_provider_key(
        &self,
        caller: &Caller,
        req: AddProviderKey,
        now_ms: i64,
    ) -> Result<ProviderKeyView, ApiError> {
        let owner = Self::key_owner(caller)?;
        let secret = validate_secret(&req.secret)?;
        let kind = validate_kind(&req.provider)?;
        let id = ProviderKeyId::new();
        let record = ProviderKeyRecord {
            key: ProviderKey {
                id,
                owner,
                kind,
                base_url: in_stored_form(kind, &self.checked_base_url(&req.base_url).await?),
                secret: self.seal(id, secret)?,
                level: validate_level(req.level.unwrap_or(1))?,
                models: validate_models(&req.models)?,
                weight: validate_weight(req.weight.unwrap_or(1))?,
                status: Status::Active,
            },
            secret_hint: secret_hint(secret),
            health: "unknown".to_owned(),
            health_until_ms: None,
            created_at_ms: now_ms,
        };
        let audit = self.audit(
            caller,
            Some(owner),
            "provider_key.create",
            id.to_string(),
            None,
            state(provider_view(&record)),
        );
        let revision = self.store.add_provider_key(&record, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(provider_key = %id, owner = %owner, revision, "provider key added");
        Ok(provider_view(&record))
    }

    /// `GET /dashboard/models`: exactly what the caller may call — the models its main
    /// account's active provider keys serve, narrowed by its effective policy.
    pub async fn dashboard_models(&self, caller: &Caller) -> Result<ModelList, ApiError> {
        let (account, _) = Self::own_account(caller)?;
        let placed = self.placed(caller, account.id, true).await?;
        let effective = self.effective_of(&placed.record, &placed.ancestors).await?;
        let main = placed.main();
        let served: Vec<ModelPattern> = self
            .store
            .provider_keys(main)
            .await?
            .into_iter()
            .filter(|k| k.key.status == Status::Active)
            .flat_map(|k| k.key.models)
            .collect();
        Ok(ModelList {
            models: effective
                .callable_models(&served)
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
    }

    /// `GET /dashboard/status`: the snapshot version and every connected data plane.
    pub async fn dashboard_status(&self) -> SystemStatus {
        let version = self.publisher.current_version();
        let newest = version
            .max(self.publisher.committed_revision())
            .max(self.publisher.announced_revision());
        let mut data_planes: Vec<DataPlaneStatus> = self
            .publisher
            .replicas()
            .await
            .into_iter()
            .map(|(replica, state)| DataPlaneStatus {
                replica,
                applied_version: state.applied_version,
                lag: newest.saturating_sub(state.applied_version),
                last_rejection: state.last_rejection,
                control_plane: state.control_plane,
            })
            .collect();
        data_planes.sort_by(|a, b| a.replica.cmp(&b.replica));
        SystemStatus {
            snapshot_version: version,
            config_revision: newest,
            data_planes,
        }
    }

    /// `POST /dashboard/news`: an announcement for the caller's descendants (for every
    /// account when the operator posts).
    pub async fn post_news(
        &self,
        caller: &Caller,
        req: PostNews,
        now_ms: i64,
    ) -> Result<NewsItem, ApiError> {
        let title = req.title.trim();
        if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "title must be 1-200 printable characters",
            ));
        }
        if req.body.chars().count() > 10_000 {
            return Err(ApiError::invalid("body must be at most 10000 characters"));
        }
        let item = NewsItem {
            id: uuid::Uuid::now_v7().to_string(),
            author_id: caller.account().map(|a| a.id.to_string()),
            at_unix_ms: now_ms,
            title: title.to_owned(),
            body: req.body,
        };
        self.store.post_news(&item).await?;
        Ok(item)
    }

    /// `GET /dashboard/news`: what the caller's ancestors (and the operator) announced.
    pub async fn news(&self, caller: &Caller, query: NewsQuery) -> Result<Vec<NewsItem>, ApiError> {
        let limit = query.limit.unwrap_or(50);
        if limit == 0 || limit > 500 {
            return Err(ApiError::invalid("limit must be 1-500"));
        }
        Ok(self
            .store
            .news_for(caller.account().map(|a| a.id), limit)
            .await?)
    }

    /// `DELETE /dashboard/news/{id}`: withdraw one of the caller's announcements.
    pub async fn delete_news(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        Ok(self
            .store
            .delete_news(caller.account().map(|a| a.id), id)
            .await?)
    }

    /// `GET /dashboard/logs`: raw usage events of the caller's tree (or of one
    /// descendant's subtree), newest first, a page at a time.
    pub async fn logs(
        &self,
        caller: &Caller,
        query: LogsQuery,
        now_ms: i64,
    ) -> Result<LogPage, ApiError> {
        let to = query.to.unwrap_or(now_ms.saturating_add(1));
        let from = query.from.unwrap_or(to.saturating_sub(7 * 86_400_000));
        if from >= to || to.saturating_sub(from) > 400 * 86_400_000 {
            return Err(ApiError::invalid(
                "`from` must be before `to`, at most 400 days apart (unix milliseconds)",
            ));
        }
        let limit = query.limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(ApiError::invalid("limit must be 1-1000"));
        }
        let within = match (&query.account, caller) {
            (Some(text), _) => {
                let id: AccountId = text.parse().map_err(|_| {
                    ApiError::invalid(format!("account {text:?} is not an account id"))
                })?;
                Some(self.descendant(caller, id, true).await?.account.id)
            }
            (None, Caller::Account { account, .. }) => Some(account.id),
            (None, Caller::Root) => None,
        };
        let main = match within {
            Some(id) => self.main_of(id).await?.to_string(),
            None => String::new(),
        };
        let page = self
            .usage
            .clone()
            .query_events(pb::EventQuery {
                main_account_id: main,
                within_account_id: within.map(|w| w.to_string()).unwrap_or_default(),
                from_unix_ms: from,
                to_unix_ms: to,
                model: query.model.unwrap_or_default(),
                status: u32::from(query.status.unwrap_or(0)),
                before: query.before.unwrap_or_default(),
                limit,
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::InvalidArgument => ApiError::invalid(status.message().to_owned()),
                _ => {
                    tracing::error!(error = %status, "usage collector query failed");
                    ApiError::new(
                        ErrorCode::Unavailable,
                        "usage data is unavailable right now; try again",
                    )
                }
            })?
            .into_inner();
        let events = page
            .events
            .into_iter()
            .map(|e| {
                switchyard_wire::decode_event(e).map_err(|why| {
                    tracing::error!(error = %why, "collector returned a malformed event");
                    ApiError::new(ErrorCode::Internal, "internal error")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LogPage {
            events,
            next: (!page.next.is_empty()).then_some(page.next),
        })
    }

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
            return Err(ApiError::invalid(format!(
                "amount_nanos must be non-zero and at most {MAX_CREDIT_NANOS} either way"
            )));
        }
        let note = req.note.unwrap_or_default();
        if note.chars().count() > 500 || note.chars().any(char::is_control) {
            return Err(ApiError::invalid(
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

    /// `GET /x-users/{id}/credits`: an account's credit (itself or a descendant).
    pub async fn credit(&self, caller: &Caller, id: AccountId) -> Result<CreditView, ApiError> {
        let target = self.descendant(caller, id, true).await?;
        let (balance, ledger) = self.store.credit(id, 100).await?;
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

    /// `GET /x-conf`: the caller's main account's rules.
    pub async fn rules(&self, caller: &Caller) -> Result<Rules, ApiError> {
        let owner = Self::key_owner(caller)?;
        Ok(self.store.rules(owner).await?.0)
    }

    /// `GET /x-config/{section}`.
    pub async fn rule_section(
        &self,
        caller: &Caller,
        section: &str,
    ) -> Result<serde_json::Value, ApiError> {
        self.rules(caller)
            .await?
            .section(section)
            .map_err(edit_error)
    }

    /// Every rules write: read, edit, validate the whole document against the owner's
    /// levels, store if nobody changed it meanwhile (retrying a few times if someone did).
    pub async fn edit_rules(
        &self,
        caller: &Caller,
        edit: impl Fn(&Rules) -> Result<Rules, EditError>,
    ) -> Result<Rules, ApiError> {
        let owner = Self::key_owner(caller)?;
        for _ in 0..3 {
            let (current, version) = self.store.rules(owner).await?;
            let next = edit(&current).map_err(edit_error)?;
            let levels: BTreeSet<u32> = self
                .store
                .provider_keys(owner)
                .await?
                .iter()
                .map(|k| k.key.level)
                .collect();
            let problems = next.problems(&levels);
            if !problems.is_empty() {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return Err(ApiError::new(
                    ErrorCode::Unprocessable,
                    format!("rules refused: {}", listed.join("; ")),
                ));
            }
            let audit = self.audit(
                caller,
                Some(owner),
                "rules.update",
                owner.to_string(),
                state(&current),
                state(&next),
            );
            match self.store.put_rules(owner, &next, version, &audit).await {
                Ok(revision) => {
                    self.publisher.changed(revision);
                    tracing::info!(owner = %owner, revision, "rules updated");
                    return Ok(next);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict("rules").into())
    }

    /// `GET /x-keys`.
    pub async fn provider_keys(&self, caller: &Caller) -> Result<Vec<ProviderKeyView>, ApiError> {
        let owner = Self::key_owner(caller)?;
        Ok(self
            .store
            .provider_keys(owner)
            .await?
            .iter()
            .map(provider_view)
            .collect())
    }

    async fn owned_provider_key(
        &self,
        caller: &Caller,
        id: ProviderKeyId,
    ) -> Result<ProviderKeyRecord, ApiError> {
        let owner = Self::key_owner(caller)?;
        self.store.provider_key(owner, id).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("provider key {id} not found"))
        })
    }

    /// `GET /x-keys/{id}`.
    pub async fn provider_key(
        &self,
        caller: &Caller,
        id: ProviderKeyId,
    ) -> Result<ProviderKeyView, ApiError> {
        Ok(provider_view(&self.owned_provider_key(caller, id).await?))
    }

    /// `PATCH /x-keys/{id}`: change any setting; a new secret is sealed anew.
    pub async fn update_provider_key(
        &self,
        caller: &Caller,
        id: ProviderKeyId,
        req: UpdateProviderKey,
    ) -> Result<ProviderKeyView, ApiError> {
        let mut record = self.owned_provider_key(caller, id).await?;
        let before = provider_view(&record);
        let k = &mut record.key;
        let mut changed = false;
        if let Some(kind) = &req.provider {
            k.kind = validate_kind(kind)?;
            changed = true;
        }
        if let Some(url) = &req.base_url {
            k.base_url = self.checked_base_url(url).await?;
            changed = true;
        }
        if req.provider.is_some() || req.base_url.is_some() {
            k.base_url = in_stored_form(k.kind, &k.base_url);
        }
        if let Some(models) = &req.models {
            k.models = validate_models(models)?;
            changed = true;
        }
        if let Some(level) = req.level {
            k.level = validate_level(level)?;
            changed = true;
        }
        if let Some(weight) = req.weight {
            k.weight = validate_weight(weight)?;
            changed = true;
        }
        if let Some(status) = &req.status {
            k.status = Status::parse(status).ok_or_else(|| {
                ApiError::invalid(format!(
                    "status must be \"active\" or \"disabled\", not {status:?}"
                ))
            })?;
            changed = true;
        }
        if let Some(secret) = &req.secret {
            let secret = validate_secret(secret)?;
            k.secret = self.seal(id, secret)?;
            record.secret_hint = secret_hint(secret);
            changed = true;
        }
        if !changed {
            return Err(ApiError::invalid("nothing to change"));
        }
        let audit = self.audit(
            caller,
            Some(record.key.owner),
            "provider_key.update",
            id.to_string(),
            state(before),
            state(provider_view(&record)),
        );
        let revision = self.store.update_provider_key(&record, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(provider_key = %id, revision, "provider key updated");
        Ok(provider_view(&record))
    }

    /// `DELETE /x-keys/{id}`.
    pub async fn delete_provider_key(
        &self,
        caller: &Caller,
        id: ProviderKeyId,
    ) -> Result<(), ApiError> {
        let existing = self.owned_provider_key(caller, id).await?;
        let owner = existing.key.owner;
        let audit = self.audit(
            caller,
            Some(owner),
            "provider_key.delete",
            id.to_string(),
            state(provider_view(&existing)),
            None,
        );
        let revision = self.store.delete_provider_key(owner, id, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(provider_key = %id, revision, "provider key deleted");
        Ok(())
    }

    /// `GET /x-bill`: rollups of the caller and its descendants.
    pub async fn bill(
        &self,
        caller: &Caller,
        query: BillQuery,
        today: &str,
    ) -> Result<Bill, ApiError> {
        let to = match query.to {
            Some(d) => validate_day(&d, "to")?,
            None => today.to_owned(),
        };
        let from = match query.from {
            Some(d) => validate_day(&d, "from")?,
            None => shift_day(&to, -30)?,
        };
        if from > to {
            return Err(ApiError::invalid("`from` must not be after `to`"));
        }
        if days_between(&from, &to)? > MAX_BILL_DAYS {
            return Err(ApiError::invalid(format!(
                "a bill spans at most {MAX_BILL_DAYS} days"
            )));
        }
        let (granularity, label) = match query.granularity.as_deref() {
            None | Some("day") => (pb::Granularity::Day, "day"),
            Some("month") => (pb::Granularity::Month, "month"),
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "granularity must be \"day\" or \"month\", not {other:?}"
                )));
            }
        };
        let by_provider_key = match query.by.as_deref() {
            None | Some("account") => false,
            Some("provider_key") => true,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "by must be \"account\" or \"provider_key\", not {other:?}"
                )));
            }
        };
        if by_provider_key {
            if query.account.is_some() {
                return Err(ApiError::invalid(
                    "usage per provider key covers the owner's whole tree: leave out `account`",
                ));
            }
            if let Caller::Account { account, .. } = caller
                && account.parent.is_some()
            {
                return Err(ApiError::new(
                    ErrorCode::PermissionDenied,
                    "usage per provider key is for the owner of the keys (the main account)",
                ));
            }
        }
        let top = match (&query.account, caller) {
            (Some(text), _) => {
                let id: AccountId = text.parse().map_err(|_| {
                    ApiError::invalid(format!("account {text:?} is not an account id"))
                })?;
                Some(self.descendant(caller, id, true).await?.account.id)
            }
            (None, Caller::Account { account, .. }) => Some(account.id),
            (None, Caller::Root) => None,
        };
        let (main_account_id, account_ids) = match top {
            None => (String::new(), Vec::new()),
            Some(id) if by_provider_key => (id.to_string(), Vec::new()),
            Some(id) => {
                let subtree = self.store.subtree(id).await?;
                (
                    self.main_of(id).await?.to_string(),
                    subtree.iter().map(ToString::to_string).collect(),
                )
            }
        };
        let reply = self
            .usage
            .clone()
            .query_rollups(pb::RollupQuery {
                main_account_id,
                account_ids,
                from_day: from.clone(),
                to_day: to.clone(),
                granularity: granularity.into(),
                by_provider_key,
            })
            .await
            .map_err(|status| {
                tracing::error!(error = %status, "usage collector query failed");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "usage data is unavailable right now; try again",
                )
            })?
            .into_inner();
        let rows = reply
            .rows
            .into_iter()
            .filter(|r| query.model.as_ref().is_none_or(|m| *m == r.model))
            .map(switchyard_wire::decode_rollup)
            .collect();
        Ok(Bill {
            from,
            to,
            granularity: label,
            by: if by_provider_key {
                "provider_key"
            } else {
                "account"
            },
            rows,
        })
    }
}

/// A fresh key for `account`: the record to store and the clear text to show once.
fn new_issued_key(
    account: AccountId,
    expires_at_ms: Option<i64>,
    now_ms: i64,
) -> (IssuedKeyRecord, Secret<String>) {
    let new_key = apikey::generate();
    let record = IssuedKeyRecord {
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

/// A redacted view as audit state.
fn state(view: impl Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(view).ok()
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
    billing
        .validate()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
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

fn provider_view(r: &ProviderKeyRecord) -> ProviderKeyView {
    ProviderKeyView {
        id: r.key.id,
        provider: r.key.kind.as_str(),
        base_url: r.key.base_url.clone(),
        secret_hint: r.secret_hint.clone(),
        models: r.key.models.iter().map(ToString::to_string).collect(),
        level: r.key.level,
        weight: r.key.weight,
        status: r.key.status.as_str(),
        health: r.health.clone(),
        health_until_unix_ms: r.health_until_ms,
        created_at_unix_ms: r.created_at_ms,
    }
}

fn edit_error(e: EditError) -> ApiError {
    match e {
        EditError::NoSuchEntry { .. } => ApiError::new(ErrorCode::NotFound, e.to_string()),
        EditError::UnknownSection(_) | EditError::Invalid(_) => ApiError::invalid(e.to_string()),
    }
}

fn validate_kind(text: &str) -> Result<ProviderKind, ApiError> {
    ProviderKind::parse(text).ok_or_else(|| {
        ApiError::invalid(format!(
            "provider must be \"openai\" or \"anthropic\", not {text:?}"
        ))
    })
}

fn validate_secret(secret: &str) -> Result<&str, ApiError> {
    let secret = secret.trim();
    if secret.is_empty()
        || secret.chars().count() > MAX_SECRET
        || secret.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(format!(
            "secret must be 1-{MAX_SECRET} printable characters"
        )));
    }
    Ok(secret)
}

fn validate_models(models: &[String]) -> Result<Vec<ModelPattern>, ApiError> {
    if models.is_empty() || models.len() > MAX_MODELS {
        return Err(ApiError::invalid(format!(
            "models must list 1-{MAX_MODELS} names or `prefix*` patterns"
        )));
    }
    models
        .iter()
        .map(|m| {
            m.parse::<ModelPattern>()
                .map_err(|e| ApiError::invalid(format!("models: {e}")))
        })
        .collect()
}

fn validate_level(level: u32) -> Result<u32, ApiError> {
    if level > MAX_LEVEL {
        return Err(ApiError::invalid(format!("level must be 0-{MAX_LEVEL}")));
    }
    Ok(level)
}

fn validate_weight(weight: u32) -> Result<u32, ApiError> {
    if weight == 0 || weight > MAX_WEIGHT {
        return Err(ApiError::invalid(format!("weight must be 1-{MAX_WEIGHT}")));
    }
    Ok(weight)
}

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "name must be 1-{MAX_NAME} printable characters"
        )));
    }
    Ok(name.to_owned())
}

/// Only the last four characters, and only of secrets long enough to spare them.
fn secret_hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "****".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("****{tail}")
}

/// An `http(s)` URL with a host, no credentials, query or fragment; its trailing
/// slash dropped. An address the operator does not allow (`core::netguard`: loopback,
/// private, link-local, …) is refused, so a tenant cannot reach internal services
/// through the router; so are names that only ever mean such hosts, unless the
/// operator allows some special-purpose networks (then resolution decides).
pub fn validate_base_url(raw: &str, networks: &UpstreamNetworks) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::invalid(format!("base_url {raw:?} {why}"));
    if raw.len() > MAX_URL {
        return Err(ApiError::invalid(format!(
            "base_url is longer than {MAX_URL} characters"
        )));
    }
    let url = url::Url::parse(raw.trim()).map_err(|_| bad("is not a valid URL"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("must use http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not carry credentials; put the secret in `secret`",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    let host = url.host().ok_or_else(|| bad("has no host"))?;
    let refusal = match host {
        url::Host::Ipv4(ip) => networks.check(ip.into()).err(),
        url::Host::Ipv6(ip) => networks.check(ip.into()).err(),
        url::Host::Domain(_) => None,
    };
    if let Some(refusal) = refusal {
        return Err(bad(&format!(
            "points at an address upstreams may not have ({refusal}); the operator has not allowed this network for upstreams"
        )));
    }
    if let url::Host::Domain(d) = host
        && !networks.allow_private
        && networks.allowed.is_empty()
    {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if d == "localhost"
            || d.ends_with(".localhost")
            || d.ends_with(".internal")
            || d.ends_with(".local")
        {
            return Err(bad(
                "names a local or internal host; the operator has not allowed private upstreams",
            ));
        }
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A checked base URL with its path in the form stored for `kind`
/// (`core::base_url`): the forms each provider's SDK takes are accepted.
pub fn in_stored_form(kind: ProviderKind, base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(mut url) => {
            url.set_path(&switchyard_core::base_url::normalised_path(
                kind,
                url.path(),
            ));
            url.as_str().trim_end_matches('/').to_owned()
        }
        // Checked already; nothing to normalise otherwise.
        Err(_) => base_url.to_owned(),
    }
}

fn validate_day(text: &str, field: &str) -> Result<String, ApiError> {
    day_number(text)
        .map_err(|_| ApiError::invalid(format!("`{field}` must be a date like 2026-01-31")))?;
    Ok(text.to_owned())
}

fn day_number(text: &str) -> Result<i64, ApiError> {
    switchyard_core::time::parse_utc_day(text)
        .ok_or_else(|| ApiError::invalid(format!("{text:?} is not a date like 2026-01-31")))
}

fn shift_day(day: &str, by: i64) -> Result<String, ApiError> {
    Ok(switchyard_core::time::day_text(day_number(day)? + by))
}

fn days_between(from: &str, to: &str) -> Result<i64, ApiError> {
    Ok(day_number(to)? - day_number(from)?)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_stored_in_one_form_per_kind() {
        let stored = |kind, url| in_stored_form(kind, url);
        let (openai, anthropic) = (ProviderKind::OpenAi, ProviderKind::Anthropic);
        assert_eq!(
            stored(anthropic, "https://api.anthropic.com"),
            "https://api.anthropic.com/v1"
        );
        assert_eq!(
            stored(anthropic, "https://api.anthropic.com/v1"),
            "https://api.anthropic.com/v1"
        );
        assert_eq!(
            stored(anthropic, "https://api.deepseek.com/anthropic"),
            "https://api.deepseek.com/anthropic/v1"
        );
        assert_eq!(
            stored(openai, "https://api.openai.com"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            stored(openai, "https://openrouter.ai/api/v1"),
            "https://openrouter.ai/api/v1"
        );
        assert_eq!(
            stored(openai, "http://10.0.0.5:8000/v1/chat/completions"),
            "http://10.0.0.5:8000/v1"
        );
        // Refused forms stay refused before any normalising.
        let strict = UpstreamNetworks::default();
        assert!(validate_base_url("http://127.0.0.1", &strict).is_err());
        assert!(validate_base_url("https://api.anthropic.com?beta=1", &strict).is_err());
    }

    #[test]
    fn base_urls() {
        let strict = UpstreamNetworks::default();
        assert_eq!(
            validate_base_url("https://api.openai.com/v1/", &strict).unwrap(),
            "https://api.openai.com/v1"
        );
        for bad in [
            "ftp://x.com",
            "not a url",
            "https://user:pw@api.x.com/v1",
            "https://api.x.com/v1?a=b",
            "http://127.0.0.1:8000/v1",
            "http://10.1.2.3/v1",
            "http://192.168.1.1",
            "http://169.254.169.254/latest",
            "http://[::1]:80",
            "http://[fd00::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://localhost:11434/v1",
            "http://metadata.google.internal/",
            "http://100.64.0.1/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://224.0.0.1/",
            "http://198.18.0.1/",
            "http://0x7f.1/",
        ] {
            let error = validate_base_url(bad, &strict).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidRequest, "{bad}");
        }
        let refused = validate_base_url("http://[64:ff9b::a9fe:a9fe]/", &strict).unwrap_err();
        assert!(
            refused
                .message
                .contains("carries 169.254.169.254, link-local"),
            "{}",
            refused.message
        );
        let all = UpstreamNetworks::new(true, Vec::new());
        assert!(validate_base_url("http://127.0.0.1:8000/v1", &all).is_ok());
        assert!(validate_base_url("http://localhost:11434/v1", &all).is_ok());
        let some = UpstreamNetworks::new(false, vec!["10.1.0.0/16".parse().unwrap()]);
        assert!(validate_base_url("http://10.1.2.3/v1", &some).is_ok());
        assert!(validate_base_url("http://10.2.0.1/v1", &some).is_err());
        // Names are left to resolution when some networks are allowed.
        assert!(validate_base_url("http://router.internal/v1", &some).is_ok());
    }

    #[test]
    fn days() {
        assert_eq!(shift_day("2026-03-01", -1).unwrap(), "2026-02-28");
        assert_eq!(days_between("2026-01-01", "2026-12-31").unwrap(), 364);
        assert!(validate_day("2026-02-30", "from").is_err());
    }

    #[test]
    fn hints_reveal_little() {
        assert_eq!(secret_hint("sk-abcdefghijklmnop"), "****mnop");
        assert_eq!(secret_hint("short"), "****");
    }

    #[test]
    fn names() {
        assert_eq!(validate_name("  acme ").unwrap(), "acme");
        assert!(validate_name("").is_err());
        assert!(validate_name("a\u{0}b").is_err());
        assert!(validate_name(&"x".repeat(101)).is_err());
    }
}
