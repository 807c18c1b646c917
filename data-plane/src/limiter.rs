//! Where limit counters live: in this process (embedded mode, or per replica when
//! Redis is away and the owner allows it) or in Redis, shared by every replica. Both
//! apply the arithmetic of `switchyard_core::limits`: admission reserves on every
//! counter of a request at once, all or nothing; settlement trues them up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use switchyard_core::limits::{self, Charge, CounterValue, Used};
use tokio::sync::mpsc;

/// Redis key prefix; the number changes with the counters' layout or the scripts'
/// meaning, so old and new data planes never share counters they read differently.
pub const KEY_VERSION: &str = "sy:l2:";

/// Settlements waiting for the settling task; beyond this they are dropped (and
/// their reservations stand).
const SETTLE_QUEUE: usize = 65_536;
/// Most settlements sent in one script call.
const SETTLE_BATCH: usize = 64;

/// The key (under the prefix) whose presence says the credit counters were rebuilt
/// from the usage ledger since this Redis last started empty. It has no expiry, so
/// only a loss of Redis's data (or an eviction policy that ignores expiries) removes it.
const PRIMED_KEY: &str = "primed";

/// One round trip: check every counter, then reserve on all of them, or on none.
/// KEYS[1] is the primed marker; without it nothing is admitted (-1), since the
/// counters may have lost the period's spend. Returns 0 when admitted, else the
/// 1-based index of the first counter that does not fit. ARGV holds, per counter:
/// limit, reservation, expiry (Unix ms).
const ADMIT_LUA: &str = r"-- switchyard admit v2
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local n = #KEYS - 1
for i = 1, n do
  local current = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  if current + tonumber(ARGV[3 * i - 1]) > tonumber(ARGV[3 * i - 2]) then
    return i
  end
end
for i = 1, n do
  local reserve = tonumber(ARGV[3 * i - 1])
  if reserve > 0 then
    redis.call('INCRBY', KEYS[i + 1], reserve)
    redis.call('PEXPIREAT', KEYS[i + 1], ARGV[3 * i])
  end
end
return 0
";

/// One round trip, once per loss of data: add the rebuilt spend to each counter and
/// set the primed marker (KEYS[1], value ARGV[1]). A replica that comes second finds
/// the marker and changes nothing, so spend is never added twice. ARGV holds, per
/// counter after the first argument: value, expiry (Unix ms).
const PRIME_LUA: &str = r"-- switchyard prime v2
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
for i = 2, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[2 * i - 2])
  redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i - 1])
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
";

/// One round trip: replace each reservation by the actual amount, never below zero.
/// ARGV holds, per key: reserved, actual, expiry (Unix ms).
const SETTLE_LUA: &str = r"-- switchyard settle v1
for i = 1, #KEYS do
  local reserved = tonumber(ARGV[3 * i - 2])
  local actual = tonumber(ARGV[3 * i - 1])
  if actual ~= reserved then
    local value = tonumber(redis.call('GET', KEYS[i]) or '0') + actual - reserved
    if value < 0 then value = 0 end
    redis.call('SET', KEYS[i], string.format('%d', value), 'PXAT', ARGV[3 * i])
  end
end
return 0
";

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("the shared limit store is unreachable: {0}")]
    Unavailable(String),
    /// The counters started empty (a restart, a loss of Redis's data) and the period's
    /// spend has not been rebuilt into them yet.
    #[error("the limit counters have not been rebuilt from the usage ledger yet")]
    Unprimed,
}

