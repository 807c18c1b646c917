//! Follows the control plane's snapshot stream: decode, validate, build, swap, ack.
//! Reconnects with backoff; keeps serving the last good snapshot meanwhile. On the
//! same stream it reports provider keys whose health changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::ids::ProviderKeyId;
use switchyard_core::route::{HealthState, KeyHealth};
use switchyard_core::snapshot::{Compiled, ProviderKey};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_runtime::Shutdown;
use switchyard_runtime::now_ms;
use switchyard_wire::delta::apply;
use switchyard_wire::snapshot::decode;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::live::Live;
use crate::persist::SnapshotFile;

/// The newest applied snapshot, encoded, for the writer of the snapshot file.
pub type Persisted = tokio::sync::watch::Sender<Option<Arc<Vec<u8>>>>;

/// A task that keeps `file` holding the newest snapshot handed to the returned
/// sender. Writes happen off the runtime's threads, one at a time; a burst of
/// snapshots writes only the last.
pub fn persist_to(file: SnapshotFile) -> Persisted {
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<Arc<Vec<u8>>>>(None);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let Some(encoded) = rx.borrow_and_update().clone() else {
                continue;
            };
            let file = file.clone();
            match tokio::task::spawn_blocking(move || file.save(&encoded)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot persist the snapshot"),
                Err(e) => tracing::error!(error = %e, "snapshot writer failed"),
            }
        }
    });
    tx
}

const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;
/// How often key health is compared with what was last reported.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("control plane URL is invalid: {0}")]
    Url(String),
    #[error("cannot reach the control plane: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("snapshot stream failed: {0}")]
    Stream(#[from] tonic::Status),
}

