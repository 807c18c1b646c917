//! `console`: the web console's pages and the API reads behind them against a big
//! tree, in server time. A main account with 10,000 sub-accounts (by default 20
//! children × 50 grandchildren × 10 below each), every account with an issued key
//! and the upper levels with credit, and 1,000,000 usage events over 60 days across
//! the tree and a dozen models. The control plane and the usage collector run as
//! their own processes (`SWITCHYARD_BIN_DIR` names the build whose binaries run), on SQLite files or, with `--postgres`, on
//! Postgres. The accounts are written through the control plane's store (its own
//! write path, one transaction each, as the API writes them) before it starts; the
//! events go through the collector's acked ingest, so the rollups are the
//! collector's own.
//!
//! Each URL of [`PAGES`] (and of `--page`) is asked `--runs` times after one warm-up;
//! its server time is what the control plane's own request-duration histogram
//! (`switchyard_api_request_duration_seconds`, on `/metrics`) adds up for it, read
//! before and after each request. The client's round trip is reported beside it.
//!
//! `SWITCHYARD_BIN_DIR=target/release cargo run -p switchyard-bench --bin console`

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use reqwest::StatusCode;
use switchyard_control_plane::store::{
    AccountRecord, AuditEntry, CreditEntry, IssuedKeyRecord, Store,
};
use switchyard_core::apikey;
use switchyard_core::crypto::Keyring;
use switchyard_core::ids::{AccountId, EventId, IssuedKeyId, ProviderKeyId};
use switchyard_core::snapshot::{Account, Status};
use switchyard_core::time::UtcDay;
use switchyard_core::usage::{TokenUsage, UsageEvent, UsageSource};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use switchyard_tests::pg::PgServer;
use switchyard_tests::procs::Proc;
use switchyard_tests::system::{ServiceSpec, spawn_collector, spawn_control};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// What is timed: a name, and the URL with `{…}` for what the seed decides (see
/// [`Seeded::fill`]). Console pages are asked with the session cookie, API reads
/// with the main account's key.
const PAGES: &[(&str, &str)] = &[
    ("console: overview", "/"),
    ("console: accounts", "/accounts"),
    ("console: accounts, page 250", "/accounts?page=250"),
    ("console: a leaf account", "/accounts/{leaf}"),
    ("console: keys", "/keys"),
    ("console: provider keys", "/admin/provider-keys"),
    ("bill: 30 days by day", "/x-bill?from={from30}&to={today}"),
    (
        "bill: 30 days, one model",
        "/x-bill?from={from30}&to={today}&model=model-03",
    ),
    (
        "bill: 30 days, one child's subtree",
        "/x-bill?from={from30}&to={today}&account={child}",
    ),
    (
        "bill: 30 days by month",
        "/x-bill?from={from30}&to={today}&granularity=month",
    ),
    (
        "bill: 30 days by provider key",
        "/x-bill?from={from30}&to={today}&by=provider_key",
    ),
    (
        "bill: 30 days by endpoint",
        "/x-bill?from={from30}&to={today}&by=endpoint",
    ),
    ("logs: first page", "/dashboard/logs?limit=50"),
    (
        "logs: a page 5 days back",
        "/dashboard/logs?limit=50&before={cursor5d}",
    ),
    ("logs: one leaf", "/dashboard/logs?limit=50&account={leaf}"),
    (
        "logs: one model, errors",
        "/dashboard/logs?limit=50&model=model-03&status=500",
    ),
    ("users: children", "/x-users?limit=20"),
    (
        "users: a child's children, deep page",
        "/x-users?id={child}&offset=40&limit=20",
    ),
    ("tree: first page", "/x-dna?limit=100"),
    ("tree: deep page", "/x-dna?offset=10000&limit=100"),
    ("info: a leaf", "/x-info?id={leaf}"),
    ("audit: first page", "/x-audit?limit=50"),
    ("audit: deep page", "/x-audit?limit=50&before={audit_deep}"),
    ("models", "/dashboard/models"),
    ("status", "/dashboard/status"),
];

