//! `switchyard-usage-collector`: the usage collector as its own process.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use switchyard_coord::CoordArgs;
use switchyard_runtime::{bind, init_telemetry, shutdown_on_signal, write_addr_file};
use switchyard_usage_collector::store::UsageStore;
use switchyard_usage_collector::{Listeners, Retention};

// Each batch decodes and binds hundreds of small strings and frees them together,
// where mimalloc spends a fraction of the system allocator's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Switchyard usage collector: acked ingest, idempotent storage, rollups"
)]
struct Args {
    #[command(flatten)]
    log: switchyard_runtime::LogArgs,
    /// Database URL: postgres://user@host/db, or sqlite://path?mode=rwc.
    #[arg(long, env = "SWITCHYARD_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// gRPC (ingest and rollup queries) listen address.
    #[arg(long, env = "SWITCHYARD_GRPC_LISTEN", default_value = "127.0.0.1:8091")]
    grpc_listen: String,
    /// Health endpoints listen address.
    #[arg(long, env = "SWITCHYARD_HTTP_LISTEN", default_value = "127.0.0.1:8092")]
    http_listen: String,
    /// Days raw events are kept (request logs); rollups are kept for good. 0: keep
    /// raw events for good too.
    #[arg(long, env = "SWITCHYARD_RETENTION_DAYS", default_value_t = 90)]
    retention_days: u32,
    /// Seconds between looks for raw events past the retention.
    #[arg(long, default_value_t = 3600)]
    retention_check_seconds: u64,
    /// Distinct values of each label (end user, session, tag) an account keeps in the
    /// rollups per UTC day; later new values of that day are rolled up as `other`
    /// (raw events keep their values).
    #[arg(long, env = "SWITCHYARD_LABEL_CAP", default_value_t = switchyard_core::usage::DEFAULT_LABEL_CAP)]
    label_cap: u32,
    #[command(flatten)]
    coord: CoordArgs,
    /// Write the bound addresses as JSON to this file once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest usage and answer rollup queries (the default).
    Serve,
    /// Bring the database schema up to date, then exit (run once before an upgrade;
    /// serving replicas also migrate at start, one at a time under a database lock).
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = init_telemetry("switchyard-usage-collector", args.log.log_format);
    let store = UsageStore::open(&args.database_url)
        .await?
        .with_label_cap(args.label_cap);
    if let Some(Command::Migrate) = args.command {
        tracing::info!("usage-collector schema is up to date");
        return Ok(());
    }
    let grpc = bind(&args.grpc_listen).await?;
    let http = bind(&args.http_listen).await?;
    let addrs = BTreeMap::from([("grpc", grpc.local_addr()?), ("http", http.local_addr()?)]);
    tracing::info!(grpc = %addrs["grpc"], http = %addrs["http"], "usage collector listening");
    if let Some(path) = &args.addr_file {
        write_addr_file(path, &addrs)?;
    }
    let shutdown = shutdown_on_signal();
    let member = args.coord.member("usage-collector");
    let coordinator = args
        .coord
        .coordinator("usage-collector", &member, &shutdown)?;
    let retention = (args.retention_days > 0).then(|| Retention {
        keep_days: args.retention_days,
        every: std::time::Duration::from_secs(args.retention_check_seconds.max(1)),
        leader: coordinator.leadership("usage-retention"),
    });
    switchyard_usage_collector::run(store, Listeners { grpc, http }, retention, shutdown).await?;
    Ok(())
}
