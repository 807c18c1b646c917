//! Route choice: cool-down, health, spread over the eligible keys, switch-over.

use super::*;
use crate::crypto::Sealed;
use crate::ids::{AccountId, ProviderKeyId};
use proptest::prelude::*;

/// A provider key for tests (a random owner; set `owner` where it matters).
pub(crate) fn key(level: u32, weight: u32, models: &[&str], kind: ProviderKind) -> ProviderKey {
    ProviderKey {
        id: ProviderKeyId::new(),
        owner: AccountId::new(),
        kind,
        passthrough: false,
        base_url: "https://api.example.com/v1".into(),
        secret: Sealed {
            key_id: "k".into(),
            blob: vec![0; 40],
        },
        level,
        models: models.iter().map(|m| m.parse().unwrap()).collect(),
        weight,
        status: Status::Active,
        discovered_models: Vec::new(),
    }
}

fn owner(keys: Vec<ProviderKey>) -> OwnerKeys {
    OwnerKeys::new(keys, |_| Arc::new(KeyHealth::default()))
}

const OPENAI: ProviderKind = ProviderKind::OpenAi;

#[test]
fn cool_down_grows_and_is_capped() {
    let p = CoolDown::default();
    assert_eq!(cool_down_ms(&p, Failure::ServerError, 1), 1_000);
    assert_eq!(cool_down_ms(&p, Failure::ServerError, 2), 2_000);
    assert_eq!(cool_down_ms(&p, Failure::Timeout, 3), 4_000);
    assert_eq!(cool_down_ms(&p, Failure::Unreachable, 40), 60_000);
    assert_eq!(cool_down_ms(&p, Failure::ServerError, u32::MAX), 60_000);
    assert_eq!(cool_down_ms(&p, Failure::Rejected, 1), 600_000);
    let limited = |ms| Failure::RateLimited { retry_after_ms: ms };
    assert_eq!(cool_down_ms(&p, limited(Some(7_500)), 5), 7_500);
    assert_eq!(cool_down_ms(&p, limited(Some(u64::MAX)), 1), 3_600_000);
    assert_eq!(cool_down_ms(&p, limited(None), 2), 2_000);
}

#[test]
fn statuses_map_to_failures() {
    assert_eq!(
        Failure::from_status(429, Some(5)),
        Some(Failure::RateLimited {
            retry_after_ms: Some(5)
        })
    );
    assert_eq!(Failure::from_status(401, None), Some(Failure::Rejected));
    assert_eq!(Failure::from_status(403, None), Some(Failure::Rejected));
    assert_eq!(Failure::from_status(500, None), Some(Failure::ServerError));
    assert_eq!(Failure::from_status(529, None), Some(Failure::ServerError));
    assert_eq!(Failure::from_status(400, None), None);
    assert_eq!(Failure::from_status(404, None), None);
    assert_eq!(Failure::from_status(200, None), None);
}

