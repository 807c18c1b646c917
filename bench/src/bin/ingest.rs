//! `ingest`: the usage collector's sustained ingest with rollups on, in events per
//! second, into Postgres (a throwaway server) or SQLite (the embedded default). The
//! database and the collector binary run as their own processes; the load generator
//! plays `--streams` data planes, each sending batches of `--batch` events over one
//! acked stream with up to two batches unacknowledged, as the data plane does. At the
//! end the rollups are checked to hold exactly the events acknowledged.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use switchyard_core::ids::{AccountId, EventId, IssuedKeyId, ProviderKeyId};
use switchyard_core::usage::{TokenUsage, UsageEvent, UsageSource};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use switchyard_tests::pg::PgServer;
use switchyard_tests::system::spawn_collector;
use switchyard_usage_collector::store::{Granularity, RollupBy, RollupFilter, UsageStore};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

#[derive(Parser)]
#[command(about = "Switchyard's usage ingest benchmark (rollups on)")]
struct Args {
    /// The collector's database.
    #[arg(long, value_enum, default_value_t = Store::Postgres)]
    store: Store,
    /// Seconds of sustained load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent ingest streams (data planes).
    #[arg(long, default_value_t = 2)]
    streams: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 512)]
    batch: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Store {
    Postgres,
    Sqlite,
}

/// Ten main accounts with ten sub-accounts each, three models: rollup rows are
/// shared by many events, as in real traffic.
struct Population {
    chains: Vec<Vec<AccountId>>,
    keys: Vec<ProviderKeyId>,
}

impl Population {
    fn new() -> Self {
        let mut chains = Vec::new();
        for _ in 0..10 {
            let main = AccountId::new();
            chains.push(vec![main]);
            for _ in 0..10 {
                chains.push(vec![AccountId::new(), main]);
            }
        }
        Self {
            chains,
            // Two provider keys per owner, as an owner's calls go through its own keys.
            keys: (0..20).map(|_| ProviderKeyId::new()).collect(),
        }
    }

    fn event(&self, i: usize) -> pb::UsageEvent {
        switchyard_wire::encode_event(UsageEvent {
            id: EventId::new(),
            at_unix_ms: switchyard_runtime::now_ms(),
            account_chain: self.chains[i % self.chains.len()].clone(),
            issued_key: IssuedKeyId::new(),
            // The chain's owner is chain / 11 (one owner, then its ten children).
            provider_key: Some(self.keys[(i % self.chains.len()) / 11 * 2 + i % 2]),
            model_requested: ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4"][i % 3].into(),
            model_served: ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4"][i % 3].into(),
            level: 1,
            status: if i.is_multiple_of(50) { 500 } else { 200 },
            latency_ms: 120,
            ttfb_ms: Some(40),
            tokens: TokenUsage {
                input: 200 + (i % 100) as u64,
                output: 50,
                cached: 20,
                cache_write: 0,
            },
            source: UsageSource::Reported,
            cost_nanos: 1_000,
            billed_nanos: 1_200,
            price_version: 7,
            path: "/v1/chat/completions".into(),
            client_addr: "10.0.0.1".into(),
            streamed: i.is_multiple_of(2),
            session: None,
            end_user: None,
            tag: None,
            client_protocol: None,
            upstream_protocol: None,
        })
    }
}

/// One data plane's stream: batches until `end`, at most two unacknowledged.
/// Returns the events acknowledged as stored.
async fn one_stream(
    url: String,
    population: Arc<Population>,
    batch: usize,
    end: Instant,
) -> anyhow::Result<u64> {
    let mut client = UsageServiceClient::connect(url).await?;
    let (tx, rx) = mpsc::channel(4);
    let in_flight = Arc::new(Semaphore::new(2));
    let mut acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
    let sender = {
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < end {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                permit.forget();
                seq += 1;
                let start = usize::try_from(seq).unwrap_or(0) * batch;
                let events = (start..start + batch)
                    .map(|i| population.event(i))
                    .collect();
                if tx.send(pb::UsageBatch { seq, events }).await.is_err() {
                    break;
                }
            }
            seq
        })
    };
    // The sender ends (and with it the request stream) at `end`; the collector then
    // acknowledges what is left and ends the answer stream.
    let mut stored = 0u64;
    let mut acked = 0u64;
    while let Ok(Ok(Some(ack))) =
        tokio::time::timeout(Duration::from_secs(30), acks.message()).await
    {
        stored += u64::from(ack.stored);
        acked = ack.seq;
        in_flight.add_permits(1);
    }
    let total = sender.await.unwrap_or(0);
    anyhow::ensure!(acked == total, "{acked} of {total} batches acknowledged");
    Ok(stored)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    // The server lives until the end; SQLite is a file in `dir`.
    let (_pg, db, store_name) = match args.store {
        Store::Postgres => {
            let pg = PgServer::start()?;
            let db = pg.create_database("usage")?;
            (Some(pg), db, "Postgres")
        }
        Store::Sqlite => {
            let db = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("usage.db").display()
            );
            (None, db, "SQLite")
        }
    };
    let collector = spawn_collector(dir.path(), &db, "127.0.0.1:0")?;
    let url = collector.url("grpc");
    let population = Arc::new(Population::new());

    // Warm up: connections, prepared statements, the rollup rows.
    let warm_end = Instant::now() + Duration::from_secs(1);
    let warm = one_stream(url.clone(), population.clone(), args.batch, warm_end).await?;

    let started = Instant::now();
    let end = started + Duration::from_secs(args.seconds);
    let streams: Vec<_> = (0..args.streams)
        .map(|_| tokio::spawn(one_stream(url.clone(), population.clone(), args.batch, end)))
        .collect();
    let mut stored = 0u64;
    for s in streams {
        stored += s.await.context("stream task")??;
    }
    let elapsed = started.elapsed().as_secs_f64();

    let in_rollups: u64 = UsageStore::open(&db)
        .await?
        .rollups(&RollupFilter {
            main_account: None,
            accounts: Vec::new(),
            children: Vec::new(),
            model: None,
            by: RollupBy::Account,
            from_day: "0000-01-01".parse()?,
            to_day: "9999-12-31".parse()?,
            granularity: Granularity::Day,
        })
        .await?
        .iter()
        .map(|r| r.requests)
        .sum();
    anyhow::ensure!(
        in_rollups == stored + warm,
        "rollups hold {in_rollups} requests, {} were stored",
        stored + warm
    );
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| collector ingest ({store_name}, rollups on) | value |"
    )?;
    writeln!(out, "|---|---|")?;
    writeln!(
        out,
        "| streams × batch | {} × {} |",
        args.streams, args.batch
    )?;
    writeln!(out, "| events stored | {stored} in {elapsed:.1} s |")?;
    writeln!(
        out,
        "| events per second | {:.0} |",
        stored as f64 / elapsed
    )?;
    writeln!(
        out,
        "| rollups check | {in_rollups} requests = events stored |"
    )?;
    drop(collector);
    Ok(())
}
