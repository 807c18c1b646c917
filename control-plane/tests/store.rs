//! The control plane's store, every scenario on SQLite and on Postgres.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

use switchyard_control_plane::store::{
    AccountRecord, AccountUpdate, AuditEntry, IssuedKeyRecord, KeyHealthReport, ProviderKeyRecord,
    Store, StoreError,
};
use switchyard_core::apikey;
use switchyard_core::billing::Billing;
use switchyard_core::crypto::Keyring;
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use switchyard_core::policy::Policy;
use switchyard_core::rules::Rules;
use switchyard_core::snapshot::{Account, Compiled, IssuedKey, ProviderKey, ProviderKind, Status};

switchyard_tests::every_backend!(
    account_tree,
    updates_and_policies,
    provider_key_lifecycle,
    the_audit_log_follows_every_write,
    trees_page_and_delete,
    rules_are_compare_and_set,
    reseal_moves_every_secret_to_the_active_key,
    provider_keys_stay_sealed,
    failed_writes_change_nothing
);

fn audit() -> AuditEntry {
    AuditEntry {
        at_ms: 1,
        actor: "root".into(),
        owner: None,
        action: "test",
        target: "t".into(),
        before: None,
        after: Some(serde_json::json!({"k": 1})),
    }
}

fn account(parent: Option<AccountId>, name: &str) -> AccountRecord {
    AccountRecord {
        account: Account {
            id: AccountId::new(),
            parent,
            name: name.into(),
            status: Status::Active,
            policy: Policy::default(),
            billing: Billing::default(),
        },
        created_at_ms: 1_000,
    }
}

fn key_for(account: &AccountRecord) -> (IssuedKeyRecord, String) {
    let new = apikey::generate();
    let clear = new.clear.expose().clone();
    (
        IssuedKeyRecord {
            key: IssuedKey {
                id: IssuedKeyId::new(),
                account: account.account.id,
                hash: new.hash,
                expires_at_ms: None,
                status: Status::Active,
            },
            tail: apikey::display_tail(&clear),
            created_at_ms: 1_000,
        },
        clear,
    )
}

