//! Delivery of usage events to the collector: a bounded queue, batches over one acked
//! gRPC stream, and replay of every unacknowledged batch after a reconnect (the
//! collector ignores event ids it already holds, so replays are harmless).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchyard_core::usage::UsageEvent;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use switchyard_wire::encode_event;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Events per batch at most.
const MAX_BATCH: usize = 256;
/// Unacknowledged batches held before the sender stops taking new events.
const MAX_PENDING: usize = 64;

/// The request path's handle: enqueue without waiting.
#[derive(Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<UsageEvent>,
    dropped: Arc<AtomicU64>,
}

impl UsageSink {
    /// A sink and the receiving end for [`deliver`].
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<UsageEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self {
                tx,
                dropped: Arc::default(),
            },
            rx,
        )
    }

    pub fn emit(&self, event: UsageEvent) {
        if let Err(e) = self.tx.try_send(event) {
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "sender stopped",
            };
            tracing::error!(reason, dropped_total = total, "usage event dropped");
        }
    }
}

/// Deliver events until every sink is dropped and everything sent is acknowledged.
pub async fn deliver(url: String, mut rx: mpsc::Receiver<UsageEvent>) {
    let mut pending: VecDeque<pb::UsageBatch> = VecDeque::new();
    let mut seq = 0u64;
    let mut closed = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        if closed && pending.is_empty() {
            return;
        }
        let endpoint = match tonic::transport::Endpoint::from_shared(url.clone()) {
            Ok(e) => e.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true),
            Err(_) => {
                tracing::error!(url, "collector URL is invalid; usage cannot be delivered");
                return;
            }
        };
        let (btx, brx) = mpsc::channel(MAX_PENDING + 1);
        for batch in &pending {
            let _ = btx.try_send(batch.clone());
        }
        let acks = match endpoint.connect().await {
            Ok(channel) => {
                UsageServiceClient::new(channel)
                    .ingest(ReceiverStream::new(brx))
                    .await
            }
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        };
        let mut acks = match acks {
            Ok(r) => r.into_inner(),
            Err(e) => {
                tracing::warn!(error = %e, pending = pending.len(), "usage collector unreachable; will retry");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                event = rx.recv(), if !closed && pending.len() < MAX_PENDING => match event {
                    None => closed = true,
                    Some(first) => {
                        let mut events = vec![encode_event(first)];
                        while events.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(e) => events.push(encode_event(e)),
                                Err(_) => break,
                            }
                        }
                        seq += 1;
                        let batch = pb::UsageBatch { seq, events };
                        pending.push_back(batch.clone());
                        if btx.send(batch).await.is_err() {
                            break;
                        }
                    }
                },
                ack = acks.message() => match ack {
                    Ok(Some(a)) => {
                        while pending.front().is_some_and(|b| b.seq <= a.seq) {
                            pending.pop_front();
                        }
                        if a.rejected > 0 {
                            tracing::error!(seq = a.seq, rejected = a.rejected, "collector refused usage events");
                        }
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!(pending = pending.len(), "usage stream ended; reconnecting");
                        break;
                    }
                },
            }
            if closed && pending.is_empty() {
                return;
            }
        }
    }
}
