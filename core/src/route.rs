//! Route choice: which provider key serves a call, and what happens when one fails.
//!
//! A main account's provider keys are grouped by level. A call starts at the level
//! the LevelMapper names (else the lowest level that serves the model), tries the
//! level's keys that can take the call (active, of the call's protocol, serving its
//! model, awake) in weighted round-robin order over exactly those keys (one atomic
//! increment per level), at most a bounded number of times, then follows SwitchOver to the backup
//! level, then fails with the reason. A failing key sleeps (its cool-down) without
//! touching the others; everything here is atomics and plain data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use crate::model;
use crate::passthrough;
use crate::snapshot::data::ProviderKey;
use crate::types::{ProviderKind, Status};

/// Why an attempt on a provider key failed, as far as the key's health is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 429: the provider asked us to slow down, perhaps saying for how long.
    RateLimited { retry_after_ms: Option<u64> },
    /// 5xx (and 529 overloaded).
    ServerError,
    /// No answer, or a stall, within the timeout.
    Timeout,
    /// Connection refused, reset, TLS failure.
    Unreachable,
    /// 401/403: the provider refused the credential itself.
    Rejected,
    /// 404 without the protocol's error: the key's base URL does not serve the
    /// endpoint (a configuration mistake, so the key sleeps as long as a refused one).
    NotFound,
}

impl Failure {
    /// The failure an upstream status means for the key, if any. Other 4xx answers
    /// are the request's fault and pass to the client untouched.
    pub fn from_status(status: u16, retry_after_ms: Option<u64>) -> Option<Self> {
        match status {
            429 => Some(Self::RateLimited { retry_after_ms }),
            401 | 403 => Some(Self::Rejected),
            408 => Some(Self::Timeout),
            500..=599 => Some(Self::ServerError),
            _ => None,
        }
    }

    /// A stable name for metrics and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Rejected => "rejected",
            Self::NotFound => "not_found",
        }
    }
}

/// How long failing keys sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoolDown {
    /// The first sleep after a failure; doubles with each consecutive one.
    pub base_ms: u64,
    /// The longest back-off sleep.
    pub cap_ms: u64,
    /// A key whose credential was refused sleeps this long.
    pub rejected_ms: u64,
    /// Retry-After is honoured up to this bound.
    pub max_retry_after_ms: u64,
}

impl Default for CoolDown {
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            cap_ms: 60_000,
            rejected_ms: 600_000,
            max_retry_after_ms: 3_600_000,
        }
    }
}

/// The sleep after the `consecutive`-th failure in a row (1 for the first).
pub fn cool_down_ms(policy: &CoolDown, failure: Failure, consecutive: u32) -> u64 {
    let backoff = || {
        let doublings = consecutive.saturating_sub(1).min(32);
        policy
            .base_ms
            .saturating_mul(1u64 << doublings)
            .min(policy.cap_ms)
    };
    match failure {
        Failure::RateLimited {
            retry_after_ms: Some(ms),
        } => ms.min(policy.max_retry_after_ms),
        Failure::RateLimited {
            retry_after_ms: None,
        }
        | Failure::ServerError
        | Failure::Timeout
        | Failure::Unreachable => backoff(),
        Failure::Rejected | Failure::NotFound => policy.rejected_ms,
    }
}

/// Retry-After in milliseconds: OpenAI's `retry-after-ms`, else `retry-after` in
/// (possibly fractional) seconds. HTTP dates are not used by LLM providers and count
/// as absent.
pub fn retry_after_ms(retry_after_ms: Option<&str>, retry_after: Option<&str>) -> Option<u64> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(ms.ceil() as u64);
    }
    let secs = retry_after?.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).ceil() as u64)
}

/// The shared health of one provider key. Survives snapshot versions (carried over
/// by key id), so a configuration change does not wake a sleeping key.
#[derive(Debug, Default)]
pub struct KeyHealth {
    sleep_until_ms: AtomicI64,
    consecutive_failures: AtomicU32,
    rejected: AtomicBool,
    /// Whether any call has used the key on this replica yet.
    tried: AtomicBool,
}

