//! `switchyard-data-plane`: the proxy as its own process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use switchyard_core::route::CoolDown;
use switchyard_data_plane::proxy::{AccessLog, Limits};
use switchyard_data_plane::{Config, RedisConfig, SpoolConfig};
use switchyard_runtime::{KeyringArgs, bind, init_telemetry, shutdown_on_signal, write_addr_file};

// The request path allocates many small, short-lived buffers across threads, where
// mimalloc's thread-local free lists beat the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Switchyard data plane: the OpenAI/Anthropic-compatible proxy"
)]
struct Args {
    #[command(flatten)]
    log: switchyard_runtime::LogArgs,
    /// Proxy API listen address.
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "127.0.0.1:8000")]
    listen: String,
    /// The control plane's gRPC URL: usually one address in front of every replica;
    /// several, comma-separated, are tried in turn when a stream breaks.
    #[arg(
        long,
        env = "SWITCHYARD_CONTROL_PLANE_URL",
        default_value = "http://127.0.0.1:8081",
        value_delimiter = ','
    )]
    control_plane_url: Vec<String>,
    /// The usage collector's gRPC URL.
    #[arg(
        long,
        env = "SWITCHYARD_COLLECTOR_URL",
        default_value = "http://127.0.0.1:8091"
    )]
    collector_url: String,
    /// The control plane's key-encryption keys.
    #[command(flatten)]
    keyring: KeyringArgs,
    /// Identifies this replica to the control plane (default: host name and pid).
    #[arg(long, env = "SWITCHYARD_REPLICA_ID")]
    replica_id: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    max_request_body: usize,
    /// Seconds to wait for an upstream's response headers.
    #[arg(long, default_value_t = 120)]
    first_byte_timeout_seconds: u64,
    /// Seconds of silence tolerated between chunks of a response.
    #[arg(long, default_value_t = 120)]
    idle_timeout_seconds: u64,
    /// Seconds to wait for a connection to an upstream.
    #[arg(long, default_value_t = 10)]
    connect_timeout_seconds: u64,
    /// Seconds a stream whose client left keeps draining for its usage.
    #[arg(long, default_value_t = 300)]
    drain_timeout_seconds: u64,
    /// Provider keys tried on one level before switching over to its backup.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    tries_per_level: u32,
    /// Networks of proxies in front of the router whose `X-Forwarded-For` is believed
    /// (comma-separated CIDRs). Empty: the peer address is the client.
    #[arg(long, env = "SWITCHYARD_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<ipnet::IpNet>,
    #[command(flatten)]
    upstreams: switchyard_runtime::UpstreamNetworkArgs,
    /// Redis holding the limit counters every replica shares (`redis://host:port/db`).
    /// Unset: counters live in this process, right for a single replica.
    #[arg(long, env = "SWITCHYARD_REDIS_URL")]
    redis_url: Option<String>,
    /// Separates deployments (or tests) that share one Redis.
    #[arg(long, env = "SWITCHYARD_REDIS_NAMESPACE", default_value = "default:")]
    redis_namespace: String,
    /// Milliseconds one limiter call may take before Redis counts as away.
    #[arg(long, default_value_t = 250)]
    redis_timeout_ms: u64,
    /// With Redis away, owners whose rules say `when_store_down: fail_open` are
    /// admitted against this replica's own counters, each limit divided by this
    /// count. Unset: the number of live data planes the control plane reports (the
    /// last one reported; 1 before any). Owners who fail closed (the default) are
    /// refused.
    #[arg(long, env = "SWITCHYARD_LIMITS_LOCAL_SHARE_REPLICAS", value_parser = clap::value_parser!(u32).range(1..))]
    limits_local_share_replicas: Option<u32>,
    /// Output tokens reserved for a request that does not name `max_tokens`, unless
    /// its owner's rules name their own default.
    #[arg(long, default_value_t = 4096)]
    default_max_output_tokens: u64,
    /// Directory where usage events wait while the collector is away or slow, kept
    /// across restarts (one data plane per directory). Unset: memory only.
    #[arg(long, env = "SWITCHYARD_USAGE_SPOOL_DIR")]
    usage_spool_dir: Option<PathBuf>,
    /// Most bytes the usage spool may hold; beyond, events are lost and counted.
    #[arg(long, default_value_t = 1 << 30)]
    usage_spool_max_bytes: u64,
    /// Keep the last good snapshot in this file (provider secrets stay sealed), and
    /// serve from it at start while no control plane answers.
    #[arg(long, env = "SWITCHYARD_SNAPSHOT_FILE")]
    snapshot_file: Option<PathBuf>,
    /// Record a usage event per call (`on`), or meter nothing (`off`: no collector
    /// needed, but no usage, bills or credit rebuild either).
    #[arg(long, env = "SWITCHYARD_USAGE_EVENTS", value_enum, default_value_t = Switch::On)]
    usage_events: Switch,
    /// Seconds shutdown waits for the collector to acknowledge usage before it
    /// spools the rest.
    #[arg(long, default_value_t = 15)]
    usage_flush_timeout_seconds: u64,
    /// Threads serving calls, each with a runtime of its own; 0: one per CPU this
    /// process may use.
    #[arg(long, env = "SWITCHYARD_SERVING_THREADS", default_value_t = 0)]
    serving_threads: usize,
    /// Client connections open at once; beyond, new ones are closed at accept.
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Client connections open at once from one address (an IPv6 one by its /64);
    /// `--trusted-proxies` are held only to `--max-connections`.
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_client: u32,
    /// Seconds a client has to send a request's headers, from opening the connection
    /// or from the previous answer (so also how long an idle connection stays open).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_seconds: u64,
    /// Seconds a request body may go without a byte before the request is ended.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    body_idle_timeout_seconds: u64,
    /// Seconds a request body may take to arrive whole, from its headers.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout_seconds: u64,
    /// Write one access line per call (target `switchyard::access`, at info): ids,
    /// route, models, provider key, attempts, status, timings and tokens, never
    /// content or keys.
    #[arg(long, env = "SWITCHYARD_ACCESS_LOG", value_enum, default_value_t = Switch::On)]
    access_log: Switch,
    /// Log one successful call in this many (per serving thread); failed and cut
    /// calls are always logged.
    #[arg(long, env = "SWITCHYARD_ACCESS_LOG_SAMPLE", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    access_log_sample: u32,
    /// Write the bound address as JSON to this file once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = init_telemetry("switchyard-data-plane", args.log.log_format);
    let keyring = args.keyring.load()?;
    let listener = bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "data plane listening");
    if let Some(path) = &args.addr_file {
        write_addr_file(path, &BTreeMap::from([("http", addr)]))?;
    }
    let replica_id = args.replica_id.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "data-plane".to_owned());
        format!("{host}-{}", std::process::id())
    });
    let shutdown = shutdown_on_signal();
    let config = Config {
        control_plane_urls: args.control_plane_url,
        collector_url: args.collector_url,
        keyring: Arc::new(keyring),
        replica_id,
        limits: Limits {
            max_request_body: args.max_request_body,
            first_byte_timeout: Duration::from_secs(args.first_byte_timeout_seconds),
            idle_timeout: Duration::from_secs(args.idle_timeout_seconds),
            drain_timeout: Duration::from_secs(args.drain_timeout_seconds),
            tries_per_level: args.tries_per_level,
            default_max_output_tokens: args.default_max_output_tokens,
            ..Limits::default()
        },
        cool_down: CoolDown::default(),
        trusted_proxies: args.trusted_proxies,
        connect_timeout: Duration::from_secs(args.connect_timeout_seconds),
        upstream_networks: args.upstreams.networks(false),
        usage_queue: 65_536,
        usage_events: args.usage_events == Switch::On,
        snapshot_file: args
            .snapshot_file
            .map(switchyard_data_plane::persist::SnapshotFile::new),
        usage_flush_timeout: Duration::from_secs(args.usage_flush_timeout_seconds),
        usage_spool: args.usage_spool_dir.map(|dir| SpoolConfig {
            dir,
            max_bytes: args.usage_spool_max_bytes,
        }),
        redis: args.redis_url.map(|url| RedisConfig {
            url,
            namespace: args.redis_namespace,
            timeout: Duration::from_millis(args.redis_timeout_ms),
        }),
        local_share_replicas: args.limits_local_share_replicas,
        metrics: switchyard_runtime::metrics_handle(),
        serving_threads: args.serving_threads,
        connections: switchyard_data_plane::serve::ConnectionBounds {
            max_connections: args.max_connections as usize,
            max_connections_per_client: args.max_connections_per_client as usize,
            shared_peers: Vec::new(),
            header_read_timeout: Duration::from_secs(args.header_read_timeout_seconds),
            body_idle_timeout: Duration::from_secs(args.body_idle_timeout_seconds),
            body_read_timeout: Duration::from_secs(args.body_read_timeout_seconds),
        },
        access_log: match args.access_log {
            Switch::On => AccessLog {
                one_in: args.access_log_sample,
            },
            Switch::Off => AccessLog::OFF,
        },
    };
    switchyard_data_plane::run(config, listener, shutdown).await?;
    Ok(())
}
