//! The collector's ingest over gRPC, in process on SQLite: acknowledgements count
//! what was stored, replayed and refused.

mod common;

use common::{Collector, event};
use switchyard_core::ids::AccountId;
use switchyard_proto::v1 as pb;
use switchyard_runtime::now_ms;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_the_retention_are_refused_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display());
    let mut collector = Collector::start(&url, 1).await.unwrap();
    let main = AccountId::new();
    let now = now_ms();
    let fresh = switchyard_wire::encode_event(event(main, now));
    let old = switchyard_wire::encode_event(event(main, now - 2 * 86_400_000));
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
    let mut acks = collector
        .client
        .ingest(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let first = acks.message().await.unwrap().unwrap();
    assert_eq!((first.seq, first.stored, first.rejected), (1, 1, 1));
    let replay = acks.message().await.unwrap().unwrap();
    assert_eq!((replay.seq, replay.stored, replay.duplicates), (2, 0, 1));
    drop(acks);
    collector.stop().await;
}