#[derive(Parser)]
#[command(about = "Switchyard's console and reads at a big tree, in server time")]
struct Args {
    /// A Postgres server (`postgres://user@host:port/db`): two fresh databases are
    /// made there. `--postgres` alone starts a throwaway server. Default: SQLite.
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    postgres: Option<String>,
    /// Requests timed per URL (after one warm-up).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Usage events, spread over the last 60 days.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Sub-accounts per account at each level below the main account.
    #[arg(long, value_delimiter = ',', default_value = "20,50,10")]
    tree: Vec<usize>,
    /// More URLs to time, `/path?query` with the `{…}` names of the built-in ones;
    /// with `--only`, these alone.
    #[arg(long)]
    page: Vec<String>,
    #[arg(long)]
    only: bool,
    /// Keep the SQLite files and what the seed made here; a later run with the same
    /// directory skips the seed (migrations added since still run).
    #[arg(long)]
    data: Option<std::path::PathBuf>,
}

const MODELS: usize = 12;
const DAY_MS: i64 = 86_400_000;

/// One account of the tree, its chain up to the main account (itself first).
struct Node {
    chain: Vec<AccountId>,
}

struct Tree {
    main: AccountId,
    main_key: String,
    /// Every sub-account, parents before children.
    nodes: Vec<Node>,
}

/// A deterministic stream of numbers (SplitMix64), so every run seeds the same shape.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

fn audit(now: i64, owner: AccountId, action: &'static str, target: String) -> AuditEntry {
    AuditEntry {
        at_ms: now,
        actor: "bench".into(),
        owner: Some(owner),
        action,
        target,
        before: None,
        after: None,
    }
}

/// The main account and its tree, through the store's write path.
async fn seed_accounts(store: &Store, fan_out: &[usize]) -> anyhow::Result<Tree> {
    let now = switchyard_runtime::now_ms();
    let main = AccountId::new();
    let record = |id: AccountId, parent: Option<AccountId>, name: String| AccountRecord {
        account: Account {
            id,
            parent,
            name,
            status: Status::Active,
            policy: Default::default(),
            billing: Default::default(),
        },
        created_at_ms: now,
    };
    let (key, clear) = IssuedKeyRecord::fresh(main, None, now);
    store
        .create_account(
            &record(main, None, "acme".into()),
            &key,
            &audit(now, main, "account.create", main.to_string()),
        )
        .await?;
    let credit = |account: AccountId, parent: Option<AccountId>, amount: i64| CreditEntry {
        id: uuid_text(),
        at_unix_ms: now,
        account_id: account.to_string(),
        parent_id: parent.map(|p| p.to_string()),
        actor: "bench".into(),
        amount_nanos: amount,
        note: String::new(),
    };
    store
        .allocate_credit(
            &credit(main, None, 1_000_000_000_000_000),
            false,
            &audit(now, main, "credit.allocate", main.to_string()),
        )
        .await?;
    let mut nodes: Vec<Node> = Vec::new();
    let mut level: Vec<(Vec<AccountId>, String)> = vec![(vec![main], String::new())];
    let words = ["team", "project", "service", "stage"];
    for (depth, &n) in fan_out.iter().enumerate() {
        let last = depth + 1 == fan_out.len();
        let mut below = Vec::with_capacity(level.len() * n);
        for (chain, name) in &level {
            let parent = chain[0];
            for i in 0..n {
                let id = AccountId::new();
                let word = words.get(depth).copied().unwrap_or("unit");
                let own = format!(
                    "{name}{}{word}-{i:02}",
                    if name.is_empty() { "" } else { " " }
                );
                let (key, _) = IssuedKeyRecord::fresh(id, None, now);
                store
                    .create_account(
                        &record(id, Some(parent), own.clone()),
                        &key,
                        &audit(now, main, "account.create", id.to_string()),
                    )
                    .await?;
                // Credit down every level but the last, as a reseller funds its teams.
                if !last {
                    let amount =
                        1_000_000_000_000_000 / (10_i64.pow(u32::try_from(depth)? * 2 + 2));
                    store
                        .allocate_credit(
                            &credit(id, Some(parent), amount),
                            chain.len() == 1,
                            &audit(now, main, "credit.allocate", id.to_string()),
                        )
                        .await?;
                }
                let mut own_chain = Vec::with_capacity(chain.len() + 1);
                own_chain.push(id);
                own_chain.extend_from_slice(chain);
                nodes.push(Node {
                    chain: own_chain.clone(),
                });
                below.push((own_chain, own));
            }
        }
        level = below;
    }
    Ok(Tree {
        main,
        main_key: clear.expose().clone(),
        nodes,
    })
}

