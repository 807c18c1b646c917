//! The limiters, every scenario against the in-process counters and against a real
//! Redis; and the Redis scripts checked against the pure arithmetic on the same inputs.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::ids::AccountId;
use switchyard_core::limits::{
    self, AccountLimits, Charge, CounterValue, LimitKind, Reservation, Unit, Used,
};
use switchyard_core::policy::{CreditLimit, Period};
use switchyard_core::snapshot::{Compiled, Snapshot};
use switchyard_data_plane::limiter::{
    Counted, Limiter, LimiterError, LocalCounters, RedisCounters,
};
use switchyard_data_plane::rebuild::Rebuilder;
use switchyard_tests::redis::RedisServer;

use common::clock;

/// A limiter of each kind for one scenario; keeps its Redis alive while in use.
struct Backend {
    limiter: Arc<Limiter>,
    server: Option<RedisServer>,
}

fn local() -> Backend {
    Backend {
        limiter: Arc::new(Limiter::Local(LocalCounters::default())),
        server: None,
    }
}

fn redis() -> Backend {
    let server = RedisServer::start().unwrap();
    let counters = RedisCounters::open(&server.url(), "test:", Duration::from_secs(2)).unwrap();
    Backend {
        limiter: Arc::new(Limiter::Redis(counters)),
        server: Some(server),
    }
}

macro_rules! every_limiter {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn in_process() {
                    let b = super::local();
                    super::primed(&b.limiter).await;
                    super::$scenario(b.limiter.clone()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    let b = super::redis();
                    super::primed(&b.limiter).await;
                    super::$scenario(b.limiter.clone()).await;
                }
            }
        )+
    };
}

/// Counters that start from nothing to rebuild, as after the first start.
async fn primed(limiter: &Limiter) {
    assert!(limiter.prime(&[], clock()).await.unwrap());
}

every_limiter!(
    an_rpm_cap_admits_exactly_its_number,
    parent_credit_binds_the_sum_of_its_children,
    settlement_replaces_the_reservation,
    settlements_in_the_background_all_arrive
);

fn account(rpm: Option<u32>, credit: Option<u64>) -> AccountLimits {
    AccountLimits {
        account: AccountId::new(),
        rpm,
        model_limits: Vec::new(),
        credit: credit.map(|limit_nanos| CreditLimit {
            limit_nanos,
            period: Period::Day,
        }),
    }
}

fn charges(chain: &[AccountLimits], cost: u64) -> Vec<Charge> {
    common::plan(
        chain,
        Reservation {
            tokens: 0,
            cost_nanos: cost,
        },
    )
}

