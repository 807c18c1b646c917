//! The lookup tables built once from a [`Snapshot`] ([`Compiled`]), so the request
//! path does hash lookups and an atomic increment, nothing more.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::data::{Configuration, IssuedKey, ProviderKey, Snapshot};
use crate::apikey::{self, KeyHash};
use crate::billing::Billing;
use crate::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use crate::limits::{self, AccountLimits, CounterValue, DaySpend};
use crate::model::{self, ModelPattern};
use crate::policy::{CreditLimit, Policy};
use crate::route::{Attempts, KeyHealth, NO_KEYS, OwnerKeys};
use crate::rules::{LimitSettings, Price, Rules};
use crate::types::{ProviderKind, Status};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("account {0} appears twice")]
    DuplicateAccount(AccountId),
    #[error("account {account} names unknown parent {parent}")]
    UnknownParent {
        account: AccountId,
        parent: AccountId,
    },
    #[error("account {0} is part of a cycle")]
    Cycle(AccountId),
    #[error("issued key {key} belongs to unknown account {account}")]
    KeyOfUnknownAccount {
        key: IssuedKeyId,
        account: AccountId,
    },
    #[error("two issued keys share one hash")]
    DuplicateKeyHash,
    #[error("provider key {key} belongs to unknown account {owner}")]
    ProviderOfUnknownAccount {
        key: ProviderKeyId,
        owner: AccountId,
    },
    #[error("rules belong to {0}, which is not a main account")]
    RulesOfSubAccount(AccountId),
    #[error("provider key {key} belongs to {owner}, which is not a main account")]
    ProviderOfSubAccount {
        key: ProviderKeyId,
        owner: AccountId,
    },
}

/// What the data plane knows about the caller after authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub key: IssuedKeyId,
    /// The caller's account first, the main account last.
    pub chain: Arc<[AccountId]>,
    /// The account's effective policy (its own, intersected with every ancestor's).
    pub policy: Arc<Policy>,
    /// What its parent bills it.
    pub billing: Arc<Billing>,
    /// The own limits of its account and every ancestor that sets any, caller first.
    pub limits: Arc<[AccountLimits]>,
}

impl Caller {
    pub fn account(&self) -> AccountId {
        self.chain[0]
    }

    pub fn main_account(&self) -> AccountId {
        self.chain[self.chain.len() - 1]
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("invalid API key")]
    UnknownKey,
    #[error("this API key has been revoked")]
    Revoked,
    #[error("this API key has expired")]
    Expired,
    #[error("account {0} is disabled")]
    AccountDisabled(AccountId),
}

#[derive(Clone)]
struct KeyEntry {
    id: IssuedKeyId,
    expires_at_ms: Option<i64>,
    status: Status,
    /// Looked up in [`Tables::accounts`] on each call, so a change to an account
    /// (or an ancestor) touches its entry only, never its keys.
    account: AccountId,
}

impl KeyEntry {
    /// The entry of `key`; its account must be in `accounts`.
    fn of(
        key: &IssuedKey,
        accounts: &HashMap<AccountId, AccountEntry>,
    ) -> Result<Self, SnapshotError> {
        if !accounts.contains_key(&key.account) {
            return Err(SnapshotError::KeyOfUnknownAccount {
                key: key.id,
                account: key.account,
            });
        }
        Ok(Self {
            id: key.id,
            expires_at_ms: key.expires_at_ms,
            status: key.status,
            account: key.account,
        })
    }
}

/// What a key's calls inherit from its account.
struct AccountEntry {
    /// The account and its ancestors, the account first.
    chain: Arc<[AccountId]>,
    policy: Arc<Policy>,
    billing: Arc<Billing>,
    limits: Arc<[AccountLimits]>,
    /// The first disabled account on the chain, if any.
    disabled: Option<AccountId>,
}

/// The tables built from a [`Configuration`]: at most tens of thousands of rows,
/// rebuilt whole when any of it changes.
struct Tables {
    /// What the keys of each account share (and a new key of it gets).
    accounts: HashMap<AccountId, AccountEntry>,
    owners: HashMap<AccountId, OwnerKeys>,
    rules: HashMap<AccountId, Rules>,
    /// The accounts that set a credit limit.
    credits: Vec<(AccountId, CreditLimit)>,
    /// The model names metrics may carry (see [`Compiled::metric_model`]).
    metric_models: HashSet<Arc<str>>,
}

