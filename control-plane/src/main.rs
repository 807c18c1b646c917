//! `switchyard-control-plane`: the control plane as its own process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use switchyard_control_plane::reseal::reseal_all;
use switchyard_control_plane::service::OperatorOptions;
use switchyard_control_plane::store::Store;
use switchyard_control_plane::{Config, Listeners, MIN_ROOT_KEY_LEN};
use switchyard_coord::Coordinator;
use switchyard_core::apikey::KeyHash;
use switchyard_runtime::{
    KeyringArgs, bind, init_logging, shutdown_on_signal, value_or_file, write_addr_file,
};

#[derive(Parser)]
#[command(
    version,
    about = "Switchyard control plane: accounts, keys, rules, snapshots"
)]
struct Args {
    /// Database URL: postgres://user@host/db, or sqlite://path?mode=rwc.
    #[arg(long, env = "SWITCHYARD_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// REST (Admin and Manage APIs) listen address.
    #[arg(long, env = "SWITCHYARD_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: String,
    /// gRPC (snapshots, Admin, Manage) listen address.
    #[arg(long, env = "SWITCHYARD_GRPC_LISTEN", default_value = "127.0.0.1:8081")]
    grpc_listen: String,
    /// The usage collector's gRPC URL.
    #[arg(
        long,
        env = "SWITCHYARD_COLLECTOR_URL",
        default_value = "http://127.0.0.1:8091"
    )]
    collector_url: String,
    /// The operator's bootstrap root key.
    #[arg(long, env = "SWITCHYARD_ROOT_KEY", hide_env_values = true)]
    root_key: Option<String>,
    /// A file holding the root key.
    #[arg(long, env = "SWITCHYARD_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
    #[command(flatten)]
    keyring: KeyringArgs,
    /// Allow provider base URLs on loopback and private networks.
    #[arg(long, env = "SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS")]
    allow_private_upstreams: bool,
    /// Seconds between snapshot re-reads when no change is signalled.
    #[arg(long, default_value_t = 5)]
    resync_seconds: u64,
    /// etcd endpoints (comma-separated `http://host:port`) through which replicas
    /// of the control plane signal changes to each other and share the list of
    /// connected data planes. Unset: this replica works alone.
    #[arg(long, env = "SWITCHYARD_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Prefix of Switchyard's keys in etcd (lets installations share one etcd).
    #[arg(long, env = "SWITCHYARD_ETCD_PREFIX", default_value = "/switchyard/")]
    etcd_prefix: String,
    /// Seconds a replica that stopped answering keeps its etcd lease (its
    /// leaderships and the data planes it serves, in the status).
    #[arg(long, default_value_t = 10)]
    etcd_lease_seconds: u64,
    /// This replica's name among the control planes (default: host name and pid).
    #[arg(long, env = "SWITCHYARD_REPLICA_ID")]
    replica_id: Option<String>,
    /// Write the bound addresses as JSON to this file once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Admin and Manage APIs and the snapshot stream (the default).
    Serve,
    /// Re-seal every provider secret under the keyring's first (active) key id, then
    /// exit. Non-zero exit if any secret could not be opened.
    Reseal,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse();
    if let Some(Command::Reseal) = args.command {
        let keyring = args.keyring.load()?;
        let store = Store::open(&args.database_url).await?;
        let report = reseal_all(&store, &keyring, switchyard_runtime::now_ms()).await?;
        tracing::info!(
            total = report.total,
            resealed = report.resealed,
            current = report.current,
            failed = report.failed.len(),
            active = keyring.active_id(),
            "reseal finished"
        );
        if !report.failed.is_empty() {
            bail!(
                "{} provider secrets could not be re-sealed: {:?}",
                report.failed.len(),
                report.failed
            );
        }
        return Ok(());
    }
    let root_key = value_or_file("root key", args.root_key, args.root_key_file.as_deref())?
        .context("a root key is required: set SWITCHYARD_ROOT_KEY or SWITCHYARD_ROOT_KEY_FILE")?;
    if root_key.len() < MIN_ROOT_KEY_LEN {
        bail!("the root key must be at least {MIN_ROOT_KEY_LEN} characters");
    }
    let keyring = args.keyring.load()?;
    let store = Store::open(&args.database_url).await?;

    let http = bind(&args.http_listen).await?;
    let grpc = bind(&args.grpc_listen).await?;
    let addrs = BTreeMap::from([("http", http.local_addr()?), ("grpc", grpc.local_addr()?)]);
    tracing::info!(http = %addrs["http"], grpc = %addrs["grpc"], "control plane listening");
    if let Some(path) = &args.addr_file {
        write_addr_file(path, &addrs)?;
    }

    let shutdown = shutdown_on_signal();
    let replica_id = args.replica_id.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "control-plane".to_owned());
        format!("{host}-{}", std::process::id())
    });
    let coordinator = coordinator(
        &args.etcd_endpoints,
        &args.etcd_prefix,
        &replica_id,
        args.etcd_lease_seconds,
        &shutdown,
    )?;
    let config = Config {
        store,
        keyring: Arc::new(keyring),
        root_key_hash: KeyHash::of(&root_key),
        collector_url: args.collector_url,
        options: OperatorOptions {
            allow_private_upstreams: args.allow_private_upstreams,
        },
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        coordinator,
        replica_id,
    };
    switchyard_control_plane::run(config, Listeners { http, grpc }, shutdown).await?;
    Ok(())
}

/// etcd when endpoints are given, else this replica alone.
fn coordinator(
    endpoints: &[String],
    prefix: &str,
    member: &str,
    lease_seconds: u64,
    shutdown: &switchyard_runtime::Shutdown,
) -> anyhow::Result<Coordinator> {
    if endpoints.is_empty() {
        return Ok(Coordinator::local());
    }
    #[cfg(feature = "etcd")]
    {
        let settings = switchyard_coord::EtcdSettings {
            endpoints: endpoints.to_vec(),
            prefix: prefix.to_owned(),
            member: member.to_owned(),
            lease_ttl: Duration::from_secs(lease_seconds),
        };
        Ok(Coordinator::etcd(settings, shutdown.clone())?)
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (prefix, member, lease_seconds, shutdown);
        bail!("this build has no etcd support (the `etcd` feature is off)")
    }
}
