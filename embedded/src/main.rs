//! `switchyard up`: the whole system in one process on embedded defaults: SQLite
//! files under a data directory, no external service. The three services run their
//! production code paths and talk gRPC over loopback, exactly as when deployed apart.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{CommandFactory as _, Parser, Subcommand};
use switchyard_control_plane::service::OperatorOptions;
use switchyard_control_plane::store::Store;
use switchyard_core::apikey::{self, KeyHash};
use switchyard_core::crypto::Keyring;
use switchyard_data_plane::proxy::Limits;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_runtime::{bind, init_telemetry, shutdown_on_signal};
use switchyard_usage_collector::store::UsageStore;

// The same allocator as the data plane and collector binaries: the request path and
// usage batches allocate many small, short-lived buffers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Switchyard, a self-hosted AI API router",
    after_help = "Examples:\n  switchyard up --demo-upstream\n  switchyard login --url http://127.0.0.1:8080\n  switchyard accounts tree\n  switchyard export > tree.yaml && switchyard diff -f tree.yaml"
)]
struct Cli {
    #[command(flatten)]
    global: switchyard_cli::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run control plane, data plane and usage collector in one process on SQLite.
    #[command(
        after_help = "Examples:\n  switchyard up\n  switchyard up --demo-upstream --data-dir /var/lib/switchyard"
    )]
    Up(UpArgs),
    /// The admin commands, over the REST API of any Switchyard.
    #[command(flatten)]
    Admin(switchyard_cli::Command),
}

