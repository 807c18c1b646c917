//! The tree as a file: a main account's sub-accounts (nested, named uniquely among
//! siblings), their policies, billing and credit, the provider keys without their
//! secrets, and the rules. Also what the server holds, read into the same shapes,
//! and the export from one to the other, in a stable order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_core::billing::Billing;
use switchyard_core::policy::Policy;
use switchyard_core::rules::Rules;

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeDoc {
    /// The main account's name: a file is applied only with that account's key.
    pub main: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub rules: Rules,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_keys: Vec<KeySpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountSpec>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_active(s: &Status) -> bool {
    *s == Status::Active
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

fn one() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Active,
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Disabled => "disabled",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Openai,
    Anthropic,
    Gemini,
    /// Each call carries its caller's own login; the key holds no secret and names
    /// the protocol it speaks.
    Passthrough,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Passthrough => "passthrough",
        }
    }
}

/// Where a provider secret comes from when apply needs it: never the file itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretFrom {
    Env(String),
    File(String),
}

/// A provider key. It is the same key on the server when provider, base URL and
/// `hint` (the secret's last characters, as the server shows them) agree; without a
/// hint, when provider, base URL and level do and only one key fits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub provider: Provider,
    /// A passthrough key's protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Provider>,
    pub base_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub models: Vec<String>,
    #[serde(default)]
    pub level: u32,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "is_active")]
    pub status: Status,
    /// Needed when apply creates the key (a passthrough key takes none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_from: Option<SecretFrom>,
}

impl KeySpec {
    /// Whether apply needs a secret to create it.
    pub fn takes_secret(&self) -> bool {
        self.provider != Provider::Passthrough
    }
}

/// A sub-account and, nested, its children.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "is_active")]
    pub status: Status,
    #[serde(default, skip_serializing_if = "is_default")]
    pub policy: Policy,
    #[serde(default, skip_serializing_if = "is_default")]
    pub billing: Billing,
    /// Credit its parent has given it, in nano-dollars; left out: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_nanos: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountSpec>,
}

/// What the server holds for a main account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remote {
    pub main_id: String,
    pub main_name: String,
    /// The main account's effective policy: the bound of its direct children.
    pub main_effective: Policy,
    pub rules: Rules,
    /// The revision the rules were read at (their `ETag`), when the server tags them:
    /// apply writes the rules only if they are still at it.
    pub rules_etag: Option<String>,
    pub keys: Vec<RemoteKey>,
    /// Every descendant, parents before children.
    pub accounts: Vec<RemoteAccount>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteKey {
    pub id: String,
    pub provider: Provider,
    /// The protocol the upstream speaks.
    pub protocol: Provider,
    pub base_url: String,
    pub hint: String,
    pub models: Vec<String>,
    pub level: u32,
    pub weight: u32,
    pub status: Status,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteAccount {
    pub id: String,
    pub parent_id: String,
    pub name: String,
    pub status: Status,
    pub policy: Policy,
    pub billing: Billing,
    pub credit_nanos: i64,
}

impl Remote {
    /// `a/b/c`: an account's names from below the main account down to it.
    pub fn paths(&self) -> BTreeMap<String, String> {
        let by_id: BTreeMap<&str, &RemoteAccount> =
            self.accounts.iter().map(|a| (a.id.as_str(), a)).collect();
        let mut out = BTreeMap::new();
        for a in &self.accounts {
            let mut names = vec![a.name.as_str()];
            let mut parent = a.parent_id.as_str();
            // Bounded by the number of accounts, whatever the server answered.
            for _ in 0..self.accounts.len() {
                match by_id.get(parent) {
                    Some(p) => {
                        names.push(p.name.as_str());
                        parent = p.parent_id.as_str();
                    }
                    None => break,
                }
            }
            names.reverse();
            out.insert(a.id.clone(), names.join("/"));
        }
        out
    }
}

/// The environment variable an exported key's secret is read from: numbered in the
/// file's order, so the same tree always exports the same names.
pub fn secret_env_name(index: usize) -> String {
    format!("SWITCHYARD_PROVIDER_SECRET_{}", index + 1)
}

/// The server's tree as a file: children by name, keys by what identifies them.
pub fn export(remote: &Remote) -> TreeDoc {
    let mut keys: Vec<KeySpec> = remote
        .keys
        .iter()
        .map(|k| KeySpec {
            provider: k.provider,
            protocol: (k.provider == Provider::Passthrough).then_some(k.protocol),
            base_url: k.base_url.clone(),
            hint: Some(k.hint.clone()),
            models: k.models.clone(),
            level: k.level,
            weight: k.weight,
            status: k.status,
            secret_from: None,
        })
        .collect();
    keys.sort_by(|a, b| {
        (
            a.provider,
            &a.base_url,
            a.level,
            &a.hint,
            &a.models,
            a.weight,
        )
            .cmp(&(
                b.provider,
                &b.base_url,
                b.level,
                &b.hint,
                &b.models,
                b.weight,
            ))
    });
    for (i, k) in keys.iter_mut().enumerate() {
        if k.takes_secret() {
            k.secret_from = Some(SecretFrom::Env(secret_env_name(i)));
        }
    }
    TreeDoc {
        main: remote.main_name.clone(),
        rules: remote.rules.clone(),
        provider_keys: keys,
        accounts: children_of(remote, &remote.main_id),
    }
}

fn children_of(remote: &Remote, parent: &str) -> Vec<AccountSpec> {
    let mut out: Vec<AccountSpec> = remote
        .accounts
        .iter()
        .filter(|a| a.parent_id == parent)
        .map(|a| AccountSpec {
            name: a.name.clone(),
            status: a.status,
            policy: a.policy.clone(),
            billing: a.billing.clone(),
            credit_nanos: Some(a.credit_nanos),
            accounts: children_of(remote, &a.id),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
