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

use crate::metric;
use crate::spool::{Position, Spool};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// How long a batch waits for company after its first event, unless it fills
/// first. Each batch is a collector transaction and a wake of both processes, which
/// costs the calls beside it more than the events themselves; usage is not needed
/// within a tenth of a second.
const LINGER: Duration = Duration::from_millis(100);
/// How often a lingering batch looks whether it is full.
const FILL_CHECK: Duration = Duration::from_millis(10);
/// Events per batch at most.
const MAX_BATCH: usize = 512;
/// Unacknowledged batches in flight. While they are, new events wait in the queue
/// and leave together as the next batch: a quiet data plane sends each event at
/// once, a busy one sends few large batches (one collector transaction each).
const MAX_PENDING: usize = 2;

/// The request path's handle: enqueue without waiting.
#[derive(Clone)]
pub struct UsageSink {
    /// `None`: usage events are off; nothing is built or sent.
    tx: Option<mpsc::Sender<UsageEvent>>,
    dropped: Arc<AtomicU64>,
}

impl UsageSink {
    /// A sink and the receiving end for [`deliver`].
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<UsageEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self {
                tx: Some(tx),
                dropped: Arc::default(),
            },
            rx,
        )
    }

    /// A sink for a data plane that records no usage.
    pub fn off() -> Self {
        Self {
            tx: None,
            dropped: Arc::default(),
        }
    }

    /// Events waiting in the queue for the delivery task.
    pub fn queue_depth(&self) -> usize {
        self.tx
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    pub fn emit(&self, event: UsageEvent) {
        let Some(tx) = &self.tx else {
            return;
        };
        if let Err(e) = tx.try_send(event) {
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::counter!(metric::USAGE_DROPPED).increment(1);
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "sender stopped",
            };
            tracing::error!(reason, dropped_total = total, "usage event dropped");
        }
    }
}

/// Where a sent batch came from, so its acknowledgement releases the right thing.
enum Origin {
    Memory,
    Spool(Position),
}

struct InFlight {
    batch: pb::UsageBatch,
    origin: Origin,
}

/// The delivery task's state: the queue from the request path, batches awaiting
/// acknowledgement, and the spool (when configured) for everything the collector
/// cannot take now.
struct Delivery {
    rx: mpsc::Receiver<UsageEvent>,
    spool: Option<Spool>,
    pending: VecDeque<InFlight>,
    seq: u64,
    /// Every sink is gone: nothing new will come.
    closed: bool,
}

/// Queued events beyond this, with batches already in flight, go to the spool: the
/// collector is slow, and the queue must keep room for the request path.
const SPILL_AT: usize = 8192;