#[derive(Parser)]
struct UpArgs {
    #[command(flatten)]
    log: switchyard_runtime::LogArgs,
    /// Where the databases, the root key and the key-encryption key live.
    #[arg(long, default_value = ".switchyard")]
    data_dir: PathBuf,
    /// Proxy API (what applications call).
    #[arg(long, default_value = "127.0.0.1:8000")]
    proxy_listen: String,
    /// Admin and Manage REST API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    admin_listen: String,
    /// Also run the built-in demo upstream (an echo model, no real provider) and a
    /// `demo` main account whose key is written to `<data-dir>/demo-key`.
    #[arg(long)]
    demo_upstream: bool,
    /// Where the demo upstream listens.
    #[arg(long, default_value = "127.0.0.1:8090")]
    demo_upstream_listen: String,
    /// (`--demo-upstream` allows private upstreams too: it is on loopback.)
    #[command(flatten)]
    upstreams: switchyard_runtime::UpstreamNetworkArgs,
    /// Write the bound addresses as JSON to this file once everything is up.
    #[arg(long)]
    addr_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => {
            let _telemetry = init_telemetry("switchyard", args.log.log_format);
            up(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Admin(command) => Ok(switchyard_cli::run(cli.global, command, Cli::command).await),
    }
}

/// Read a secret file, or create it with `make` (mode 0600) on first start.
fn secret_file(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if path.exists() {
        return Ok(std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned());
    }
    let value = make();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(value.as_bytes())?;
    Ok(value)
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let root_key = secret_file(&args.data_dir.join("root-key"), || {
        apikey::generate_with_prefix("sy-root-")
            .clear
            .expose()
            .clone()
    })?;
    let kek = secret_file(&args.data_dir.join("kek"), || {
        Keyring::generate_spec("k1").to_string()
    })?;
    let keyring = Arc::new(
        Keyring::parse(&kek).context("invalid key-encryption keys in the data directory")?,
    );

    let shutdown = shutdown_on_signal();

    // Usage collector.
    let usage_store = UsageStore::open(&sqlite_url(&args.data_dir.join("usage.db"))).await?;
    let collector_grpc = bind("127.0.0.1:0").await?;
    let collector_url = format!("http://{}", collector_grpc.local_addr()?);
    let collector = tokio::spawn(switchyard_usage_collector::run(
        usage_store,
        switchyard_usage_collector::Listeners {
            grpc: collector_grpc,
            http: bind("127.0.0.1:0").await?,
        },
        Some(switchyard_usage_collector::Retention {
            keep_days: 90,
            every: Duration::from_secs(3600),
            // One collector in this process: it always leads.
            leader: switchyard_coord::Coordinator::local().leadership("usage-retention"),
        }),
        shutdown.clone(),
    ));

    // The demo upstream is on loopback: with it, upstreams may be anywhere.
    let upstream_networks = args.upstreams.clone().networks(args.demo_upstream);

    // Control plane.
    let store = Store::open(&sqlite_url(&args.data_dir.join("control.db"))).await?;
    let admin = bind(&args.admin_listen).await?;
    let admin_addr = admin.local_addr()?;
    let cp_grpc = bind("127.0.0.1:0").await?;
    let control_plane_url = format!("http://{}", cp_grpc.local_addr()?);
    let control = tokio::spawn(switchyard_control_plane::run(
        switchyard_control_plane::Config {
            store,
            keyring: keyring.clone(),
            root_key_hash: KeyHash::of(&root_key),
            collector_url: collector_url.clone(),
            options: OperatorOptions {
                upstream_networks: upstream_networks.clone(),
                resolver: None,
                discover_on_write: true,
            },
            resync: Duration::from_secs(5),
            coordinator: switchyard_coord::Coordinator::local(),
            replica_id: "embedded".to_owned(),
            reseal_every: Some(Duration::from_secs(60)),
            discovery_every: Some(Duration::from_secs(6 * 3600)),
            console: Default::default(),
            alert_every: Duration::from_secs(60),
        },
        switchyard_control_plane::Listeners {
            http: admin,
            grpc: cp_grpc,
        },
        shutdown.clone(),
    ));

    // Data plane.
    let proxy = bind(&args.proxy_listen).await?;
    let proxy_addr = proxy.local_addr()?;
    let data = tokio::spawn(switchyard_data_plane::run(
        switchyard_data_plane::Config {
            control_plane_urls: vec![control_plane_url],
            collector_url,
            keyring,
            replica_id: "embedded".to_owned(),
            limits: Limits::default(),
            cool_down: Default::default(),
            trusted_proxies: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            upstream_networks,
            usage_queue: 65_536,
            usage_flush_timeout: Duration::from_secs(10),
            usage_events: true,
            // The control plane is in this process: nothing to outlive.
            snapshot_file: None,
            usage_spool: Some(switchyard_data_plane::SpoolConfig {
                dir: args.data_dir.join("usage-spool"),
                max_bytes: 1 << 30,
            }),
            // One replica: limit counters in this process.
            redis: None,
            local_share_replicas: Some(1),
            metrics: switchyard_runtime::metrics_handle(),
            // One per CPU.
            serving_threads: 0,
            connections: Default::default(),
            access_log: Default::default(),
        },
        proxy,
        shutdown.clone(),
    ));

    let admin_url = format!("http://{admin_addr}");
    let proxy_url = format!("http://{proxy_addr}/v1");
    // Whatever the services log while the demo account is made comes before the
    // banner, which is then written whole, never split by a log line.
    let demo = if args.demo_upstream {
        Some(demo(&args, &admin_url, &root_key).await?)
    } else {
        None
    };
    let mut out = String::new();
    writeln!(
        out,
        "Switchyard is running (embedded: SQLite in {}).",
        args.data_dir.display()
    )?;
    writeln!(out, "  proxy API (apps):        {proxy_url}")?;
    writeln!(out, "  admin/manage REST API:   {admin_url}")?;
    writeln!(out, "  web console (browser):   {admin_url}/")?;
    writeln!(
        out,
        "  operator root key:       {}",
        args.data_dir.join("root-key").display()
    )?;
    if let Some(demo) = demo {
        writeln!(
            out,
            "  demo upstream:           {demo} (echo model, models demo-*)"
        )?;
        writeln!(
            out,
            "  demo account API key:    {}",
            args.data_dir.join("demo-key").display()
        )?;
        writeln!(out)?;
        writeln!(out, "Try it:")?;
        writeln!(
            out,
            "  curl {proxy_url}/chat/completions -H \"Authorization: Bearer $(cat {})\" \\\n    -H 'content-type: application/json' -d '{{\"model\":\"demo-echo\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'",
            args.data_dir.join("demo-key").display()
        )?;
    } else {
        writeln!(out)?;
        writeln!(
            out,
            "Create a main account, add a provider key, call a model:"
        )?;
        writeln!(
            out,
            "  ROOT=$(cat {})",
            args.data_dir.join("root-key").display()
        )?;
        writeln!(
            out,
            "  curl -s {admin_url}/x-users -H \"Authorization: Bearer $ROOT\" -H 'content-type: application/json' -d '{{\"name\":\"acme\"}}'"
        )?;
        writeln!(out, "  KEY=<api_key from the answer>")?;
        writeln!(
            out,
            "  curl -s {admin_url}/x-keys -H \"Authorization: Bearer $KEY\" -H 'content-type: application/json' \\\n    -d '{{\"provider\":\"openai\",\"base_url\":\"https://api.openai.com/v1\",\"secret\":\"sk-...\",\"models\":[\"gpt-4o*\"]}}'"
        )?;
        writeln!(
            out,
            "  curl {proxy_url}/chat/completions -H \"Authorization: Bearer $KEY\" -H 'content-type: application/json' \\\n    -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'"
        )?;
        writeln!(
            out,
            "  (or restart with --demo-upstream for an offline echo model)"
        )?;
    }
    writeln!(
        out,
        "Administer it in the browser (sign in with a key) or from a terminal:"
    )?;
    writeln!(
        out,
        "  switchyard login --url {admin_url} --key-file {}",
        args.data_dir.join("root-key").display()
    )?;
    writeln!(out, "Stop with Ctrl-C.")?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    drop(stdout);
    if let Some(path) = &args.addr_file {
        let addrs =
            std::collections::BTreeMap::from([("proxy", proxy_addr), ("admin", admin_addr)]);
        switchyard_runtime::write_addr_file(path, &addrs)?;
    }

    let (c, cp, dp) = tokio::join!(collector, control, data);
    c??;
    cp??;
    dp??;
    Ok(())
}

/// Start the demo upstream; on first start, create the `demo` main account and its
/// provider key through the public REST API, and keep the account's key in a file.
async fn demo(args: &UpArgs, admin_url: &str, root_key: &str) -> anyhow::Result<String> {
    let listener = bind(&args.demo_upstream_listen).await?;
    let fake = FakeUpstream::serve_unrecorded(listener)?;
    let key_path = args.data_dir.join("demo-key");
    if key_path.exists() {
        return Ok(fake.base_url());
    }
    switchyard_data_plane::install_tls_provider();
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{admin_url}/x-users"))
        .bearer_auth(root_key)
        .json(&serde_json::json!({"name": "demo"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let Some(key) = created["api_key"].as_str() else {
        bail!("the control plane did not return a key for the demo account");
    };
    http.post(format!("{admin_url}/x-keys"))
        .bearer_auth(key)
        .json(&serde_json::json!({
            "provider": "openai",
            "base_url": fake.base_url(),
            "secret": "demo-upstream-accepts-anything",
            "models": ["demo-*"],
        }))
        .send()
        .await?
        .error_for_status()?;
    secret_file(&key_path, || key.to_owned())?;
    Ok(fake.base_url())
}
