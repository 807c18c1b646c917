//! Snapshot deltas: what changed between two versions, keyed by id, and applying
//! that to the older version. Pure functions over the wire form, which is what the
//! control plane sends and the data plane keeps.

use std::collections::HashMap;
use std::hash::Hash;

use switchyard_proto::v1 as pb;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeltaError {
    #[error("the delta applies to version {delta}, this is version {have}")]
    WrongBase { delta: u64, have: u64 },
    #[error("the delta does not move forward (version {version} from {base})")]
    Backwards { base: u64, version: u64 },
}

/// The changes that turn `old` into `new`.
pub fn diff(old: &pb::Snapshot, new: &pb::Snapshot) -> pb::SnapshotDelta {
    let (upsert_accounts, delete_accounts) = changes(&old.accounts, &new.accounts, |a| &a.id);
    let (upsert_issued_keys, delete_issued_keys) =
        changes(&old.issued_keys, &new.issued_keys, |k| &k.id);
    let (upsert_provider_keys, delete_provider_keys) =
        changes(&old.provider_keys, &new.provider_keys, |k| &k.id);
    let (upsert_rules, delete_rules) = changes(&old.rules, &new.rules, |r| &r.owner_id);
    pb::SnapshotDelta {
        base_version: old.version,
        version: new.version,
        upsert_accounts,
        delete_accounts,
        upsert_issued_keys,
        delete_issued_keys,
        upsert_provider_keys,
        delete_provider_keys,
        upsert_rules,
        delete_rules,
    }
}

/// Apply `delta` to `base` in place: only the entries the delta names are touched;
/// entries keep their order and new ones go at the end. On an error `base` is
/// unchanged.
pub fn apply_in_place(
    base: &mut pb::Snapshot,
    delta: &pb::SnapshotDelta,
) -> Result<(), DeltaError> {
    check(base, delta)?;
    base.version = delta.version;
    patch(
        &mut base.accounts,
        &delta.upsert_accounts,
        &delta.delete_accounts,
        |a| &a.id,
    );
    patch(
        &mut base.issued_keys,
        &delta.upsert_issued_keys,
        &delta.delete_issued_keys,
        |k| &k.id,
    );
    patch(
        &mut base.provider_keys,
        &delta.upsert_provider_keys,
        &delta.delete_provider_keys,
        |k| &k.id,
    );
    patch(
        &mut base.rules,
        &delta.upsert_rules,
        &delta.delete_rules,
        |r| &r.owner_id,
    );
    Ok(())
}

/// Whether the delta changes issued keys and nothing else (the common change:
/// a key issued, revoked or expiring), which a data plane can patch in place.
pub fn only_issued_keys(delta: &pb::SnapshotDelta) -> bool {
    delta.upsert_accounts.is_empty()
        && delta.delete_accounts.is_empty()
        && delta.upsert_provider_keys.is_empty()
        && delta.delete_provider_keys.is_empty()
        && delta.upsert_rules.is_empty()
        && delta.delete_rules.is_empty()
}

fn check(base: &pb::Snapshot, delta: &pb::SnapshotDelta) -> Result<(), DeltaError> {
    if delta.base_version != base.version {
        return Err(DeltaError::WrongBase {
            delta: delta.base_version,
            have: base.version,
        });
    }
    if delta.version <= delta.base_version {
        return Err(DeltaError::Backwards {
            base: delta.base_version,
            version: delta.version,
        });
    }
    Ok(())
}

/// Entries of `new` that `old` lacks or holds differently, and ids of `old` that
/// `new` lacks.
fn changes<T: Clone + PartialEq, K: Eq + Hash + Clone>(
    old: &[T],
    new: &[T],
    id: impl Fn(&T) -> &K,
) -> (Vec<T>, Vec<K>) {
    let before: HashMap<&K, &T> = old.iter().map(|e| (id(e), e)).collect();
    let after: HashMap<&K, &T> = new.iter().map(|e| (id(e), e)).collect();
    let upserts = new
        .iter()
        .filter(|e| before.get(id(e)) != Some(e))
        .cloned()
        .collect();
    let deletes = old
        .iter()
        .map(&id)
        .filter(|k| !after.contains_key(k))
        .cloned()
        .collect();
    (upserts, deletes)
}

/// Changes up to this many are looked up by comparing ids, beyond by hashing them:
/// for the usual delta of one or two entries, a comparison that stops at the first
/// differing byte is cheaper than hashing each of 100,000 ids.
const FEW_CHANGES: usize = 16;

