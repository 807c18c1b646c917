//! Switchyard's control plane: accounts, issued keys, provider keys; the Admin and
//! Manage APIs over REST and gRPC; snapshots compiled from the store and streamed to
//! data planes.
//!
//! Layout:
//! - [`store`]: state in Postgres or SQLite (one SQL dialect over `sqlx::Any`), one
//!   module per resource; every write through one transaction helper.
//! - [`service`]: every operation with its authorisation and validation, one module
//!   per resource (accounts, issued and provider keys, rules, credit, news, usage
//!   views, status, audit).
//! - [`alerting`]: the `alerts` leader's rounds: rules evaluated, webhooks sent
//!   ([`webhook`]: one signed delivery, through the upstream network guard).
//! - [`collector`]: the usage collector's client, for the usage views.
//! - [`rest`], [`grpc`]: the two faces over the service layer (gRPC's message
//!   conversions in `grpc/convert.rs`).
//! - [`console`]: the web console at `/` on the HTTP listener: server-rendered pages
//!   over the same service layer, with server-side sessions.
//! - [`publisher`]: compiles snapshots and fans them out to connected data planes.
//! - [`distribution`]: one data plane's snapshot stream and what it reports back.
//! - [`reseal`]: re-seals provider secrets under a new key-encryption key.
//! - [`model_discovery`]: provider keys learn their upstreams' model lists.
//! - [`upstream_url`]: which base URLs a provider key may have (checked on write and
//!   again before discovery asks).
//! - `metric`: Prometheus names and their label bounds.

pub mod alerting;
pub mod collector;
pub mod console;
pub mod distribution;
pub mod grpc;
pub mod metric;
pub mod model_discovery;
pub mod publisher;
pub mod reseal;
pub mod rest;
pub mod service;
pub mod store;
pub mod upstream_url;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use switchyard_core::apikey::KeyHash;
use switchyard_core::crypto::Keyring;
use switchyard_proto::v1::admin_service_server::AdminServiceServer;
use switchyard_proto::v1::manage_service_server::ManageServiceServer;
use switchyard_proto::v1::snapshot_service_server::SnapshotServiceServer;
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use switchyard_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::publisher::Publisher;
use crate::service::{OperatorOptions, Service};
use crate::store::Store;

/// The shortest root key accepted: it guards every main account.
pub const MIN_ROOT_KEY_LEN: usize = 32;

/// Validated settings.
pub struct Config {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub root_key_hash: KeyHash,
    /// Where the usage collector's gRPC service listens (for `/x-bill`).
    pub collector_url: String,
    pub options: OperatorOptions,
    /// How often the snapshot is re-read even without a change signal.
    pub resync: Duration,
    /// How the replicas learn of each other's writes and data planes.
    pub coordinator: switchyard_coord::Coordinator,
    /// This replica's name among the control planes.
    pub replica_id: String,
    /// How often the `key-reseal` leader looks for secrets to re-seal under the
    /// active key (`None`: never; re-seal with the `reseal` command).
    pub reseal_every: Option<Duration>,
    /// How often the `model-discovery` leader asks every active provider key's
    /// upstream for its models again (`None`: only when a key is written or asked).
    pub discovery_every: Option<Duration>,
    /// Console sessions: expiry, the cookie's `Secure` flag, sign-in attempts.
    pub console: console::ConsoleSettings,
    /// How often the `alerts` leader evaluates every alert rule.
    pub alert_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("collector URL {0:?} is invalid")]
    CollectorUrl(String),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
}

pub struct Listeners {
    pub http: TcpListener,
    pub grpc: TcpListener,
}

/// Serve until `shutdown`, then drain in-flight requests and return.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: Shutdown,
) -> Result<(), ControlPlaneError> {
    // Installed before anything is counted; a recorder installed later misses it.
    let _ = switchyard_runtime::metrics_handle();
    metric::describe();
    let usage_channel = tonic::transport::Endpoint::from_shared(config.collector_url.clone())
        .map_err(|_| ControlPlaneError::CollectorUrl(config.collector_url.clone()))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    let reseal_leader = config.coordinator.leadership("key-reseal");
    let discovery_leader = config.coordinator.leadership("model-discovery");
    let alerts_leader = config.coordinator.leadership("alerts");
    let publisher = Publisher::with_coordinator(config.coordinator, &config.replica_id);
    let resealing = config.reseal_every.map(|every| {
        tokio::spawn(reseal::reseal_when_safe(
            config.store.clone(),
            config.keyring.clone(),
            publisher.clone(),
            reseal_leader,
            every,
            shutdown.clone(),
        ))
    });
    let service = Arc::new(Service::new(
        config.store.clone(),
        config.keyring,
        config.root_key_hash,
        publisher.clone(),
        UsageServiceClient::new(usage_channel),
        config.options,
    ));
    let discovering = config.discovery_every.map(|every| {
        tokio::spawn(model_discovery::discover_when_leading(
            service.discoverer().clone(),
            discovery_leader,
            every,
            shutdown.clone(),
        ))
    });
    let alerting = tokio::spawn(alerting::alert_when_leading(
        service.clone(),
        alerts_leader,
        config.alert_every,
        shutdown.clone(),
    ));

    let publishing = tokio::spawn(publisher.clone().run(
        config.store,
        config.resync,
        shutdown.clone(),
    ));

    let api = grpc::ApiGrpc {
        service: service.clone(),
    };
    let api_manage = grpc::ApiGrpc {
        service: service.clone(),
    };
    let incoming = TcpListenerStream::new(listeners.grpc).map(|conn| {
        conn.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let grpc_shutdown = shutdown.clone();
    let grpc = tonic::transport::Server::builder()
        .add_service(SnapshotServiceServer::new(grpc::SnapshotGrpc {
            publisher,
            service: service.clone(),
        }))
        .add_service(AdminServiceServer::new(api))
        .add_service(ManageServiceServer::new(api_manage))
        .serve_with_incoming_shutdown(incoming, grpc_shutdown.wait());

    let http_listener = listeners.http.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = rest::router(service.clone()).merge(console::router(service, config.console));
    // The peer's address: the console counts failed sign-ins per client.
    let http = axum::serve(
        http_listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().wait());

    let (grpc_result, http_result) = tokio::join!(grpc, async { http.await });
    publishing.abort();
    alerting.abort();
    for task in [resealing, discovering].into_iter().flatten() {
        task.abort();
    }
    grpc_result?;
    http_result?;
    Ok(())
}
