//! Follows the control plane's snapshot stream: decode, validate, build, swap, ack.
//! Reconnects with backoff; keeps serving the last good snapshot meanwhile.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::snapshot::Compiled;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_runtime::Shutdown;
use switchyard_wire::snapshot::decode;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::live::Live;

const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("control plane URL is invalid: {0}")]
    Url(String),
    #[error("cannot reach the control plane: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("snapshot stream failed: {0}")]
    Stream(#[from] tonic::Status),
}

/// Follow the control plane until shutdown.
pub async fn follow(url: String, replica_id: String, live: Arc<Live>, shutdown: Shutdown) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = follow_once(&url, &replica_id, &live);
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
        tokio::select! {
            () = shutdown.clone().wait() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow_once(url: &str, replica_id: &str, live: &Live) -> Result<(), SyncError> {
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
    while let Some(update) = updates.message().await? {
        let Some(full) = update.full else { continue };
        let version = full.version;
        let reply = match decode(full).map_err(|e| e.to_string()).and_then(|s| {
            let previous = live.load();
            Compiled::build_after(s, previous.as_deref()).map_err(|e| e.to_string())
        }) {
            Ok(compiled) => {
                let keys = compiled.key_count();
                if live.install(compiled) {
                    tracing::info!(version, keys, "snapshot applied");
                }
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
