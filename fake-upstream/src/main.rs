//! `switchyard-fake-upstream`: the fake upstream as its own process, for the benchmark
//! (a separate process so it does not share the load generator's runtime).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use switchyard_fake_upstream::FakeUpstream;

#[derive(Parser)]
#[command(
    version,
    about = "A local OpenAI/Anthropic/Gemini-compatible upstream for tests and benchmarks"
)]
struct Args {
    #[command(flatten)]
    log: switchyard_runtime::LogArgs,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Write the bound address as JSON to this file once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// The models `GET /v1/models` lists, comma-separated (default: demo-echo,gpt-4o-mini).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry =
        switchyard_runtime::init_telemetry("switchyard-fake-upstream", args.log.log_format);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let fake = FakeUpstream::serve_unrecorded(listener)?;
    if !args.models.is_empty() {
        fake.set_models(&args.models.iter().map(String::as_str).collect::<Vec<_>>());
    }
    if let Some(path) = &args.addr_file {
        switchyard_runtime::write_addr_file(path, &BTreeMap::from([("http", fake.addr)]))?;
    }
    tracing::info!(addr = %fake.addr, "fake upstream listening");
    switchyard_runtime::shutdown_on_signal().wait().await;
    Ok(())
}