/// What a key's health says, as reported to operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    /// No call has used it here yet.
    Unknown,
    Healthy,
    CoolingDown {
        until_ms: i64,
    },
    /// The provider refused the credential; sleeping long.
    Rejected {
        until_ms: i64,
    },
}

impl KeyHealth {
    pub fn is_awake(&self, now_ms: i64) -> bool {
        self.sleep_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    pub fn sleep_until_ms(&self) -> i64 {
        self.sleep_until_ms.load(Ordering::Relaxed)
    }

    pub fn record_success(&self) {
        // Loads first: the common case (already healthy) writes nothing shared.
        if !self.tried.load(Ordering::Relaxed) {
            self.tried.store(true, Ordering::Relaxed);
        }
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.rejected.load(Ordering::Relaxed) {
            self.rejected.store(false, Ordering::Relaxed);
        }
    }

    /// Put the key to sleep; returns how long.
    pub fn record_failure(&self, policy: &CoolDown, failure: Failure, now_ms: i64) -> u64 {
        let consecutive = self
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let sleep = cool_down_ms(policy, failure, consecutive);
        let until = now_ms.saturating_add(i64::try_from(sleep).unwrap_or(i64::MAX));
        // Concurrent failures keep the later wake-up.
        self.sleep_until_ms.fetch_max(until, Ordering::Relaxed);
        if matches!(failure, Failure::Rejected | Failure::NotFound) {
            self.rejected.store(true, Ordering::Relaxed);
        }
        self.tried.store(true, Ordering::Relaxed);
        sleep
    }

    pub fn state(&self, now_ms: i64) -> HealthState {
        let until_ms = self.sleep_until_ms();
        if self.rejected.load(Ordering::Relaxed) {
            HealthState::Rejected { until_ms }
        } else if until_ms > now_ms {
            HealthState::CoolingDown { until_ms }
        } else if !self.tried.load(Ordering::Relaxed) {
            HealthState::Unknown
        } else {
            HealthState::Healthy
        }
    }
}

/// 2^64 divided by the golden ratio. Call `n` of a level lands at the fraction
/// `n / φ mod 1` of the eligible keys' summed weight: consecutive calls land far apart
/// (no bursts on a heavy key), every stretch of calls covers the range evenly, and so
/// does every regular subsequence of them, so calls of other models or protocols
/// sharing the level's counter cannot skew one kind's spread.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The point in `[0, total)` where the `n`-th call of a level lands.
pub fn spread_point(n: u64, total: u64) -> u64 {
    let fraction = u128::from(n.wrapping_mul(GOLDEN));
    u64::try_from((fraction * u128::from(total)) >> 64).unwrap_or(0)
}

/// A key's share of its level: its weight, where 0 counts as 1 (a key the owner
/// configured is never starved).
fn share(key: &ProviderKey) -> u64 {
    u64::from(key.weight.max(1))
}

/// One level of an owner's keys.
#[derive(Debug)]
struct Level {
    /// Positions in [`OwnerKeys::keys`].
    members: Vec<usize>,
    /// Calls (attempts) routed on this level so far.
    next: AtomicU64,
}

/// A main account's provider keys, grouped by level, with their health.
#[derive(Debug, Default)]
pub struct OwnerKeys {
    keys: Vec<ProviderKey>,
    health: Vec<Arc<KeyHealth>>,
    levels: BTreeMap<u32, Level>,
}

/// The keys of an account that has none.
pub static NO_KEYS: OwnerKeys = OwnerKeys {
    keys: Vec::new(),
    health: Vec::new(),
    levels: BTreeMap::new(),
};

impl OwnerKeys {
    /// Group `keys` (any order) by level. `health_of` supplies each key's health,
    /// carried over from the previous snapshot when the key was already known.
    pub fn new(
        mut keys: Vec<ProviderKey>,
        mut health_of: impl FnMut(&ProviderKey) -> Arc<KeyHealth>,
    ) -> Self {
        // Stable order so round-robin behaves the same on every replica.
        keys.sort_by(|a, b| a.level.cmp(&b.level).then(a.id.cmp(&b.id)));
        let health = keys.iter().map(&mut health_of).collect();
        let mut grouped: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            grouped.entry(k.level).or_default().push(i);
        }
        let levels = grouped
            .into_iter()
            .map(|(level, members)| {
                let level_pool = Level {
                    members,
                    next: AtomicU64::new(0),
                };
                (level, level_pool)
            })
            .collect();
        Self {
            keys,
            health,
            levels,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = (&ProviderKey, &Arc<KeyHealth>)> {
        self.keys.iter().zip(&self.health)
    }

    fn serves(&self, i: usize, model: &str, kind: ProviderKind) -> bool {
        let k = &self.keys[i];
        k.status == Status::Active && k.kind == kind && model::any_matches(&k.models, model)
    }

    /// The lowest level with a key that may serve the call.
    fn first_level(&self, model: &str, kind: ProviderKind, own_credential: bool) -> Option<u32> {
        (0..self.keys.len())
            .find(|&i| {
                let k = &self.keys[i];
                self.serves(i, model, kind)
                    && passthrough::may_serve(k.passthrough, k.kind, kind, own_credential)
            })
            .map(|i| self.keys[i].level)
    }

    /// Plan the attempts for one call (of a caller without its own credential; see
    /// [`Attempts::with_own_credential`]).
    pub fn attempts<'a>(
        &'a self,
        model: &'a str,
        kind: ProviderKind,
        mapped_level: Option<u32>,
        switch_over: Option<&'a BTreeMap<u32, u32>>,
        max_per_level: u32,
    ) -> Attempts<'a> {
        let level = mapped_level.or_else(|| self.first_level(model, kind, false));
        Attempts {
            owner: self,
            model,
            kind,
            level,
            visited: Vec::new(),
            tried: Vec::new(),
            tries_here: 0,
            max_per_level: max_per_level.max(1),
            switch_over,
            earliest_wake: None,
            tried_total: 0,
            own_credential: false,
            level_mapped: mapped_level.is_some(),
        }
    }
}