fn uuid_text() -> String {
    EventId::new().to_string()
}

/// Event `i` of the seed: mostly the deepest accounts, a fifth at the levels above,
/// a model of [`MODELS`] (each account favours three), a time in the last 60 days.
fn event(tree: &Tree, keys: &[ProviderKeyId], now: i64, mix: &mut Mix) -> pb::UsageEvent {
    let node = &tree.nodes[mix.below(tree.nodes.len())];
    let salt = usize::try_from(node.chain[0].0.as_u128() % 97).unwrap_or(0);
    let model = format!("model-{:02}", (salt + mix.below(3)) % MODELS);
    let at = now - i64::try_from(mix.next() % u64::try_from(60 * DAY_MS).unwrap_or(1)).unwrap_or(0);
    let status = if mix.below(40) == 0 { 500 } else { 200 };
    let input = 100 + mix.below(4000) as u64;
    switchyard_wire::encode_event(UsageEvent {
        id: EventId::new(),
        at_unix_ms: at,
        account_chain: node.chain.clone(),
        issued_key: IssuedKeyId::new(),
        provider_key: Some(keys[mix.below(keys.len())]),
        model_requested: model.clone(),
        model_served: model,
        level: 1,
        status,
        latency_ms: 300,
        ttfb_ms: Some(80),
        tokens: TokenUsage {
            input,
            output: input / 4,
            cached: input / 8,
            cache_write: 0,
        },
        source: UsageSource::Reported,
        cost_nanos: i64::try_from(input).unwrap_or(0) * 2_500,
        billed_nanos: i64::try_from(input).unwrap_or(0) * 3_000,
        price_version: 1,
        path: ["/v1/chat/completions", "/v1/responses", "/v1/messages"][mix.below(3)].into(),
        client_addr: "10.0.0.1".into(),
        streamed: mix.below(2) == 0,
        session: None,
        end_user: None,
        tag: None,
        client_protocol: None,
        upstream_protocol: None,
    })
}

/// `total` events through one acked ingest stream per `streams`, batches of 512.
async fn seed_usage(url: &str, tree: &Tree, total: usize) -> anyhow::Result<u64> {
    const BATCH: usize = 512;
    const STREAMS: usize = 2;
    let now = switchyard_runtime::now_ms();
    let keys: Vec<ProviderKeyId> = (0..4).map(|_| ProviderKeyId::new()).collect();
    let mut stored = 0;
    let per = total.div_ceil(STREAMS);
    let mut tasks = Vec::new();
    for s in 0..STREAMS {
        let count = per.min(total.saturating_sub(s * per));
        let batches: Vec<pb::UsageBatch> = {
            let mut mix = Mix(0x5eed + s as u64);
            let events: Vec<pb::UsageEvent> = (0..count)
                .map(|_| event(tree, &keys, now, &mut mix))
                .collect();
            events
                .chunks(BATCH)
                .enumerate()
                .map(|(i, chunk)| pb::UsageBatch {
                    seq: i as u64 + 1,
                    events: chunk.to_vec(),
                })
                .collect()
        };
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut client = UsageServiceClient::connect(url).await?;
            let (tx, rx) = mpsc::channel(2);
            let mut acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
            let sent = batches.len() as u64;
            tokio::spawn(async move {
                for b in batches {
                    if tx.send(b).await.is_err() {
                        break;
                    }
                }
            });
            let mut stored = 0u64;
            let mut acked = 0;
            while acked < sent {
                let ack = acks
                    .message()
                    .await?
                    .context("the ingest stream ended early")?;
                stored += u64::from(ack.stored);
                acked = ack.seq;
            }
            anyhow::Ok(stored)
        }));
    }
    for t in tasks {
        stored += t.await??;
    }
    Ok(stored)
}

