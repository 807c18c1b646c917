//! Hostile values in usage events, on both stores: whatever one event holds, the
//! other events of its batch are stored, the bad one is set aside in the quarantine
//! with its reason, and the batch is acknowledged (so it is never sent again).

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

mod common;

use std::time::Duration;

use common::{Collector, event};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use switchyard_core::ids::AccountId;
use switchyard_proto::v1 as pb;
use switchyard_runtime::now_ms;
use switchyard_usage_collector::store::{Granularity, RollupBy, RollupFilter, Stored, UsageStore};
use switchyard_usage_collector::writer::Writer;

switchyard_tests::every_backend!(
    hostile_values_are_quarantined_and_the_rest_arrives,
    what_the_store_itself_refuses_is_set_aside
);

/// The text fields of a wire event a hostile value can land in.
const FIELDS: usize = 7;

fn poison(e: &mut pb::UsageEvent, field: usize, value: String) {
    match field {
        0 => e.model_requested = value,
        1 => e.model_served = value,
        2 => e.path = value,
        3 => e.client_addr = value,
        4 => e.id = value,
        5 => e.issued_key_id = value,
        _ => e.provider_key_id = value,
    }
}

/// Values no store may be handed: control characters (NUL first), text past every
/// bound, whitespace in names; and arbitrary text, which may or may not be fine.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,8}\u{0}[a-z]{0,8}",
        "[a-z]{0,4}[\u{1}-\u{1f}\u{7f}\u{80}-\u{9f}][a-z]{0,4}",
        "[a-zA-Z0-9\u{4e00}-\u{4e10}]{201,700}",
        "[a-z]{1,5} [a-z]{1,5}",
        any::<String>(),
    ]
}

/// Cases drawn once, deterministically, so a failure names the same values again.
fn cases(n: u32) -> Vec<(usize, String)> {
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: n,
            ..Config::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let strategy = (0..FIELDS, hostile());
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

async fn hostile_values_are_quarantined_and_the_rest_arrives(url: &str) {
    let mut collector = Collector::start(url, 30).await.unwrap();
    let attacker = AccountId::new();
    let neighbour = AccountId::new();
    let now = now_ms();
    let mut batches = Vec::new();
    let mut bad = 0u32;
    let mut sent_good = 0u64;
    for (seq, (field, value)) in (1u64..).zip(cases(48)) {
        let mut poisoned = switchyard_wire::encode_event(event(attacker, now));
        poison(&mut poisoned, field, value);
        if switchyard_wire::decode_event(poisoned.clone()).is_err() {
            bad += 1;
        }
        let good: Vec<_> = (0..3)
            .map(|_| switchyard_wire::encode_event(event(neighbour, now)))
            .collect();
        sent_good += 3;
        // The bad event sits between good ones.
        let mut events = vec![good[0].clone(), poisoned, good[1].clone()];
        events.push(good[2].clone());
        batches.push(pb::UsageBatch { seq, events });
    }
    assert!(bad >= 40, "the cases must be mostly hostile: {bad} of 48");
    let count = batches.len();
    let mut acks = collector
        .client
        .ingest(tokio_stream::iter(batches.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut rejected = 0;
    for want in 1..=count as u64 {
        let ack = tokio::time::timeout(Duration::from_secs(30), acks.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(ack.seq, want);
        assert!(
            ack.stored >= 3,
            "the good events of batch {want} are stored"
        );
        rejected += ack.rejected;
    }
    assert_eq!(rejected, bad, "every refused event is counted in the acks");
    drop(acks);

    // A replay of every batch adds nothing anywhere: not to the rollups, not to the
    // quarantine.
    let mut acks = collector
        .client
        .ingest(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..count {
        let ack = acks.message().await.unwrap().unwrap();
        assert_eq!(ack.stored, 0, "a replay stores nothing new");
    }
    drop(acks);
    collector.stop().await;

    let store = UsageStore::open(url).await.unwrap();
    let day = switchyard_core::time::UtcDay::of_unix_ms(now);
    let rows = store
        .rollups(&RollupFilter {
            main_account: Some(neighbour),
            accounts: vec![],
            children: vec![],
            model: None,
            by: RollupBy::Account,
            from_day: day,
            to_day: day,
            granularity: Granularity::Day,
        })
        .await
        .unwrap();
    let requests: u64 = rows.iter().map(|r| r.requests).sum();
    assert_eq!(
        requests as u64, sent_good,
        "the neighbour's usage all arrived"
    );
    let quarantined = store.quarantined(1000).await.unwrap();
    assert_eq!(
        quarantined.len() as u32,
        bad,
        "each refused event is quarantined once"
    );
    for q in &quarantined {
        assert!(!q.reason.is_empty());
        assert!(
            !q.event.chars().any(char::is_control) && !q.event_id.chars().any(char::is_control),
            "the quarantine holds printable text only: {q:?}"
        );
    }
}

/// A value that passes every check and still cannot be stored (here a NUL, which
/// PostgreSQL refuses in text, handed to the writer directly) is found and set
/// aside; the rest of its group is stored.
async fn what_the_store_itself_refuses_is_set_aside(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let writer = Writer::start(store.clone());
    let main = AccountId::new();
    let now = now_ms();
    let good = event(main, now);
    let mut nul = event(main, now);
    nul.model_served = "gpt\u{0}x".into();
    let landed = writer.store(vec![good.clone(), nul]).await.unwrap();
    if url.starts_with("postgres") {
        assert_eq!(
            landed,
            Stored {
                new: 1,
                duplicates: 0,
                quarantined: 1
            }
        );
        let q = store.quarantined(10).await.unwrap();
        assert_eq!(q.len(), 1);
        assert!(q[0].reason.starts_with("store_refused"), "{q:?}");
        assert!(q[0].event.contains(r"gpt\0x"), "{q:?}");
    } else {
        // SQLite holds a NUL in text: nothing to set aside.
        assert_eq!(landed.new + landed.quarantined, 2);
    }
    // The good event is stored exactly once, whatever happened beside it.
    let again = writer.store(vec![good]).await.unwrap();
    assert_eq!((again.new, again.duplicates), (0, 1));
}