/// `n` admissions at once of `cost` each, taking the chains in turn: how many fit.
async fn admitted_at_once(
    limiter: &Arc<Limiter>,
    chains: &[Arc<Vec<AccountLimits>>],
    n: usize,
    cost: u64,
) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let limiter = limiter.clone();
            let chain = chains[i % chains.len()].clone();
            tokio::spawn(async move {
                let c = charges(&chain, cost);
                limiter.admit(&c, clock()).await.unwrap().is_ok()
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    admitted
}

async fn an_rpm_cap_admits_exactly_its_number(limiter: Arc<Limiter>) {
    let chain = Arc::new(vec![account(Some(60), None)]);
    let admitted = admitted_at_once(&limiter, std::slice::from_ref(&chain), 200, 0).await;
    assert_eq!(admitted, 60);
    let counter = &charges(&chain, 0)[0].counter;
    assert_eq!(limiter.value(counter).await.unwrap(), 60);
}

async fn parent_credit_binds_the_sum_of_its_children(limiter: Arc<Limiter>) {
    let parent = account(None, Some(1_000));
    let a = Arc::new(vec![account(None, Some(800)), parent.clone()]);
    let b = Arc::new(vec![account(None, Some(800)), parent.clone()]);
    let admitted = admitted_at_once(&limiter, &[a.clone(), b], 60, 100).await;
    // The parent's 1,000 holds ten reservations of 100, whichever child made them.
    assert_eq!(admitted, 10);
    let parent_counter = charges(&a, 100)[1].counter.clone();
    assert_eq!(limiter.value(&parent_counter).await.unwrap(), 1_000);
    // A child alone is bound by its own 800 before its parent's 1,000.
    let solo_parent = account(None, Some(1_000));
    let child = vec![account(None, Some(800)), solo_parent];
    let mut solo = 0;
    for _ in 0..12 {
        solo += usize::from(
            limiter
                .admit(&charges(&child, 100), clock())
                .await
                .unwrap()
                .is_ok(),
        );
    }
    assert_eq!(solo, 8);
    let refused = limiter.admit(&charges(&child, 100), clock()).await.unwrap();
    assert_eq!(refused, Err(0), "the child's own cap is named first");
}

async fn settlement_replaces_the_reservation(limiter: Arc<Limiter>) {
    let chain = vec![account(Some(100), Some(1_000))];
    let c = charges(&chain, 300);
    assert_eq!(limiter.admit(&c, clock()).await.unwrap(), Ok(()));
    let credit = c
        .iter()
        .find(|c| matches!(c.kind, LimitKind::Credit(_)))
        .unwrap();
    assert_eq!(limiter.value(&credit.counter).await.unwrap(), 300);
    limiter
        .settle(
            &c,
            Used {
                tokens: 10,
                cost_nanos: 120,
            },
            clock(),
        )
        .await
        .unwrap();
    assert_eq!(limiter.value(&credit.counter).await.unwrap(), 120);
    // The request itself stays counted.
    assert_eq!(limiter.value(&c[0].counter).await.unwrap(), 1);
    // Used more than reserved: the counter shows it (the overshoot the bound allows).
    assert_eq!(limiter.admit(&c, clock()).await.unwrap(), Ok(()));
    limiter
        .settle(
            &c,
            Used {
                tokens: 0,
                cost_nanos: 900,
            },
            clock(),
        )
        .await
        .unwrap();
    assert_eq!(limiter.value(&credit.counter).await.unwrap(), 1_020);
    assert_eq!(limiter.admit(&c, clock()).await.unwrap(), Err(1));
}

/// Empty counters admit nothing until the period's spend is put back, and it is put
/// back once however many replicas try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_wait_for_their_rebuild_in_process() {
    let b = local();
    counters_wait_for_their_rebuild(&b.limiter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_wait_for_their_rebuild_in_redis() {
    let b = redis();
    counters_wait_for_their_rebuild(&b.limiter).await;
    // Redis loses its data: the marker goes with it, and admission waits again.
    common::flush(b.server.as_ref().unwrap()).await;
    assert!(!b.limiter.is_primed().await.unwrap());
    let chain = vec![account(None, Some(1_000))];
    assert!(matches!(
        b.limiter.admit(&charges(&chain, 1), clock()).await,
        Err(LimiterError::Unprimed)
    ));
}

async fn counters_wait_for_their_rebuild(limiter: &Limiter) {
    let chain = vec![account(None, Some(1_000))];
    let c = charges(&chain, 200);
    assert!(!limiter.is_primed().await.unwrap());
    assert!(matches!(
        limiter.admit(&c, clock()).await,
        Err(LimiterError::Unprimed)
    ));
    assert_eq!(
        limiter.value(&c[0].counter).await.unwrap(),
        0,
        "nothing reserved"
    );
    let spent = [CounterValue {
        counter: c[0].counter.clone(),
        value: 900,
        expires_at_ms: c[0].expires_at_ms,
    }];
    // Two replicas rebuild at once: one adds the spend, the other finds it done.
    let (first, second) = tokio::join!(
        limiter.prime(&spent, clock()),
        limiter.prime(&spent, clock())
    );
    assert!(first.unwrap() ^ second.unwrap());
    assert!(limiter.is_primed().await.unwrap());
    assert_eq!(limiter.value(&c[0].counter).await.unwrap(), 900);
    assert_eq!(limiter.admit(&c, clock()).await.unwrap(), Err(0));
    assert_eq!(
        limiter.admit(&charges(&chain, 100), clock()).await.unwrap(),
        Ok(())
    );
    assert_eq!(limiter.value(&c[0].counter).await.unwrap(), 1_000);
}

/// Settlements handed off without waiting (Redis sends queued ones together) all
/// land: the counter ends at what was used.
async fn settlements_in_the_background_all_arrive(limiter: Arc<Limiter>) {
    let chain = vec![account(None, Some(1_000_000))];
    let mut counter = String::new();
    for _ in 0..200 {
        let c = charges(&chain, 100);
        assert_eq!(limiter.admit(&c, clock()).await.unwrap(), Ok(()));
        counter.clone_from(&c[0].counter);
        limiter.settle_in_background(
            c,
            Used {
                tokens: 0,
                cost_nanos: 7,
            },
            clock(),
        );
    }
    switchyard_tests::wait::until_ok(
        Duration::from_secs(10),
        "the counter to reach 1400",
        async || match limiter.value(&counter).await.unwrap() {
            1_400 => Ok(()),
            other => Err(other),
        },
    )
    .await;
}

/// A small deterministic generator, so a failure replays.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// The Redis scripts and the in-process counters against the pure functions of
/// `switchyard_core::limits`, on the same random admissions and settlements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_scripts_mirror_the_pure_arithmetic() {
    let redis = redis();
    let local = local();
    primed(&redis.limiter).await;
    primed(&local.limiter).await;
    let counters: Vec<String> = (0..4).map(|i| format!("mirror:{i}")).collect();
    let mut model: HashMap<String, u64> = HashMap::new();
    let mut rng = Lcg(7);
    let mut admitted_charges: Vec<Vec<Charge>> = Vec::new();
    for step in 0..400 {
        if rng.next(3) > 0 || admitted_charges.is_empty() {
            // An admission on a random subset of counters.
            let mut c: Vec<Charge> = Vec::new();
            for name in &counters {
                if rng.next(2) == 0 {
                    c.push(Charge {
                        counter: name.clone(),
                        limit: 200 + rng.next(800),
                        reserve: rng.next(120),
                        unit: Unit::CostNanos,
                        expires_at_ms: clock() + 3_600_000,
                        window_end_ms: clock() + 60_000,
                        kind: LimitKind::Credit(Period::Day),
                        account: None,
                    });
                }
            }
            let current: Vec<u64> = c
                .iter()
                .map(|c| model.get(&c.counter).copied().unwrap_or(0))
                .collect();
            let expected = limits::admit(&current, &c);
            if expected.is_ok() {
                for x in &c {
                    *model.entry(x.counter.clone()).or_default() += x.reserve;
                }
            }
            // The values the caller's quota is read from: after the reservation when
            // admitted, as they stand when refused.
            let values: Vec<u64> = c
                .iter()
                .zip(&current)
                .map(|(x, v)| match expected {
                    Ok(()) => model.get(&x.counter).copied().unwrap_or(0),
                    Err(_) => *v,
                })
                .collect();
            let expected = Counted {
                verdict: expected,
                values,
            };
            let got_redis = redis.limiter.admit_counted(&c, clock()).await.unwrap();
            let got_local = local.limiter.admit_counted(&c, clock()).await.unwrap();
            assert_eq!(got_redis, expected, "redis, step {step}");
            assert_eq!(got_local, expected, "in-process, step {step}");
            let expected = expected.verdict;
            if expected.is_ok() && !c.is_empty() {
                admitted_charges.push(c);
            }
        } else {
            let i = usize::try_from(rng.next(admitted_charges.len() as u64)).unwrap();
            let c = admitted_charges.swap_remove(i);
            let used = Used {
                tokens: 0,
                cost_nanos: rng.next(200),
            };
            for x in &c {
                let v = model.entry(x.counter.clone()).or_default();
                *v = limits::settle(*v, x.reserve, x.actual(used));
            }
            redis.limiter.settle(&c, used, clock()).await.unwrap();
            local.limiter.settle(&c, used, clock()).await.unwrap();
        }
        for name in &counters {
            let expected = model.get(name).copied().unwrap_or(0);
            assert_eq!(
                redis.limiter.value(name).await.unwrap(),
                expected,
                "redis {name}, step {step}"
            );
            assert_eq!(
                local.limiter.value(name).await.unwrap(),
                expected,
                "in-process {name}, step {step}"
            );
        }
    }
}

/// Redis away: the call fails fast with an error the data plane turns into its
/// owner's policy, instead of hanging the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_an_error_not_a_wait() {
    let mut server = RedisServer::start().unwrap();
    let counters = RedisCounters::open(&server.url(), "test:", Duration::from_millis(300)).unwrap();
    let limiter = Limiter::Redis(counters);
    primed(&limiter).await;
    let chain = vec![account(Some(5), None)];
    assert_eq!(
        limiter.admit(&charges(&chain, 0), clock()).await.unwrap(),
        Ok(())
    );
    server.kill();
    let started = std::time::Instant::now();
    assert!(limiter.admit(&charges(&chain, 0), clock()).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// With the collector away, a failed rebuild is not retried by every call in turn:
/// calls in the moments after it get the error at once (their owner's store-down
/// policy then decides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rebuild_answers_the_next_calls_at_once() {
    let port = switchyard_tests::free_port().unwrap();
    let rebuilder = Rebuilder::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
    let limiter = Limiter::Local(LocalCounters::default());
    let snapshot = Compiled::build(Snapshot::default()).unwrap();
    let first = rebuilder.ensure_primed(&limiter, &snapshot, clock()).await;
    assert!(
        matches!(first, Err(LimiterError::Unavailable(_))),
        "{first:?}"
    );
    let second = rebuilder.ensure_primed(&limiter, &snapshot, clock()).await;
    match second {
        Err(LimiterError::Unavailable(why)) => assert!(why.contains("moments ago"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(!limiter.is_primed().await.unwrap());
}