/// Follow a control plane until shutdown; with `persisted`, every applied snapshot
/// is also handed to the snapshot file's writer. When a stream breaks, the next of
/// `urls` is tried at once; the backoff applies once every one of them failed.
pub async fn follow(
    urls: Vec<String>,
    replica_id: String,
    live: Arc<Live>,
    persisted: Option<Persisted>,
    shutdown: Shutdown,
) {
    let mut backoff = Duration::from_millis(100);
    let mut next = 0usize;
    loop {
        let Some(url) = urls.get(next % urls.len().max(1)) else {
            tracing::error!("no control plane URL to follow");
            return;
        };
        next = next.wrapping_add(1);
        let attempt = follow_once(url, &replica_id, &live, persisted.as_ref());
        tokio::select! {
            () = shutdown.clone().wait() => return,
            result = attempt => match result {
                Ok(()) => {
                    tracing::warn!("control plane closed the snapshot stream; reconnecting");
                    backoff = Duration::from_millis(100);
                }
                Err(e) => tracing::warn!(error = %e, version = live.version(), "snapshot stream down; serving the last good snapshot"),
            },
        }
        live.set_following(false);
        if !next.is_multiple_of(urls.len()) {
            continue;
        }
        tokio::select! {
            () = shutdown.clone().wait() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow_once(
    url: &str,
    replica_id: &str,
    live: &Live,
    persisted: Option<&Persisted>,
) -> Result<(), SyncError> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|_| SyncError::Url(url.to_owned()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let mut client =
        SnapshotServiceClient::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);
    let (tx, rx) = mpsc::channel(8);
    let hello = pb::SyncRequest {
        kind: Some(pb::sync_request::Kind::Hello(pb::Hello {
            replica_id: replica_id.to_owned(),
            have_version: live.version(),
        })),
    };
    // The receiver is alive (held just below); a failure here cannot happen.
    let _ = tx.send(hello).await;
    let mut updates = client.sync(ReceiverStream::new(rx)).await?.into_inner();
    tracing::info!(url, "following the control plane");
    // What this stream has reported; a new stream reports everything known again.
    let mut reported = HashMap::new();
    // The last snapshot applied from this stream, in wire form: the base of deltas.
    let mut base: Option<pb::Snapshot> = None;
    let mut health_tick = tokio::time::interval(HEALTH_EVERY);
    health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let update = tokio::select! {
            update = updates.message() => update?,
            _ = health_tick.tick() => {
                let Some(snapshot) = live.load() else { continue };
                let keys = health_changes(&mut reported, snapshot.provider_health(), now_ms());
                if keys.is_empty() {
                    continue;
                }
                let report = pb::sync_request::Kind::Health(pb::HealthReport { keys });
                if tx.send(pb::SyncRequest { kind: Some(report) }).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Some(update) = update else { break };
        let (full, whole) = match (update.full, update.delta) {
            (Some(full), _) => (full, true),
            (None, Some(delta)) => match base.as_ref().map(|b| apply(b, &delta)) {
                Some(Ok(full)) => (full, false),
                refused => {
                    let reason = match refused {
                        Some(Err(e)) => e.to_string(),
                        _ => "no snapshot to apply a delta to".to_owned(),
                    };
                    tracing::warn!(
                        version = delta.version,
                        reason,
                        "delta not applicable; asking for the whole snapshot"
                    );
                    let ask = pb::sync_request::Kind::NeedFull(pb::NeedFull {
                        have_version: live.version(),
                        reason,
                    });
                    if tx.send(pb::SyncRequest { kind: Some(ask) }).await.is_err() {
                        break;
                    }
                    continue;
                }
            },
            (None, None) => continue,
        };
        let version = full.version;
        let kept = full.clone();
        let reply = match decode(full).map_err(|e| e.to_string()).and_then(|s| {
            let previous = live.load();
            Compiled::build_after(s, previous.as_deref()).map_err(|e| e.to_string())
        }) {
            Ok(compiled) => {
                let keys = compiled.key_count();
                if live.install_followed(compiled) {
                    tracing::info!(version, keys, whole, "snapshot applied");
                    // Encoded for the file only after the swap: it never delays one.
                    if let Some(writer) = persisted {
                        writer.send_replace(Some(Arc::new(prost::Message::encode_to_vec(&kept))));
                    }
                }
                base = Some(kept);
                live.set_following(true);
                pb::sync_request::Kind::Applied(pb::Applied { version })
            }
            Err(reason) => {
                tracing::error!(version, reason = %reason, "snapshot refused; keeping the last good one");
                pb::sync_request::Kind::Rejected(pb::Rejected { version, reason })
            }
        };
        if tx
            .send(pb::SyncRequest { kind: Some(reply) })
            .await
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

/// The keys whose health differs from what was last reported (and records them as
/// reported). Keys no call has used yet are left out.
fn health_changes<'a>(
    reported: &mut HashMap<ProviderKeyId, HealthState>,
    keys: impl Iterator<Item = (&'a ProviderKey, &'a Arc<KeyHealth>)>,
    now_ms: i64,
) -> Vec<pb::ProviderKeyHealth> {
    let mut changes = Vec::new();
    for (key, health) in keys {
        let state = health.state(now_ms);
        let (wire_state, until_unix_ms) = match state {
            HealthState::Unknown => continue,
            HealthState::Healthy => (pb::KeyHealthState::Healthy, 0),
            HealthState::CoolingDown { until_ms } => (pb::KeyHealthState::CoolingDown, until_ms),
            HealthState::Rejected { until_ms } => (pb::KeyHealthState::Unhealthy, until_ms),
        };
        if reported.insert(key.id, state) == Some(state) {
            continue;
        }
        changes.push(pb::ProviderKeyHealth {
            provider_key_id: key.id.to_string(),
            state: wire_state.into(),
            until_unix_ms,
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::route::{CoolDown, Failure};

    #[test]
    fn only_changes_are_reported() {
        let key = ProviderKey {
            id: ProviderKeyId::new(),
            owner: switchyard_core::ids::AccountId::new(),
            kind: switchyard_core::snapshot::ProviderKind::OpenAi,
            base_url: "https://api.example.com/v1".into(),
            secret: switchyard_core::crypto::Sealed {
                key_id: "k".into(),
                blob: vec![0; 40],
            },
            level: 1,
            models: Vec::new(),
            weight: 1,
            status: switchyard_core::snapshot::Status::Active,
        };
        let health = Arc::new(KeyHealth::default());
        let mut reported = HashMap::new();
        let policy = CoolDown::default();
        let changes =
            |r: &mut HashMap<_, _>, now| health_changes(r, std::iter::once((&key, &health)), now);
        // Never used: nothing to say.
        assert!(changes(&mut reported, 0).is_empty());
        health.record_success();
        let first = changes(&mut reported, 0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].state, i32::from(pb::KeyHealthState::Healthy));
        assert!(changes(&mut reported, 1).is_empty());
        health.record_failure(&policy, Failure::ServerError, 1_000);
        let cooling = changes(&mut reported, 1_000);
        assert_eq!(cooling[0].state, i32::from(pb::KeyHealthState::CoolingDown));
        assert_eq!(cooling[0].until_unix_ms, 2_000);
        // Waking up is a change too, without any call.
        let awake = changes(&mut reported, 2_000);
        assert_eq!(awake[0].state, i32::from(pb::KeyHealthState::Healthy));
        health.record_failure(&policy, Failure::Rejected, 3_000);
        let rejected = changes(&mut reported, 3_000);
        assert_eq!(rejected[0].state, i32::from(pb::KeyHealthState::Unhealthy));
    }
}