#[test]
fn retry_after_forms() {
    assert_eq!(retry_after_ms(None, Some("3")), Some(3_000));
    assert_eq!(retry_after_ms(None, Some(" 1.5 ")), Some(1_500));
    assert_eq!(retry_after_ms(Some("250"), Some("3")), Some(250));
    assert_eq!(retry_after_ms(Some("x"), Some("2")), Some(2_000));
    assert_eq!(retry_after_ms(None, Some("-1")), None);
    assert_eq!(
        retry_after_ms(None, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
        None
    );
    assert_eq!(retry_after_ms(None, None), None);
}

#[test]
fn health_sleeps_and_recovers() {
    let h = KeyHealth::default();
    let p = CoolDown::default();
    assert!(h.is_awake(0));
    assert_eq!(h.state(0), HealthState::Unknown);
    assert_eq!(h.record_failure(&p, Failure::ServerError, 1_000), 1_000);
    assert!(!h.is_awake(1_999));
    assert!(h.is_awake(2_000));
    assert_eq!(h.record_failure(&p, Failure::ServerError, 2_000), 2_000);
    assert_eq!(h.state(2_500), HealthState::CoolingDown { until_ms: 4_000 });
    h.record_success();
    assert_eq!(h.record_failure(&p, Failure::ServerError, 10_000), 1_000);
    h.record_failure(&p, Failure::Rejected, 20_000);
    assert!(matches!(h.state(20_001), HealthState::Rejected { .. }));
    h.record_success();
    assert_eq!(h.state(700_000), HealthState::Healthy);
}

#[test]
fn spread_points_cover_the_range_evenly() {
    assert_eq!(spread_point(0, 7), 0);
    assert!((0..10_000).all(|n| spread_point(n, 3) < 3));
    assert_eq!(spread_point(5, 1), 0);
    assert!(spread_point(u64::MAX, u64::MAX) < u64::MAX);
    // Any 1000 consecutive calls over a total of 10: each point within 1% of 100.
    for start in [0, 1_000, u64::MAX - 1_000] {
        let mut seen = [0u32; 10];
        for n in start..start + 1_000 {
            seen[usize::try_from(spread_point(n, 10)).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&c| (90..=110).contains(&c)), "{seen:?}");
    }
}

/// Picks of `calls` first attempts for `model` over `kind`, counted per key id.
fn spread_of(
    o: &OwnerKeys,
    model: &str,
    kind: ProviderKind,
    calls: usize,
    now_ms: i64,
) -> BTreeMap<ProviderKeyId, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..calls {
        if let Ok(choice) = o.attempts(model, kind, false, None, None, 1).next(now_ms) {
            *counts.entry(choice.key.id).or_default() += 1;
        }
    }
    counts
}

#[test]
fn keys_that_cannot_serve_the_call_hand_no_share_to_their_neighbours() {
    // Two OpenAI keys with an Anthropic key between them in the level's order
    // (by id): chat calls go to the OpenAI keys in equal parts.
    let mut keys: Vec<ProviderKey> = (0..3).map(|_| key(1, 1, &["*"], OPENAI)).collect();
    keys.sort_by_key(|k| k.id);
    keys[1].kind = ProviderKind::Anthropic;
    let ids: Vec<ProviderKeyId> = keys.iter().map(|k| k.id).collect();
    let o = owner(keys);
    let counts = spread_of(&o, "gpt-4", OPENAI, 30, 0);
    assert_eq!(counts.get(&ids[1]), None);
    assert!((13..=17).contains(&counts[&ids[0]]), "{counts:?}");
    assert_eq!(counts[&ids[0]] + counts[&ids[2]], 30);

    // Calls of the other protocol on the same level, strictly interleaved, share
    // the level's counter without skewing the chat calls' spread.
    let mut chat = BTreeMap::<ProviderKeyId, usize>::new();
    for _ in 0..60 {
        let choice = o
            .attempts("gpt-4", OPENAI, false, None, None, 1)
            .next(0)
            .unwrap();
        *chat.entry(choice.key.id).or_default() += 1;
        let mut other = o.attempts("claude", ProviderKind::Anthropic, false, None, None, 1);
        assert_eq!(other.next(0).unwrap().key.id, ids[1]);
    }
    assert!((27..=33).contains(&chat[&ids[0]]), "{chat:?}");
}

#[test]
fn round_robin_spreads_within_the_lowest_level() {
    let a = key(1, 1, &["gpt*"], OPENAI);
    let b = key(1, 1, &["gpt*"], OPENAI);
    let backup = key(2, 1, &["gpt*"], OPENAI);
    let o = owner(vec![a.clone(), b.clone(), backup]);
    let picks: Vec<_> = (0..20)
        .map(|_| {
            o.attempts("gpt-4", OPENAI, false, None, None, 3)
                .next(0)
                .unwrap()
                .key
                .id
        })
        .collect();
    let to_a = picks.iter().filter(|&&id| id == a.id).count();
    assert!((9..=11).contains(&to_a), "{to_a} of 20");
    assert_eq!(picks.iter().filter(|&&id| id == b.id).count(), 20 - to_a);
    assert_ne!(picks[0], picks[1]);
}

