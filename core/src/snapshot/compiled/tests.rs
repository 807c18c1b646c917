use super::*;
use std::collections::BTreeMap;

use crate::apikey::generate;
use crate::snapshot::data::Account;

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
            .attempts(owner, model, ProviderKind::OpenAi, false, 3)
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
fn models_an_upstream_listed_are_callable_where_a_key_and_the_policy_allow_them() {
    let main = account(None);
    let mut child = account(Some(main.id));
    child.policy.models = Some(vec!["gpt-5".parse().unwrap(), "claude*".parse().unwrap()]);
    let mut pattern = provider(main.id, 1, &["gpt-*"]);
    pattern.discovered_models = vec!["dall-e-3".into(), "gpt-5".into(), "gpt-4o".into()];
    let mut off = provider(main.id, 1, &["*"]);
    off.status = Status::Disabled;
    off.discovered_models = vec!["o3".into()];
    let mut claude = provider(main.id, 1, &["claude*"]);
    claude.kind = ProviderKind::Anthropic;
    claude.discovered_models = vec!["claude-x".into()];
    let rules: Rules = serde_json::from_str(r#"{"model_mapper":{"fast":"gpt-5"}}"#).unwrap();
    let (owner_key, child_key) = (generate(), generate());
    let compiled = Compiled::build(Snapshot {
        version: 1,
        accounts: vec![main.clone(), child.clone()],
        issued_keys: vec![key(main.id, owner_key.hash), key(child.id, child_key.hash)],
        provider_keys: vec![pattern, off, claude],
        rules: BTreeMap::from([(main.id, rules)]),
    })
    .unwrap();
    let owner = compiled.authenticate(owner_key.clear.expose(), 0).unwrap();
    // dall-e-3 no key serves, o3 only a disabled key: neither is listed.
    assert_eq!(
        compiled.callable_models(&owner, ProviderKind::OpenAi),
        ["fast", "gpt-4o", "gpt-5"]
    );
    assert_eq!(
        compiled.callable_models(&owner, ProviderKind::Anthropic),
        ["claude-x"]
    );
    let child = compiled.authenticate(child_key.clear.expose(), 0).unwrap();
    assert_eq!(
        compiled.callable_models(&child, ProviderKind::OpenAi),
        ["gpt-5"]
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

#[test]
fn a_gemini_key_serves_another_protocol_only_through_translation() {
    let main = account(None);
    let mut gemini = provider(main.id, 1, &["*"]);
    gemini.kind = ProviderKind::Gemini;
    gemini.discovered_models = vec!["gemini-2.5-flash".into()];
    let openai = provider(main.id, 1, &["gpt-4o"]);
    let k = generate();
    let compiled = Compiled::build(Snapshot {
        version: 1,
        accounts: vec![main.clone()],
        issued_keys: vec![key(main.id, k.hash)],
        provider_keys: vec![gemini.clone(), openai.clone()],
        rules: BTreeMap::new(),
    })
    .unwrap();
    let first = |model, kind, translate| {
        compiled
            .attempts(main.id, model, kind, translate, 3)
            .next(0)
            .map(|c| c.key.id)
    };
    // On one level, the Gemini key matches every model by pattern, yet the OpenAI
    // key of the client's own protocol comes first, and without translation only its
    // own kind picks the Gemini key.
    assert_eq!(first("gpt-4o", ProviderKind::OpenAi, true), Ok(openai.id));
    assert!(first("gemini-2.5-flash", ProviderKind::OpenAi, false).is_err());
    assert!(first("gemini-2.5-flash", ProviderKind::Anthropic, false).is_err());
    assert_eq!(
        first("gemini-2.5-flash", ProviderKind::OpenAi, true),
        Ok(gemini.id)
    );
    assert_eq!(
        first("gemini-2.5-flash", ProviderKind::Gemini, false),
        Ok(gemini.id)
    );
    let caller = compiled.authenticate(k.clear.expose(), 0).unwrap();
    assert_eq!(
        compiled.callable_models(&caller, ProviderKind::OpenAi),
        ["gpt-4o"]
    );
    assert!(
        compiled
            .callable_models(&caller, ProviderKind::Anthropic)
            .is_empty()
    );
}

#[test]
fn translation_is_on_unless_the_owners_rules_or_a_policy_on_the_chain_turn_it_off() {
    let main = account(None);
    let mut team = account(Some(main.id));
    team.policy = serde_json::from_str(r#"{"forbid_translation":true}"#).unwrap();
    let member = account(Some(team.id));
    let keys = [generate(), generate(), generate()];
    let build = |rules: &str| {
        Compiled::build(Snapshot {
            version: 1,
            accounts: vec![main.clone(), team.clone(), member.clone()],
            issued_keys: vec![
                key(main.id, keys[0].hash),
                key(team.id, keys[1].hash),
                key(member.id, keys[2].hash),
            ],
            provider_keys: vec![],
            rules: BTreeMap::from([(main.id, serde_json::from_str(rules).unwrap())]),
        })
        .unwrap()
    };
    let translates = |compiled: &Compiled| {
        keys.iter()
            .map(|k| compiled.translates(&compiled.authenticate(k.clear.expose(), 0).unwrap()))
            .collect::<Vec<_>>()
    };
    // Forbidden on the team: the team and its member, not the main account.
    assert_eq!(translates(&build("{}")), [true, false, false]);
    // The owner's rule: nobody in the tree.
    let off = build(r#"{"translation":{"enabled":false}}"#);
    assert_eq!(translates(&off), [false, false, false]);
}
