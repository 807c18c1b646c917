//! Switchyard's usage collector: acked ingest of usage events from every data plane,
//! idempotent storage, daily rollups, and rollup queries for billing.
//!
//! Layout:
//! - [`store`]: raw events and rollups in Postgres or SQLite.
//! - [`ingest`]: the gRPC service (the edge where wire events become domain events).
//! - [`writer`]: one writer grouping concurrent batches into one transaction, and the
//!   quarantine of events the store refuses.
//! - `metric`: Prometheus names.

pub mod ingest;
mod metric;
pub mod store;
pub mod writer;

use axum::routing::get;
use axum::serve::ListenerExt;
use switchyard_coord::leadership_changed;
use switchyard_proto::v1::usage_service_server::UsageServiceServer;
use switchyard_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::store::UsageStore;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// How long raw events are kept; rollups are kept for good.
#[derive(Clone, Debug)]
pub struct Retention {
    pub keep_days: u32,
    /// How often old events are looked for.
    pub every: std::time::Duration,
    /// Whether this collector leads the `usage-retention` election: only the
    /// leader deletes, so replicas do not repeat each other's work.
    pub leader: tokio::sync::watch::Receiver<bool>,
}

/// Events deleted per statement.
const FORGET_BATCH: u32 = 10_000;
const DAY_MS: i64 = 86_400_000;

/// While this collector leads, delete raw events older than the retention, now and
/// every `every`, until `shutdown`. (Several doing it at once would be harmless,
/// only wasteful.)
async fn keep_within(store: UsageStore, mut retention: Retention, shutdown: Shutdown) {
    let mut leading = false;
    loop {
        let now_leading = *retention.leader.borrow_and_update();
        if now_leading != leading {
            leading = now_leading;
            tracing::info!(leading, "usage retention leadership changed");
        }
        if !leading {
            tokio::select! {
                () = leadership_changed(&mut retention.leader) => {}
                () = shutdown.clone().wait() => return,
            }
            continue;
        }
        let cutoff = switchyard_runtime::now_ms() - i64::from(retention.keep_days) * DAY_MS;
        let mut forgotten = 0u64;
        loop {
            match store.forget_events_before(cutoff, FORGET_BATCH).await {
                Ok(n) => {
                    forgotten += n;
                    if n < u64::from(FORGET_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "deleting old usage events failed; will retry");
                    break;
                }
            }
        }
        if forgotten > 0 {
            tracing::info!(
                forgotten,
                keep_days = retention.keep_days,
                "old usage events deleted"
            );
        }
        tokio::select! {
            () = tokio::time::sleep(retention.every) => {}
            () = leadership_changed(&mut retention.leader) => {}
            () = shutdown.clone().wait() => return,
        }
    }
}

pub struct Listeners {
    pub grpc: TcpListener,
    /// Health endpoints.
    pub http: TcpListener,
}

/// Serve until `shutdown`; in-flight batches finish (and are acked) first.
pub async fn run(
    store: UsageStore,
    listeners: Listeners,
    retention: Option<Retention>,
    shutdown: Shutdown,
) -> Result<(), CollectorError> {
    // Installed before anything is counted; a recorder installed later misses it.
    let _ = switchyard_runtime::metrics_handle();
    metric::describe();
    let keep_days = retention.as_ref().map(|r| r.keep_days);
    if let Some(retention) = retention {
        tokio::spawn(keep_within(store.clone(), retention, shutdown.clone()));
    }
    let incoming = TcpListenerStream::new(listeners.grpc).map(|conn| {
        conn.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let grpc = tonic::transport::Server::builder()
        .add_service(UsageServiceServer::new(ingest::UsageGrpc {
            store: store.clone(),
            writer: writer::Writer::start(store.clone()),
            keep_days,
        }))
        .serve_with_incoming_shutdown(incoming, shutdown.clone().wait());
    let health = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|| async {
                switchyard_runtime::metrics_handle().map_or_else(String::new, |h| h.render())
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let store = store.clone();
                async move {
                    match store.ping().await {
                        Ok(()) => (axum::http::StatusCode::OK, "ready"),
                        Err(_) => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "database unreachable",
                        ),
                    }
                }
            }),
        );
    let http_listener = listeners.http.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let http = axum::serve(http_listener, health).with_graceful_shutdown(shutdown.wait());
    let (g, h) = tokio::join!(grpc, async { http.await });
    g?;
    h?;
    Ok(())
}