fn patch<T: Clone, K: Eq + Hash>(
    entries: &mut Vec<T>,
    upserts: &[T],
    deletes: &[K],
    id: impl Fn(&T) -> &K,
) {
    if upserts.is_empty() && deletes.is_empty() {
        return;
    }
    // Few changes are found by comparing ids, many by hashing them.
    let few = upserts.len() + deletes.len() <= FEW_CHANGES;
    let replacing: HashMap<&K, usize> = if few {
        HashMap::new()
    } else {
        upserts
            .iter()
            .enumerate()
            .map(|(i, e)| (id(e), i))
            .collect()
    };
    let gone: std::collections::HashSet<&K> = if few {
        Default::default()
    } else {
        deletes.iter().collect()
    };
    let deleted = |k: &K| {
        if few {
            deletes.contains(k)
        } else {
            gone.contains(k)
        }
    };
    let upsert_of = |k: &K| {
        if few {
            upserts.iter().position(|u| id(u) == k)
        } else {
            replacing.get(k).copied()
        }
    };
    // Which upserts replaced an entry; the others are new.
    let mut replaced = vec![false; upserts.len()];
    entries.retain_mut(|e| {
        let k = id(e);
        if deleted(k) {
            return false;
        }
        if let Some(i) = upsert_of(k) {
            replaced[i] = true;
            *e = upserts[i].clone();
        }
        true
    });
    // What was not replaced is new, in the order the delta lists it.
    entries.extend(
        upserts
            .iter()
            .zip(&replaced)
            .filter(|(_, was)| !**was)
            .map(|(e, _)| e.clone()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `base` with `delta` applied, `base` kept.
    fn apply(base: &pb::Snapshot, delta: &pb::SnapshotDelta) -> Result<pb::Snapshot, DeltaError> {
        let mut next = base.clone();
        apply_in_place(&mut next, delta)?;
        Ok(next)
    }
    use prost::Message;

    fn account(id: &str, name: &str) -> pb::Account {
        pb::Account {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn key(id: &str, account: &str) -> pb::IssuedKey {
        pb::IssuedKey {
            id: id.into(),
            account_id: account.into(),
            hash: vec![1; 32],
            ..Default::default()
        }
    }

    fn snapshot(version: u64, accounts: &[(&str, &str)], keys: &[(&str, &str)]) -> pb::Snapshot {
        pb::Snapshot {
            version,
            accounts: accounts.iter().map(|(i, n)| account(i, n)).collect(),
            issued_keys: keys.iter().map(|(i, a)| key(i, a)).collect(),
            provider_keys: Vec::new(),
            rules: vec![pb::Rules {
                owner_id: "a".into(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_delta_carries_only_what_changed() {
        let old = snapshot(
            7,
            &[("a", "acme"), ("b", "team")],
            &[("k1", "a"), ("k2", "b")],
        );
        let new = snapshot(
            8,
            &[("a", "acme"), ("b", "renamed"), ("c", "new")],
            &[("k1", "a"), ("k3", "c")],
        );
        let d = diff(&old, &new);
        assert_eq!((d.base_version, d.version), (7, 8));
        let names: Vec<&str> = d.upsert_accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["renamed", "new"]);
        assert_eq!(d.delete_issued_keys, ["k2"]);
        assert_eq!(d.upsert_issued_keys.len(), 1);
        assert!(d.upsert_rules.is_empty() && d.delete_rules.is_empty());
        assert_eq!(apply(&old, &d).unwrap(), new);
        // Nothing changed: an empty delta that still moves the version.
        let same = pb::Snapshot {
            version: 9,
            ..new.clone()
        };
        let empty = diff(&new, &same);
        assert_eq!(empty.encoded_len(), 2 + 2);
        assert_eq!(apply(&new, &empty).unwrap(), same);
    }

    #[test]
    fn a_delta_applies_only_to_its_base() {
        let old = snapshot(7, &[("a", "acme")], &[]);
        let new = snapshot(8, &[("a", "acme2")], &[]);
        let d = diff(&old, &new);
        let other = snapshot(6, &[("a", "acme")], &[]);
        assert_eq!(
            apply(&other, &d),
            Err(DeltaError::WrongBase { delta: 7, have: 6 })
        );
        let backwards = diff(&new, &old);
        assert_eq!(
            apply(&new, &backwards),
            Err(DeltaError::Backwards {
                base: 8,
                version: 7
            })
        );
    }

    /// Any pair of snapshots: applying their diff to the first gives the second
    /// (same entries, in the second's order once sorted by id).
    #[test]
    fn diff_then_apply_gives_the_newer_snapshot() {
        use proptest::prelude::*;
        let entries = || proptest::collection::btree_map(0u8..40, 0u8..3, 0..30);
        proptest!(|(a in entries(), b in entries(), ka in entries(), kb in entries())| {
            let build = |version, accounts: &std::collections::BTreeMap<u8, u8>, keys: &std::collections::BTreeMap<u8, u8>| pb::Snapshot {
                version,
                accounts: accounts.iter().map(|(i, n)| account(&i.to_string(), &n.to_string())).collect(),
                issued_keys: keys.iter().map(|(i, n)| key(&i.to_string(), &n.to_string())).collect(),
                ..Default::default()
            };
            let (old, new) = (build(1, &a, &ka), build(2, &b, &kb));
            let mut got = apply(&old, &diff(&old, &new)).unwrap();
            got.accounts.sort_by(|x, y| x.id.cmp(&y.id));
            got.issued_keys.sort_by(|x, y| x.id.cmp(&y.id));
            let mut want = new.clone();
            want.accounts.sort_by(|x, y| x.id.cmp(&y.id));
            want.issued_keys.sort_by(|x, y| x.id.cmp(&y.id));
            prop_assert_eq!(got, want);
        });
    }
}