impl Delivery {
    fn spooling(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    fn done(&self) -> bool {
        self.closed && self.pending.is_empty() && !self.spooling()
    }

    /// Events to the spool; when it cannot take them (or none is configured), they
    /// are counted lost, never dropped silently.
    /// Returns how many were lost.
    fn spool_events(&mut self, events: &[pb::UsageEvent]) -> usize {
        if events.is_empty() {
            return 0;
        }
        let refused = match self.spool.as_mut() {
            Some(spool) => spool.append(events).err().map(|e| e.to_string()),
            None => Some("no spool is configured".to_owned()),
        };
        self.report_spool();
        let Some(why) = refused else {
            return 0;
        };
        metrics::counter!(metric::USAGE_DROPPED).increment(events.len() as u64);
        tracing::error!(reason = %why, lost = events.len(), "usage events lost: the spool cannot take them");
        events.len()
    }

    fn report_spool(&self) {
        if let Some(spool) = &self.spool {
            metrics::gauge!(metric::USAGE_SPOOL_BYTES).set(spool.bytes() as f64);
        }
    }

    /// Up to `most` of what waits in the queue, without waiting for more.
    fn drain_queue(&mut self, most: usize) -> Vec<pb::UsageEvent> {
        let mut out = Vec::new();
        while out.len() < most
            && let Ok(e) = self.rx.try_recv()
        {
            out.push(encode_event(e));
        }
        out
    }

    /// The connection is gone (or shutdown is due): with a spool, everything not yet
    /// acknowledged goes there, so a restart cannot lose it; without one, in-memory
    /// batches stay for the next connection.
    fn park(&mut self) -> usize {
        let Some(spool) = self.spool.as_mut() else {
            return 0;
        };
        spool.rewind();
        let memory: Vec<pb::UsageEvent> = self
            .pending
            .drain(..)
            .filter(|f| matches!(f.origin, Origin::Memory))
            .flat_map(|f| f.batch.events)
            .collect();
        let queued = self.drain_queue(usize::MAX);
        self.spool_events(&memory) + self.spool_events(&queued)
    }

    /// Shutdown's deadline passed: what is not acknowledged goes to the spool, or,
    /// without one, is counted and logged as lost.
    /// Returns how many were lost.
    fn give_up(&mut self) -> usize {
        if self.spool.is_some() {
            return self.park();
        }
        let memory: Vec<pb::UsageEvent> = self
            .pending
            .drain(..)
            .flat_map(|f| f.batch.events)
            .collect();
        let queued = self.drain_queue(usize::MAX);
        self.spool_events(&memory) + self.spool_events(&queued)
    }

    fn stream_ended(&mut self) {
        tracing::warn!(
            pending = self.pending.len(),
            "usage stream ended; reconnecting"
        );
        self.park();
    }

    fn next_batch(&mut self, events: Vec<pb::UsageEvent>, origin: Origin) -> pb::UsageBatch {
        self.seq += 1;
        let batch = pb::UsageBatch {
            seq: self.seq,
            events,
        };
        self.pending.push_back(InFlight {
            batch: batch.clone(),
            origin,
        });
        batch
    }

    /// Batches to resend on a new connection: in-memory ones not yet acknowledged.
    fn resend(&self) -> Vec<pb::UsageBatch> {
        self.pending.iter().map(|f| f.batch.clone()).collect()
    }

    fn acknowledged(&mut self, a: &pb::UsageAck) {
        while self.pending.front().is_some_and(|f| f.batch.seq <= a.seq) {
            if let Some(InFlight {
                origin: Origin::Spool(at),
                ..
            }) = self.pending.pop_front()
                && let Some(spool) = self.spool.as_mut()
                && let Err(e) = spool.acknowledge(at)
            {
                tracing::error!(error = %e, "usage spool segment not released; it will be sent again");
            }
        }
        self.report_spool();
        if a.rejected > 0 {
            // Set aside in the collector's quarantine, not lost; never sent again.
            metrics::counter!(metric::USAGE_REFUSED).increment(u64::from(a.rejected));
            tracing::error!(
                seq = a.seq,
                rejected = a.rejected,
                "collector refused usage events; they are in its quarantine"
            );
        }
    }

    /// The next batch read back from the spool, if there is room in flight.
    fn read_spooled(&mut self) -> Option<pb::UsageBatch> {
        if self.pending.len() >= MAX_PENDING {
            return None;
        }
        let read = self.spool.as_mut().map(|s| s.read(MAX_BATCH));
        match read {
            Some(Ok(Some((events, at)))) => Some(self.next_batch(events, Origin::Spool(at))),
            Some(Err(e)) => {
                tracing::error!(error = %e, "usage spool unreadable");
                None
            }
            _ => None,
        }
    }
}

impl Delivery {
    /// Wait `backoff` before the next connection, still taking events into the spool
    /// (when there is one) so the queue never fills. True when `stop` fired: what was
    /// left is then spooled or counted lost.
    async fn wait(
        &mut self,
        backoff: Duration,
        stop: &mut tokio::sync::oneshot::Receiver<()>,
    ) -> bool {
        let wake = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => return false,
                _ = &mut *stop => {
                    self.give_up();
                    return true;
                }
                event = self.rx.recv(), if !self.closed && self.spool.is_some() => match event {
                    None => self.closed = true,
                    Some(e) => {
                        let mut events = vec![encode_event(e)];
                        events.extend(self.drain_queue(usize::MAX));
                        self.spool_events(&events);
                    }
                },
            }
        }
    }
}

/// Longest wait between two connections to the collector.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Wait out the linger, or less once a full batch waits.
async fn linger(queue: &mpsc::Receiver<UsageEvent>) {
    let until = tokio::time::Instant::now() + LINGER;
    loop {
        let now = tokio::time::Instant::now();
        if now >= until || queue.len() + 1 >= MAX_BATCH {
            return;
        }
        tokio::time::sleep(FILL_CHECK.min(until - now)).await;
    }
}

