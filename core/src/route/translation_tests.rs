//! Keys of other protocols, reached through translation: when they are eligible and
//! the order they come in.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::tests::key;
use super::*;

const OPENAI: ProviderKind = ProviderKind::OpenAi;
const ANTHROPIC: ProviderKind = ProviderKind::Anthropic;

fn owner(keys: Vec<ProviderKey>) -> OwnerKeys {
    OwnerKeys::new(keys, |_| Arc::new(KeyHealth::default()))
}

#[test]
fn another_protocols_keys_serve_only_when_translation_is_allowed() {
    let claude = key(1, 1, &["claude*"], ANTHROPIC);
    let o = owner(vec![claude.clone()]);
    let mut translated = o.attempts("claude-3", OPENAI, true, None, None, 3);
    assert_eq!(translated.next(0).unwrap().key.id, claude.id);
    assert!(matches!(
        translated.next(0),
        Err(RouteError::AllFailed { tried: 1, .. })
    ));
    let mut refused = o.attempts("claude-3", OPENAI, false, None, None, 3);
    assert!(matches!(
        refused.next(0),
        Err(RouteError::WrongProtocol {
            served_by: "anthropic",
            wanted: "openai",
            ..
        })
    ));
    // Translation serves models, not everything: a model no key serves is still that.
    let mut unknown = o.attempts("gpt-4", OPENAI, true, None, None, 3);
    assert_eq!(
        unknown.next(0).err(),
        Some(RouteError::NoProviderForModel("gpt-4".into()))
    );
}

#[test]
fn own_protocol_keys_of_a_level_come_before_its_translated_ones() {
    let own = key(1, 1, &["m"], OPENAI);
    let other = key(1, 100, &["m"], ANTHROPIC);
    let o = owner(vec![own.clone(), other.clone()]);
    // However heavy the other key, the own one is always tried first.
    for _ in 0..20 {
        let mut attempts = o.attempts("m", OPENAI, true, None, None, 3);
        assert_eq!(attempts.next(0).unwrap().key.id, own.id);
        assert_eq!(attempts.next(0).unwrap().key.id, other.id);
        assert!(attempts.next(0).is_err());
    }
    // The own key asleep: the translated one takes the call at once.
    let (_, health) = o.keys().find(|(k, _)| k.id == own.id).unwrap();
    health.record_failure(&CoolDown::default(), Failure::ServerError, 0);
    let mut attempts = o.attempts("m", OPENAI, true, None, None, 3);
    assert_eq!(attempts.next(10).unwrap().key.id, other.id);
}

#[test]
fn a_levels_translated_keys_come_before_the_switch_over_level() {
    let own = key(1, 1, &["m"], OPENAI);
    let other = key(1, 1, &["m"], ANTHROPIC);
    let backup = key(2, 1, &["m"], OPENAI);
    let o = owner(vec![own.clone(), other.clone(), backup.clone()]);
    let switch = BTreeMap::from([(1, 2)]);
    let mut attempts = o.attempts("m", OPENAI, true, None, Some(&switch), 3);
    let order: Vec<_> = std::iter::from_fn(|| attempts.next(0).ok().map(|c| c.key.id)).collect();
    assert_eq!(order, [own.id, other.id, backup.id]);
    // Without translation the other protocol's key is never tried.
    let mut attempts = o.attempts("m", OPENAI, false, None, Some(&switch), 3);
    let order: Vec<_> = std::iter::from_fn(|| attempts.next(0).ok().map(|c| c.key.id)).collect();
    assert_eq!(order, [own.id, backup.id]);
}

#[test]
fn the_starting_level_is_the_lowest_any_eligible_key_serves() {
    let other = key(1, 1, &["m"], ANTHROPIC);
    let own = key(2, 1, &["m"], OPENAI);
    let o = owner(vec![other.clone(), own.clone()]);
    let mut attempts = o.attempts("m", OPENAI, true, None, None, 3);
    assert_eq!(attempts.next(0).unwrap().key.id, other.id);
    // Translation off: the lowest level serving the call's own protocol.
    let mut attempts = o.attempts("m", OPENAI, false, None, None, 3);
    assert_eq!(attempts.next(0).unwrap().key.id, own.id);
}

#[test]
fn translated_keys_share_the_round_robin_by_weight() {
    let a = key(1, 1, &["m"], ANTHROPIC);
    let b = key(1, 3, &["m"], ANTHROPIC);
    let o = owner(vec![a.clone(), b.clone()]);
    let mut to_b = 0;
    for _ in 0..400 {
        let mut attempts = o.attempts("m", OPENAI, true, None, None, 1);
        if attempts.next(0).unwrap().key.id == b.id {
            to_b += 1;
        }
    }
    assert!((290..=310).contains(&to_b), "{to_b} of 400");
}
