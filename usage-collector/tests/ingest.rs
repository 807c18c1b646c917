//! The collector's ingest over gRPC, in process on SQLite: acknowledgements count
//! what was stored, replayed and refused.

use std::time::Duration;

use switchyard_core::ids::{AccountId, EventId, IssuedKeyId};
use switchyard_core::usage::{TokenUsage, UsageEvent, UsageSource};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use switchyard_runtime::{bind, now_ms, shutdown_pair};
use switchyard_usage_collector::store::UsageStore;
use switchyard_usage_collector::{Listeners, Retention};

fn event(at_unix_ms: i64) -> UsageEvent {
    UsageEvent {
        id: EventId::new(),
        at_unix_ms,
        account_chain: vec![AccountId::new()],
        issued_key: IssuedKeyId::new(),
        provider_key: None,
        model_requested: "m".into(),
        model_served: "m".into(),
        level: 1,
        status: 200,
        latency_ms: 1,
        ttfb_ms: None,
        tokens: TokenUsage {
            input: 1,
            output: 1,
            cached: 0,
            cache_write: 0,
        },
        source: UsageSource::Reported,
        cost_nanos: 1,
        billed_nanos: 1,
        price_version: 1,
        path: "/v1/chat/completions".into(),
        client_addr: String::new(),
        streamed: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_the_retention_are_refused_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display());
    let store = UsageStore::open(&url).await.unwrap();
    let grpc = bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let (stop, shutdown) = shutdown_pair();
    let server = tokio::spawn(switchyard_usage_collector::run(
        store,
        Listeners {
            grpc,
            http: bind("127.0.0.1:0").await.unwrap(),
        },
        Some(Retention {
            keep_days: 1,
            every: Duration::from_secs(3600),
            leader: tokio::sync::watch::channel(true).1,
        }),
        shutdown,
    ));
    let mut client = UsageServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let now = now_ms();
    let fresh = switchyard_wire::encode_event(event(now));
    let old = switchyard_wire::encode_event(event(now - 2 * 86_400_000));
    let batches = vec![
        pb::UsageBatch {
            seq: 1,
            events: vec![fresh.clone(), old],
        },
        pb::UsageBatch {
            seq: 2,
            events: vec![fresh],
        },
    ];
    let mut acks = client
        .ingest(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let first = acks.message().await.unwrap().unwrap();
    assert_eq!((first.seq, first.stored, first.rejected), (1, 1, 1));
    let replay = acks.message().await.unwrap().unwrap();
    assert_eq!((replay.seq, replay.stored, replay.duplicates), (2, 0, 1));
    stop.trigger();
    drop(acks);
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