/// The request-duration sums per route, from `/metrics`.
async fn server_sums(http: &reqwest::Client, base: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let prefix = "switchyard_api_request_duration_seconds_sum{";
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once("} ")?;
            let route = labels.split("route=\"").nth(1)?.split('"').next()?;
            Some((route.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

/// What the seed decided, for the `{…}` in URLs.
struct Seeded {
    values: BTreeMap<&'static str, String>,
}

impl Seeded {
    fn fill(&self, url: &str) -> String {
        self.values.iter().fold(url.to_owned(), |u, (k, v)| {
            u.replace(&format!("{{{k}}}"), v)
        })
    }
}

struct Timing {
    name: String,
    url: String,
    status: StatusCode,
    bytes: usize,
    server: Vec<Duration>,
    client: Vec<Duration>,
}

/// One URL, `runs` times after a warm-up: the server's time (the histogram's sum
/// grew by it, `/metrics` itself aside) and the client's.
async fn time_url(
    http: &reqwest::Client,
    base: &str,
    auth: &(reqwest::header::HeaderName, String),
    name: &str,
    url: &str,
    runs: usize,
) -> anyhow::Result<Timing> {
    let get = || {
        http.get(format!("{base}{url}"))
            .header(auth.0.clone(), auth.1.clone())
    };
    let warm = get().send().await?;
    let status = warm.status();
    let bytes = warm.bytes().await?.len();
    let mut server = Vec::with_capacity(runs);
    let mut client = Vec::with_capacity(runs);
    for _ in 0..runs {
        let before = server_sums(http, base).await?;
        let started = Instant::now();
        let answer = get().send().await?;
        let _ = answer.bytes().await?;
        client.push(started.elapsed());
        let after = server_sums(http, base).await?;
        let grew: f64 = after
            .iter()
            .filter(|(route, _)| route.as_str() != "/metrics")
            .map(|(route, v)| v - before.get(route).copied().unwrap_or(0.0))
            .sum();
        server.push(Duration::from_secs_f64(grew.max(0.0)));
    }
    Ok(Timing {
        name: name.to_owned(),
        url: url.to_owned(),
        status,
        bytes,
        server,
        client,
    })
}

fn quantiles(mut v: Vec<Duration>) -> [f64; 3] {
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    [at(0.5), at(0.95), at(1.0)]
}

/// `text` as a form value: every byte but letters and digits escaped.
fn form_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sign in to the console with `key`: the session cookie.
async fn sign_in(http: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<String> {
    let answer = http
        .post(format!("{base}/sign-in"))
        .header("origin", base)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(format!("key={}", form_encoded(key)))
        .send()
        .await?;
    let cookie = answer
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sy_console="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    cookie.with_context(|| format!("sign-in answered {} without a session", answer.status()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    anyhow::ensure!(
        std::env::var_os("SWITCHYARD_BIN_DIR").is_some(),
        "set SWITCHYARD_BIN_DIR to the build whose services run (target/release or target/debug)"
    );
    let temp = tempfile::tempdir()?;
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    anyhow::ensure!(
        args.data.is_none() || args.postgres.is_none(),
        "--data keeps SQLite files only"
    );
    let (_pg, control_db, usage_db, backend) = databases(args.postgres.as_deref(), &dir).await?;
    let mut log = std::io::stderr().lock();
    let seed_file = dir.join("seed.json");
    let kept: Option<Seed> = std::fs::read(&seed_file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let fresh = kept.is_none();

    let (seed, collector) = match kept {
        Some(seed) => {
            writeln!(log, "reusing the seed in {}", dir.display())?;
            (seed, spawn_collector(&dir, &usage_db, "127.0.0.1:0")?)
        }
        None => {
            let started = Instant::now();
            let store = Store::open(&control_db).await?;
            let tree = seed_accounts(&store, &args.tree).await?;
            drop(store);
            writeln!(
                log,
                "seeded {} sub-accounts in {:.1} s",
                tree.nodes.len(),
                started.elapsed().as_secs_f64()
            )?;
            let collector = spawn_collector(&dir, &usage_db, "127.0.0.1:0")?;
            let started = Instant::now();
            let stored = seed_usage(&collector.url("grpc"), &tree, args.events).await?;
            writeln!(
                log,
                "ingested {stored} events in {:.1} s",
                started.elapsed().as_secs_f64()
            )?;
            let seed = Seed::of(&tree, stored)?;
            if args.data.is_some() {
                std::fs::write(&seed_file, serde_json::to_vec(&seed)?)?;
            }
            (seed, collector)
        }
    };

    let root = apikey::generate_with_prefix("sy-root-")
        .clear
        .expose()
        .clone();
    let control: Proc = spawn_control(
        &dir,
        &ServiceSpec {
            control_db: &control_db,
            usage_db: &usage_db,
            root: &root,
            control_kek: &seed.kek,
            data_kek: &seed.kek,
            data_args: &[],
            data_env: &[],
            env: &[],
        },
        &collector.url("grpc"),
        ("127.0.0.1:0", "127.0.0.1:0"),
        &["--resync-seconds", "5", "--model-discovery-seconds", "0"],
    )?;
    let base = control.url("http");
    // Redirects are not followed: the sign-in's session cookie comes on its 303.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    if fresh {
        let added = http
            .post(format!("{base}/x-keys"))
            .bearer_auth(&seed.main_key)
            .json(
                &serde_json::json!({"provider": "openai", "base_url": "http://127.0.0.1:9/v1",
                "secret": "sk-bench-provider-secret", "models": ["model-*"], "level": 1}),
            )
            .send()
            .await?;
        anyhow::ensure!(
            added.status() == StatusCode::CREATED,
            "provider key: {}",
            added.text().await?
        );
    }
    let cookie = sign_in(&http, &base, &seed.main_key).await?;

    let values = seeded_values(&http, &base, &seed).await?;
    let seeded = Seeded { values };
    let mut pages: Vec<(String, String)> = if args.only {
        Vec::new()
    } else {
        PAGES
            .iter()
            .map(|(n, u)| ((*n).to_owned(), (*u).to_owned()))
            .collect()
    };
    pages.extend(args.page.iter().map(|u| (u.clone(), u.clone())));

    let mut timings = Vec::new();
    for (name, url) in &pages {
        let url = seeded.fill(url);
        let api = !is_console(&url);
        let auth = if api {
            (
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", seed.main_key),
            )
        } else {
            (reqwest::header::COOKIE, cookie.clone())
        };
        let t = time_url(&http, &base, &auth, name, &url, args.runs).await?;
        writeln!(log, "{name}: {} {} bytes", t.status, t.bytes)?;
        timings.push(t);
    }

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} sub-accounts, {} events over 60 days, {backend}, {} runs each (ms)\n",
        seed.sub_accounts, seed.events, args.runs
    )?;
    writeln!(
        out,
        "| read | URL | status | bytes | server p50 | p95 | max | client p50 | p95 | max |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|")?;
    for t in timings {
        let [s50, s95, smax] = quantiles(t.server);
        let [c50, c95, cmax] = quantiles(t.client);
        let shown = shorten(&t.url);
        writeln!(
            out,
            "| {} | `{shown}` | {} | {} | {s50:.1} | {s95:.1} | {smax:.1} | {c50:.1} | {c95:.1} | {cmax:.1} |",
            t.name,
            t.status.as_u16(),
            t.bytes
        )?;
    }
    drop(control);
    drop(collector);
    Ok(())
}

/// A URL with its ids shortened, for the table.
fn shorten(url: &str) -> String {
    url.split('&')
        .map(|part| match part.split_once('=') {
            Some((k, v)) if v.len() > 24 => format!("{k}=…"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
        .split('/')
        .map(|seg| {
            if seg.len() > 30 && !seg.contains('?') {
                "…"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// REST routes start with these; every other path is a console page.
fn is_console(url: &str) -> bool {
    !["/x-", "/dashboard/", "/v1/"]
        .iter()
        .any(|p| url.starts_with(p))
}

async fn seeded_values(
    http: &reqwest::Client,
    base: &str,
    seed: &Seed,
) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let today = UtcDay::of_unix_ms(switchyard_runtime::now_ms());
    // The audit log's sequence halfway down: a deep page of it.
    let newest: serde_json::Value = http
        .get(format!("{base}/x-audit?limit=1"))
        .bearer_auth(&seed.main_key)
        .send()
        .await?
        .json()
        .await?;
    let newest_seq = newest[0]["seq"].as_i64().unwrap_or(0);
    let mut values = BTreeMap::new();
    values.insert("leaf", seed.leaf.clone());
    values.insert("child", seed.child.clone());
    values.insert("main", seed.main.clone());
    values.insert("today", today.to_string());
    values.insert("from30", today.plus_days(-29).to_string());
    values.insert(
        "cursor5d",
        format!(
            "{}:{}",
            switchyard_runtime::now_ms() - 5 * DAY_MS,
            EventId::new()
        ),
    );
    values.insert("audit_deep", (newest_seq / 2).to_string());
    Ok(values)
}

/// What a seed made, kept beside its SQLite files (`--data`) for the next run.
#[derive(serde::Serialize, serde::Deserialize)]
struct Seed {
    main: String,
    main_key: String,
    /// A sub-account of the deepest level, a third of the way from the end.
    leaf: String,
    /// The first of the main account's children.
    child: String,
    sub_accounts: usize,
    events: u64,
    /// The control plane's key-encryption key (it sealed the provider key).
    kek: String,
}

impl Seed {
    fn of(tree: &Tree, events: u64) -> anyhow::Result<Self> {
        let leaf = tree
            .nodes
            .iter()
            .rev()
            .map(|n| n.chain[0])
            .nth(tree.nodes.len() / 3)
            .context("no sub-accounts")?;
        let child = tree
            .nodes
            .iter()
            .find(|n| n.chain.len() == 2)
            .map(|n| n.chain[0])
            .context("no child")?;
        Ok(Self {
            main: tree.main.to_string(),
            main_key: tree.main_key.clone(),
            leaf: leaf.to_string(),
            child: child.to_string(),
            sub_accounts: tree.nodes.len(),
            events,
            kek: Keyring::generate_spec("k1").to_string(),
        })
    }
}

/// The two databases: SQLite files in `dir`, or fresh databases on a Postgres
/// server (a throwaway one for an empty URL).
async fn databases(
    postgres: Option<&str>,
    dir: &Path,
) -> anyhow::Result<(Option<PgServer>, String, String, &'static str)> {
    match postgres {
        None => {
            let file = |name: &str| format!("sqlite://{}?mode=rwc", dir.join(name).display());
            Ok((None, file("control.db"), file("usage.db"), "SQLite"))
        }
        Some("") => {
            let pg = PgServer::start()?;
            let control = pg.create_database("control")?;
            let usage = pg.create_database("usage")?;
            Ok((Some(pg), control, usage, "Postgres"))
        }
        Some(url) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let suffix = std::process::id();
            let mut urls = Vec::new();
            for name in ["control", "usage"] {
                let db = format!("switchyard_console_{name}_{suffix}");
                // The name is ours: a fixed word and this process's id.
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                    .execute(&mut conn)
                    .await?;
                let (server, _) = url
                    .rsplit_once('/')
                    .context("a Postgres URL ends in /database")?;
                urls.push(format!("{server}/{db}"));
            }
            let usage = urls.pop().context("usage database")?;
            let control = urls.pop().context("control database")?;
            Ok((None, control, usage, "Postgres"))
        }
    }
}
