//! The snapshot stream as a data plane sees it on the wire: the whole snapshot
//! first, then each change as a delta from the version sent before; the whole one
//! again when the data plane asks for it.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::Duration;

use prost::Message;
use serde_json::json;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_tests::system::start_system;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn say(kind: pb::sync_request::Kind) -> pb::SyncRequest {
    pb::SyncRequest { kind: Some(kind) }
}

/// The next snapshot, whole or delta (updates carrying only the data-plane count,
/// sent as data planes come and go, are passed over).
async fn next(updates: &mut tonic::Streaming<pb::SnapshotUpdate>) -> pb::SnapshotUpdate {
    loop {
        let update = tokio::time::timeout(Duration::from_secs(10), updates.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if update.full.is_some() || update.delta.is_some() {
            return update;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_travel_as_deltas_and_the_whole_comes_on_request() {
    let sys = start_system(1 << 20).await;
    let channel = tonic::transport::Endpoint::from_shared(sys.control.url("grpc"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = SnapshotServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(4);
    tx.send(say(pb::sync_request::Kind::Hello(pb::Hello {
        replica_id: "probe".into(),
        have_version: 0,
        key_ids: vec!["k1".into()],
    })))
    .await
    .unwrap();
    let mut updates = client
        .sync(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    let first = next(&mut updates).await;
    let whole = first.full.unwrap();
    assert!(first.delta.is_none());
    tx.send(say(pb::sync_request::Kind::Applied(pb::Applied {
        version: whole.version,
    })))
    .await
    .unwrap();

    // One change: a delta from the version sent, carrying just that account.
    let (status, created) = sys
        .post("/x-users", &sys.root, json!({"name": "delta-probe"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let second = next(&mut updates).await;
    assert!(second.full.is_none());
    let delta = second.delta.unwrap();
    assert_eq!(delta.base_version, whole.version);
    assert!(delta.version > whole.version);
    let ids: Vec<&str> = delta
        .upsert_accounts
        .iter()
        .map(|a| a.id.as_str())
        .collect();
    assert_eq!(ids, [created["account"]["id"].as_str().unwrap()]);
    assert_eq!(delta.upsert_issued_keys.len(), 1);
    assert!(delta.encoded_len() < 1024, "{}", delta.encoded_len());

    // The data plane cannot use it (say it lost its base): the whole snapshot again.
    tx.send(say(pb::sync_request::Kind::NeedFull(pb::NeedFull {
        have_version: whole.version,
        reason: "lost the base".into(),
    })))
    .await
    .unwrap();
    let third = next(&mut updates).await;
    let again = third.full.unwrap();
    assert_eq!(again.version, delta.version);
    assert_eq!(again.accounts.len(), whole.accounts.len() + 1);

    // And deltas resume from that one.
    let (status, _) = sys
        .post("/x-users", &sys.root, json!({"name": "after"}))
        .await;
    assert_eq!(status, 201);
    let fourth = next(&mut updates).await;
    assert_eq!(fourth.delta.map(|d| d.base_version), Some(again.version));
}
