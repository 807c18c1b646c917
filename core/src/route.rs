//! Route choice: which provider key serves a call, and what happens when one fails.
//!
//! A main account's provider keys are grouped by level. A call starts at the level
//! the LevelMapper names (else the lowest level that serves the model), tries the
//! level's keys that can take the call (active, of the call's protocol, serving its
//! model, awake) in weighted round-robin order over exactly those keys (one atomic
//! increment per level), at most a bounded number of times, then follows SwitchOver to the backup
//! level, then fails with the reason. When the call may be translated, keys of other
//! protocols serve it too, but only after the level's keys of its own protocol: a
//! level's translated keys are tried when none of its own can take the call. A failing key sleeps (its cool-down) without
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

    /// Whether key `i` serves `model` for a call of `kind`, translated when allowed.
    fn serves(&self, i: usize, model: &str, kind: ProviderKind, translate: bool) -> bool {
        let k = &self.keys[i];
        k.status == Status::Active
            && (k.kind == kind || translate)
            && model::any_matches(&k.models, model)
    }

    /// The lowest level with a key that may serve the call.
    fn first_level(
        &self,
        model: &str,
        kind: ProviderKind,
        translate: bool,
        own_credential: bool,
    ) -> Option<u32> {
        (0..self.keys.len())
            .find(|&i| {
                let k = &self.keys[i];
                self.serves(i, model, kind, translate)
                    && passthrough::may_serve(k.passthrough, k.kind, kind, own_credential)
            })
            .map(|i| self.keys[i].level)
    }

    /// Plan the attempts for one call of `kind`'s protocol (of a caller without its
    /// own credential; see [`Attempts::with_own_credential`]); with `translate`, keys
    /// of other protocols serve it too (after the level's own, see [`Attempts::next`]).
    pub fn attempts<'a>(
        &'a self,
        model: &'a str,
        kind: ProviderKind,
        translate: bool,
        mapped_level: Option<u32>,
        switch_over: Option<&'a BTreeMap<u32, u32>>,
        max_per_level: u32,
    ) -> Attempts<'a> {
        let level = mapped_level.or_else(|| self.first_level(model, kind, translate, false));
        Attempts {
            owner: self,
            model,
            kind,
            translate,
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
        "model {model:?} is served only by `{served_by}` provider keys, and this endpoint speaks the `{wanted}` protocol; translation between protocols is off for this account"
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

/// Which of a level's keys a round-robin pass picks from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Keys of the call's own protocol.
    Own,
    /// Keys of other protocols, the call translated.
    Translated,
}

/// The attempts of one call: same-level keys first, then switch-over levels.
pub struct Attempts<'a> {
    owner: &'a OwnerKeys,
    model: &'a str,
    kind: ProviderKind,
    /// Keys of other protocols may serve the call, translated.
    translate: bool,
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
            self.level =
                self.owner
                    .first_level(self.model, self.kind, self.translate, own_credential);
        }
        self
    }

    /// The next key to try, or why there is none. Within a level, keys of the call's
    /// own protocol come first; keys that would translate only when none of the
    /// level's own can take the call.
    pub fn next(&mut self, now_ms: i64) -> Result<Choice<'a>, RouteError> {
        let owner = self.owner;
        while let Some(level_no) = self.level {
            if self.tries_here < self.max_per_level
                && let Some(level) = owner.levels.get(&level_no)
                && let Some(i) = self.choose(level, Pass::Own, now_ms).or_else(|| {
                    self.translate
                        .then(|| self.choose(level, Pass::Translated, now_ms))
                        .flatten()
                })
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

    /// Whether key `i` may take this attempt now in `pass`; notes when a sleeping one
    /// wakes.
    fn eligible(&mut self, i: usize, pass: Pass, now_ms: i64) -> bool {
        let own = self.owner.keys[i].kind == self.kind;
        if own != (pass == Pass::Own)
            || self.tried.contains(&i)
            || !self.owner.serves(i, self.model, self.kind, self.translate)
        {
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
    fn choose(&mut self, level: &Level, pass: Pass, now_ms: i64) -> Option<usize> {
        let mut mask = 0u64;
        let mut total = 0u64;
        for (pos, &i) in level.members.iter().enumerate() {
            if self.eligible(i, pass, now_ms) {
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
                self.eligible(i, pass, now_ms)
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
                self.owner.keys[i].passthrough && self.owner.serves(i, self.model, self.kind, false)
            })
        {
            return RouteError::NeedsOwnCredential { model };
        }
        // Translation off: a key of another protocol serving the model names why.
        let other = self
            .owner
            .keys
            .iter()
            .find(|k| {
                !self.translate
                    && k.status == Status::Active
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
pub(crate) mod tests;

#[cfg(test)]
mod translation_tests;
