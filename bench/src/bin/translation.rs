//! `translation`: what protocol translation adds to a stream, measured in one run as a
//! difference against streams that are not translated. Two owners on the same data
//! plane (SQLite) and the same fake upstream: one whose provider key speaks OpenAI
//! Chat Completions, the client's own protocol (the stream is relayed as it is), one
//! whose key speaks Anthropic Messages (each event is translated back to Chat).
//!
//! Streams are opened on a fixed schedule (open loop: each first byte timed from when
//! its stream was due, so a stall shows instead of slowing the load), the two owners
//! taking turns over rounds. Per round, the data plane's own CPU time (user + system,
//! from `/proc/<pid>/stat`) is divided by the events its client received, so the
//! translation's CPU per event is the difference between the two owners.
//! Run with `target/release/translation` after a release build of the binaries.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_core::apikey;
use switchyard_tests::procs::Proc;
use switchyard_tests::system::{ServiceSpec, Services, spawn_services};

#[derive(Parser)]
#[command(about = "Translated streams against streams in the client's own protocol")]
struct Args {
    /// Streams opened per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of each owner's turn in a round.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Rounds; in each, both owners take a turn.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
}

/// The client's prompt: the fake upstream echoes it a word per event, so a stream
/// carries about thirty events.
const PROMPT: &str = "the benchmark asks for a stream of about thirty words so that each answer \
    carries enough events for the cost of relaying them to show above the cost of opening it";

/// Pause before each turn, for the collector to store the last one's usage.
const PAUSE: Duration = Duration::from_millis(500);

/// One owner's turn: first-byte times (µs, from when each stream was due), the
/// events its client received, failures, and the data plane's CPU over the turn.
#[derive(Default)]
struct Turn {
    micros: Vec<u64>,
    events: u64,
    errors: usize,
    cpu: Duration,
    wall: Duration,
}

impl Turn {
    fn absorb(&mut self, other: Turn) {
        self.micros.extend(other.micros);
        self.micros.sort_unstable();
        self.events += other.events;
        self.errors += other.errors;
        self.cpu += other.cpu;
        self.wall += other.wall;
    }

    fn pct(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let i = ((self.micros.len() as f64 - 1.0) * p).round() as usize;
        self.micros[i.min(self.micros.len() - 1)] as f64 / 1000.0
    }

    /// Data-plane CPU per event relayed, in µs.
    fn cpu_per_event(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.events as f64
    }

    /// Streams completed per second of the turn.
    fn rate(&self) -> f64 {
        self.micros.len() as f64 / self.wall.as_secs_f64()
    }
}

/// User plus system CPU time of process `pid` so far.
fn cpu_of(pid: u32, tick: f64) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15, 11 and 12 after the name.
    Ok(Duration::from_secs_f64((ticks(11)? + ticks(12)?) / tick))
}

/// Clock ticks per second of `/proc` times.
fn clock_tick() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One stream: its first byte's time from `due`, and the SSE events received.
async fn one_stream(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &[u8],
    due: Instant,
) -> Option<(Duration, u64)> {
    let answer = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .ok()?;
    if !answer.status().is_success() {
        return None;
    }
    let mut chunks = answer.bytes_stream();
    let first = chunks.next().await?.ok()?;
    let ttfb = due.elapsed();
    let mut text = first.to_vec();
    while let Some(chunk) = chunks.next().await {
        text.extend_from_slice(&chunk.ok()?);
    }
    let events = text.windows(6).filter(|w| w == b"data: ").count() as u64;
    Some((ttfb, events))
}

/// A turn of `seconds` at `rate` streams per second with `key`. A dedicated thread
/// keeps the schedule (the runtime's timer ticks in whole milliseconds).
async fn turn(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    args: &Args,
    data_plane: u32,
    tick: f64,
) -> anyhow::Result<Turn> {
    let body: Arc<Vec<u8>> = Arc::new(serde_json::to_vec(&json!({
        "model": "gpt-4o-mini", "stream": true,
        "messages": [{"role": "user", "content": PROMPT}]
    }))?);
    let total = u64::from(args.rate) * args.seconds;
    let rate = u64::from(args.rate);
    let runtime = tokio::runtime::Handle::current();
    let (http, url, key) = (http.clone(), url.to_owned(), key.to_owned());
    let cpu_before = cpu_of(data_plane, tick)?;
    let started = Instant::now();
    let dispatch = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for i in 0..total {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let (http, url, key, body) = (http.clone(), url.clone(), key.clone(), body.clone());
            tasks.push(
                runtime.spawn(async move { one_stream(&http, &url, &key, &body, due).await }),
            );
        }
        tasks
    });
    let mut out = Turn::default();
    for t in dispatch.await? {
        match t.await {
            Ok(Some((ttfb, events))) => {
                out.micros
                    .push(u64::try_from(ttfb.as_micros()).unwrap_or(u64::MAX));
                out.events += events;
            }
            _ => out.errors += 1,
        }
    }
    out.wall = started.elapsed();
    out.cpu = cpu_of(data_plane, tick)?.saturating_sub(cpu_before);
    out.micros.sort_unstable();
    Ok(out)
}