/// Deliver events until every sink is dropped and everything is acknowledged, or
/// `stop` fires (shutdown's deadline): then what is left goes to the spool.
pub async fn deliver(
    url: String,
    rx: mpsc::Receiver<UsageEvent>,
    spool: Option<Spool>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut d = Delivery {
        rx,
        spool,
        pending: VecDeque::new(),
        seq: 0,
        closed: false,
    };
    d.report_spool();
    let mut backoff = Duration::from_millis(100);
    let endpoint = match tonic::transport::Endpoint::from_shared(url.clone()) {
        Ok(e) => e.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true),
        Err(_) => {
            tracing::error!(url, "collector URL is invalid; usage cannot be delivered");
            return;
        }
    };
    loop {
        if d.done() {
            return;
        }
        let (btx, brx) = mpsc::channel(MAX_PENDING + 2);
        for batch in d.resend() {
            let _ = btx.try_send(batch);
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
                tracing::warn!(error = %e, pending = d.pending.len(), "usage collector unreachable; will retry");
                d.park();
                if d.closed && d.spool.is_some() {
                    // Shutting down with the collector away: the spool holds it all.
                    return;
                }
                if d.wait(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        // The back-off resets only once the collector acknowledges something: a
        // collector that takes the stream and then fails it is retried at the
        // back-off's pace, not as fast as it can answer.
        let mut acked = false;
        loop {
            // Spooled events first, in the order they were written.
            let mut stream_open = true;
            while let Some(batch) = d.read_spooled() {
                if btx.send(batch).await.is_err() {
                    stream_open = false;
                    break;
                }
            }
            if !stream_open {
                d.stream_ended();
                break;
            }
            let can_take = !d.closed
                && (d.pending.len() < MAX_PENDING
                    || d.spooling()
                    || (d.spool.is_some() && d.rx.len() > SPILL_AT));
            tokio::select! {
                _ = &mut stop => {
                    d.give_up();
                    return;
                }
                event = d.rx.recv(), if can_take => match event {
                    None => d.closed = true,
                    Some(first) if d.spooling() || d.pending.len() >= MAX_PENDING => {
                        let mut events = vec![encode_event(first)];
                        events.extend(d.drain_queue(usize::MAX));
                        d.spool_events(&events);
                    }
                    Some(first) => {
                        // Sleep through the linger and take what came meanwhile: a
                        // few wakes per batch, not one per event.
                        linger(&d.rx).await;
                        let mut events = vec![encode_event(first)];
                        events.extend(d.drain_queue(MAX_BATCH - 1));
                        let batch = d.next_batch(events, Origin::Memory);
                        if btx.send(batch).await.is_err() {
                            d.stream_ended();
                            break;
                        }
                    }
                },
                ack = acks.message() => match ack {
                    Ok(Some(a)) => {
                        acked = true;
                        backoff = Duration::from_millis(100);
                        d.acknowledged(&a);
                    }
                    Ok(None) | Err(_) => {
                        d.stream_ended();
                        break;
                    }
                },
            }
            if d.done() {
                return;
            }
        }
        if !acked {
            if d.wait(backoff, &mut stop).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ids::{AccountId, EventId, IssuedKeyId};
    use switchyard_core::usage::{TokenUsage, UsageSource};

    fn event() -> UsageEvent {
        UsageEvent {
            id: EventId::new(),
            at_unix_ms: 1,
            account_chain: vec![AccountId::new()],
            issued_key: IssuedKeyId::new(),
            provider_key: None,
            model_requested: "m".into(),
            model_served: "m".into(),
            level: 1,
            status: 200,
            latency_ms: 1,
            ttfb_ms: None,
            tokens: TokenUsage::default(),
            source: UsageSource::Reported,
            cost_nanos: 0,
            billed_nanos: 0,
            price_version: 1,
            path: "/v1/chat/completions".into(),
            client_addr: String::new(),
            streamed: false,
            session: None,
            end_user: None,
            tag: None,
            client_protocol: None,
            upstream_protocol: None,
        }
    }

    fn delivery(spool: Option<Spool>) -> (Delivery, UsageSink) {
        let (sink, rx) = UsageSink::new(16);
        let d = Delivery {
            rx,
            spool,
            pending: VecDeque::new(),
            seq: 0,
            closed: false,
        };
        (d, sink)
    }

    #[test]
    fn without_a_spool_what_is_left_at_the_deadline_is_counted_lost() {
        let (mut d, sink) = delivery(None);
        let sent = vec![encode_event(event()), encode_event(event())];
        d.next_batch(sent, Origin::Memory);
        for _ in 0..3 {
            sink.emit(event());
        }
        // A connection lost without a spool keeps everything for the next one.
        assert_eq!(d.park(), 0);
        assert_eq!(d.pending.len(), 1);
        assert_eq!(d.give_up(), 5, "two in flight and three queued");
        assert!(d.pending.is_empty());
    }

    #[test]
    fn with_a_spool_what_is_left_at_the_deadline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let (mut d, sink) = delivery(Some(spool));
        d.next_batch(vec![encode_event(event())], Origin::Memory);
        sink.emit(event());
        assert_eq!(d.give_up(), 0);
        assert!(d.spooling(), "both events wait in the spool");
    }
}
