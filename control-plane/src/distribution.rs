//! Snapshot distribution: one data plane's `Sync` stream. Out go the publisher's
//! snapshots (whole, or as deltas) and the data-plane count; in come what the data
//! plane applied or refused, its requests for a whole snapshot, and its keys' health.

use std::pin::Pin;

use futures_util::Stream;
use switchyard_core::ids::ProviderKeyId;
use switchyard_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::publisher::Publisher;
use crate::store::{KeyHealthReport, Store};

/// What a data plane receives on its `Sync` stream.
pub type SyncStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotUpdate, Status>> + Send>>;

/// Serve one data plane's `Sync` stream: read its `Hello`, then send snapshots and
/// record its reports until it goes away.
pub async fn sync(
    publisher: Publisher,
    store: Store,
    mut inbound: Streaming<pb::SyncRequest>,
) -> Result<SyncStream, Status> {
    let hello = match inbound.message().await? {
        Some(pb::SyncRequest {
            kind: Some(pb::sync_request::Kind::Hello(h)),
        }) => h,
        _ => {
            return Err(Status::invalid_argument(
                "the first message must be a Hello",
            ));
        }
    };
    if hello.replica_id.is_empty() || hello.replica_id.len() > 200 {
        return Err(Status::invalid_argument(
            "replica_id must be 1-200 characters",
        ));
    }
    let replica = hello.replica_id;
    tracing::info!(replica = %replica, have_version = hello.have_version, "data plane connected");
    publisher
        .record_replica(&replica, |s| {
            s.applied_version = hello.have_version;
            s.key_ids = hello.key_ids;
        })
        .await;
    publisher.count_data_planes().await;

    let (tx, rx) = mpsc::channel(4);
    let (need_full, mut full_wanted) = mpsc::channel::<()>(1);
    let mut snapshots = publisher.subscribe();
    let mut data_planes = publisher.data_planes();
    // Outbound: the current snapshot whole, then each newer one as a delta from
    // the one sent before when there is one, else whole; every one with the
    // data-plane count, which also goes alone when only it changed.
    let send_replica = replica.clone();
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        loop {
            let next = snapshots.borrow_and_update().clone();
            let live_data_planes = *data_planes.borrow_and_update();
            if let Some(published) = next.filter(|p| p.full.version > sent) {
                let update = match &published.delta {
                    Some(d) if sent != 0 && d.base_version == sent => pb::SnapshotUpdate {
                        full: None,
                        delta: Some(d.clone()),
                        live_data_planes,
                    },
                    _ => pb::SnapshotUpdate {
                        full: Some(published.full.clone()),
                        delta: None,
                        live_data_planes,
                    },
                };
                let whole = update.full.is_some();
                sent = published.full.version;
                if tx.send(Ok(update)).await.is_err() {
                    return;
                }
                tracing::debug!(replica = %send_replica, version = sent, whole, "snapshot sent");
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                changed = data_planes.changed() => {
                    if changed.is_err() { return }
                    let live_data_planes = *data_planes.borrow_and_update();
                    let count = pb::SnapshotUpdate { full: None, delta: None, live_data_planes };
                    if tx.send(Ok(count)).await.is_err() {
                        return;
                    }
                }
                wanted = full_wanted.recv() => match wanted {
                    // Sent again whole, from the top of the loop.
                    Some(()) => sent = 0,
                    None => return,
                },
            }
        }
    });
    // Inbound: what the data plane applied or refused, and its keys' health.
    tokio::spawn(async move {
        loop {
            match inbound.message().await {
                Ok(Some(pb::SyncRequest {
                    kind: Some(pb::sync_request::Kind::Applied(a)),
                })) => {
                    publisher
                        .record_replica(&replica, |s| s.applied_version = a.version)
                        .await;
                    tracing::debug!(replica = %replica, version = a.version, "snapshot applied");
                }
                Ok(Some(pb::SyncRequest {
                    kind: Some(pb::sync_request::Kind::Rejected(r)),
                })) => {
                    tracing::error!(replica = %replica, version = r.version, reason = %r.reason, "data plane refused a snapshot");
                    publisher
                        .record_replica(&replica, |s| s.last_rejection = Some(r.reason))
                        .await;
                }
                Ok(Some(pb::SyncRequest {
                    kind: Some(pb::sync_request::Kind::Health(h)),
                })) => {
                    let reports = health_reports(h);
                    for r in &reports {
                        tracing::info!(replica = %replica, provider_key = %r.id, health = r.health, "provider key health reported");
                    }
                    if let Err(e) = store.record_key_health(&reports).await {
                        tracing::warn!(replica = %replica, error = %e, "cannot store provider key health");
                    }
                }
                Ok(Some(pb::SyncRequest {
                    kind: Some(pb::sync_request::Kind::NeedFull(n)),
                })) => {
                    tracing::warn!(replica = %replica, have_version = n.have_version, reason = %n.reason, "data plane asks for the whole snapshot");
                    // A request already pending will do.
                    let _ = need_full.try_send(());
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        sender.abort();
        publisher.forget_replica(&replica).await;
        publisher.count_data_planes().await;
        tracing::info!(replica = %replica, "data plane disconnected");
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Reports read from one message at most; a data plane sends only changes.
const MAX_HEALTH_REPORTS: usize = 10_000;

/// A data plane's health report as store rows: unreadable ids and unspecified states
/// are skipped (the rest of the report still counts).
fn health_reports(report: pb::HealthReport) -> Vec<KeyHealthReport> {
    report
        .keys
        .into_iter()
        .take(MAX_HEALTH_REPORTS)
        .filter_map(|k| {
            let id = k.provider_key_id.parse::<ProviderKeyId>().ok()?;
            let (health, resting) = match pb::KeyHealthState::try_from(k.state).ok()? {
                pb::KeyHealthState::Unspecified => return None,
                pb::KeyHealthState::Healthy => ("healthy", false),
                pb::KeyHealthState::CoolingDown => ("cooling_down", true),
                pb::KeyHealthState::Unhealthy => ("unhealthy", true),
            };
            Some(KeyHealthReport {
                id,
                health,
                until_ms: resting.then_some(k.until_unix_ms),
            })
        })
        .collect()
}
