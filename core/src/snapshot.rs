//! The snapshot: everything a data plane needs to authorise and route, as plain data
//! ([`Snapshot`]), and the lookup tables built from it once ([`Compiled`]) so the
//! request path does hash lookups and an atomic increment, nothing more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::apikey::{self, KeyHash};
use crate::billing::Billing;
use crate::crypto::Sealed;
use crate::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use crate::limits::{self, AccountLimits, CounterValue, DaySpend};
use crate::model::{self, ModelPattern};
use crate::policy::{CreditLimit, Policy};
use crate::route::{Attempts, KeyHealth, NO_KEYS, OwnerKeys};
use crate::rules::{LimitSettings, Price, Rules};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// The wire protocol an upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI and everything that speaks its protocol (DeepSeek, Mistral, another router…).
    OpenAi,
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }
}

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
    pub base_url: String,
    /// Still sealed: the data plane opens it just in time for each call.
    pub secret: Sealed,
    pub level: u32,
    pub models: Vec<ModelPattern>,
    pub weight: u32,
    pub status: Status,
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

/// A snapshot's configuration: everything in it but the issued keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Configuration {
    pub accounts: Vec<Account>,
    pub provider_keys: Vec<ProviderKey>,
    /// Rules by main account.
    pub rules: BTreeMap<AccountId, Rules>,
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

    /// Plan the attempts for one call of `owner`'s tree on `model` (already mapped):
    /// the LevelMapper's level or the lowest that serves it, then SwitchOver.
    pub fn attempts<'a>(
        &'a self,
        owner: AccountId,
        model: &'a str,
        kind: ProviderKind,
        max_per_level: u32,
    ) -> Attempts<'a> {
        let rules = self.tables.rules.get(&owner);
        let mapped = rules.and_then(|r| r.level_for(model));
        let switch_over = rules.map(|r| &r.switch_over);
        self.tables.owners.get(&owner).unwrap_or(&NO_KEYS).attempts(
            model,
            kind,
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
    /// through a ModelMapper alias), sorted.
    pub fn callable_models(&self, caller: &Caller, kind: ProviderKind) -> Vec<String> {
        let owner = caller.main_account();
        let Some(keys) = self.tables.owners.get(&owner) else {
            return Vec::new();
        };
        let served: Vec<ModelPattern> = keys
            .keys()
            .map(|(k, _)| k)
            .filter(|k| k.status == Status::Active && k.kind == kind)
            .flat_map(|k| k.models.iter().cloned())
            .collect();
        let serves = |m: &str| model::any_matches(&served, m);
        let exact = |p: &ModelPattern| match p {
            ModelPattern::Exact(name) => Some(name.clone()),
            ModelPattern::Prefix(_) => None,
        };
        // Wildcards cannot be listed; the names that can are those spelled out by a
        // key, by the policy, or as a ModelMapper alias.
        let mut out: Vec<String> = served
            .iter()
            .chain(caller.policy.models.iter().flatten())
            .filter_map(exact)
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
mod tests {
    use super::*;
    use crate::apikey::generate;

    fn account(parent: Option<AccountId>) -> Account {
        Account {
            id: AccountId::new(),
            parent,
            name: "a".into(),
            status: Status::Active,
            policy: Policy::default(),
            billing: Billing::default(),
        }
    }

    fn provider(owner: AccountId, level: u32, models: &[&str]) -> ProviderKey {
        ProviderKey {
            owner,
            ..crate::route::tests::key(level, 1, models, ProviderKind::OpenAi)
        }
    }

    fn key(account: AccountId, hash: KeyHash) -> IssuedKey {
        IssuedKey {
            id: IssuedKeyId::new(),
            account,
            hash,
            expires_at_ms: None,
            status: Status::Active,
        }
    }

    /// Every key answers alike from a patched version and from a build of the same
    /// snapshot: the same refusal, or the same key, chain, policy and limits.
    fn answer_alike(patched: &Compiled, rebuilt: &Compiled, clears: &[apikey::NewKey]) {
        assert_eq!(patched.key_count(), rebuilt.key_count());
        for clear in clears {
            let got = patched.authenticate(clear.clear.expose(), 0);
            let want = rebuilt.authenticate(clear.clear.expose(), 0);
            assert_eq!(got.as_ref().err(), want.as_ref().err());
            if let (Ok(got), Ok(want)) = (got, want) {
                assert_eq!(got.key, want.key);
                assert_eq!(got.chain, want.chain);
                assert_eq!(got.policy, want.policy);
                assert_eq!(got.limits, want.limits);
            }
        }
    }

    #[test]
    fn metric_models_are_the_names_owners_configured() {
        let main = account(None);
        let mut rules = Rules::default();
        rules
            .model_mapper
            .insert("fast".into(), "gpt-4o-mini".into());
        rules
            .pricing
            .insert("priced".parse().unwrap(), Price::default());
        rules
            .pricing
            .insert("claude-*".parse().unwrap(), Price::default());
        let compiled = Compiled::build(Snapshot {
            version: 1,
            accounts: vec![main.clone()],
            issued_keys: vec![],
            provider_keys: vec![provider(main.id, 0, &["gpt-4o", "*"])],
            rules: BTreeMap::from([(main.id, rules)]),
        })
        .unwrap();
        for named in ["gpt-4o", "gpt-4o-mini", "priced"] {
            assert_eq!(compiled.metric_model(named), named);
        }
        // A wildcard serves these, but no owner named them.
        for unnamed in ["fast", "claude-3", "made-up-1", "", "other-model"] {
            assert_eq!(compiled.metric_model(unnamed), OTHER_MODEL);
        }
        let many: Vec<String> = (0..MAX_METRIC_MODELS + 10)
            .map(|i| format!("m{i:05}"))
            .collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        let capped = Compiled::build(Snapshot {
            version: 1,
            accounts: vec![main.clone()],
            issued_keys: vec![],
            provider_keys: vec![provider(main.id, 0, &names)],
            rules: BTreeMap::new(),
        })
        .unwrap();
        assert_eq!(capped.tables.metric_models.len(), MAX_METRIC_MODELS);
        assert_eq!(capped.metric_model("m00000"), "m00000");
        assert_eq!(capped.metric_model(&many[MAX_METRIC_MODELS]), OTHER_MODEL);
    }

    #[test]
    fn a_patch_of_issued_keys_answers_as_a_build_of_the_result() {
        let main = account(None);
        let child = account(Some(main.id));
        let clears: Vec<_> = (0..4).map(|_| generate()).collect();
        let mut keys: Vec<IssuedKey> = clears
            .iter()
            .enumerate()
            .map(|(i, k)| key(if i % 2 == 0 { main.id } else { child.id }, k.hash))
            .collect();
        let before = Snapshot {
            version: 7,
            accounts: vec![main.clone(), child.clone()],
            issued_keys: keys[..3].to_vec(),
            provider_keys: vec![],
            rules: BTreeMap::new(),
        };
        let compiled = Compiled::build(before.clone()).unwrap();

        // Revoke key 0, delete key 1, keep key 2, issue key 3.
        keys[0].status = Status::Disabled;
        let upserts = vec![keys[0].clone(), keys[3].clone()];
        let patched = compiled.patched(8, None, upserts, &[keys[1].id]).unwrap();
        let rebuilt = Compiled::build(Snapshot {
            version: 8,
            issued_keys: vec![keys[0].clone(), keys[2].clone(), keys[3].clone()],
            ..before
        })
        .unwrap();
        assert_eq!(patched.version(), 8);
        answer_alike(&patched, &rebuilt, &clears);
        // The version patched from is untouched.
        assert!(compiled.authenticate(clears[1].clear.expose(), 0).is_ok());
        assert!(compiled.authenticate(clears[3].clear.expose(), 0).is_err());

        // A key of an unknown account, or a hash another key holds: refused whole.
        let stranger = key(AccountId::new(), generate().hash);
        assert!(matches!(
            compiled.patched(8, None, vec![stranger], &[]),
            Err(SnapshotError::KeyOfUnknownAccount { .. })
        ));
        let clash = key(main.id, keys[2].hash);
        assert_eq!(
            compiled.patched(8, None, vec![clash], &[]).err(),
            Some(SnapshotError::DuplicateKeyHash)
        );
    }

    #[test]
    fn authenticates_with_chain() {
        let main = account(None);
        let child = account(Some(main.id));
        let grandchild = account(Some(child.id));
        let k = generate();
        let snap = Snapshot {
            version: 3,
            accounts: vec![main.clone(), child.clone(), grandchild.clone()],
            issued_keys: vec![key(grandchild.id, k.hash)],
            provider_keys: vec![],
            rules: BTreeMap::new(),
        };
        let compiled = Compiled::build(snap).unwrap();
        assert_eq!(compiled.version(), 3);
        let caller = compiled.authenticate(k.clear.expose(), 0).unwrap();
        assert_eq!(&caller.chain[..], &[grandchild.id, child.id, main.id]);
        assert_eq!(caller.main_account(), main.id);
        assert_eq!(caller.account(), grandchild.id);
    }

    #[test]
    fn refuses_unknown_revoked_expired_and_disabled() {
        let mut main = account(None);
        let k1 = generate();
        let k2 = generate();
        let k3 = generate();
        let mut revoked = key(main.id, k2.hash);
        revoked.status = Status::Disabled;
        let mut expired = key(main.id, k3.hash);
        expired.expires_at_ms = Some(1_000);
        let snap = |main: Account| Snapshot {
            version: 1,
            accounts: vec![main.clone()],
            issued_keys: vec![key(main.id, k1.hash), revoked.clone(), expired.clone()],
            provider_keys: vec![],
            rules: BTreeMap::new(),
        };
        let compiled = Compiled::build(snap(main.clone())).unwrap();
        assert_eq!(
            compiled.authenticate(generate().clear.expose(), 0),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            compiled.authenticate("garbage", 0),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            compiled.authenticate(k2.clear.expose(), 0),
            Err(AuthError::Revoked)
        );
        assert!(compiled.authenticate(k3.clear.expose(), 999).is_ok());
        assert_eq!(
            compiled.authenticate(k3.clear.expose(), 1_000),
            Err(AuthError::Expired)
        );
        main.status = Status::Disabled;
        let compiled = Compiled::build(snap(main.clone())).unwrap();
        assert_eq!(
            compiled.authenticate(k1.clear.expose(), 0),
            Err(AuthError::AccountDisabled(main.id))
        );
    }

    #[test]
    fn callers_carry_the_effective_policy() {
        let mut main = account(None);
        main.policy = serde_json::from_str(r#"{"models":["gpt-4o*"],"rpm":10}"#).unwrap();
        let mut child = account(Some(main.id));
        child.policy = serde_json::from_str(r#"{"models":["gpt*"],"rpm":50}"#).unwrap();
        let k = generate();
        let compiled = Compiled::build(Snapshot {
            version: 1,
            accounts: vec![main.clone(), child.clone()],
            issued_keys: vec![key(child.id, k.hash)],
            provider_keys: vec![],
            rules: BTreeMap::new(),
        })
        .unwrap();
        let caller = compiled.authenticate(k.clear.expose(), 0).unwrap();
        assert!(caller.policy.allows_model("gpt-4o-mini"));
        assert!(!caller.policy.allows_model("gpt-3.5"));
        assert_eq!(caller.policy.rpm, Some(10));
    }

    #[test]
    fn a_main_accounts_rules_bound_its_tree() {
        let main = account(None);
        let child = account(Some(main.id));
        let k = generate();
        let rules: Rules = serde_json::from_str(
            r#"{"resources":["/v1/embeddings"],"pricing":{"m*":{"per_request_nanos":3}}}"#,
        )
        .unwrap();
        let snapshot = |owner: AccountId| Snapshot {
            version: 1,
            accounts: vec![main.clone(), child.clone()],
            issued_keys: vec![key(child.id, k.hash)],
            provider_keys: vec![],
            rules: BTreeMap::from([(owner, rules.clone())]),
        };
        let compiled = Compiled::build(snapshot(main.id)).unwrap();
        let caller = compiled.authenticate(k.clear.expose(), 0).unwrap();
        assert!(caller.policy.allows_resource("/v1/embeddings"));
        assert!(!caller.policy.allows_resource("/v1/chat/completions"));
        assert_eq!(
            compiled.price(main.id, "m1").map(|p| p.per_request_nanos),
            Some(3)
        );
        assert_eq!(compiled.price(main.id, "x"), None);
        assert_eq!(
            Compiled::build(snapshot(child.id)).err(),
            Some(SnapshotError::RulesOfSubAccount(child.id))
        );
    }

    #[test]
    fn a_disabled_ancestor_disables_descendants() {
        let mut main = account(None);
        main.status = Status::Disabled;
        let child = account(Some(main.id));
        let k = generate();
        let compiled = Compiled::build(Snapshot {
            version: 1,
            accounts: vec![main.clone(), child.clone()],
            issued_keys: vec![key(child.id, k.hash)],
            provider_keys: vec![],
            rules: BTreeMap::new(),
        })
        .unwrap();
        assert_eq!(
            compiled.authenticate(k.clear.expose(), 0),
            Err(AuthError::AccountDisabled(main.id))
        );
    }

    #[test]
    fn invalid_snapshots_are_refused() {
        let main = account(None);
        let orphan = account(Some(AccountId::new()));
        assert!(matches!(
            Compiled::build(Snapshot {
                accounts: vec![main.clone(), orphan],
                ..Default::default()
            }),
            Err(SnapshotError::UnknownParent { .. })
        ));

        let mut a = account(None);
        let b = account(Some(a.id));
        a.parent = Some(b.id);
        assert!(matches!(
            Compiled::build(Snapshot {
                accounts: vec![a, b],
                ..Default::default()
            }),
            Err(SnapshotError::Cycle(_))
        ));

        assert_eq!(
            Compiled::build(Snapshot {
                accounts: vec![main.clone(), main.clone()],
                ..Default::default()
            })
            .err(),
            Some(SnapshotError::DuplicateAccount(main.id))
        );

        let child = account(Some(main.id));
        let p = provider(child.id, 1, &["*"]);
        assert!(matches!(
            Compiled::build(Snapshot {
                accounts: vec![main.clone(), child],
                provider_keys: vec![p],
                ..Default::default()
            }),
            Err(SnapshotError::ProviderOfSubAccount { .. })
        ));

        let h = generate().hash;
        assert_eq!(
            Compiled::build(Snapshot {
                accounts: vec![main.clone()],
                issued_keys: vec![key(main.id, h), key(main.id, h)],
                ..Default::default()
            })
            .err(),
            Some(SnapshotError::DuplicateKeyHash)
        );
    }

    #[test]
    fn routes_within_the_owner_and_lists_callable_models() {
        let main = account(None);
        let other = account(None);
        let a = provider(main.id, 1, &["gpt-4o", "gpt-4o-mini"]);
        let backup = provider(main.id, 2, &["gpt-4o*", "claude-3"]);
        let mut off = provider(main.id, 1, &["o1"]);
        off.status = Status::Disabled;
        let foreign = provider(other.id, 0, &["*"]);
        let rules: Rules = serde_json::from_str(
            r#"{"model_mapper":{"fast":"gpt-4o-mini","gone":"o1"},"level_mapper":{"claude*":2},"switch_over":{"1":2}}"#,
        )
        .unwrap();
        let k = generate();
        let compiled = Compiled::build(Snapshot {
            version: 1,
            accounts: vec![main.clone(), other.clone()],
            issued_keys: vec![key(main.id, k.hash)],
            provider_keys: vec![a.clone(), backup.clone(), off, foreign],
            rules: BTreeMap::from([(main.id, rules)]),
        })
        .unwrap();
        let first = |owner, model| {
            compiled
                .attempts(owner, model, ProviderKind::OpenAi, 3)
                .next(0)
                .map(|c| c.key.id)
        };
        assert_eq!(first(main.id, "gpt-4o-mini"), Ok(a.id));
        assert_eq!(first(main.id, "claude-3"), Ok(backup.id));
        assert_eq!(compiled.map_model(main.id, "fast"), "gpt-4o-mini");
        assert_eq!(compiled.map_model(other.id, "fast"), "fast");
        // Another owner's keys are never candidates.
        assert!(first(AccountId::new(), "gpt-4o").is_err());
        let caller = compiled.authenticate(k.clear.expose(), 0).unwrap();
        assert_eq!(
            compiled.callable_models(&caller, ProviderKind::OpenAi),
            vec!["claude-3", "fast", "gpt-4o", "gpt-4o-mini"]
        );
        assert!(
            compiled
                .callable_models(&caller, ProviderKind::Anthropic)
                .is_empty()
        );
    }

    #[test]
    fn a_patch_of_the_configuration_answers_as_a_build_of_the_result() {
        let main = account(None);
        let child = account(Some(main.id));
        let grandchild = account(Some(child.id));
        let other = account(Some(main.id));
        let clears: Vec<_> = (0..4).map(|_| generate()).collect();
        let owners = [main.id, child.id, grandchild.id, other.id];
        let keys: Vec<IssuedKey> = clears
            .iter()
            .zip(owners)
            .map(|(k, a)| key(a, k.hash))
            .collect();
        let p = provider(main.id, 1, &["*"]);
        let before = Snapshot {
            version: 3,
            accounts: vec![
                main.clone(),
                child.clone(),
                grandchild.clone(),
                other.clone(),
            ],
            issued_keys: keys.clone(),
            provider_keys: vec![p.clone()],
            rules: BTreeMap::new(),
        };
        let compiled = Compiled::build(before.clone()).unwrap();
        let (_, health) = compiled.provider_health().next().unwrap();
        health.record_failure(
            &crate::route::CoolDown::default(),
            crate::route::Failure::ServerError,
            0,
        );

        // Disable the child (its subtree with it), narrow main's policy, and remove
        // `other` together with its key.
        let mut after = before.clone();
        after.version = 4;
        after.accounts[1].status = Status::Disabled;
        after.accounts[0].policy.models = Some(vec!["gpt-4o".parse().unwrap()]);
        after.accounts.remove(3);
        after.issued_keys.remove(3);
        let config = |s: &Snapshot| Configuration {
            accounts: s.accounts.clone(),
            provider_keys: s.provider_keys.clone(),
            rules: s.rules.clone(),
        };
        let patched = compiled
            .patched(4, Some(config(&after)), vec![], &[keys[3].id])
            .unwrap();
        let rebuilt = Compiled::build(after.clone()).unwrap();
        answer_alike(&patched, &rebuilt, &clears);
        let main_key = patched.authenticate(clears[0].clear.expose(), 0).unwrap();
        assert!(!main_key.policy.allows_model("gpt-4o-mini"));
        assert_eq!(
            patched.authenticate(clears[2].clear.expose(), 0).err(),
            Some(AuthError::AccountDisabled(child.id))
        );
        // Provider-key health is carried over; the key table is shared, not copied.
        assert!(!patched.provider_health().next().unwrap().1.is_awake(10));
        let same_keys = compiled.patched(4, Some(config(&after)), vec![], &[]);
        // ...but an account may not go while a key of it stays.
        assert!(matches!(
            same_keys.err(),
            Some(SnapshotError::KeyOfUnknownAccount { account, .. }) if account == other.id
        ));
        let only_config = compiled
            .patched(4, Some(config(&before)), vec![], &[])
            .unwrap();
        assert!(Arc::ptr_eq(&only_config.keys, &compiled.keys));
        // An invalid configuration is refused like a build would refuse it.
        let mut cyclic = config(&before);
        cyclic.accounts[0].parent = Some(grandchild.id);
        assert!(matches!(
            compiled.patched(4, Some(cyclic), vec![], &[]).err(),
            Some(SnapshotError::Cycle(_))
        ));
        // The version patched from is untouched.
        assert!(compiled.authenticate(clears[3].clear.expose(), 0).is_ok());
    }

    mod trees {
        use super::*;
        use crate::policy::{ModelLimit, Period};
        use proptest::prelude::*;

        /// An account's policy, status, and parent: an earlier account or none.
        type Spec = (Policy, bool, Option<usize>);

        fn policy() -> impl Strategy<Value = Policy> {
            let models = prop::option::of(prop::sample::subsequence(vec!["a", "b", "c*"], 0..3));
            let credit = prop::option::of(1u64..100);
            let limit = prop::option::of(1u32..5);
            (models, prop::option::of(1u32..50), credit, limit).prop_map(
                |(models, rpm, credit, limit)| Policy {
                    models: models.map(|m| m.iter().map(|p| p.parse().unwrap()).collect()),
                    rpm,
                    credit: credit.map(|limit_nanos| CreditLimit {
                        limit_nanos,
                        period: Period::Day,
                    }),
                    model_limits: limit
                        .map(|rpm| {
                            let limit = ModelLimit {
                                rpm: Some(rpm),
                                tpm: None,
                            };
                            BTreeMap::from([("a".parse().unwrap(), limit)])
                        })
                        .unwrap_or_default(),
                    ..Policy::default()
                },
            )
        }

        fn trees() -> impl Strategy<Value = Vec<Spec>> {
            prop::collection::vec(
                (
                    prop_oneof![3 => Just(Policy::default()), 2 => policy()],
                    prop::bool::weighted(0.85),
                    prop::option::weighted(0.8, 0usize..1000),
                ),
                1..14,
            )
        }

        proptest! {
            /// Whatever the tree, each account's caller carries what its chain says,
            /// worked out account by account from the main one down: the effective
            /// policy, the limits of each account on the chain (caller first), and
            /// the first disabled account.
            #[test]
            fn every_caller_carries_what_its_chain_says(specs in trees(), capped in any::<bool>()) {
                let mut accounts: Vec<Account> = Vec::new();
                for (i, (policy, active, parent)) in specs.into_iter().enumerate() {
                    let parent = parent.filter(|_| i > 0).map(|p| accounts[p % i].id);
                    accounts.push(Account {
                        policy,
                        status: if active { Status::Active } else { Status::Disabled },
                        ..account(parent)
                    });
                }
                let mut rules = BTreeMap::new();
                for a in accounts.iter().filter(|a| a.parent.is_none() && capped) {
                    let mut r = Rules::default();
                    r.model_limits.insert(
                        "a".parse().unwrap(),
                        ModelLimit { rpm: Some(2), tpm: Some(10) },
                    );
                    rules.insert(a.id, r);
                }
                let clears: Vec<_> = accounts.iter().map(|_| generate()).collect();
                let compiled = Compiled::build(Snapshot {
                    version: 1,
                    accounts: accounts.clone(),
                    issued_keys: accounts.iter().zip(&clears).map(|(a, k)| key(a.id, k.hash)).collect(),
                    provider_keys: vec![],
                    rules: rules.clone(),
                })
                .unwrap();
                let by_id: HashMap<AccountId, &Account> = accounts.iter().map(|a| (a.id, a)).collect();
                for (a, clear) in accounts.iter().zip(&clears) {
                    let mut chain = vec![a.id];
                    while let Some(p) = by_id[chain.last().unwrap()].parent {
                        chain.push(p);
                    }
                    let main = *chain.last().unwrap();
                    let bound = rules.get(&main).map(Rules::as_policy);
                    let own: Vec<&Policy> = chain.iter().rev().map(|id| &by_id[id].policy).collect();
                    let policy = Policy::effective(bound.iter().chain(own));
                    let limits: Vec<AccountLimits> = chain
                        .iter()
                        .filter_map(|id| {
                            let caps = rules.get(id).map(Rules::as_policy);
                            AccountLimits::of(*id, &by_id[id].policy, caps.as_ref())
                        })
                        .collect();
                    let disabled = chain.iter().copied().find(|id| by_id[id].status != Status::Active);
                    match compiled.authenticate(clear.clear.expose(), 0) {
                        Ok(caller) => {
                            prop_assert_eq!(disabled, None);
                            prop_assert_eq!(&caller.chain[..], &chain[..]);
                            prop_assert_eq!(&*caller.policy, &policy);
                            prop_assert_eq!(&caller.limits[..], &limits[..]);
                        }
                        Err(e) => prop_assert_eq!(Some(e), disabled.map(AuthError::AccountDisabled)),
                    }
                }
            }
        }
    }

    #[test]
    fn health_survives_a_new_version() {
        let main = account(None);
        let a = provider(main.id, 1, &["*"]);
        let snapshot = |version| Snapshot {
            version,
            accounts: vec![main.clone()],
            provider_keys: vec![a.clone()],
            ..Default::default()
        };
        let first = Compiled::build(snapshot(1)).unwrap();
        let (_, health) = first.provider_health().next().unwrap();
        health.record_failure(
            &crate::route::CoolDown::default(),
            crate::route::Failure::ServerError,
            0,
        );
        let second = Compiled::build_after(snapshot(2), Some(&first)).unwrap();
        let (_, carried) = second.provider_health().next().unwrap();
        assert!(!carried.is_awake(10));
        let fresh = Compiled::build(snapshot(2)).unwrap();
        assert!(fresh.provider_health().next().unwrap().1.is_awake(10));
    }
}