#[test]
fn failures_move_to_the_next_key_then_the_backup_level_then_fail() {
    let a = key(1, 1, &["*"], OPENAI);
    let b = key(1, 1, &["*"], OPENAI);
    let c = key(2, 1, &["*"], OPENAI);
    let o = owner(vec![a.clone(), b.clone(), c.clone()]);
    let switch = BTreeMap::from([(1, 2)]);
    let mut attempts = o.attempts("m", OPENAI, false, None, Some(&switch), 3);
    let first = attempts.next(0).unwrap().key.id;
    let second = attempts.next(0).unwrap().key.id;
    assert_ne!(first, second);
    assert!([a.id, b.id].contains(&first) && [a.id, b.id].contains(&second));
    assert_eq!(attempts.next(0).unwrap().key.id, c.id);
    assert_eq!(
        attempts.next(0).err(),
        Some(RouteError::AllFailed {
            model: "m".into(),
            tried: 3
        })
    );
}

#[test]
fn same_level_tries_are_bounded() {
    let keys: Vec<_> = (0..5).map(|_| key(1, 1, &["*"], OPENAI)).collect();
    let backup = key(2, 1, &["*"], OPENAI);
    let o = owner([keys, vec![backup.clone()]].concat());
    let switch = BTreeMap::from([(1, 2)]);
    let mut attempts = o.attempts("m", OPENAI, false, None, Some(&switch), 2);
    attempts.next(0).unwrap();
    attempts.next(0).unwrap();
    assert_eq!(attempts.next(0).unwrap().key.id, backup.id);
}

#[test]
fn sleeping_keys_are_skipped_and_a_sleeping_level_switches_over() {
    let a = key(1, 1, &["*"], OPENAI);
    let b = key(1, 1, &["*"], OPENAI);
    let c = key(2, 1, &["*"], OPENAI);
    let o = owner(vec![a.clone(), b.clone(), c.clone()]);
    let p = CoolDown::default();
    let health = |id| o.keys().find(|(k, _)| k.id == id).unwrap().1.clone();
    health(a.id).record_failure(&p, Failure::ServerError, 0);
    for _ in 0..4 {
        let mut attempts = o.attempts("m", OPENAI, false, None, None, 3);
        assert_eq!(attempts.next(10).unwrap().key.id, b.id);
    }
    health(b.id).record_failure(&p, Failure::Rejected, 0);
    let switch = BTreeMap::from([(1, 2)]);
    let mut attempts = o.attempts("m", OPENAI, false, None, Some(&switch), 3);
    assert_eq!(attempts.next(10).unwrap().key.id, c.id);
    // Without a backup level: an explicit error naming the wait.
    let mut attempts = o.attempts("m", OPENAI, false, None, None, 3);
    assert_eq!(
        attempts.next(10).err(),
        Some(RouteError::AllCoolingDown {
            model: "m".into(),
            wake_in_ms: 990
        })
    );
    // Recovery: after its sleep the first key serves again.
    let mut attempts = o.attempts("m", OPENAI, false, None, None, 3);
    assert_eq!(attempts.next(1_000).unwrap().key.id, a.id);
}

#[test]
fn level_mapper_and_protocols_and_models() {
    let a = key(1, 1, &["gpt*"], OPENAI);
    let b = key(2, 1, &["gpt*"], OPENAI);
    let claude = key(1, 1, &["claude*"], ProviderKind::Anthropic);
    let o = owner(vec![a, b.clone(), claude.clone()]);
    let mut attempts = o.attempts("gpt-4", OPENAI, false, Some(2), None, 3);
    assert_eq!(attempts.next(0).unwrap().key.id, b.id);
    let mut attempts = o.attempts("claude-3", ProviderKind::Anthropic, false, None, None, 3);
    assert_eq!(attempts.next(0).unwrap().key.id, claude.id);
    let mut attempts = o.attempts("claude-3", OPENAI, false, None, None, 3);
    assert!(matches!(
        attempts.next(0),
        Err(RouteError::WrongProtocol {
            served_by: "anthropic",
            ..
        })
    ));
    let mut attempts = o.attempts("llama", OPENAI, false, None, None, 3);
    assert_eq!(
        attempts.next(0).err(),
        Some(RouteError::NoProviderForModel("llama".into()))
    );
    // A mapped level without a key for the model fails rather than wander off.
    let mut attempts = o.attempts("gpt-4", OPENAI, false, Some(7), None, 3);
    assert!(attempts.next(0).is_err());
}

