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

/// How long a batch waits for company after its first event: each batch is a
/// collector transaction, and usage is not needed within milliseconds.
const LINGER: Duration = Duration::from_millis(5);
/// Events per batch at most.
const MAX_BATCH: usize = 512;
/// Unacknowledged batches in flight. While they are, new events wait in the queue
/// and leave together as the next batch: a quiet data plane sends each event at
/// once, a busy one sends few large batches (one collector transaction each).
const MAX_PENDING: usize = 2;

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
                        let mut held = vec![first];
                        let deadline = tokio::time::Instant::now() + LINGER;
                        while held.len() < MAX_BATCH {
                            let room = MAX_BATCH - held.len();
                            match tokio::time::timeout_at(deadline, rx.recv_many(&mut held, room)).await {
                                Ok(0) => {
                                    closed = true;
                                    break;
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                        let events: Vec<pb::UsageEvent> = held.into_iter().map(encode_event).collect();
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
