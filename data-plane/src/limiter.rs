//! Where limit counters live: in this process (embedded mode, or per replica when
//! Redis is away and the owner allows it) or in Redis, shared by every replica. Both
//! apply the arithmetic of `switchyard_core::limits`: admission reserves on every
//! counter of a request at once, all or nothing; settlement trues them up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use switchyard_core::limits::{self, Charge, Used};

/// Redis key prefix; the number changes with the counters' layout or the scripts'
/// meaning, so old and new data planes never share counters they read differently.
pub const KEY_VERSION: &str = "sy:l1:";

/// One round trip: check every counter, then reserve on all of them, or on none.
/// Returns 0 when admitted, else the 1-based index of the first counter that does
/// not fit. ARGV holds, per key: limit, reservation, expiry (Unix ms).
const ADMIT_LUA: &str = r"-- switchyard admit v1
local n = #KEYS
for i = 1, n do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current + tonumber(ARGV[3 * i - 1]) > tonumber(ARGV[3 * i - 2]) then
    return i
  end
end
for i = 1, n do
  local reserve = tonumber(ARGV[3 * i - 1])
  if reserve > 0 then
    redis.call('INCRBY', KEYS[i], reserve)
    redis.call('PEXPIREAT', KEYS[i], ARGV[3 * i])
  end
end
return 0
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
            Self::Local(l) => Ok(l.admit(charges, now_ms)),
            Self::Redis(r) => r.admit(charges).await,
        }
    }

    /// Settle without making the caller wait: in-process counters at once, Redis on
    /// a task of its own. A lost settlement leaves the reservation standing (counters
    /// over-count until the window ends, never under-count).
    pub fn settle_in_background(self: &Arc<Self>, charges: Vec<Charge>, used: Used, now_ms: i64) {
        match &**self {
            Self::Local(l) => l.settle(&charges, used, now_ms),
            Self::Redis(_) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                let limiter = self.clone();
                runtime.spawn(async move {
                    if let Err(e) = limiter.settle(&charges, used, now_ms).await {
                        tracing::warn!(error = %e, "limit settlement lost; the reservation stands until its window ends");
                    }
                });
            }
        }
    }

    pub async fn settle(
        &self,
        charges: &[Charge],
        used: Used,
        now_ms: i64,
    ) -> Result<(), LimiterError> {
        if charges.iter().all(|c| c.actual(used) == c.reserve) {
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

struct Counter {
    value: u64,
    expires_at_ms: i64,
}

/// Counters in this process. The lock is held for the arithmetic only (no IO, no
/// await); expired counters are swept at most once a minute.
#[derive(Default)]
pub struct LocalCounters {
    counters: Mutex<LocalState>,
}

#[derive(Default)]
struct LocalState {
    map: HashMap<String, Counter>,
    next_sweep_ms: i64,
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
    fn admit(&self, charges: &[Charge], now_ms: i64) -> Result<(), usize> {
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
            .map(|c| {
                state
                    .map
                    .get(&c.counter)
                    .filter(|v| v.expires_at_ms > now_ms)
                    .map_or(0, |v| v.value)
            })
            .collect();
        limits::admit(&current, charges)?;
        for (c, value) in charges.iter().zip(current) {
            if c.reserve > 0 {
                let counter = Counter {
                    value: value.saturating_add(c.reserve),
                    expires_at_ms: c.expires_at_ms,
                };
                put(&mut state.map, &c.counter, counter);
            }
        }
        Ok(())
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
            let current = state
                .map
                .get(&c.counter)
                .filter(|v| v.expires_at_ms > now_ms)
                .map_or(0, |v| v.value);
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
    connection: ConnectionManager,
    prefix: String,
    admit: redis::Script,
    settle: redis::Script,
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
        Ok(Self {
            connection,
            prefix: format!("{KEY_VERSION}{namespace}"),
            admit: redis::Script::new(ADMIT_LUA),
            settle: redis::Script::new(SETTLE_LUA),
            timeout,
        })
    }

    async fn admit(&self, charges: &[Charge]) -> Result<Result<(), usize>, LimiterError> {
        let mut call = self.admit.prepare_invoke();
        for c in charges {
            call.key(format!("{}{}", self.prefix, c.counter))
                .arg(c.limit)
                .arg(c.reserve)
                .arg(c.expires_at_ms);
        }
        let mut connection = self.connection.clone();
        let refused: usize = tokio::time::timeout(self.timeout, call.invoke_async(&mut connection))
            .await
            .map_err(|_| LimiterError::Unavailable("no answer in time".into()))??;
        Ok(match refused {
            0 => Ok(()),
            i => Err(i - 1),
        })
    }

    async fn settle(&self, charges: &[Charge], used: Used) -> Result<(), LimiterError> {
        let mut call = self.settle.prepare_invoke();
        for c in charges {
            call.key(format!("{}{}", self.prefix, c.counter))
                .arg(c.reserve)
                .arg(c.actual(used))
                .arg(c.expires_at_ms);
        }
        let mut connection = self.connection.clone();
        let _: i64 = tokio::time::timeout(self.timeout, call.invoke_async(&mut connection))
            .await
            .map_err(|_| LimiterError::Unavailable("no answer in time".into()))??;
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
