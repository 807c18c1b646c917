//! The snapshot as plain data: everything a data plane needs to authorise and route,
//! as the control plane publishes it. Validated and indexed by [`super::compiled`].

use std::collections::BTreeMap;

use crate::apikey::KeyHash;
use crate::billing::Billing;
use crate::crypto::Sealed;
use crate::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use crate::model::ModelPattern;
use crate::policy::Policy;
use crate::rules::Rules;
use crate::types::{ProviderKind, Status};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub parent: Option<AccountId>,
    pub name: String,
    pub status: Status,
    /// The account's own policy; [`Compiled`] intersects it along the chain.
    pub policy: Policy,
    /// What its parent bills it.
    pub billing: Billing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedKey {
    pub id: IssuedKeyId,
    pub account: AccountId,
    pub hash: KeyHash,
    pub expires_at_ms: Option<i64>,
    pub status: Status,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderKey {
    pub id: ProviderKeyId,
    /// The main account that owns it.
    pub owner: AccountId,
    pub kind: ProviderKind,
    /// Whether each call carries its caller's own upstream credential
    /// (`crate::passthrough`); then the key holds no secret (`secret` is empty).
    pub passthrough: bool,
    pub base_url: String,
    /// Still sealed: the data plane opens it just in time for each call.
    pub secret: Sealed,
    pub level: u32,
    pub models: Vec<ModelPattern>,
    pub weight: u32,
    pub status: Status,
    /// The models the upstream itself last listed (`core::model_list::kept`); what
    /// `/v1/models` shows of a key granted by pattern.
    pub discovered_models: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub version: u64,
    pub accounts: Vec<Account>,
    pub issued_keys: Vec<IssuedKey>,
    pub provider_keys: Vec<ProviderKey>,
    /// Rules by main account.
    pub rules: BTreeMap<AccountId, Rules>,
}

/// A snapshot's configuration: everything in it but the issued keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Configuration {
    pub accounts: Vec<Account>,
    pub provider_keys: Vec<ProviderKey>,
    /// Rules by main account.
    pub rules: BTreeMap<AccountId, Rules>,
}
