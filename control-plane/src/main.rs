//! `switchyard-control-plane`: the control plane as its own process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use switchyard_control_plane::console::ConsoleSettings;
use switchyard_control_plane::reseal::reseal_all;
use switchyard_control_plane::service::OperatorOptions;
use switchyard_control_plane::store::Store;
use switchyard_control_plane::{Config, Listeners, MIN_ROOT_KEY_LEN};
use switchyard_coord::CoordArgs;
use switchyard_core::apikey::KeyHash;
use switchyard_runtime::{
    KeyringArgs, bind, init_telemetry, shutdown_on_signal, value_or_file, write_addr_file,
};

#[derive(Parser)]
#[command(
    version,
    about = "Switchyard control plane: accounts, keys, rules, snapshots"
)]
struct Args {
    #[command(flatten)]
    log: switchyard_runtime::LogArgs,
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
    #[command(flatten)]
    upstreams: switchyard_runtime::UpstreamNetworkArgs,
    /// Seconds between snapshot re-reads when no change is signalled.
    #[arg(long, default_value_t = 5)]
    resync_seconds: u64,
    /// Seconds between looks for provider secrets sealed under a key other than the
    /// active one; the replica leading `key-reseal` re-seals them once every data
    /// plane holds the active key. 0: never (use the `reseal` command).
    #[arg(long, env = "SWITCHYARD_RESEAL_CHECK_SECONDS", default_value_t = 60)]
    reseal_check_seconds: u64,
    /// Seconds between the rounds in which the replica leading `model-discovery`
    /// asks every active provider key's upstream for its model list again (a key is
    /// also asked when added or re-pointed, and by `POST /x-keys/{id}/discover`).
    /// 0: no rounds, and keys are not asked when written either (only on demand).
    #[arg(long, env = "SWITCHYARD_MODEL_DISCOVERY_SECONDS", default_value_t = 6 * 3600)]
    model_discovery_seconds: u64,
    /// Seconds between the rounds in which the replica leading `alerts` evaluates
    /// every alert rule (spend, key health, data plane lag); due webhooks are sent
    /// every second regardless.
    #[arg(long, env = "SWITCHYARD_ALERT_EVALUATE_SECONDS", default_value_t = 60)]
    alert_evaluate_seconds: u64,
    #[command(flatten)]
    coord: CoordArgs,
    /// Minutes without a request after which a console session ends.
    #[arg(long, env = "SWITCHYARD_CONSOLE_IDLE_MINUTES", default_value_t = 30)]
    console_idle_minutes: u64,
    /// Hours after sign-in at which a console session ends, however active.
    #[arg(long, env = "SWITCHYARD_CONSOLE_SESSION_HOURS", default_value_t = 12)]
    console_session_hours: u64,
    /// Mark the console's session cookie `Secure`: set it when browsers reach the
    /// console over HTTPS (a proxy in front terminating TLS).
    #[arg(long, env = "SWITCHYARD_CONSOLE_SECURE_COOKIE")]
    console_secure_cookie: bool,
    /// Failed console sign-ins from one address before it must wait.
    #[arg(long, env = "SWITCHYARD_CONSOLE_SIGN_IN_FAILURES", default_value_t = 5)]
    console_sign_in_failures: u32,
    /// Networks of proxies in front of the console (an ingress controller's, say)
    /// whose `X-Forwarded-For` names the client for the sign-in limit and whose
    /// `X-Forwarded-Proto: https` marks the session cookie `Secure`; comma-separated.
    #[arg(
        long,
        env = "SWITCHYARD_CONSOLE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    console_trusted_proxies: Vec<ipnet::IpNet>,
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
    /// Bring the database schema up to date, then exit (run once before an upgrade;
    /// serving replicas also migrate at start, one at a time under a database lock).
    Migrate,
    /// Re-seal every provider secret under the keyring's first (active) key id, then
    /// exit. Non-zero exit if any secret could not be opened.
    Reseal,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = init_telemetry("switchyard-control-plane", args.log.log_format);
    if let Some(Command::Migrate) = args.command {
        Store::open(&args.database_url).await?;
        tracing::info!("control-plane schema is up to date");
        return Ok(());
    }
    if let Some(Command::Reseal) = args.command {
        let keyring = args.keyring.load()?;
        let store = Store::open(&args.database_url).await?;
        let report = reseal_all(&store, &keyring, switchyard_runtime::now_ms()).await?;
        tracing::info!(
            total = report.total,
            resealed = report.resealed,
            webhook_secrets_resealed = report.webhook_secrets_resealed,
            current = report.current,
            failed = report.failed.len(),
            active = keyring.active_id(),
            "reseal finished"
        );
        if !report.failed.is_empty() {
            bail!(
                "{} secrets could not be re-sealed: {:?}",
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
    let replica_id = args.coord.member("control-plane");
    let coordinator = args
        .coord
        .coordinator("control-plane", &replica_id, &shutdown)?;
    let config = Config {
        store,
        keyring: Arc::new(keyring),
        root_key_hash: KeyHash::of(&root_key),
        collector_url: args.collector_url,
        options: OperatorOptions {
            upstream_networks: args.upstreams.networks(false),
            resolver: None,
            discover_on_write: args.model_discovery_seconds > 0,
        },
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        reseal_every: (args.reseal_check_seconds > 0)
            .then(|| Duration::from_secs(args.reseal_check_seconds)),
        discovery_every: (args.model_discovery_seconds > 0)
            .then(|| Duration::from_secs(args.model_discovery_seconds)),
        coordinator,
        replica_id,
        alert_every: Duration::from_secs(args.alert_evaluate_seconds.max(1)),
        console: ConsoleSettings {
            idle: Duration::from_secs(args.console_idle_minutes.max(1) * 60),
            absolute: Duration::from_secs(args.console_session_hours.max(1) * 3600),
            secure_cookie: args.console_secure_cookie,
            sign_in_failures: args.console_sign_in_failures.max(1),
            trusted_proxies: args.console_trusted_proxies,
        },
    };
    switchyard_control_plane::run(config, Listeners { http, grpc }, shutdown).await?;
    Ok(())
}
