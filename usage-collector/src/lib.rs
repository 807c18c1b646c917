//! Switchyard's usage collector: acked ingest of usage events from every data plane,
//! idempotent storage, daily rollups, and rollup queries for billing.
//!
//! Layout:
//! - [`store`]: raw events and rollups in Postgres or SQLite.
//! - [`ingest`]: the gRPC service (the edge where wire events become domain events).

pub mod ingest;
pub mod store;

use axum::routing::get;
use axum::serve::ListenerExt;
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

pub struct Listeners {
    pub grpc: TcpListener,
    /// Health endpoints.
    pub http: TcpListener,
}

/// Serve until `shutdown`; in-flight batches finish (and are acked) first.
pub async fn run(
    store: UsageStore,
    listeners: Listeners,
    shutdown: Shutdown,
) -> Result<(), CollectorError> {
    let incoming = TcpListenerStream::new(listeners.grpc).map(|conn| {
        conn.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let grpc = tonic::transport::Server::builder()
        .add_service(UsageServiceServer::new(ingest::UsageGrpc {
            store: store.clone(),
        }))
        .serve_with_incoming_shutdown(incoming, shutdown.clone().wait());
    let health = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
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
