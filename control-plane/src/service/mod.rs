//! The service layer: every operation of the Admin and Manage APIs, with its
//! authorisation and validation. REST and gRPC are thin faces over these methods.
//!
//! One module per resource, each with its request and response types, its
//! operations and its validation; what they share (the [`Service`], the
//! [`Caller`], [`ApiError`]) is here.

mod accounts;
mod alert_watch;
mod alerts;
mod audit;
mod credit;
mod issued_keys;
mod news;
mod provider_keys;
mod rules;
mod status;
mod usage_views;

use std::sync::Arc;

use serde::Deserialize;
use switchyard_core::apikey::{self, KeyHash};
use switchyard_core::crypto::Keyring;
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::{AccountId, IssuedKeyId};
use switchyard_core::netguard::{Resolve, UpstreamNetworks};
use switchyard_core::snapshot::{Account, Status};
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use tonic::transport::Channel;

use crate::collector::{CollectorClient, CollectorError};
use crate::model_discovery::{Discoverer, ModelLister};
use crate::publisher::Publisher;
use crate::store::{AccountRecord, Store, StoreError};
use crate::webhook::Webhooks;

pub use crate::collector::LogPage;
pub use accounts::{
    AccountInfo, AccountView, CreateAccount, CreatedAccount, DeletedAccounts, TreeEntry, TreeQuery,
    UpdateAccount,
};
pub use alert_watch::AlertMemory;
pub use alerts::{
    AlertRuleView, AlertRulesQuery, CreateAlertRule, CreatedAlertRule, DeliveriesQuery,
    MAX_RULES_PER_ACCOUNT, TestDelivery,
};
pub use audit::AuditQuery;
pub use credit::{AllocateCredit, CreditView, LedgerQuery};
pub use issued_keys::{CreatedKey, IssuedKeyView, NewKey, Rotate, SelfView};
pub use news::{NewsQuery, PostNews};
pub use provider_keys::{
    AddProviderKey, ProviderKeyView, UpdateProviderKey, in_stored_form, validate_base_url,
};
pub use rules::RulesAt;
pub use status::{DataPlaneStatus, ModelList, SystemStatus};
pub use usage_views::{Bill, BillQuery, LogPageView, LogsQuery, Requested};

/// A failed operation: a code from the shared vocabulary, a message a user can act
/// on, and the request field it is about when there is one (REST answers it as the
/// error's `param`; the console shows the message next to that field).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The field's name, or its path within the body (`policy.rpm`).
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// The same refusal, about `field` of the request.
    pub fn about(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// A refused value of `field`.
    fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid(message).about(field)
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

/// A collector failure as the caller sees it: the collector's refusal of the
/// query's arguments, else usage data unavailable (an internal error for an
/// answer that does not read); failures are logged.
impl From<CollectorError> for ApiError {
    fn from(e: CollectorError) -> Self {
        match e {
            CollectorError::Refused(why) => Self::invalid(why),
            CollectorError::Unavailable(status) => {
                tracing::error!(error = %status, "usage collector query failed");
                Self::new(
                    ErrorCode::Unavailable,
                    "usage data is unavailable right now; try again",
                )
            }
            CollectorError::Malformed(why) => {
                tracing::error!(error = %why, "collector returned a malformed event");
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

/// Operator choices that shape validation.
#[derive(Clone, Default)]
pub struct OperatorOptions {
    /// Which addresses provider base URLs may point at: never loopback, private or
    /// other special-purpose ones, unless the operator allows them (local models,
    /// tests) or some networks of them.
    pub upstream_networks: UpstreamNetworks,
    /// Resolves a base URL's host name when a key is written; `None`: the system.
    pub resolver: Option<Arc<dyn Resolve>>,
    /// Ask a key's upstream for its models when the key is added or re-pointed
    /// (`POST /x-keys/{id}/discover` asks whatever this says). Off where the control
    /// plane must not reach upstreams by itself.
    pub discover_on_write: bool,
}

impl std::fmt::Debug for OperatorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorOptions")
            .field("upstream_networks", &self.upstream_networks)
            .field("resolver", &self.resolver.as_ref().map(|_| "injected"))
            .field("discover_on_write", &self.discover_on_write)
            .finish()
    }
}

pub struct Service {
    store: Store,
    keyring: Arc<Keyring>,
    root_hash: KeyHash,
    publisher: Publisher,
    collector: CollectorClient,
    discoverer: Discoverer,
    webhooks: Webhooks,
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
        let discoverer = Discoverer {
            store: store.clone(),
            keyring: keyring.clone(),
            publisher: publisher.clone(),
            lister: ModelLister::new(options.upstream_networks.clone(), options.resolver.clone()),
        };
        Self {
            store,
            keyring,
            root_hash,
            publisher,
            collector: CollectorClient::new(usage),
            discoverer,
            webhooks: Webhooks::new(options.upstream_networks.clone(), options.resolver.clone()),
            options,
        }
    }

    /// Asks provider keys' upstreams for their model lists (the leader's rounds too).
    pub fn discoverer(&self) -> &Discoverer {
        &self.discoverer
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
        self.admit(key, account, now_ms).await
    }

    /// Recognise the holder of issued key `id` again (a console session opened with
    /// it), by the same rules as [`Self::authenticate`].
    pub async fn authenticate_issued_key(
        &self,
        id: IssuedKeyId,
        now_ms: i64,
    ) -> Result<Caller, ApiError> {
        let (key, account) = self.store.session_key(id).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::Unauthenticated, "this API key no longer exists")
        })?;
        self.admit(key, account, now_ms).await
    }

    /// A fingerprint of the operator's root key (a hash of its hash): a console
    /// session of the operator holds it, so a new root key ends those sessions.
    pub fn root_mark(&self) -> String {
        KeyHash::of(&self.root_hash.to_hex()).to_hex()
    }

    /// An issued key is honoured while it, its account and every ancestor are active.
    async fn admit(
        &self,
        key: switchyard_core::snapshot::IssuedKey,
        account: Account,
        now_ms: i64,
    ) -> Result<Caller, ApiError> {
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
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