/// The most model names metrics carry; past it, the first in name order are kept.
pub const MAX_METRIC_MODELS: usize = 1000;

/// The label of every served model an owner did not name.
pub const OTHER_MODEL: &str = "other";

/// The model names an owner spelled out in the configuration: exact names in provider
/// keys' model lists, ModelMapper targets, and exact names in the rules' LevelMapper,
/// ModelLimits and pricing. Patterns (`prefix*`) name no model. Never a name that only
/// a client sent, so a metric labelled with one has a bounded number of series.
fn metric_models<'a>(
    provider_keys: impl Iterator<Item = &'a ProviderKey>,
    rules: impl Iterator<Item = &'a Rules>,
) -> HashSet<Arc<str>> {
    fn exact(p: &ModelPattern) -> Option<&str> {
        match p {
            ModelPattern::Exact(name) => Some(name),
            ModelPattern::Prefix(_) => None,
        }
    }
    let mut names: std::collections::BTreeSet<&str> = provider_keys
        .flat_map(|k| k.models.iter().filter_map(exact))
        .collect();
    for r in rules {
        names.extend(r.model_mapper.values().map(String::as_str));
        names.extend(r.level_mapper.keys().filter_map(exact));
        names.extend(r.model_limits.keys().filter_map(exact));
        names.extend(r.pricing.keys().filter_map(exact));
    }
    names
        .into_iter()
        .take(MAX_METRIC_MODELS)
        .map(Arc::from)
        .collect()
}