/// One provider key chosen for an attempt.
#[derive(Clone, Copy, Debug)]
pub struct Choice<'a> {
    pub key: &'a ProviderKey,
    pub health: &'a KeyHealth,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no provider key of this account serves model {0:?}")]
    NoProviderForModel(String),
    #[error(
        "model {model:?} is served only by `{served_by}` provider keys, and this endpoint speaks the `{wanted}` protocol; Switchyard does not translate between protocols"
    )]
    WrongProtocol {
        model: String,
        served_by: &'static str,
        wanted: &'static str,
    },
    #[error(
        "every provider key that serves model {model:?} is cooling down after failures; the first wakes in {wake_in_ms} ms"
    )]
    AllCoolingDown { model: String, wake_in_ms: u64 },
    #[error("{tried} attempt(s) on provider keys serving model {model:?} failed")]
    AllFailed { model: String, tried: u32 },
    #[error(
        "model {model:?} is served only by passthrough provider keys, which carry the caller's own provider credential: send your Switchyard key in `x-switchyard-key` and your provider credential in `Authorization`"
    )]
    NeedsOwnCredential { model: String },
}

/// The attempts of one call: same-level keys first, then switch-over levels.
pub struct Attempts<'a> {
    owner: &'a OwnerKeys,
    model: &'a str,
    kind: ProviderKind,
    level: Option<u32>,
    visited: Vec<u32>,
    /// Key positions tried on the current level.
    tried: Vec<usize>,
    tries_here: u32,
    max_per_level: u32,
    switch_over: Option<&'a BTreeMap<u32, u32>>,
    earliest_wake: Option<i64>,
    tried_total: u32,
    /// Whether the caller brought its own upstream credential
    /// (`crate::passthrough::own_credential`): only then may passthrough keys serve.
    own_credential: bool,
    /// Whether the LevelMapper named the first level (else it is the lowest level
    /// with a key that may serve the call).
    level_mapped: bool,
}