async fn account_tree(url: &str) {
    let store = Store::open(url).await.unwrap();
    let start = store.revision().await.unwrap();
    let main = account(None, "main");
    let child = account(Some(main.account.id), "child");
    let grandchild = account(Some(child.account.id), "grandchild");
    let other = account(None, "other");
    let mut keys = Vec::new();
    for a in [&main, &child, &grandchild, &other] {
        let (k, clear) = key_for(a);
        store.create_account(a, &k, &audit()).await.unwrap();
        keys.push((k, clear));
    }
    assert_eq!(store.revision().await.unwrap(), start + 4);

    let ancestors: Vec<_> = store
        .ancestors(grandchild.account.id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.account.id)
        .collect();
    assert_eq!(ancestors, vec![child.account.id, main.account.id]);
    assert!(store.ancestors(main.account.id).await.unwrap().is_empty());
    let mut subtree = store.subtree(main.account.id).await.unwrap();
    subtree.sort();
    let mut want = vec![main.account.id, child.account.id, grandchild.account.id];
    want.sort();
    assert_eq!(subtree, want);
    assert_eq!(
        store.subtree(other.account.id).await.unwrap(),
        vec![other.account.id]
    );

    let (found_key, found_account) = store
        .find_key(&apikey::KeyHash::of(&keys[2].1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found_key.id, keys[2].0.key.id);
    assert_eq!(found_account, grandchild.account);
    assert!(
        store
            .find_key(&apikey::KeyHash::of("nope"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.account(child.account.id).await.unwrap(),
        Some(child.clone())
    );

    let snapshot = store.load_snapshot().await.unwrap();
    assert_eq!(snapshot.version, start + 4);
    assert_eq!(snapshot.accounts.len(), 4);
    let compiled = Compiled::build(snapshot).unwrap();
    let caller = compiled.authenticate(&keys[2].1, 0).unwrap();
    assert_eq!(
        &caller.chain[..],
        &[grandchild.account.id, child.account.id, main.account.id]
    );
}

async fn provider_keys_stay_sealed(url: &str) {
    let store = Store::open(url).await.unwrap();
    let main = account(None, "main");
    store
        .create_account(&main, &key_for(&main).0, &audit())
        .await
        .unwrap();
    let ring = Keyring::parse(&Keyring::generate_spec("k1")).unwrap();
    let id = ProviderKeyId::new();
    let sealed = ring.seal(b"sk-live-secret", id.0.as_bytes()).unwrap();
    let record = ProviderKeyRecord {
        key: ProviderKey {
            id,
            owner: main.account.id,
            kind: ProviderKind::Anthropic,
            passthrough: false,
            base_url: "https://api.anthropic.com/v1".into(),
            secret: sealed.clone(),
            level: 2,
            models: vec!["claude*".parse().unwrap(), "gpt-4o".parse().unwrap()],
            weight: 3,
            status: Status::Active,
            discovered_models: Vec::new(),
        },
        secret_hint: "****cret".into(),
        health: "unknown".into(),
        health_until_ms: None,
        discovered_at_ms: None,
        discovery_error: None,
        created_at_ms: 5,
    };
    store.add_provider_key(&record, &audit()).await.unwrap();
    let snapshot = store.load_snapshot().await.unwrap();
    assert_eq!(snapshot.provider_keys, vec![record.key.clone()]);
    let loaded = &snapshot.provider_keys[0];
    assert_eq!(
        &ring.open(&loaded.secret, id.0.as_bytes()).unwrap()[..],
        b"sk-live-secret"
    );
}

async fn failed_writes_change_nothing(url: &str) {
    let store = Store::open(url).await.unwrap();
    let main = account(None, "main");
    let (key, _) = key_for(&main);
    store.create_account(&main, &key, &audit()).await.unwrap();
    let revision = store.revision().await.unwrap();

    // A parent that does not exist.
    let orphan = account(Some(AccountId::new()), "orphan");
    let err = store
        .create_account(&orphan, &key_for(&orphan).0, &audit())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    // A key hash that already exists: the account insert rolls back with it.
    let mut dup = key_for(&account(None, "x")).0;
    let twin = account(None, "twin");
    dup.key.account = twin.account.id;
    dup.key.hash = key.key.hash;
    assert!(store.create_account(&twin, &dup, &audit()).await.is_err());
    assert!(store.account(twin.account.id).await.unwrap().is_none());

    assert_eq!(store.revision().await.unwrap(), revision);
    assert_eq!(store.load_snapshot().await.unwrap().accounts.len(), 1);
}

async fn updates_and_policies(url: &str) {
    let store = Store::open(url).await.unwrap();
    let mut main = account(None, "main");
    main.account.policy = serde_json::from_str(r#"{"models":["gpt-4o*"],"rpm":100}"#).unwrap();
    store
        .create_account(&main, &key_for(&main).0, &audit())
        .await
        .unwrap();
    let child = account(Some(main.account.id), "child");
    store
        .create_account(&child, &key_for(&child).0, &audit())
        .await
        .unwrap();
    assert_eq!(
        store
            .account(main.account.id)
            .await
            .unwrap()
            .unwrap()
            .account
            .policy,
        main.account.policy
    );
    assert_eq!(
        store.ancestors(child.account.id).await.unwrap()[0]
            .account
            .policy,
        main.account.policy
    );

    let before = store.revision().await.unwrap();
    let narrower: Policy =
        serde_json::from_str(r#"{"models":["gpt-4o-mini"],"client_cidrs":["10.0.0.0/8"]}"#)
            .unwrap();
    let revision = store
        .update_account(
            child.account.id,
            &AccountUpdate {
                name: Some("renamed".into()),
                status: Some(Status::Disabled),
                policy: Some(narrower.clone()),
                billing: Some(serde_json::from_str(r#"{"multiplier_ppm":1500000}"#).unwrap()),
            },
            &audit(),
        )
        .await
        .unwrap();
    assert_eq!(revision, before + 1);
    let updated = store.account(child.account.id).await.unwrap().unwrap();
    assert_eq!(updated.account.name, "renamed");
    assert_eq!(updated.account.status, Status::Disabled);
    assert_eq!(updated.account.policy, narrower);
    assert_eq!(updated.account.billing.multiplier_ppm, Some(1_500_000));
    assert_eq!(
        store
            .load_snapshot()
            .await
            .unwrap()
            .accounts
            .iter()
            .find(|a| a.id == child.account.id)
            .unwrap()
            .billing,
        updated.account.billing
    );

    let err = store
        .update_account(AccountId::new(), &AccountUpdate::default(), &audit())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    assert_eq!(store.revision().await.unwrap(), revision);
}

async fn provider_key_lifecycle(url: &str) {
    let store = Store::open(url).await.unwrap();
    let ring = Keyring::parse(&Keyring::generate_spec("k1")).unwrap();
    let main = account(None, "main");
    let other = account(None, "other");
    for a in [&main, &other] {
        store
            .create_account(a, &key_for(a).0, &audit())
            .await
            .unwrap();
    }
    let id = ProviderKeyId::new();
    let mut record = ProviderKeyRecord {
        key: ProviderKey {
            id,
            owner: main.account.id,
            kind: ProviderKind::OpenAi,
            passthrough: false,
            base_url: "https://api.example.com/v1".into(),
            secret: ring.seal(b"first", id.0.as_bytes()).unwrap(),
            level: 1,
            models: vec!["gpt*".parse().unwrap()],
            weight: 1,
            status: Status::Active,
            discovered_models: Vec::new(),
        },
        secret_hint: "****irst".into(),
        health: "unknown".into(),
        health_until_ms: None,
        discovered_at_ms: None,
        discovery_error: None,
        created_at_ms: 1,
    };
    store.add_provider_key(&record, &audit()).await.unwrap();
    assert_eq!(store.provider_keys(main.account.id).await.unwrap().len(), 1);
    assert!(
        store
            .provider_keys(other.account.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .provider_key(other.account.id, id)
            .await
            .unwrap()
            .is_none()
    );

    record.key.secret = ring.seal(b"second", id.0.as_bytes()).unwrap();
    record.key.models = vec!["claude*".parse().unwrap()];
    record.key.status = Status::Disabled;
    record.key.level = 3;
    store.update_provider_key(&record, &audit()).await.unwrap();
    let loaded = store
        .provider_key(main.account.id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.key, record.key);
    assert_eq!(
        &ring.open(&loaded.key.secret, id.0.as_bytes()).unwrap()[..],
        b"second"
    );

    // Health reports are observations: stored, with no revision bump; a report on a
    // key that no longer exists changes nothing.
    let revision = store.revision().await.unwrap();
    store
        .record_key_health(&[
            KeyHealthReport {
                id,
                health: "cooling_down",
                until_ms: Some(5_000),
            },
            KeyHealthReport {
                id: ProviderKeyId::new(),
                health: "unhealthy",
                until_ms: Some(1),
            },
        ])
        .await
        .unwrap();
    let reported = store
        .provider_key(main.account.id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (reported.health.as_str(), reported.health_until_ms),
        ("cooling_down", Some(5_000))
    );
    assert_eq!(store.revision().await.unwrap(), revision);
    assert_eq!(store.provider_keys(main.account.id).await.unwrap().len(), 1);

    // Another owner can neither change nor delete it.
    let revision = store.revision().await.unwrap();
    let mut foreign = record.clone();
    foreign.key.owner = other.account.id;
    assert!(matches!(
        store.update_provider_key(&foreign, &audit()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .delete_provider_key(other.account.id, id, &audit())
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.revision().await.unwrap(), revision);

    store
        .delete_provider_key(main.account.id, id, &audit())
        .await
        .unwrap();
    assert!(
        store
            .provider_keys(main.account.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .load_snapshot()
            .await
            .unwrap()
            .provider_keys
            .is_empty()
    );
}

async fn the_audit_log_follows_every_write(url: &str) {
    let store = Store::open(url).await.unwrap();
    let main = account(None, "main");
    let mut entry = audit();
    entry.owner = Some(main.account.id);
    entry.action = "account.create";
    store
        .create_account(&main, &key_for(&main).0, &entry)
        .await
        .unwrap();
    let other = account(None, "other");
    store
        .create_account(&other, &key_for(&other).0, &audit())
        .await
        .unwrap();
    // A failed write leaves no entry.
    let orphan = account(Some(AccountId::new()), "orphan");
    assert!(
        store
            .create_account(&orphan, &key_for(&orphan).0, &entry)
            .await
            .is_err()
    );

    let mine = store
        .audit_log(Some(main.account.id), None, 10)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].action, "account.create");
    assert_eq!(mine[0].after, Some(serde_json::json!({"k": 1})));
    let all = store.audit_log(None, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].seq > all[1].seq);
    assert_eq!(
        store
            .audit_log(None, Some(all[0].seq), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.audit_log(None, None, 1).await.unwrap().len(), 1);
}

async fn trees_page_and_delete(url: &str) {
    let store = Store::open(url).await.unwrap();
    let main = account(None, "main");
    store
        .create_account(&main, &key_for(&main).0, &audit())
        .await
        .unwrap();
    let a = account(Some(main.account.id), "a");
    let b = account(Some(main.account.id), "b");
    let (a_key, a_clear) = key_for(&a);
    store.create_account(&a, &a_key, &audit()).await.unwrap();
    store
        .create_account(&b, &key_for(&b).0, &audit())
        .await
        .unwrap();
    let a1 = account(Some(a.account.id), "a1");
    store
        .create_account(&a1, &key_for(&a1).0, &audit())
        .await
        .unwrap();
    let other = account(None, "other");
    store
        .create_account(&other, &key_for(&other).0, &audit())
        .await
        .unwrap();

    let tree = store
        .descendants(Some(main.account.id), 64, 0, 100)
        .await
        .unwrap();
    let names: Vec<(&str, u32)> = tree
        .iter()
        .map(|(r, d)| (r.account.name.as_str(), *d))
        .collect();
    assert_eq!(names, vec![("a", 1), ("b", 1), ("a1", 2)]);
    let children = store
        .descendants(Some(main.account.id), 1, 0, 100)
        .await
        .unwrap();
    assert_eq!(children.len(), 2);
    let page = store
        .descendants(Some(main.account.id), 64, 1, 1)
        .await
        .unwrap();
    assert_eq!(page[0].0.account.name, "b");
    let mains = store.descendants(None, 1, 0, 100).await.unwrap();
    assert_eq!(mains.len(), 2);
    assert!(
        mains
            .iter()
            .all(|(r, d)| r.account.parent.is_none() && *d == 1)
    );

    let revision = store.revision().await.unwrap();
    assert!(matches!(
        store.delete_account(a.account.id, false, &audit()).await,
        Err(StoreError::HasDescendants(1))
    ));
    assert_eq!(store.revision().await.unwrap(), revision);
    let (_, deleted) = store
        .delete_account(a.account.id, true, &audit())
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert!(store.account(a1.account.id).await.unwrap().is_none());
    assert!(
        store
            .find_key(&apikey::KeyHash::of(&a_clear))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .descendants(Some(main.account.id), 64, 0, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        store.delete_account(a.account.id, true, &audit()).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn rules_are_compare_and_set(url: &str) {
    let store = Store::open(url).await.unwrap();
    let main = account(None, "main");
    store
        .create_account(&main, &key_for(&main).0, &audit())
        .await
        .unwrap();
    let owner = main.account.id;
    let (empty, version) = store.rules(owner).await.unwrap();
    assert_eq!((empty, version), (Rules::default(), 0));
    let first: Rules = serde_json::from_str(r#"{"model_mapper":{"a":"b"}}"#).unwrap();
    store.put_rules(owner, &first, 0, &audit()).await.unwrap();
    let (loaded, version) = store.rules(owner).await.unwrap();
    assert_eq!((loaded, version), (first.clone(), 1));
    // A writer that read version 0 (or 1, after someone else wrote 2) loses.
    let second: Rules = serde_json::from_str(r#"{"model_mapper":{"a":"c"}}"#).unwrap();
    assert!(matches!(
        store.put_rules(owner, &second, 0, &audit()).await,
        Err(StoreError::Conflict(_))
    ));
    store.put_rules(owner, &second, 1, &audit()).await.unwrap();
    let revision = store.revision().await.unwrap();
    assert!(matches!(
        store.put_rules(owner, &first, 1, &audit()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.revision().await.unwrap(), revision);
    assert_eq!(store.rules(owner).await.unwrap(), (second, 2));
    // Rules go with their account.
    store.delete_account(owner, false, &audit()).await.unwrap();
    assert_eq!(store.rules(owner).await.unwrap().1, 0);
}

async fn reseal_moves_every_secret_to_the_active_key(url: &str) {
    let store = Store::open(url).await.unwrap();
    let old = Keyring::generate_spec("k1");
    let new = Keyring::generate_spec("k2");
    let ring_old = Keyring::parse(&old).unwrap();
    let ring_both = Keyring::parse(&format!("{},{}", new.as_str(), old.as_str())).unwrap();
    let mut secrets = Vec::new();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let main = account(None, name);
        store
            .create_account(&main, &key_for(&main).0, &audit())
            .await
            .unwrap();
        for j in 0..2 {
            let id = ProviderKeyId::new();
            let secret = format!("sk-{i}-{j}-secret");
            let record = ProviderKeyRecord {
                key: ProviderKey {
                    id,
                    owner: main.account.id,
                    kind: ProviderKind::OpenAi,
                    passthrough: false,
                    base_url: "https://api.example.com/v1".into(),
                    secret: ring_old.seal(secret.as_bytes(), id.0.as_bytes()).unwrap(),
                    level: 1,
                    models: vec!["*".parse().unwrap()],
                    weight: 1,
                    status: Status::Active,
                    discovered_models: Vec::new(),
                },
                secret_hint: "****".into(),
                health: "unknown".into(),
                health_until_ms: None,
                discovered_at_ms: None,
                discovery_error: None,
                created_at_ms: 1,
            };
            store.add_provider_key(&record, &audit()).await.unwrap();
            secrets.push((id, secret));
        }
    }
    let report = switchyard_control_plane::reseal::reseal_all(&store, &ring_both, 5)
        .await
        .unwrap();
    assert_eq!((report.total, report.resealed, report.current), (4, 4, 0));
    assert!(report.failed.is_empty());
    let snapshot = store.load_snapshot().await.unwrap();
    for (id, secret) in &secrets {
        let key = snapshot.provider_keys.iter().find(|k| k.id == *id).unwrap();
        assert_eq!(key.secret.key_id, "k2");
        assert_eq!(
            &ring_both.open(&key.secret, id.0.as_bytes()).unwrap()[..],
            secret.as_bytes()
        );
    }
    // A second run has nothing to do; a keyring that lacks the sealing key reports
    // every secret as failed and changes nothing.
    let again = switchyard_control_plane::reseal::reseal_all(&store, &ring_both, 6)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.current), (0, 4));
    let revision = store.revision().await.unwrap();
    let stranger = Keyring::parse(&Keyring::generate_spec("k3")).unwrap();
    let failed = switchyard_control_plane::reseal::reseal_all(&store, &stranger, 7)
        .await
        .unwrap();
    assert_eq!(failed.failed.len(), 4);
    assert_eq!(store.revision().await.unwrap(), revision);
}
