//! Where limit counters live: in this process (embedded mode, or per replica when
//! Redis is away and the owner allows it) or in Redis, shared by every replica. Both
//! apply the arithmetic of `switchyard_core::limits`: admission reserves on every
//! counter of a request at once, all or nothing; settlement trues them up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use switchyard_core::limits::{self, Charge, CounterValue, Used};
use tokio::sync::mpsc;

use super::scripts::{ADMIT_LUA, PRIME_LUA, RESTORE_LUA, SETTLE_LUA};

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
/// Its value is the generation of the counters: a new one after every loss, so each
/// replica learns that it must put back its own share of the rate windows.
const PRIMED_KEY: &str = "primed";
/// The key (under the prefix) that holds admission back, for [`HOLD_MS`] after the
/// counters were primed, while every replica puts back its share of the rate windows.
const HOLD_KEY: &str = "restoring";
/// How long admission waits after a loss for the replicas' shares: several times the
/// period at which idle replicas look for a new generation, so every live replica
/// that can reach Redis has put its share back when it ends.
const HOLD_MS: u64 = 1_000;
/// How often a replica looks for a new generation (a loss it has not seen yet).
const WATCH_EVERY: Duration = Duration::from_millis(200);

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

/// What admission found, in the same step as its verdict.
#[derive(Debug, PartialEq, Eq)]
pub struct Counted {
    /// `Err(i)`: `charges[i]` does not fit, nothing was reserved.
    pub verdict: Result<(), usize>,
    /// Each charge's counter after the reservation (admitted) or as it stands
    /// (refused): what the caller's quota is read from.
    pub values: Vec<u64>,
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
        Ok(self.admit_counted(charges, now_ms).await?.verdict)
    }

    /// Admit, with the counters' values the same step read (one round trip).
    pub async fn admit_counted(
        &self,
        charges: &[Charge],
        now_ms: i64,
    ) -> Result<Counted, LimiterError> {
        if charges.is_empty() {
            return Ok(Counted {
                verdict: Ok(()),
                values: Vec::new(),
            });
        }
        match self {
            Self::Local(l) => l.admit(charges, now_ms),
            Self::Redis(r) => r.admit(charges, now_ms).await,
        }
    }

    /// What this replica admitted on `counter` through the shared store in the
    /// counter's window (zero for in-process counters and for credit).
    pub fn admitted_here(&self, counter: &str) -> u64 {
        match self {
            Self::Local(_) => 0,
            Self::Redis(r) => r.shares.amount(counter),
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
            Self::Redis(r) => {
                r.shares.settle(&charges, used);
                r.settle_later(charges, used);
            }
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
            Self::Redis(r) => {
                r.shares.settle(charges, used);
                r.settle(charges, used).await
            }
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

    fn admit(&self, charges: &[Charge], now_ms: i64) -> Result<Counted, LimiterError> {
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
        let mut values: Vec<u64> = charges
            .iter()
            .map(|c| live_value(&state.map, &c.counter, now_ms))
            .collect();
        if let Err(i) = limits::admit(&values, charges) {
            return Ok(Counted {
                verdict: Err(i),
                values,
            });
        }
        for (c, value) in charges.iter().zip(values.iter_mut()) {
            if c.reserve > 0 {
                *value = value.saturating_add(c.reserve);
                let counter = Counter {
                    value: *value,
                    expires_at_ms: c.expires_at_ms,
                };
                put(&mut state.map, &c.counter, counter);
            }
        }
        Ok(Counted {
            verdict: Ok(()),
            values,
        })
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
    hold_key: String,
    scripts: Arc<Scripts>,
    timeout: Duration,
    /// What this replica admitted in the current rate windows, and the generation of
    /// the counters it last put that share into.
    shares: Arc<WindowShares>,
    /// Held by every copy but the watcher's, which stops once all are gone.
    alive: Arc<()>,
}

/// The scripts, shared by every copy of the counters.
struct Scripts {
    admit: redis::Script,
    settle: redis::Script,
    prime: redis::Script,
    restore: redis::Script,
}

/// What one replica admitted through Redis in each rate window (RPM, TPM) that has
/// not ended: put back into the counters when Redis loses them. The request path
/// only reads the table and adds atomically; the write lock is taken the first time
/// a counter is seen in its window (its name is copied then, once).
#[derive(Default)]
pub(crate) struct WindowShares {
    table: RwLock<ShareTable>,
    /// The counters' generation this replica's share is in (0: none yet).
    generation: AtomicU64,
    /// One restore at a time in this process.
    restoring: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct ShareTable {
    map: HashMap<String, Share>,
    next_sweep_ms: i64,
}

struct Share {
    amount: AtomicU64,
    expires_at_ms: i64,
}

impl WindowShares {
    /// Count what an admission reserved on its rate counters.
    fn record(&self, charges: &[Charge], now_ms: i64) {
        let mut missing = false;
        {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            for c in charges.iter().filter(|c| c.is_rate() && c.reserve > 0) {
                match table.map.get(&c.counter) {
                    Some(share) => {
                        share.amount.fetch_add(c.reserve, Ordering::Relaxed);
                    }
                    None => missing = true,
                }
            }
        }
        if !missing {
            return;
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if now_ms >= table.next_sweep_ms {
            table.map.retain(|_, s| s.expires_at_ms > now_ms);
            table.next_sweep_ms = now_ms + 10_000;
        }
        for c in charges.iter().filter(|c| c.is_rate() && c.reserve > 0) {
            if !table.map.contains_key(&c.counter) {
                let share = Share {
                    amount: AtomicU64::new(c.reserve),
                    expires_at_ms: c.expires_at_ms,
                };
                table.map.insert(c.counter.clone(), share);
            }
        }
    }

    /// Mirror a settlement: the share keeps what the counter keeps.
    fn settle(&self, charges: &[Charge], used: Used) {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        for c in charges.iter().filter(|c| c.is_rate()) {
            let actual = c.actual(used);
            if actual == c.reserve {
                continue;
            }
            if let Some(share) = table.map.get(&c.counter) {
                let _ = share
                    .amount
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(limits::settle(v, c.reserve, actual))
                    });
            }
        }
    }

    fn amount(&self, counter: &str) -> u64 {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .get(counter)
            .map_or(0, |s| s.amount.load(Ordering::Relaxed))
    }

    /// This replica's share of every rate window that has not ended.
    fn restorable(&self, now_ms: i64) -> Vec<CounterValue> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        limits::restorable_shares(
            table.map.iter().map(|(name, s)| {
                (
                    name.as_str(),
                    s.amount.load(Ordering::Relaxed),
                    s.expires_at_ms,
                )
            }),
            now_ms,
        )
    }
}

/// A new generation of the counters: unique enough that two losses never share one
/// (the low bits of a v7 UUID are random), never 0.
fn new_generation() -> u64 {
    let (high, low) = uuid::Uuid::now_v7().as_u64_pair();
    (high ^ low).max(1)
}

/// What the admission script answered.
enum Admission {
    Admitted(Vec<u64>),
    Refused(usize, Vec<u64>),
    Unprimed,
    OtherGeneration,
    Holding,
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
            hold_key: format!("{KEY_VERSION}{namespace}{HOLD_KEY}"),
            scripts: Arc::new(Scripts {
                admit: redis::Script::new(ADMIT_LUA),
                settle: redis::Script::new(SETTLE_LUA),
                prime: redis::Script::new(PRIME_LUA),
                restore: redis::Script::new(RESTORE_LUA),
            }),
            timeout,
            shares: Arc::default(),
            alive: Arc::new(()),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (tx, rx) = mpsc::channel(SETTLE_QUEUE);
            runtime.spawn(counters.clone().settle_queued(rx));
            counters.settlements = Some(tx);
            // Holding no sender and no liveness of its own, the watcher keeps neither
            // itself nor the settling task alive.
            let watcher = Self {
                settlements: None,
                alive: Arc::new(()),
                ..counters.clone()
            };
            runtime.spawn(watcher.watch_generation(Arc::downgrade(&counters.alive)));
        }
        Ok(counters)
    }

    /// Put this replica's share back as soon as another replica primed the counters
    /// after a loss, even when no call comes here meanwhile: admission waits for the
    /// shares (the hold) only so long. Ends when the counters are dropped.
    async fn watch_generation(self, alive: Weak<()>) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 {
                return;
            }
            let Ok(Some(generation)) = self.generation().await else {
                continue;
            };
            if generation != self.shares.generation.load(Ordering::Acquire)
                && let Err(e) = self.restore_share(switchyard_runtime::now_ms()).await
            {
                tracing::debug!(error = %e, "rate windows not put back yet");
            }
        }
    }

    /// The counters' generation, `None` when they are not primed.
    async fn generation(&self) -> Result<Option<u64>, LimiterError> {
        let mut connection = self.connection.clone();
        let query = redis::cmd("GET").arg(&self.primed_key).to_owned();
        let value: Option<String> = self.bounded(query.query_async(&mut connection)).await?;
        value
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    LimiterError::Unavailable(format!("unreadable primed marker {v:?}"))
                })
            })
            .transpose()
    }

    /// Add this replica's share of the rate windows to the counters of the current
    /// generation, once per generation.
    async fn restore_share(&self, now_ms: i64) -> Result<(), LimiterError> {
        let _one = self.shares.restoring.lock().await;
        let Some(generation) = self.generation().await? else {
            return Err(LimiterError::Unprimed);
        };
        if generation == self.shares.generation.load(Ordering::Acquire) {
            return Ok(());
        }
        let values = self.shares.restorable(now_ms);
        let mut call = self.scripts.restore.prepare_invoke();
        call.key(&self.primed_key).arg(generation);
        self.counter_args(&mut call, &values);
        let restored: i64 = self.invoke(&call).await?;
        if restored == 1 {
            self.shares.generation.store(generation, Ordering::Release);
            if !values.is_empty() {
                tracing::warn!(
                    counters = values.len(),
                    "limit counters were lost; this replica's admissions in the current rate windows put back"
                );
            }
        }
        Ok(())
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
            let mut call = self.scripts.settle.prepare_invoke();
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

    /// Counters a script writes back: each one's key, then its value and expiry.
    fn counter_args<'v>(
        &self,
        call: &mut redis::ScriptInvocation<'_>,
        values: impl IntoIterator<Item = &'v CounterValue>,
    ) {
        for v in values {
            call.key(format!("{}{}", self.prefix, v.counter))
                .arg(v.value)
                .arg(v.expires_at_ms);
        }
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
        // Restores and primes of this process do not interleave: a share is put in
        // one generation once.
        let _one = self.shares.restoring.lock().await;
        let generation = new_generation();
        let mut call = self.scripts.prime.prepare_invoke();
        call.key(&self.primed_key)
            .key(&self.hold_key)
            .arg(generation)
            .arg(HOLD_MS);
        let own = self.shares.restorable(now_ms);
        self.counter_args(&mut call, values.iter().chain(&own));
        let primed: i64 = self.invoke(&call).await?;
        if primed == 1 {
            self.shares.generation.store(generation, Ordering::Release);
        }
        Ok(primed == 1)
    }

    /// Admit, putting this replica's share back first when the counters were lost
    /// and primed by another replica, and waiting out the hold that gives every
    /// replica time to do so.
    async fn admit(&self, charges: &[Charge], now_ms: i64) -> Result<Counted, LimiterError> {
        let give_up = tokio::time::Instant::now() + Duration::from_millis(2 * HOLD_MS);
        let mut restores = 0;
        loop {
            match self.admit_once(charges).await? {
                Admission::Admitted(values) => {
                    self.shares.record(charges, now_ms);
                    return Ok(Counted {
                        verdict: Ok(()),
                        values,
                    });
                }
                Admission::Refused(i, values) => {
                    return Ok(Counted {
                        verdict: Err(i),
                        values,
                    });
                }
                Admission::Unprimed => return Err(LimiterError::Unprimed),
                Admission::OtherGeneration if restores < 3 => {
                    restores += 1;
                    self.restore_share(now_ms).await?;
                }
                Admission::OtherGeneration => {
                    return Err(LimiterError::Unavailable(
                        "the limit counters keep changing generation".into(),
                    ));
                }
                Admission::Holding if tokio::time::Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Admission::Holding => {
                    return Err(LimiterError::Unavailable(
                        "the limit counters are being restored after a loss".into(),
                    ));
                }
            }
        }
    }

    async fn admit_once(&self, charges: &[Charge]) -> Result<Admission, LimiterError> {
        let mut call = self.scripts.admit.prepare_invoke();
        call.key(&self.primed_key)
            .key(&self.hold_key)
            .arg(self.shares.generation.load(Ordering::Acquire));
        for c in charges {
            call.key(format!("{}{}", self.prefix, c.counter))
                .arg(c.limit)
                .arg(c.reserve)
                .arg(c.expires_at_ms);
        }
        let mut answer: Vec<i64> = self.invoke(&call).await?;
        let verdict = answer.pop().unwrap_or(-4);
        // Counters never go below zero; the same allocation is reused in place.
        let values = || -> Vec<u64> {
            answer
                .into_iter()
                .map(|v| u64::try_from(v).unwrap_or(0))
                .collect()
        };
        match verdict {
            0 => Ok(Admission::Admitted(values())),
            -1 => Ok(Admission::Unprimed),
            -2 => Ok(Admission::OtherGeneration),
            -3 => Ok(Admission::Holding),
            i => usize::try_from(i - 1)
                .map(|i| Admission::Refused(i, values()))
                .map_err(|_| LimiterError::Unavailable(format!("unexpected answer {i}"))),
        }
    }

    async fn settle(&self, charges: &[Charge], used: Used) -> Result<(), LimiterError> {
        let mut call = self.scripts.settle.prepare_invoke();
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