impl Tables {
    /// Validate a configuration and build its tables, carrying provider-key health
    /// over from `previous`.
    fn build(config: Configuration, previous: Option<&Tables>) -> Result<Self, SnapshotError> {
        let Configuration {
            accounts,
            provider_keys,
            rules,
        } = config;
        let mut index: HashMap<AccountId, usize> = HashMap::with_capacity(accounts.len());
        for (i, a) in accounts.iter().enumerate() {
            if index.insert(a.id, i).is_some() {
                return Err(SnapshotError::DuplicateAccount(a.id));
            }
        }
        let parent_of = |i: usize| accounts[i].parent.and_then(|p| index.get(&p).copied());
        let mut chains: Vec<Arc<[AccountId]>> = Vec::with_capacity(accounts.len());
        for a in &accounts {
            let mut chain = vec![a.id];
            let mut cursor = a.parent;
            while let Some(p) = cursor {
                let Some(&up) = index.get(&p) else {
                    return Err(SnapshotError::UnknownParent {
                        account: a.id,
                        parent: p,
                    });
                };
                // Chains are short: a scan beats a set per account.
                if chain.contains(&p) {
                    return Err(SnapshotError::Cycle(a.id));
                }
                chain.push(p);
                cursor = accounts[up].parent;
            }
            chains.push(chain.into());
        }
        let is_main = |id: &AccountId| index.get(id).is_some_and(|&i| accounts[i].parent.is_none());
        for owner in rules.keys() {
            if !is_main(owner) {
                return Err(SnapshotError::RulesOfSubAccount(*owner));
            }
        }
        // The main account's rules bound its whole tree (resources, model caps).
        let bounds: HashMap<AccountId, Policy> = rules
            .iter()
            .map(|(owner, rules)| (*owner, rules.as_policy()))
            .collect();

        // Parents before children, so each account's effective policy, limits and
        // disabled ancestor extend its parent's, and an account that adds nothing
        // shares its parent's.
        let mut order: Vec<usize> = (0..accounts.len()).collect();
        order.sort_by_key(|&i| chains[i].len());
        let mut policies: Vec<Option<Arc<Policy>>> = vec![None; accounts.len()];
        let mut limits: Vec<Option<Arc<[AccountLimits]>>> = vec![None; accounts.len()];
        let mut disabled: Vec<Option<AccountId>> = vec![None; accounts.len()];
        let mut credits = Vec::new();
        let unrestricted = Policy::default();
        for i in order {
            let a = &accounts[i];
            let up = parent_of(i);
            // The intersection from the main account down.
            let policy = match up.and_then(|p| policies[p].clone()) {
                Some(parent) if a.policy == unrestricted && parent.credit.is_none() => parent,
                Some(parent) => Arc::new(parent.intersect(&a.policy)),
                None => Arc::new(Policy::effective(
                    bounds.get(&a.id).into_iter().chain([&a.policy]),
                )),
            };
            // Every account on the chain keeps its own counters, caller first.
            let own = AccountLimits::of(a.id, &a.policy, bounds.get(&a.id));
            if let Some(credit) = own.as_ref().and_then(|l| l.credit) {
                credits.push((a.id, credit));
            }
            let inherited = up.and_then(|p| limits[p].clone());
            let chain_limits = match (own, inherited) {
                (None, Some(inherited)) => inherited,
                (own, inherited) => own
                    .into_iter()
                    .chain(inherited.iter().flat_map(|l| l.iter().cloned()))
                    .collect(),
            };
            disabled[i] = if a.status == Status::Active {
                up.and_then(|p| disabled[p])
            } else {
                Some(a.id)
            };
            policies[i] = Some(policy);
            limits[i] = Some(chain_limits);
        }

        let metric_models = metric_models(provider_keys.iter(), rules.values());
        let mut by_owner: HashMap<AccountId, Vec<ProviderKey>> = HashMap::new();
        for p in provider_keys {
            match index.get(&p.owner) {
                None => {
                    return Err(SnapshotError::ProviderOfUnknownAccount {
                        key: p.id,
                        owner: p.owner,
                    });
                }
                Some(_) if !is_main(&p.owner) => {
                    return Err(SnapshotError::ProviderOfSubAccount {
                        key: p.id,
                        owner: p.owner,
                    });
                }
                Some(_) => {}
            }
            by_owner.entry(p.owner).or_default().push(p);
        }
        let known_health: HashMap<ProviderKeyId, Arc<KeyHealth>> = previous
            .into_iter()
            .flat_map(|t| t.owners.values())
            .flat_map(|o| o.keys().map(|(k, h)| (k.id, h.clone())))
            .collect();
        let owners = by_owner
            .into_iter()
            .map(|(owner, keys)| {
                let pool = OwnerKeys::new(keys, |k| {
                    known_health.get(&k.id).cloned().unwrap_or_default()
                });
                (owner, pool)
            })
            .collect();

        let no_billing = Arc::new(Billing::default());
        let mut entries = HashMap::with_capacity(accounts.len());
        for (i, (a, chain)) in accounts.into_iter().zip(chains).enumerate() {
            let billing = if a.billing == *no_billing {
                no_billing.clone()
            } else {
                Arc::new(a.billing)
            };
            let entry = AccountEntry {
                chain,
                policy: policies[i].take().unwrap_or_default(),
                billing,
                limits: limits[i].take().unwrap_or_default(),
                disabled: disabled[i],
            };
            entries.insert(a.id, entry);
        }
        Ok(Self {
            accounts: entries,
            owners,
            rules: rules.into_iter().collect(),
            credits,
            metric_models,
        })
    }
}

/// A snapshot turned into lookup tables. Built once per version, then only read.
/// The two parts are shared (`Arc`) with the versions patched from this one by
/// [`Compiled::patched`]: a change of issued keys copies the key table alone, a
/// change of configuration rebuilds the configuration's tables alone.
pub struct Compiled {
    version: u64,
    keys: Arc<HashMap<KeyHash, KeyEntry>>,
    tables: Arc<Tables>,
}

impl Compiled {
    /// Validate a snapshot and build its tables. A snapshot that fails validation is
    /// refused whole; callers keep the last good one.
    pub fn build(snapshot: Snapshot) -> Result<Self, SnapshotError> {
        Self::build_after(snapshot, None)
    }

    /// [`Self::build`], carrying provider-key health over from the snapshot it
    /// replaces, so a configuration change wakes no sleeping key.
    pub fn build_after(
        snapshot: Snapshot,
        previous: Option<&Compiled>,
    ) -> Result<Self, SnapshotError> {
        let Snapshot {
            version,
            accounts,
            issued_keys,
            provider_keys,
            rules,
        } = snapshot;
        let config = Configuration {
            accounts,
            provider_keys,
            rules,
        };
        let tables = Tables::build(config, previous.map(|p| &*p.tables))?;
        let mut keys = HashMap::with_capacity(issued_keys.len());
        for k in issued_keys {
            let entry = KeyEntry::of(&k, &tables.accounts)?;
            if keys.insert(k.hash, entry).is_some() {
                return Err(SnapshotError::DuplicateKeyHash);
            }
        }
        Ok(Self {
            version,
            keys: Arc::new(keys),
            tables: Arc::new(tables),
        })
    }

