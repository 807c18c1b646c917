//! Switchyard's data plane: the stateless proxy applications call.
//!
//! Layout:
//! - [`live`]: the compiled snapshot behind one `ArcSwap`.
//! - [`sync`]: follows the control plane's snapshot stream (the proto edge).
//! - [`proxy`]: the request path, one file per phase in the order a call lives:
//!   `admit` (key, resource, client address), `facts` (routing facts, the multipart
//!   model), `reserve` (limits), `attempts` (the loop over provider keys), `relay`
//!   (answers back: whole, passed through, or event by event), `meter` (the usage
//!   event); `error` its errors in the client's protocol. `app`: what calls share.
//! - [`access`]: the access line of each call, metered or refused.
//! - `upstream`: one attempt on one provider key.
//! - [`usage`]: delivery of usage events to the collector.
//! - [`serve`]: the serving threads, each with a runtime of its own.
//! - [`limits`]: the admission gate the request path calls; [`limiter`]: limit
//!   counters (Redis or in-process); [`rebuild`]: their credit spend restored from
//!   the collector after a loss (the gate's cold branch). `metric`: Prometheus names.
//! - `spool`: usage the collector cannot take now, in checksummed segment files.
//! - `persist`: the last good snapshot on disk, for a start without a control plane.
//! - `swap_table`: a copy-on-write table read without a lock (per-key URLs, counters).
//! - `trace`: W3C trace context from the client and to the upstream.

pub mod access;
mod app;
pub mod limits;
pub mod live;
mod metric;
pub mod persist;
pub mod proxy;
pub mod serve;
pub mod spool;
mod swap_table;
pub mod sync;
mod trace;
mod upstream;
pub mod usage;

pub use limits::{limiter, rebuild};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use switchyard_core::crypto::Keyring;
use switchyard_core::endpoint::{Endpoint, Protocol};
use switchyard_core::error::ErrorCode;
use switchyard_core::route::CoolDown;
use switchyard_runtime::Shutdown;
use tokio::net::TcpListener;

use crate::app::{App, Limits};
use crate::limits::limiter::{Limiter, LimiterError, LocalCounters, RedisCounters};
use crate::limits::rebuild::Rebuilder;
use crate::limits::{Gate, LocalShare};
use crate::live::Live;
use crate::proxy::error_response;
use crate::spool::{Spool, SpoolError};
use crate::usage::UsageSink;

pub struct Config {
    /// The control plane's gRPC URL.
    pub control_plane_urls: Vec<String>,
    /// The usage collector's gRPC URL.
    pub collector_url: String,
    pub keyring: Arc<Keyring>,
    /// Identifies this process to the control plane.
    pub replica_id: String,
    pub limits: Limits,
    pub cool_down: CoolDown,
    /// Proxies whose `X-Forwarded-For` is believed (none by default).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Longest wait to open a connection to an upstream.
    pub connect_timeout: Duration,
    /// Which upstream addresses connections may go to (never private ones unless
    /// the operator allows them).
    pub upstream_networks: switchyard_core::netguard::UpstreamNetworks,
    /// Usage events held in memory before delivery.
    pub usage_queue: usize,
    /// Where the last good snapshot is kept across restarts; `None`: memory only.
    pub snapshot_file: Option<persist::SnapshotFile>,
    /// Record usage at all. Off, calls are served and limits enforced, but nothing
    /// is metered: no events, no spend for the collector to rebuild credit from.
    pub usage_events: bool,
    /// How long shutdown waits for usage to be acknowledged (then it is spooled).
    pub usage_flush_timeout: Duration,
    /// Where usage the collector cannot take now waits, across restarts; `None`:
    /// only the in-memory queue (lost with the process).
    pub usage_spool: Option<SpoolConfig>,
    /// Shared limit counters; `None`: counters in this process (embedded mode).
    pub redis: Option<RedisConfig>,
    /// With Redis away, owners who fail open get each limit divided by this count
    /// on every replica. `None`: by the number of live data planes the control
    /// plane reports (the last one reported; 1 before any).
    pub local_share_replicas: Option<u32>,
    /// Renders this process's metrics at `/metrics` (`None`: no metrics endpoint).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Threads serving calls, each with a runtime of its own (see [`serve`]); 0: one
    /// per CPU this process may use.
    pub serving_threads: usize,
    /// Caps and timeouts on client connections (see [`serve::ConnectionBounds`]);
    /// the trusted proxies are added to its shared peers.
    pub connections: serve::ConnectionBounds,
    /// Which calls get an access line (see [`proxy::AccessLog`]).
    pub access_log: proxy::AccessLog,
}

