//! Calls through a data-plane process while its control plane streams changes at
//! full scale: a stand-in control plane (the real `Snapshot.Sync` protocol) sends
//! the 100,000-key snapshot, then, when told to, a delta every `every`, alternating
//! a key revoked or restored (the data plane patches its key table) and an account
//! renamed (it rebuilds the configuration's tables). An open-loop load of calls runs
//! meanwhile, and once with no changes, against the same data plane and upstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_server::{SnapshotService, SnapshotServiceServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

/// The latencies and failures of one phase of calls.
pub struct Phase {
    pub latencies: Vec<Duration>,
    pub failed: usize,
    /// Snapshot versions the data plane moved through meanwhile.
    pub swaps: u64,
}

struct StandIn {
    full: pb::Snapshot,
    changing: Arc<AtomicBool>,
    every: Duration,
}

#[tonic::async_trait]
impl SnapshotService for StandIn {
    type SyncStream = ReceiverStream<Result<pb::SnapshotUpdate, tonic::Status>>;

    async fn sync(
        &self,
        request: tonic::Request<tonic::Streaming<pb::SyncRequest>>,
    ) -> Result<tonic::Response<Self::SyncStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        // Acks are read (so the data plane never waits to send one) and dropped.
        tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
        let (tx, rx) = mpsc::channel(4);
        let (full, changing, every) = (self.full.clone(), self.changing.clone(), self.every);
        tokio::spawn(async move {
            let mut version = full.version;
            // Keys no call uses (the fifth of each account), and accounts to rename.
            let keys: Vec<pb::IssuedKey> = full
                .issued_keys
                .iter()
                .skip(5)
                .step_by(10)
                .cloned()
                .collect();
            let accounts = full.accounts.clone();
            if tx
                .send(Ok(pb::SnapshotUpdate {
                    full: Some(full),
                    delta: None,
                    live_data_planes: 0,
                }))
                .await
                .is_err()
            {
                return;
            }
            let mut n = 0usize;
            loop {
                tokio::time::sleep(every).await;
                if !changing.load(Ordering::Relaxed) {
                    continue;
                }
                let mut delta = pb::SnapshotDelta {
                    base_version: version,
                    version: version + 1,
                    ..Default::default()
                };
                if n.is_multiple_of(2) {
                    if let Some(k) = keys.get((n / 2) % keys.len().max(1)) {
                        let mut k = k.clone();
                        // Revoked on the first pass over the keys, restored on the next.
                        if (n / 2 / keys.len().max(1)).is_multiple_of(2) {
                            k.status = pb::Status::Disabled.into();
                        }
                        delta.upsert_issued_keys.push(k);
                    }
                } else if let Some(a) = accounts.get((n / 2) % accounts.len().max(1)) {
                    let mut a = a.clone();
                    a.name = format!("{}-renamed-{n}", a.name);
                    delta.upsert_accounts.push(a);
                }
                n += 1;
                version += 1;
                if tx
                    .send(Ok(pb::SnapshotUpdate {
                        full: None,
                        delta: Some(delta),
                        live_data_planes: 0,
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

/// Serve `full` as a control plane on loopback; flip the returned flag to stream
/// a change every `every`. Returns the gRPC URL.
pub async fn stand_in_control_plane(
    full: pb::Snapshot,
    every: Duration,
) -> anyhow::Result<(String, Arc<AtomicBool>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let changing = Arc::new(AtomicBool::new(false));
    let service = StandIn {
        full,
        changing: changing.clone(),
        every,
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SnapshotServiceServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Ok((url, changing))
}

/// The version `/readyz` of the data plane at `base` reports.
pub async fn served_version(client: &reqwest::Client, base: &str) -> Option<u64> {
    let r = client.get(format!("{base}/readyz")).send().await.ok()?;
    let body: serde_json::Value = r.json().await.ok()?;
    body["snapshot_version"].as_u64()
}

/// `rate` calls a second for `seconds`, each on its schedule whatever the others
/// do; latency counts from the scheduled time.
pub async fn open_loop(
    client: &reqwest::Client,
    base: &str,
    keys: &[String],
    rate: u32,
    seconds: u32,
) -> Phase {
    let url = format!("{base}/v1/chat/completions");
    let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        .to_string();
    let before = served_version(client, base).await.unwrap_or(0);
    let start = Instant::now();
    let total = rate * seconds;
    let mut calls = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = start + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
        tokio::time::sleep_until(at.into()).await;
        let request = client
            .post(&url)
            .bearer_auth(&keys[i as usize % keys.len().max(1)])
            .header("content-type", "application/json")
            .body(body.clone())
            .send();
        calls.push(tokio::spawn(async move {
            let ok = match request.await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (at.elapsed(), ok)
        }));
    }
    let mut phase = Phase {
        latencies: Vec::with_capacity(calls.len()),
        failed: 0,
        swaps: 0,
    };
    for call in calls {
        match call.await {
            Ok((took, true)) => phase.latencies.push(took),
            _ => phase.failed += 1,
        }
    }
    phase.swaps = served_version(client, base)
        .await
        .unwrap_or(0)
        .saturating_sub(before);
    phase.latencies.sort();
    phase
}