impl From<redis::RedisError> for LimiterError {
    fn from(e: redis::RedisError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

pub enum Limiter {
    Local(LocalCounters),
    Redis(RedisCounters),
}

impl Limiter {
    /// A counter's value (for tests and diagnostics).
    pub async fn value(&self, counter: &str) -> Result<u64, LimiterError> {
        match self {
            Self::Local(l) => Ok(l.value(counter)),
            Self::Redis(r) => r.value(counter).await,
        }
    }

    /// Whether the counters hold the period's spend (see [`LimiterError::Unprimed`]).
    pub async fn is_primed(&self) -> Result<bool, LimiterError> {
        match self {
            Self::Local(l) => Ok(l.primed.load(Ordering::Acquire)),
            Self::Redis(r) => r.is_primed().await,
        }
    }

    /// Add rebuilt spend to the counters and mark them primed, unless another replica
    /// did first. `true`: this call primed them.
    pub async fn prime(&self, values: &[CounterValue], now_ms: i64) -> Result<bool, LimiterError> {
        match self {
            Self::Local(l) => Ok(l.prime(values, now_ms)),
            Self::Redis(r) => r.prime(values, now_ms).await,
        }
    }

    /// `Ok(Err(i))`: `charges[i]` does not fit, nothing was reserved.
    pub async fn admit(
        &self,
        charges: &[Charge],
        now_ms: i64,
    ) -> Result<Result<(), usize>, LimiterError> {
        if charges.is_empty() {
            return Ok(Ok(()));
        }
        match self {
            Self::Local(l) => l.admit(charges, now_ms),
            Self::Redis(r) => r.admit(charges).await,
        }
    }

    /// Settle without making the caller wait: in-process counters at once, Redis by
    /// the settling task, which sends what queued up meanwhile in one script call. A
    /// lost settlement leaves the reservation standing (counters over-count until the
    /// window ends, never under-count).
    pub fn settle_in_background(&self, charges: Vec<Charge>, used: Used, now_ms: i64) {
        if settles_nothing(&charges, used) {
            return;
        }
        match self {
            Self::Local(l) => l.settle(&charges, used, now_ms),
            Self::Redis(r) => r.settle_later(charges, used),
        }
    }

    pub async fn settle(
        &self,
        charges: &[Charge],
        used: Used,
        now_ms: i64,
    ) -> Result<(), LimiterError> {
        if settles_nothing(charges, used) {
            return Ok(());
        }
        match self {
            Self::Local(l) => {
                l.settle(charges, used, now_ms);
                Ok(())
            }
            Self::Redis(r) => r.settle(charges, used).await,
        }
    }
}

/// Every counter keeps what was reserved: settlement has nothing to change.
fn settles_nothing(charges: &[Charge], used: Used) -> bool {
    charges.iter().all(|c| c.actual(used) == c.reserve)
}

struct Counter {
    value: u64,
    expires_at_ms: i64,
}

/// Counters in this process. The lock is held for the arithmetic only (no IO, no
/// await); expired counters are swept at most once a minute.
#[derive(Default)]
pub struct LocalCounters {
    counters: Mutex<LocalState>,
    primed: AtomicBool,
}

#[derive(Default)]
struct LocalState {
    map: HashMap<String, Counter>,
    next_sweep_ms: i64,
}

/// A counter's value, zero once its window has passed.
fn live_value(map: &HashMap<String, Counter>, name: &str, now_ms: i64) -> u64 {
    map.get(name)
        .filter(|c| c.expires_at_ms > now_ms)
        .map_or(0, |c| c.value)
}

/// Set a counter; its name is copied only the first time it is seen.
fn put(map: &mut HashMap<String, Counter>, name: &str, counter: Counter) {
    match map.get_mut(name) {
        Some(existing) => *existing = counter,
        None => {
            map.insert(name.to_owned(), counter);
        }
    }
}

impl LocalCounters {
    /// Counters that need no rebuild: a replica's stand-in share while the shared
    /// store is away, which starts from nothing by design.
    pub fn primed() -> Self {
        Self {
            primed: AtomicBool::new(true),
            ..Self::default()
        }
    }

    fn prime(&self, values: &[CounterValue], now_ms: i64) -> bool {
        let mut state = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.primed.load(Ordering::Acquire) {
            return false;
        }
        for v in values {
            let current = live_value(&state.map, &v.counter, now_ms);
            let counter = Counter {
                value: current.saturating_add(v.value),
                expires_at_ms: v.expires_at_ms,
            };
            put(&mut state.map, &v.counter, counter);
        }
        self.primed.store(true, Ordering::Release);
        true
    }

    fn admit(&self, charges: &[Charge], now_ms: i64) -> Result<Result<(), usize>, LimiterError> {
        if !self.primed.load(Ordering::Acquire) {
            return Err(LimiterError::Unprimed);
        }
        let mut state = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now_ms >= state.next_sweep_ms {
            state.map.retain(|_, c| c.expires_at_ms > now_ms);
            state.next_sweep_ms = now_ms + 60_000;
        }
        let current: Vec<u64> = charges
            .iter()
            .map(|c| live_value(&state.map, &c.counter, now_ms))
            .collect();
        if let Err(i) = limits::admit(&current, charges) {
            return Ok(Err(i));
        }
        for (c, value) in charges.iter().zip(current) {
            if c.reserve > 0 {
                let counter = Counter {
                    value: value.saturating_add(c.reserve),
                    expires_at_ms: c.expires_at_ms,
                };
                put(&mut state.map, &c.counter, counter);
            }
        }
        Ok(Ok(()))
    }

    fn settle(&self, charges: &[Charge], used: Used, now_ms: i64) {
        let mut state = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in charges {
            let actual = c.actual(used);
            if actual == c.reserve {
                continue;
            }
            let current = live_value(&state.map, &c.counter, now_ms);
            let counter = Counter {
                value: limits::settle(current, c.reserve, actual),
                expires_at_ms: c.expires_at_ms,
            };
            put(&mut state.map, &c.counter, counter);
        }
    }

    /// A counter's value (for tests and diagnostics).
    pub fn value(&self, counter: &str) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .get(counter)
            .map_or(0, |c| c.value)
    }
}

/// Counters in Redis, shared by every replica: one script call per admission and
/// one per settlement, each covering every counter of the request.
#[derive(Clone)]
pub struct RedisCounters {
    /// Feeds the settling task (`None` outside a runtime, or in that task's own copy).
    settlements: Option<mpsc::Sender<(Vec<Charge>, Used)>>,
    connection: ConnectionManager,
    prefix: String,
    primed_key: String,
    admit: redis::Script,
    settle: redis::Script,
    prime: redis::Script,
    timeout: Duration,
}

impl RedisCounters {
    /// Counters in the Redis at `url`; `namespace` separates deployments (and tests)
    /// sharing one Redis. Connects on first use and reconnects by itself, so a data
    /// plane starts (and applies its policy for an absent Redis) while Redis is away.
    pub fn open(url: &str, namespace: &str, timeout: Duration) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        let mut counters = Self {
            settlements: None,
            connection,
            prefix: format!("{KEY_VERSION}{namespace}"),
            primed_key: format!("{KEY_VERSION}{namespace}{PRIMED_KEY}"),
            admit: redis::Script::new(ADMIT_LUA),
            settle: redis::Script::new(SETTLE_LUA),
            prime: redis::Script::new(PRIME_LUA),
            timeout,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (tx, rx) = mpsc::channel(SETTLE_QUEUE);
            runtime.spawn(counters.clone().settle_queued(rx));
            counters.settlements = Some(tx);
        }
        Ok(counters)
    }