pub struct SpoolConfig {
    pub dir: std::path::PathBuf,
    pub max_bytes: u64,
}

/// Longest wait for the collector's spend when counters are rebuilt.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisConfig {
    pub url: String,
    /// Separates deployments sharing one Redis.
    pub namespace: String,
    /// Longest wait for one limiter call.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("cannot set up TLS for upstream calls: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("invalid Redis settings: {0}")]
    Redis(#[from] LimiterError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Install the process-wide TLS provider (ring) once; later calls are no-ops.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn router(
    app: Arc<App>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Router {
    let proxied = Endpoint::ALL
        .iter()
        .fold(Router::new(), |r, e| r.route(e.path(), post(proxy::handle)));
    let proxied = match metrics {
        Some(handle) => {
            metric::describe();
            proxied.route(
                "/metrics",
                get(move |State(app): State<Arc<App>>| async move {
                    scrape_gauges(&app);
                    handle.render()
                }),
            )
        }
        None => proxied,
    };
    proxied
        .route("/v1/models", get(proxy::models))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .fallback(|| async {
            error_response(Protocol::OpenAi, ErrorCode::NotFound, "no such endpoint")
        })
        .with_state(app)
}

/// Gauges read at scrape time rather than kept current on the request path.
fn scrape_gauges(app: &App) {
    let live = &app.live;
    metrics::gauge!(metric::SNAPSHOT_VERSION).set(live.version() as f64);
    metrics::gauge!(metric::SNAPSHOT_FRESH).set(if live.fresh() { 1.0 } else { 0.0 });
    if let Some(at) = live.installed_at_ms() {
        let age_ms = (switchyard_runtime::now_ms() - at).max(0);
        metrics::gauge!(metric::SNAPSHOT_AGE).set(age_ms as f64 / 1000.0);
    }
    metrics::gauge!(metric::USAGE_QUEUE_DEPTH).set(app.usage.queue_depth() as f64);
}

/// Ready once a snapshot is served, from the control plane or from disk: a data
/// plane whose control planes are away keeps serving what it has. The answer says
/// whether that snapshot is fresh (a snapshot stream is up and its newest applied).
async fn ready(State(app): State<Arc<App>>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let live = &app.live;
    let source = match live.source() {
        live::Source::None => "none",
        live::Source::Disk => "disk",
        live::Source::ControlPlane => "control_plane",
    };
    let status = if live.load().is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": status == StatusCode::OK,
        "snapshot_version": live.version(),
        "source": source,
        "fresh": live.fresh(),
        // The data planes the control plane last counted (0: none counted yet).
        "live_data_planes": app
            .gate
            .local_share
            .live_data_planes
            .load(std::sync::atomic::Ordering::Relaxed),
    });
    (status, axum::Json(body))
}

/// Serve the snapshot the last run persisted, if there is a good one, until a
/// control plane answers.
fn serve_persisted(file: &persist::SnapshotFile, live: &Live) {
    let snapshot = match file.load() {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::info!(path = %file.path().display(), "no persisted snapshot yet");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "persisted snapshot not used");
            return;
        }
    };
    let version = snapshot.version;
    let compiled = switchyard_wire::snapshot::decode(snapshot)
        .map_err(|e| e.to_string())
        .and_then(|s| switchyard_core::snapshot::Compiled::build(s).map_err(|e| e.to_string()));
    match compiled {
        Ok(c) => {
            live.install_from_disk(c);
            tracing::warn!(
                version,
                "serving the persisted snapshot until a control plane answers"
            );
        }
        Err(reason) => tracing::error!(version, reason, "persisted snapshot refused"),
    }
}