    /// This version changed by a delta, as `version`: a new configuration (when
    /// `config` is given) and issued keys upserted or deleted. What did not change is
    /// shared with `self`, so the common changes cost a fraction of a build: a key
    /// issued or revoked copies the key table; an account disabled or a policy
    /// narrowed rebuilds the configuration's tables and leaves the keys alone.
    /// Validated like [`Self::build`]: a key of an unknown account, or a hash another
    /// key holds, refuses the whole change. (A key's hash never changes: rotation
    /// issues a new key.)
    pub fn patched(
        &self,
        version: u64,
        config: Option<Configuration>,
        upserts: Vec<IssuedKey>,
        deleted: &[IssuedKeyId],
    ) -> Result<Self, SnapshotError> {
        // With a new configuration, whether an account went (whose keys must go too).
        let (tables, accounts_gone) = match config {
            Some(config) => {
                let tables = Tables::build(config, Some(&self.tables))?;
                let gone = self
                    .tables
                    .accounts
                    .keys()
                    .any(|a| !tables.accounts.contains_key(a));
                (Arc::new(tables), gone)
            }
            None => (self.tables.clone(), false),
        };
        let keys = if upserts.is_empty() && deleted.is_empty() {
            self.keys.clone()
        } else {
            let mut keys = (*self.keys).clone();
            if !deleted.is_empty() {
                let gone: HashSet<&IssuedKeyId> = deleted.iter().collect();
                keys.retain(|_, e| !gone.contains(&e.id));
            }
            for k in upserts {
                let entry = KeyEntry::of(&k, &tables.accounts)?;
                if keys.insert(k.hash, entry).is_some_and(|was| was.id != k.id) {
                    return Err(SnapshotError::DuplicateKeyHash);
                }
            }
            Arc::new(keys)
        };
        // An account gone: none of the keys kept may still belong to it.
        if accounts_gone
            && let Some(e) = keys
                .values()
                .find(|e| !tables.accounts.contains_key(&e.account))
        {
            return Err(SnapshotError::KeyOfUnknownAccount {
                key: e.id,
                account: e.account,
            });
        }
        Ok(Self {
            version,
            keys,
            tables,
        })
    }

    /// How a main account's limits are enforced.
    pub fn limit_settings(&self, owner: AccountId) -> LimitSettings {
        self.tables
            .rules
            .get(&owner)
            .map(|r| r.limits)
            .unwrap_or_default()
    }

    /// The client header names a main account's rules add to the forwarded ones
    /// (lowercase, checked when the rules were read).
    pub fn forward_headers(&self, owner: AccountId) -> &[String] {
        self.tables
            .rules
            .get(&owner)
            .map_or(&[], |r| r.forward_headers.as_slice())
    }

    /// Credit counters rebuilt from the spend the usage ledger holds (see
    /// [`limits::rebuilt_credits`]).
    pub fn rebuilt_credits(&self, spend: &[DaySpend], now_ms: i64) -> Vec<CounterValue> {
        limits::rebuilt_credits(
            self.tables.credits.iter().copied(),
            |a| self.tables.accounts.get(&a).map(|e| &e.chain[..]),
            spend,
            now_ms,
        )
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The price a main account set for a model, if any.
    pub fn price(&self, owner: AccountId, model: &str) -> Option<Price> {
        self.tables
            .rules
            .get(&owner)
            .and_then(|r| r.price_for(model))
    }

    /// A served model as a metric label: the name itself when the configuration
    /// names it (see [`metric_models`]), else [`OTHER_MODEL`]. One hash lookup.
    pub fn metric_model(&self, served: &str) -> &str {
        self.tables
            .metric_models
            .get(served)
            .map_or(OTHER_MODEL, |name| name)
    }

    /// Recognise a presented API key.
    pub fn authenticate(&self, presented: &str, now_ms: i64) -> Result<Caller, AuthError> {
        if !apikey::is_well_formed(presented) {
            return Err(AuthError::UnknownKey);
        }
        let entry = self
            .keys
            .get(&KeyHash::of(presented))
            .ok_or(AuthError::UnknownKey)?;
        if entry.status != Status::Active {
            return Err(AuthError::Revoked);
        }
        if entry.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(AuthError::Expired);
        }
        let account = self
            .tables
            .accounts
            .get(&entry.account)
            .ok_or(AuthError::UnknownKey)?;
        if let Some(disabled) = account.disabled {
            return Err(AuthError::AccountDisabled(disabled));
        }
        Ok(Caller {
            key: entry.id,
            chain: account.chain.clone(),
            policy: account.policy.clone(),
            billing: account.billing.clone(),
            limits: account.limits.clone(),
        })
    }