    fn settle_later(&self, charges: Vec<Charge>, used: Used) {
        let queued = self
            .settlements
            .as_ref()
            .is_some_and(|q| q.try_send((charges, used)).is_ok());
        if !queued {
            tracing::warn!(
                "limit settlement queue full; the reservation stands until its window ends"
            );
        }
    }

    /// Send queued settlements, as many as are waiting (up to a bound) in one script
    /// call: under load one round trip settles many calls. Ends when every sender is gone.
    async fn settle_queued(self, mut queue: mpsc::Receiver<(Vec<Charge>, Used)>) {
        let mut batch = Vec::with_capacity(SETTLE_BATCH);
        while queue.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
            let mut call = self.settle.prepare_invoke();
            for (charges, used) in &batch {
                self.add_settlement(&mut call, charges, *used);
            }
            if let Err(e) = self.invoke::<i64>(&call).await {
                tracing::warn!(error = %e, calls = batch.len(), "limit settlements lost; their reservations stand until their windows end");
            }
            batch.clear();
        }
    }

    fn add_settlement(
        &self,
        call: &mut redis::ScriptInvocation<'_>,
        charges: &[Charge],
        used: Used,
    ) {
        for c in charges {
            let actual = c.actual(used);
            if actual != c.reserve {
                call.key(format!("{}{}", self.prefix, c.counter))
                    .arg(c.reserve)
                    .arg(actual)
                    .arg(c.expires_at_ms);
            }
        }
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, LimiterError> {
        Ok(tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| LimiterError::Unavailable("no answer in time".into()))??)
    }

    /// Run a script, once more when the connection broke under it: after Redis
    /// restarts, the first call finds the old connection dead and the manager
    /// reconnects. A retried admission that had run is counted twice, which errs on
    /// the side of the limit.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, LimiterError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, call.invoke_async(&mut connection)).await {
            Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error() => {
                let mut connection = self.connection.clone();
                self.bounded(call.invoke_async(&mut connection)).await
            }
            Ok(answer) => Ok(answer?),
            Err(_) => Err(LimiterError::Unavailable("no answer in time".into())),
        }
    }

    async fn is_primed(&self) -> Result<bool, LimiterError> {
        let mut connection = self.connection.clone();
        let query = redis::cmd("EXISTS").arg(&self.primed_key).to_owned();
        let n: i64 = self.bounded(query.query_async(&mut connection)).await?;
        Ok(n == 1)
    }

    async fn prime(&self, values: &[CounterValue], now_ms: i64) -> Result<bool, LimiterError> {
        let mut call = self.prime.prepare_invoke();
        call.key(&self.primed_key).arg(now_ms);
        for v in values {
            call.key(format!("{}{}", self.prefix, v.counter))
                .arg(v.value)
                .arg(v.expires_at_ms);
        }
        let primed: i64 = self.invoke(&call).await?;
        Ok(primed == 1)
    }

    async fn admit(&self, charges: &[Charge]) -> Result<Result<(), usize>, LimiterError> {
        let mut call = self.admit.prepare_invoke();
        call.key(&self.primed_key);
        for c in charges {
            call.key(format!("{}{}", self.prefix, c.counter))
                .arg(c.limit)
                .arg(c.reserve)
                .arg(c.expires_at_ms);
        }
        let refused: i64 = self.invoke(&call).await?;
        match refused {
            0 => Ok(Ok(())),
            -1 => Err(LimiterError::Unprimed),
            i => usize::try_from(i - 1)
                .map(Err)
                .map_err(|_| LimiterError::Unavailable(format!("unexpected answer {i}"))),
        }
    }

    async fn settle(&self, charges: &[Charge], used: Used) -> Result<(), LimiterError> {
        let mut call = self.settle.prepare_invoke();
        self.add_settlement(&mut call, charges, used);
        let _: i64 = self.invoke(&call).await?;
        Ok(())
    }

    /// A counter's value (for tests and diagnostics).
    pub async fn value(&self, counter: &str) -> Result<u64, LimiterError> {
        let mut connection = self.connection.clone();
        let v: Option<u64> = redis::cmd("GET")
            .arg(format!("{}{counter}", self.prefix))
            .query_async(&mut connection)
            .await?;
        Ok(v.unwrap_or(0))
    }
}