/// A main account whose provider key (`kind`) is the fake upstream: its API key.
async fn owner(
    http: &reqwest::Client,
    admin: &str,
    root: &str,
    name: &str,
    kind: &str,
    upstream: &str,
) -> anyhow::Result<String> {
    let created: Value = http
        .post(format!("{admin}/x-users"))
        .bearer_auth(root)
        .json(&json!({"name": name, "policy": {}}))
        .send()
        .await?
        .json()
        .await?;
    let key = created["api_key"]
        .as_str()
        .context("no api key in the answer")?
        .to_owned();
    let added = http
        .post(format!("{admin}/x-keys"))
        .bearer_auth(&key)
        .json(&json!({"provider": kind, "base_url": upstream, "secret": "sk-bench-0001", "models": ["*"]}))
        .send()
        .await?;
    if !added.status().is_success() {
        bail!("adding a provider key failed: {}", added.text().await?);
    }
    Ok(key)
}

/// Until the data plane serves `key` a stream, with the translation header `want`.
async fn wait_served(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    want: Option<&str>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = http
            .post(url)
            .bearer_auth(key)
            .json(&json!({"model": "gpt-4o-mini", "stream": true,
                          "messages": [{"role": "user", "content": PROMPT}]}))
            .send()
            .await;
        if let Ok(r) = &answer
            && r.status().is_success()
        {
            let got = r
                .headers()
                .get("x-switchyard-translated")
                .and_then(|v| v.to_str().ok());
            if got != want {
                bail!("expected translation {want:?}, the answer says {got:?}");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the data plane never served the key: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn row(name: &str, t: &Turn) -> String {
    format!(
        "| {name} | {:.0} | {:.3} | {:.3} | {} | {:.2} | {:.2} |",
        t.rate(),
        t.pct(0.5),
        t.pct(0.99),
        t.errors,
        t.events as f64 / t.micros.len().max(1) as f64,
        t.cpu_per_event()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .tcp_nodelay(true)
        .build()?;
    let fake = Proc::spawn(
        "switchyard-fake-upstream",
        &["--listen", "127.0.0.1:0"],
        &[("RUST_LOG", "warn")],
        dir.path(),
    )?;
    let upstream = format!("{}/v1", fake.url("http"));
    let root = apikey::generate_with_prefix("sy-root-")
        .clear
        .expose()
        .clone();
    let kek = switchyard_core::crypto::Keyring::generate_spec("k1").to_string();
    let db = |name: &str| format!("sqlite://{}?mode=rwc", dir.path().join(name).display());
    let Services {
        collector,
        control,
        data,
    } = spawn_services(
        dir.path(),
        &ServiceSpec {
            control_db: &db("control.db"),
            usage_db: &db("usage.db"),
            root: &root,
            control_kek: &kek,
            data_kek: &kek,
            data_args: &[],
            data_env: &[("RUST_LOG", "warn")],
            env: &[],
        },
    )?;
    let admin = control.url("http");
    let own = owner(&http, &admin, &root, "own", "openai", &upstream).await?;
    let other = owner(&http, &admin, &root, "other", "anthropic", &upstream).await?;
    let url = format!("{}/v1/chat/completions", data.url("http"));
    wait_served(&http, &url, &own, None).await?;
    wait_served(&http, &url, &other, Some("openai-chat->anthropic-messages")).await?;
    let tick = clock_tick();
    let pid = data.pid();
    // Warm the pools and the data plane at the rate.
    let warm = Args {
        rate: args.rate,
        seconds: 1,
        rounds: 1,
    };
    turn(&http, &url, &own, &warm, pid, tick).await?;
    turn(&http, &url, &other, &warm, pid, tick).await?;

    let (mut passthrough, mut translated) = (Turn::default(), Turn::default());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| round | owner | streams/s | first byte p50 (ms) | p99 (ms) | errors | events/stream | data-plane CPU/event (µs) |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    for r in 0..args.rounds {
        // Alternate which owner goes first, so neither always follows the other.
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for is_translated in order {
            tokio::time::sleep(PAUSE).await;
            let (key, into, name) = if is_translated {
                (&other, &mut translated, "translated")
            } else {
                (&own, &mut passthrough, "own protocol")
            };
            let t = turn(&http, &url, key, &args, pid, tick).await?;
            writeln!(
                out,
                "| {} | {}",
                r + 1,
                row(name, &t).trim_start_matches("| ")
            )?;
            into.absorb(t);
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "| all rounds, {} streams/s target | streams/s | first byte p50 (ms) | p99 (ms) | errors | events/stream | data-plane CPU/event (µs) |",
        args.rate
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    writeln!(
        out,
        "{}",
        row("own protocol (Chat on an OpenAI key)", &passthrough)
    )?;
    writeln!(
        out,
        "{}",
        row("translated (Chat on an Anthropic key)", &translated)
    )?;
    writeln!(
        out,
        "| translation added | | {:+.3} | {:+.3} | | | {:+.2} |",
        translated.pct(0.5) - passthrough.pct(0.5),
        translated.pct(0.99) - passthrough.pct(0.99),
        translated.cpu_per_event() - passthrough.cpu_per_event()
    )?;
    for mut p in [data, control, collector] {
        let _ = p.terminate(Duration::from_secs(10));
    }
    drop(fake);
    Ok(())
}