    /// The execution model for a requested one under the owner's ModelMapper.
    pub fn map_model<'a>(&'a self, owner: AccountId, requested: &'a str) -> &'a str {
        match self.tables.rules.get(&owner) {
            Some(rules) => rules.map_model(requested),
            None => requested,
        }
    }

    /// Whether `caller`'s calls may reach provider keys of another protocol: the
    /// owner's rules leave translation on and no policy on the chain forbids it.
    pub fn translates(&self, caller: &Caller) -> bool {
        let owner_allows = self
            .tables
            .rules
            .get(&caller.main_account())
            .is_none_or(|r| r.translation.enabled);
        owner_allows && !caller.policy.forbid_translation
    }

    /// Plan the attempts for one call of `owner`'s tree on `model` (already mapped):
    /// the LevelMapper's level or the lowest that serves it, then SwitchOver.
    pub fn attempts<'a>(
        &'a self,
        owner: AccountId,
        model: &'a str,
        kind: ProviderKind,
        translate: bool,
        max_per_level: u32,
    ) -> Attempts<'a> {
        let rules = self.tables.rules.get(&owner);
        let mapped = rules.and_then(|r| r.level_for(model));
        let switch_over = rules.map(|r| &r.switch_over);
        self.tables.owners.get(&owner).unwrap_or(&NO_KEYS).attempts(
            model,
            kind,
            translate,
            mapped,
            switch_over,
            max_per_level,
        )
    }

    /// Every provider key with its health, for reporting.
    pub fn provider_health(&self) -> impl Iterator<Item = (&ProviderKey, &Arc<KeyHealth>)> {
        self.tables.owners.values().flat_map(|o| o.keys())
    }

    /// The models a caller may name on an endpoint speaking `kind`: the exact model
    /// names its policy allows that an active key of that kind serves (directly or
    /// through a ModelMapper alias), sorted. Called for `/v1/models` only, never on
    /// a proxied call.
    pub fn callable_models(&self, caller: &Caller, kind: ProviderKind) -> Vec<String> {
        let owner = caller.main_account();
        let Some(keys) = self.tables.owners.get(&owner) else {
            return Vec::new();
        };
        let active: Vec<&ProviderKey> = keys
            .keys()
            .map(|(k, _)| k)
            .filter(|k| k.status == Status::Active && k.kind == kind)
            .collect();
        let served: Vec<ModelPattern> = active
            .iter()
            .flat_map(|k| k.models.iter().cloned())
            .collect();
        let serves = |m: &str| model::any_matches(&served, m);
        let exact = |p: &ModelPattern| match p {
            ModelPattern::Exact(name) => Some(name.clone()),
            ModelPattern::Prefix(_) => None,
        };
        // Wildcards cannot be listed; the names that can are those spelled out by a
        // key, by the policy, or as a ModelMapper alias, and those a key's upstream
        // listed itself (kept only where some key's models match them, below).
        let mut out: Vec<String> = served
            .iter()
            .chain(caller.policy.models.iter().flatten())
            .filter_map(exact)
            .chain(
                active
                    .iter()
                    .flat_map(|k| k.discovered_models.iter().cloned()),
            )
            .chain(
                self.tables
                    .rules
                    .get(&owner)
                    .into_iter()
                    .flat_map(|r| r.model_mapper.keys().cloned()),
            )
            .filter(|m| caller.policy.allows_model(m))
            .collect();
        out.retain(|m| serves(self.map_model(owner, m)));
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests;