#[test]
fn a_switch_over_cycle_ends() {
    let a = key(1, 1, &["*"], OPENAI);
    let b = key(2, 1, &["*"], OPENAI);
    let o = owner(vec![a, b]);
    let switch = BTreeMap::from([(1, 2), (2, 1)]);
    let mut attempts = o.attempts("m", OPENAI, false, None, Some(&switch), 1);
    assert!(attempts.next(0).is_ok());
    assert!(attempts.next(0).is_ok());
    assert!(attempts.next(0).is_err());
}

proptest! {
    /// Over 2,000 calls on one level of mixed keys (both protocols, models the
    /// call does not name, weights 0 to 5, some asleep), only the keys eligible for
    /// the call are picked, each within 0.5% of the calls (10) of its weight's
    /// share of the eligible keys' total weight (weight 0 counting as 1).
    #[test]
    fn calls_spread_over_the_eligible_keys_by_weight(
        spec in proptest::collection::vec(
            (any::<bool>(), any::<bool>(), 0u32..6, proptest::bool::weighted(0.25)),
            1..10,
        ),
    ) {
        const CALLS: usize = 2_000;
        const TOLERANCE: f64 = 0.005;
        let keys: Vec<ProviderKey> = spec
            .iter()
            .map(|&(anthropic, serves, weight, _)| {
                let kind = if anthropic { ProviderKind::Anthropic } else { OPENAI };
                key(1, weight, &[if serves { "m*" } else { "other" }], kind)
            })
            .collect();
        let o = owner(keys.clone());
        let p = CoolDown::default();
        for (k, &(_, _, _, asleep)) in keys.iter().zip(&spec) {
            if asleep {
                let (_, health) = o.keys().find(|(known, _)| known.id == k.id).unwrap();
                health.record_failure(&p, Failure::Rejected, 0);
            }
        }
        let eligible: Vec<(ProviderKeyId, u64)> = keys
            .iter()
            .zip(&spec)
            .filter(|(k, (anthropic, serves, _, asleep))| {
                !anthropic && *serves && !asleep && k.kind == OPENAI
            })
            .map(|(k, _)| (k.id, u64::from(k.weight.max(1))))
            .collect();
        let total: u64 = eligible.iter().map(|(_, w)| w).sum();
        let counts = spread_of(&o, "m1", OPENAI, CALLS, 10);
        for id in counts.keys() {
            prop_assert!(eligible.iter().any(|(e, _)| e == id), "an ineligible key was picked");
        }
        for (id, weight) in &eligible {
            let expected = CALLS as f64 * *weight as f64 / total as f64;
            let got = counts.get(id).copied().unwrap_or(0) as f64;
            prop_assert!(
                (got - expected).abs() <= TOLERANCE * CALLS as f64,
                "key of weight {weight}/{total}: {got} calls, expected {expected:.0}"
            );
        }
    }

    #[test]
    fn attempts_never_repeat_a_key_and_never_leave_the_owner(
        levels in proptest::collection::vec((1u32..4, 1u32..5, any::<bool>(), any::<bool>()), 1..10),
        switch in proptest::collection::btree_map(1u32..4, 1u32..4, 0..4),
        max in 1u32..5,
        mapped in proptest::option::of(1u32..4),
    ) {
        let keys: Vec<ProviderKey> = levels
            .iter()
            .map(|&(level, weight, serves, anthropic)| {
                let kind = if anthropic { ProviderKind::Anthropic } else { OPENAI };
                key(level, weight, &[if serves { "m*" } else { "other" }], kind)
            })
            .collect();
        let o = owner(keys.clone());
        let mut attempts = o.attempts("m1", OPENAI, false, mapped, Some(&switch), max);
        let mut seen = Vec::new();
        while let Ok(choice) = attempts.next(0) {
            prop_assert!(keys.iter().any(|k| k.id == choice.key.id));
            prop_assert_eq!(choice.key.kind, OPENAI);
            prop_assert!(model::any_matches(&choice.key.models, "m1"));
            prop_assert!(!seen.contains(&choice.key.id));
            seen.push(choice.key.id);
            prop_assert!(seen.len() <= keys.len());
        }
    }
}