impl<'a> Attempts<'a> {
    /// These attempts for a caller that did (or did not) bring its own credential;
    /// before the first [`Attempts::next`].
    pub fn with_own_credential(mut self, own_credential: bool) -> Self {
        self.own_credential = own_credential;
        if !self.level_mapped {
            self.level = self
                .owner
                .first_level(self.model, self.kind, own_credential);
        }
        self
    }

    /// The next key to try, or why there is none.
    pub fn next(&mut self, now_ms: i64) -> Result<Choice<'a>, RouteError> {
        let owner = self.owner;
        while let Some(level_no) = self.level {
            if self.tries_here < self.max_per_level
                && let Some(level) = owner.levels.get(&level_no)
                && let Some(i) = self.choose(level, now_ms)
            {
                self.tried.push(i);
                self.tries_here += 1;
                self.tried_total += 1;
                return Ok(Choice {
                    key: &owner.keys[i],
                    health: &owner.health[i],
                });
            }
            // This level is done: move to its backup, never back to a level seen.
            self.visited.push(level_no);
            self.level = self
                .switch_over
                .and_then(|s| s.get(&level_no).copied())
                .filter(|next| !self.visited.contains(next));
            self.tried.clear();
            self.tries_here = 0;
        }
        Err(self.exhausted(now_ms))
    }

    /// Whether key `i` may take this attempt now; notes when a sleeping one wakes.
    fn eligible(&mut self, i: usize, now_ms: i64) -> bool {
        if self.tried.contains(&i) || !self.owner.serves(i, self.model, self.kind) {
            return false;
        }
        let key = &self.owner.keys[i];
        if !passthrough::may_serve(key.passthrough, key.kind, self.kind, self.own_credential) {
            return false;
        }
        let health = &self.owner.health[i];
        if health.is_awake(now_ms) {
            return true;
        }
        let wake = health.sleep_until_ms();
        self.earliest_wake = Some(self.earliest_wake.map_or(wake, |e| e.min(wake)));
        false
    }

    /// Weighted round-robin over exactly the keys of `level` that may take this
    /// attempt: one pass sums their weights (remembering who is eligible, for the
    /// first 64 members, in a bit mask), one atomic increment picks a point in that
    /// sum, a second pass finds the key whose share holds it. Keys of the level that
    /// cannot serve the call take no share, so they hand none to their neighbours.
    fn choose(&mut self, level: &Level, now_ms: i64) -> Option<usize> {
        let mut mask = 0u64;
        let mut total = 0u64;
        for (pos, &i) in level.members.iter().enumerate() {
            if self.eligible(i, now_ms) {
                total += share(&self.owner.keys[i]);
                if pos < 64 {
                    mask |= 1 << pos;
                }
            }
        }
        if total == 0 {
            return None;
        }
        let point = spread_point(level.next.fetch_add(1, Ordering::Relaxed), total);
        let mut reached = 0u64;
        let mut last = None;
        for (pos, &i) in level.members.iter().enumerate() {
            let eligible = if pos < 64 {
                mask & (1 << pos) != 0
            } else {
                // Beyond the mask: asked again (a key may have fallen asleep meanwhile;
                // then the last eligible one takes the remainder).
                self.eligible(i, now_ms)
            };
            if eligible {
                reached += share(&self.owner.keys[i]);
                last = Some(i);
                if point < reached {
                    return last;
                }
            }
        }
        last
    }

    /// How many keys were handed out.
    pub fn tried(&self) -> u32 {
        self.tried_total
    }

    fn exhausted(&self, now_ms: i64) -> RouteError {
        let model = self.model.to_owned();
        if self.tried_total > 0 {
            return RouteError::AllFailed {
                model,
                tried: self.tried_total,
            };
        }
        if let Some(wake) = self.earliest_wake {
            return RouteError::AllCoolingDown {
                model,
                wake_in_ms: u64::try_from(wake.saturating_sub(now_ms)).unwrap_or(0),
            };
        }
        if !self.own_credential
            && (0..self.owner.keys.len()).any(|i| {
                self.owner.keys[i].passthrough && self.owner.serves(i, self.model, self.kind)
            })
        {
            return RouteError::NeedsOwnCredential { model };
        }
        let other = self
            .owner
            .keys
            .iter()
            .find(|k| {
                k.status == Status::Active
                    && k.kind != self.kind
                    && model::any_matches(&k.models, self.model)
            })
            .map(|k| k.kind);
        match other {
            Some(kind) => RouteError::WrongProtocol {
                model,
                served_by: kind.as_str(),
                wanted: self.kind.as_str(),
            },
            None => RouteError::NoProviderForModel(model),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
            if let Ok(choice) = o.attempts(model, kind, None, None, 1).next(now_ms) {
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
            let choice = o.attempts("gpt-4", OPENAI, None, None, 1).next(0).unwrap();
            *chat.entry(choice.key.id).or_default() += 1;
            let mut other = o.attempts("claude", ProviderKind::Anthropic, None, None, 1);
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
                o.attempts("gpt-4", OPENAI, None, None, 3)
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
        let mut attempts = o.attempts("m", OPENAI, None, Some(&switch), 3);
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
        let mut attempts = o.attempts("m", OPENAI, None, Some(&switch), 2);
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
            let mut attempts = o.attempts("m", OPENAI, None, None, 3);
            assert_eq!(attempts.next(10).unwrap().key.id, b.id);
        }
        health(b.id).record_failure(&p, Failure::Rejected, 0);
        let switch = BTreeMap::from([(1, 2)]);
        let mut attempts = o.attempts("m", OPENAI, None, Some(&switch), 3);
        assert_eq!(attempts.next(10).unwrap().key.id, c.id);
        // Without a backup level: an explicit error naming the wait.
        let mut attempts = o.attempts("m", OPENAI, None, None, 3);
        assert_eq!(
            attempts.next(10).err(),
            Some(RouteError::AllCoolingDown {
                model: "m".into(),
                wake_in_ms: 990
            })
        );
        // Recovery: after its sleep the first key serves again.
        let mut attempts = o.attempts("m", OPENAI, None, None, 3);
        assert_eq!(attempts.next(1_000).unwrap().key.id, a.id);
    }

    #[test]
    fn level_mapper_and_protocols_and_models() {
        let a = key(1, 1, &["gpt*"], OPENAI);
        let b = key(2, 1, &["gpt*"], OPENAI);
        let claude = key(1, 1, &["claude*"], ProviderKind::Anthropic);
        let o = owner(vec![a, b.clone(), claude.clone()]);
        let mut attempts = o.attempts("gpt-4", OPENAI, Some(2), None, 3);
        assert_eq!(attempts.next(0).unwrap().key.id, b.id);
        let mut attempts = o.attempts("claude-3", ProviderKind::Anthropic, None, None, 3);
        assert_eq!(attempts.next(0).unwrap().key.id, claude.id);
        let mut attempts = o.attempts("claude-3", OPENAI, None, None, 3);
        assert!(matches!(
            attempts.next(0),
            Err(RouteError::WrongProtocol {
                served_by: "anthropic",
                ..
            })
        ));
        let mut attempts = o.attempts("llama", OPENAI, None, None, 3);
        assert_eq!(
            attempts.next(0).err(),
            Some(RouteError::NoProviderForModel("llama".into()))
        );
        // A mapped level without a key for the model fails rather than wander off.
        let mut attempts = o.attempts("gpt-4", OPENAI, Some(7), None, 3);
        assert!(attempts.next(0).is_err());
    }

    #[test]
    fn a_switch_over_cycle_ends() {
        let a = key(1, 1, &["*"], OPENAI);
        let b = key(2, 1, &["*"], OPENAI);
        let o = owner(vec![a, b]);
        let switch = BTreeMap::from([(1, 2), (2, 1)]);
        let mut attempts = o.attempts("m", OPENAI, None, Some(&switch), 1);
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
            let mut attempts = o.attempts("m1", OPENAI, mapped, Some(&switch), max);
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
}
