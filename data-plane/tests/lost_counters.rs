//! Rate windows after Redis lost its counters: every replica puts back what it
//! admitted in the current windows, so a window spent before the loss stays spent.
//! Two limiters sharing one real Redis stand for two data-plane replicas.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

mod common;

use std::time::Duration;

use switchyard_core::ids::AccountId;
use switchyard_core::limits::{AccountLimits, Charge, Reservation, Unit, Used};
use switchyard_core::model::ModelPattern;
use switchyard_core::policy::ModelLimit;
use switchyard_data_plane::limiter::{Limiter, LimiterError, RedisCounters};
use switchyard_tests::redis::RedisServer;

use common::{clock, flush};

fn replica(server: &RedisServer, namespace: &str) -> Limiter {
    Limiter::Redis(RedisCounters::open(&server.url(), namespace, Duration::from_secs(2)).unwrap())
}

/// An account with an RPM and, for `gpt*`, a TPM.
fn account(rpm: u32, tpm: u64) -> Vec<AccountLimits> {
    let pattern: ModelPattern = "gpt*".parse().unwrap();
    vec![AccountLimits {
        account: AccountId::new(),
        rpm: Some(rpm),
        model_limits: vec![(
            pattern,
            ModelLimit {
                rpm: None,
                tpm: Some(tpm),
            },
        )],
        credit: None,
    }]
}

fn charges(chain: &[AccountLimits], tokens: u64) -> Vec<Charge> {
    common::plan(
        chain,
        Reservation {
            tokens,
            cost_nanos: 0,
        },
    )
}

/// Admit as the proxy does: counters that lost their data are primed first (here
/// with no credit to rebuild), by whichever replica comes first.
async fn admit(limiter: &Limiter, c: &[Charge]) -> bool {
    let mut answer = limiter.admit(c, clock()).await;
    for _ in 0..5 {
        if !matches!(answer, Err(LimiterError::Unprimed)) {
            break;
        }
        limiter.prime(&[], clock()).await.unwrap();
        answer = limiter.admit(c, clock()).await;
    }
    answer.unwrap().is_ok()
}

/// Both replicas spend the minute's RPM between them, Redis loses every key, and
/// both keep calling: nothing more is admitted in that window, and the counter holds
/// the window's admissions again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_minute_stays_spent_after_redis_is_flushed() {
    let server = RedisServer::start().unwrap();
    let (a, b) = (replica(&server, "lost:"), replica(&server, "lost:"));
    let chain = account(60, 1_000_000);
    let mut before = 0;
    // Unevenly: 25 through one replica, the rest through the other.
    for i in 0..80 {
        let limiter = if i < 25 { &a } else { &b };
        before += usize::from(admit(limiter, &charges(&chain, 10)).await);
    }
    assert_eq!(before, 60);
    let rpm = charges(&chain, 10)[0].counter.clone();
    assert_eq!(a.admitted_here(&rpm), 25);
    assert_eq!(b.admitted_here(&rpm), 35);

    flush(&server).await;
    let mut after = 0;
    for i in 0..60 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        after += usize::from(admit(limiter, &charges(&chain, 10)).await);
    }
    assert_eq!(after, 0, "the window was spent before the loss");
    assert_eq!(a.value(&rpm).await.unwrap(), 60);
}

/// Only one replica keeps calling after the loss; the other, idle, still puts its
/// share back before the hold ends. A partly spent window admits only its rest.
/// TPM windows come back too, with settlements counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_replica_puts_its_share_back_and_only_the_rest_is_admitted() {
    let mut server = RedisServer::start().unwrap();
    let (a, b) = (replica(&server, "idle:"), replica(&server, "idle:"));
    let chain = account(50, 10_000);
    for _ in 0..10 {
        assert!(admit(&a, &charges(&chain, 100)).await);
    }
    for _ in 0..20 {
        let c = charges(&chain, 100);
        assert!(admit(&b, &c).await);
        // Each of b's calls used 150 tokens (more than it reserved).
        b.settle(
            &c,
            Used {
                tokens: 150,
                cost_nanos: 0,
            },
            clock(),
        )
        .await
        .unwrap();
    }
    let sample = charges(&chain, 100);
    let (rpm, tpm) = (sample[0].counter.clone(), sample[1].counter.clone());
    assert_eq!(sample[1].unit, Unit::Tokens);
    assert_eq!(a.value(&tpm).await.unwrap(), 10 * 100 + 20 * 150);

    // A restart that lost every key, rather than a flush.
    server.restart_empty().unwrap();
    let mut after = 0;
    for _ in 0..40 {
        after += usize::from(admit(&a, &charges(&chain, 100)).await);
    }
    // 30 of 50 requests were spent, 4,000 of 10,000 tokens: 20 more requests fit
    // (2,000 tokens), then the RPM refuses.
    assert_eq!(after, 20);
    assert_eq!(a.value(&rpm).await.unwrap(), 50);
    assert_eq!(a.value(&tpm).await.unwrap(), 4_000 + 20 * 100);
    assert_eq!(b.admitted_here(&rpm), 20, "b made no call since the loss");
}

/// Losses in a row: each new generation gets every share back once, never twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_are_put_back_once_per_loss() {
    let server = RedisServer::start().unwrap();
    let (a, b) = (replica(&server, "twice:"), replica(&server, "twice:"));
    let chain = account(100, 1_000_000);
    for i in 0..30 {
        assert!(admit(if i % 3 == 0 { &a } else { &b }, &charges(&chain, 1)).await);
    }
    let rpm = charges(&chain, 1)[0].counter.clone();
    for round in 0..3 {
        flush(&server).await;
        assert!(admit(&b, &charges(&chain, 1)).await, "round {round}");
        assert!(admit(&a, &charges(&chain, 1)).await, "round {round}");
        // Both replicas' admissions so far, counted once each.
        assert_eq!(
            a.value(&rpm).await.unwrap(),
            30 + 2 * (round + 1),
            "round {round}"
        );
    }
}