/// Serve until `shutdown`: in-flight requests and streams finish, then queued usage
/// is delivered (bounded by `usage_flush_timeout`).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), DataPlaneError> {
    let live = Arc::new(Live::default());
    let rebuilder = Rebuilder::new(&config.collector_url, REBUILD_TIMEOUT);
    let (stop_delivery, stop) = tokio::sync::oneshot::channel();
    let config_spool = config.usage_spool.is_some();
    let (sink, mut delivery) = if config.usage_events {
        let (sink, queue) = UsageSink::new(config.usage_queue);
        let spool = match &config.usage_spool {
            Some(s) => Some(Spool::open(&s.dir, s.max_bytes)?),
            None => {
                tracing::warn!(
                    "no usage spool (--usage-spool-dir): usage the collector cannot take is held in memory only, and what is still unacknowledged at shutdown is lost (counted in switchyard_usage_events_dropped_total)"
                );
                None
            }
        };
        let delivery = tokio::spawn(usage::deliver(config.collector_url, queue, spool, stop));
        (sink, delivery)
    } else {
        tracing::warn!("usage events are off: calls are not metered");
        (UsageSink::off(), tokio::spawn(async {}))
    };
    let persisted = config.snapshot_file.map(|file| {
        serve_persisted(&file, &live);
        sync::persist_to(file)
    });
    let live_data_planes = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let following = tokio::spawn(sync::follow(
        config.control_plane_urls,
        config.replica_id,
        config.keyring.key_ids().map(str::to_owned).collect(),
        live.clone(),
        persisted,
        live_data_planes.clone(),
        shutdown.clone(),
    ));
    let limiter = Arc::new(match &config.redis {
        Some(r) => Limiter::Redis(RedisCounters::open(&r.url, &r.namespace, r.timeout)?),
        None => Limiter::Local(LocalCounters::default()),
    });
    let local_share = LocalShare {
        hand_set: config.local_share_replicas,
        live_data_planes,
        counters: Arc::new(Limiter::Local(LocalCounters::primed())),
    };
    let mut connections = config.connections;
    connections
        .shared_peers
        .extend(config.trusted_proxies.iter().copied());
    let serving_threads = match config.serving_threads {
        0 => serve::default_threads(),
        n => n,
    };
    let app = Arc::new(App {
        live,
        keyring: config.keyring,
        upstream: upstream::Upstream::new(
            config.connect_timeout,
            serving_threads,
            config.upstream_networks,
        )?,
        usage: sink,
        limits: config.limits,
        cool_down: config.cool_down,
        trusted_proxies: config.trusted_proxies,
        gate: Gate::new(limiter, rebuilder, local_share),
        metrics: metric::CallMetrics::register(),
        access_log: config.access_log,
    });
    let served = serve::serve(
        listener,
        router(app, config.metrics),
        serving_threads,
        connections,
        shutdown,
    )
    .await;
    following.abort();
    // The router (and with it every sink) is gone; the sender drains and returns.
    if tokio::time::timeout(config.usage_flush_timeout, &mut delivery)
        .await
        .is_err()
    {
        // Past the deadline: what is left goes to the spool (if any) for the next start.
        let _ = stop_delivery.send(());
        let settled = tokio::time::timeout(Duration::from_secs(10), delivery).await;
        // The delivery task itself logs and counts what it could not spool.
        tracing::error!(
            spool = config_spool,
            settled = settled.is_ok(),
            "usage not acknowledged before the shutdown deadline"
        );
    }
    // Streams that outlived their client have finished (or the deadline passed).
    served?.stop().await;
    Ok(())
}
