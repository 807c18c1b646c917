//! `switchyard-bench`: what the data plane adds to a call, measured in one run against
//! two baselines: the fake upstream called directly, and nginx as a reverse proxy in
//! front of it (the practical limit of a proxy). Every process is separate: the fake
//! upstream, nginx, the collector, the control plane and the data plane (SQLite).
//!
//! - Added latency at fixed open-loop rates: requests are sent on a fixed schedule
//!   whatever the answers do, and each latency counts from its scheduled time, so a
//!   stall shows up instead of slowing the load (no coordinated omission).
//! - Time to first byte of streams, added over the direct call.
//! - Maximum throughput with 64 connections (closed loop).
//! - Each of these phases is cut into rounds in which the three targets take turns,
//!   after a short pause, so a slow spell of the machine is shared among them.
//! - The admission path: latency at a fixed rate of calls that have limits next to
//!   calls of an account without any, on a data plane counting in-process and on one
//!   counting in Redis (on loopback), in the same run.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_core::apikey;
use switchyard_tests::free_port;
use switchyard_tests::procs::Proc;
use switchyard_tests::redis::RedisServer;
use switchyard_tests::system::{ServiceSpec, Services, spawn_data_plane, spawn_services};

mod training;

#[derive(Parser)]
#[command(about = "Switchyard's proxy benchmark")]
struct Args {
    /// Seconds of each open-loop and throughput phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Open-loop rates in requests per second.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000")]
    rates: Vec<u32>,
    /// Connections of the throughput phase.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Streams measured for time to first byte.
    #[arg(long, default_value_t = 2000)]
    streams: usize,
    /// Rounds each phase is cut into, the targets taking turns, so a slow spell of
    /// the machine falls on all of them rather than on whichever ran then.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Only the phases against the two baselines: no admission or emission pairs.
    #[arg(long)]
    baselines_only: bool,
    /// Open-loop rate of the admission-path phase.
    #[arg(long, default_value_t = 1000)]
    admission_rate: u32,
    /// Measure nothing: drive every route of the data plane (both protocols, whole
    /// answers and streams, refusals) for this many seconds, then stop the processes
    /// cleanly. `scripts/build-pgo.sh` builds the data plane from the profile an
    /// instrumented build of it records under this load. Needs no nginx.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    training: Option<u64>,
    /// The data plane's log filter (`RUST_LOG`). `info` writes its access line per
    /// call, to measure what that costs against `warn` or `--access-log off`.
    #[arg(long, default_value = "warn")]
    data_plane_log: String,
}

#[derive(Clone)]
struct Target {
    url: String,
    key: String,
}

/// nginx in front of the fake upstream, with pooled keep-alive connections.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its workers; SIGKILL would orphan them.
        let stopped = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn start_nginx(dir: &Path, upstream: std::net::SocketAddr) -> anyhow::Result<(Nginx, u16)> {
    let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("nginx is not installed (scripts/bench.sh installs it)")?;
    let port = free_port()?;
    let d = dir.display();
    let conf = format!(
        "worker_processes auto; daemon off; pid {d}/nginx.pid; error_log {d}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream fake {{ server {upstream}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_buffering off;
    }}
  }}
}}
"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start nginx")?;
    let nginx = Nginx(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nginx did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((nginx, port))
}

/// Stop the system's processes as a supervisor does, the data plane first. Each must
/// exit cleanly: that is also when an instrumented build writes its profile.
fn stop(procs: Vec<Proc>) -> anyhow::Result<()> {
    let mut unclean = Vec::new();
    for mut p in procs.into_iter().rev() {
        match p.terminate(STOP_GRACE) {
            Ok(status) if status.success() => {}
            Ok(status) => unclean.push(format!("exited with {status}:\n{}", p.log_tail())),
            Err(e) => unclean.push(e.to_string()),
        }
    }
    if !unclean.is_empty() {
        bail!("not every process stopped cleanly:\n{}", unclean.join("\n"));
    }
    Ok(())
}

/// The processes of the system, on SQLite, with two owners whose provider key is the
/// fake upstream: one whose limits every call is checked against, one without limits.
struct Bench {
    procs: Vec<Proc>,
    proxy: String,
    limited_key: String,
    free_key: String,
    /// An owner with the same limits whose rules turn the quota headers off.
    quiet_key: String,
    admin_url: String,
    control_url: String,
    collector_url: String,
    kek: String,
}

async fn start_system(
    dir: &Path,
    upstream: &str,
    http: &reqwest::Client,
    data_plane_log: &str,
) -> anyhow::Result<Bench> {
    let root = apikey::generate_with_prefix("sy-root-")
        .clear
        .expose()
        .clone();
    let kek = switchyard_core::crypto::Keyring::generate_spec("k1").to_string();
    let db = |name: &str| format!("sqlite://{}?mode=rwc", dir.join(name).display());
    let Services {
        collector,
        control,
        data,
    } = spawn_services(
        dir,
        &ServiceSpec {
            control_db: &db("control.db"),
            usage_db: &db("usage.db"),
            root: &root,
            control_kek: &kek,
            data_kek: &kek,
            data_args: &[],
            data_env: &[("RUST_LOG", data_plane_log)],
            env: &[],
        },
    )?;
    let admin = control.url("http");
    // Limits high enough never to refuse, so every call goes through admission and
    // settlement on each counter kind.
    let limits = json!({
        "rpm": 100_000_000, "key_rpm": 100_000_000,
        "model_limits": {"*": {"rpm": 100_000_000, "tpm": 100_000_000_000_u64}},
        "credit": {"limit_nanos": 1_000_000_000_000_000_000_u64, "period": "month"}
    });
    let limited_key = owner(http, &admin, &root, "bench", limits.clone(), upstream).await?;
    let free_key = owner(http, &admin, &root, "free", json!({}), upstream).await?;
    let quiet_key = owner(http, &admin, &root, "quiet", limits, upstream).await?;
    let off = http
        .put(format!("{admin}/x-config/limits?key=quota_headers"))
        .bearer_auth(&quiet_key)
        .json(&json!(false))
        .send()
        .await?;
    if !off.status().is_success() {
        bail!(
            "turning the quota headers off failed: {}",
            off.text().await?
        );
    }
    let proxy = data.url("http");
    for key in [&limited_key, &free_key, &quiet_key] {
        wait_served(http, &proxy, key).await?;
    }
    Ok(Bench {
        admin_url: admin,
        control_url: control.url("grpc"),
        collector_url: collector.url("grpc"),
        procs: vec![collector, control, data],
        proxy,
        limited_key,
        free_key,
        quiet_key,
        kek,
    })
}

/// A main account with `policy` and the fake upstream as its provider key: its key.
async fn owner(
    http: &reqwest::Client,
    admin: &str,
    root: &str,
    name: &str,
    policy: Value,
    upstream: &str,
) -> anyhow::Result<String> {
    let created: Value = http
        .post(format!("{admin}/x-users"))
        .bearer_auth(root)
        .json(&json!({"name": name, "policy": policy}))
        .send()
        .await?
        .json()
        .await?;
    let key = created["api_key"]
        .as_str()
        .context("no api key in the answer")?
        .to_owned();
    let provider_key = json!({"provider": "openai", "base_url": upstream, "secret": "sk-bench-0001", "models": ["*"]});
    add_provider_key(http, admin, &key, &provider_key).await?;
    Ok(key)
}

/// Give the owner whose API key is `key` the provider key `spec` (as `POST /x-keys`
/// takes it).
async fn add_provider_key(
    http: &reqwest::Client,
    admin: &str,
    key: &str,
    spec: &Value,
) -> anyhow::Result<()> {
    let added = http
        .post(format!("{admin}/x-keys"))
        .bearer_auth(key)
        .json(spec)
        .send()
        .await?;
    if !added.status().is_success() {
        bail!("adding a provider key failed: {}", added.text().await?);
    }
    Ok(())
}

/// Until the data plane at `proxy` serves `key`.
async fn wait_served(http: &reqwest::Client, proxy: &str, key: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = http
            .post(format!("{proxy}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat(false))
            .send()
            .await;
        if answer.as_ref().is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the data plane at {proxy} never served the key: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream,
           "messages": [{"role": "user", "content": "hello from the benchmark"}]})
}

async fn one_call(client: &reqwest::Client, target: &Target, body: &Arc<Vec<u8>>) -> bool {
    let sent = client
        .post(&target.url)
        .bearer_auth(&target.key)
        .header("content-type", "application/json")
        .body(body.as_ref().clone())
        .send()
        .await;
    match sent {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

#[derive(Default)]
struct Latencies {
    micros: Vec<u64>,
    errors: usize,
    /// Each absorbed round's own p99.
    round_p99: Vec<f64>,
}

impl Latencies {
    /// Pool another run's samples into these, keeping its own percentiles.
    fn absorb(&mut self, other: Latencies) {
        self.round_p99.push(other.pct(0.99));
        self.micros.extend(other.micros);
        self.micros.sort_unstable();
        self.errors += other.errors;
    }

    fn pct(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let i = ((self.micros.len() as f64 - 1.0) * p).round() as usize;
        self.micros[i.min(self.micros.len() - 1)] as f64 / 1000.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Rounds every target ran.
fn rounds(lat: &[Latencies]) -> usize {
    lat.iter().map(|l| l.round_p99.len()).min().unwrap_or(0)
}

/// The median over rounds of `f` of the targets' p99s in that round.
fn median_of_rounds(lat: &[Latencies], f: impl Fn(&[f64]) -> f64) -> f64 {
    median(
        (0..rounds(lat))
            .map(|r| f(&lat.iter().map(|l| l.round_p99[r]).collect::<Vec<_>>()))
            .collect(),
    )
}

/// Fixed-rate load: request `i` is due at `start + i / rate`, sent then whatever
/// the earlier ones are doing, and timed from when it was due. A dedicated thread
/// keeps the schedule: the runtime's timer ticks in whole milliseconds, which at
/// these rates would add more jitter than the proxy adds latency.
async fn open_loop(
    client: &reqwest::Client,
    target: &Target,
    rate: u32,
    seconds: u64,
) -> Latencies {
    let body = Arc::new(serde_json::to_vec(&chat(false)).unwrap_or_default());
    let total = u64::from(rate) * seconds;
    let runtime = tokio::runtime::Handle::current();
    let client = client.clone();
    let target = target.clone();
    let dispatch = tokio::task::spawn_blocking(move || {
        let start = Instant::now() + Duration::from_millis(50);
        let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for i in 0..total {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / u64::from(rate));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let client = client.clone();
            let body = body.clone();
            let target = target.clone();
            tasks.push(runtime.spawn(async move {
                let ok = one_call(&client, &target, &body).await;
                (ok, due.elapsed())
            }));
        }
        tasks
    });
    let tasks = dispatch.await.unwrap_or_default();
    let mut micros = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok((true, d)) => micros.push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            _ => errors += 1,
        }
    }
    micros.sort_unstable();
    Latencies {
        micros,
        errors,
        round_p99: Vec::new(),
    }
}

/// Time to the first body byte of streamed calls, one at a time.
async fn stream_ttfb(client: &reqwest::Client, target: &Target, n: usize) -> Latencies {
    let body = serde_json::to_vec(&chat(true)).unwrap_or_default();
    let mut micros = Vec::with_capacity(n);
    let mut errors = 0;
    for _ in 0..n {
        let started = Instant::now();
        let sent = client
            .post(&target.url)
            .bearer_auth(&target.key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let Ok(r) = sent else {
            errors += 1;
            continue;
        };
        let mut chunks = r.bytes_stream();
        match chunks.next().await {
            Some(Ok(_)) => {
                micros.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))
            }
            _ => errors += 1,
        }
        while chunks.next().await.is_some() {}
    }
    micros.sort_unstable();
    Latencies {
        micros,
        errors,
        round_p99: Vec::new(),
    }
}

/// Closed loop: `connections` workers call back to back; completed calls per second.
async fn throughput(
    client: &reqwest::Client,
    target: &Target,
    connections: usize,
    seconds: u64,
) -> f64 {
    let body = Arc::new(serde_json::to_vec(&chat(false)).unwrap_or_default());
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let client = client.clone();
            let body = body.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < end {
                    if one_call(&client, &target, &body).await {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap_or(0);
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Pooled p50 and p99 of the three targets, then (with several rounds) the median
/// over rounds of each round's own p99 and of each round's added p99: a stall of
/// the machine spoils the rounds it falls in rather than the whole figure.
fn percentile_rows(out: &mut impl Write, phase: &str, lat: &[Latencies]) -> std::io::Result<()> {
    for (label, p) in [("p50", 0.50), ("p99", 0.99)] {
        let v: Vec<f64> = lat.iter().map(|l| l.pct(p)).collect();
        writeln!(
            out,
            "| {phase} {label} (ms) | {:.3} | {:.3} | {:.3} | {:+.3} | {:+.3} |",
            v[0],
            v[1],
            v[2],
            v[2] - v[0],
            v[1] - v[0]
        )?;
    }
    let rounds = rounds(lat);
    if rounds > 1 {
        // Targets in order: direct, nginx, switchyard.
        let own: Vec<f64> = (0..3).map(|t| median_of_rounds(lat, |r| r[t])).collect();
        writeln!(
            out,
            "| {phase} p99, median of {rounds} rounds (ms) | {:.3} | {:.3} | {:.3} | {:+.3} | {:+.3} |",
            own[0],
            own[1],
            own[2],
            median_of_rounds(lat, |r| r[2] - r[0]),
            median_of_rounds(lat, |r| r[1] - r[0]),
        )?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?;
    let fake = Proc::spawn(
        "switchyard-fake-upstream",
        &["--listen", "127.0.0.1:0"],
        &[("RUST_LOG", "warn")],
        dir.path(),
    )?;
    let fake_url = fake.url("http");
    let fake_addr: std::net::SocketAddr = fake_url
        .trim_start_matches("http://")
        .parse()
        .context("fake upstream address")?;
    let upstream = format!("{fake_url}/v1");
    if let Some(seconds) = args.training {
        let bench = start_system(dir.path(), &upstream, &http, &args.data_plane_log).await?;
        let trained = training::run(&http, &bench, &upstream, Duration::from_secs(seconds)).await;
        let stopped = stop(bench.procs);
        return trained.and(stopped);
    }
    let (_nginx, nginx_port) = start_nginx(dir.path(), fake_addr)?;
    let bench = start_system(dir.path(), &upstream, &http, &args.data_plane_log).await?;
    let path = "/v1/chat/completions";
    let targets = [
        Target {
            url: format!("{fake_url}{path}"),
            key: "sk-bench-0001".into(),
        },
        Target {
            url: format!("http://127.0.0.1:{nginx_port}{path}"),
            key: "sk-bench-0001".into(),
        },
        Target {
            url: format!("{}{path}", bench.proxy),
            key: bench.limited_key.clone(),
        },
    ];
    // Warm every pool.
    for t in &targets {
        throughput(&http, t, 8, 1).await;
    }

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| phase | direct | nginx | switchyard | switchyard added | nginx added |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    let per_round = args.seconds.div_ceil(args.rounds).max(1);
    for &rate in &args.rates {
        let mut lat: Vec<Latencies> = targets.iter().map(|_| Latencies::default()).collect();
        for _ in 0..args.rounds {
            for (t, into) in targets.iter().zip(&mut lat) {
                tokio::time::sleep(ROUND_PAUSE).await;
                into.absorb(open_loop(&http, t, rate, per_round).await);
            }
        }
        percentile_rows(&mut out, &format!("{rate} req/s latency"), &lat)?;
        let errors: Vec<usize> = lat.iter().map(|l| l.errors).collect();
        writeln!(
            out,
            "| {rate} req/s errors | {} | {} | {} | | |",
            errors[0], errors[1], errors[2]
        )?;
    }
    let streams_per_round = args
        .streams
        .div_ceil(usize::try_from(args.rounds).unwrap_or(1));
    let mut ttfb: Vec<Latencies> = targets.iter().map(|_| Latencies::default()).collect();
    for _ in 0..args.rounds {
        for (t, into) in targets.iter().zip(&mut ttfb) {
            tokio::time::sleep(ROUND_PAUSE).await;
            into.absorb(stream_ttfb(&http, t, streams_per_round).await);
        }
    }
    percentile_rows(&mut out, "stream first byte", &ttfb)?;
    let mut rps = vec![0.0; targets.len()];
    for _ in 0..args.rounds {
        for (t, sum) in targets.iter().zip(&mut rps) {
            tokio::time::sleep(ROUND_PAUSE).await;
            *sum += throughput(&http, t, args.connections, per_round).await / args.rounds as f64;
        }
    }
    writeln!(
        out,
        "| throughput, {} connections (req/s) | {:.0} | {:.0} | {:.0} | {:.2}× nginx | |",
        args.connections,
        rps[0],
        rps[1],
        rps[2],
        rps[2] / rps[1]
    )?;
    if !args.baselines_only {
        admission(&mut out, &args, &http, &bench, dir.path()).await?;
        emission(&mut out, &args, &http, &bench, dir.path()).await?;
    }
    stop(bench.procs)?;
    drop(fake);
    Ok(())
}

/// p50, p99 and errors of a baseline and a variant, with what the variant adds.
fn pair_rows(
    out: &mut impl Write,
    prefix: &str,
    base: &Latencies,
    other: &Latencies,
) -> std::io::Result<()> {
    for (label, p) in [("p50", 0.50), ("p99", 0.99)] {
        writeln!(
            out,
            "| {prefix}{label} (ms) | {:.3} | {:.3} | {:+.3} |",
            base.pct(p),
            other.pct(p),
            other.pct(p) - base.pct(p)
        )?;
    }
    writeln!(
        out,
        "| {prefix}errors | {} | {} | |",
        base.errors, other.errors
    )
}

/// Closed-loop throughput of a baseline and a variant, each after the pause, and
/// their ratio.
async fn pair_throughput(
    out: &mut impl Write,
    prefix: &str,
    http: &reqwest::Client,
    args: &Args,
    (base, other): (&Target, &Target),
) -> std::io::Result<()> {
    tokio::time::sleep(DRAIN).await;
    let rps_base = throughput(http, base, args.connections, args.seconds).await;
    tokio::time::sleep(DRAIN).await;
    let rps_other = throughput(http, other, args.connections, args.seconds).await;
    writeln!(
        out,
        "| {prefix}throughput, {} connections (req/s) | {rps_base:.0} | {rps_other:.0} | {:.2}× |",
        args.connections,
        rps_other / rps_base
    )
}

/// Pause before each round, for what the last one left (usage the collector is
/// still storing) to settle before the next target is timed.
const ROUND_PAUSE: Duration = Duration::from_millis(300);

/// How long each process may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Pause between admission phases for the collector to catch up.
const DRAIN: Duration = Duration::from_secs(3);

/// The admission path: calls of the limited owner against calls of the owner without
/// limits, on the in-process data plane and on a second one counting in Redis.
async fn admission(
    out: &mut impl Write,
    args: &Args,
    http: &reqwest::Client,
    bench: &Bench,
    dir: &Path,
) -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let redis_url = redis.url();
    let shared = spawn_data_plane(
        dir,
        &bench.control_url,
        &bench.collector_url,
        &bench.kek,
        &["--redis-url", &redis_url],
        &[("RUST_LOG", "warn")],
    )?;
    let shared_url = shared.url("http");
    for key in [&bench.limited_key, &bench.free_key, &bench.quiet_key] {
        wait_served(http, &shared_url, key).await?;
    }
    let proxies = [("in-process", bench.proxy.as_str()), ("Redis", &shared_url)];
    let keys = (bench.free_key.as_str(), bench.limited_key.as_str());
    let head = ["admission", "no limits", "limits", "limits added"];
    key_pairs(out, args, http, head, &proxies, keys).await?;
    // What the quota headers cost: the same limits, their owner's rules turning the
    // headers off against leaving them on.
    let keys = (bench.quiet_key.as_str(), bench.limited_key.as_str());
    let head = ["limits", "headers off", "headers on", "headers added"];
    key_pairs(out, args, http, head, &proxies, keys).await?;
    drop(shared);
    drop(redis);
    Ok(())
}

/// A table of calls with the base key against calls with the other, on each data
/// plane: latency at the admission rate, then throughput.
async fn key_pairs(
    out: &mut impl Write,
    args: &Args,
    http: &reqwest::Client,
    [what, base_name, other_name, added]: [&str; 4],
    proxies: &[(&str, &str)],
    (base_key, other_key): (&str, &str),
) -> anyhow::Result<()> {
    let path = "/v1/chat/completions";
    let rate = args.admission_rate;
    writeln!(out)?;
    writeln!(
        out,
        "| {what} at {rate} req/s | {base_name} | {other_name} | {added} |"
    )?;
    writeln!(out, "|---|---|---|---|")?;
    for (counters, proxy) in proxies {
        let target = |key: &str| Target {
            url: format!("{proxy}{path}"),
            key: key.to_owned(),
        };
        let (base, other) = (target(base_key), target(other_key));
        throughput(http, &base, 8, 1).await;
        throughput(http, &other, 8, 1).await;
        // Each phase starts once the collector stored the previous one's usage, so
        // the second of a pair does not pay for the first.
        tokio::time::sleep(DRAIN).await;
        let without = open_loop(http, &base, rate, args.seconds).await;
        tokio::time::sleep(DRAIN).await;
        let with = open_loop(http, &other, rate, args.seconds).await;
        pair_rows(out, &format!("{counters} "), &without, &with)?;
        pair_throughput(out, &format!("{counters} "), http, args, (&base, &other)).await?;
    }
    Ok(())
}

/// The request path with usage events on (the bench's data plane) against a second
/// data plane that meters nothing, at the admission rate and at full throughput.
/// The pairs run in both orders, so neither side always follows the other.
async fn emission(
    out: &mut impl Write,
    args: &Args,
    http: &reqwest::Client,
    bench: &Bench,
    dir: &Path,
) -> anyhow::Result<()> {
    let quiet = spawn_data_plane(
        dir,
        &bench.control_url,
        &bench.collector_url,
        &bench.kek,
        &["--usage-events", "off"],
        &[("RUST_LOG", "warn")],
    )?;
    let quiet_url = quiet.url("http");
    wait_served(http, &quiet_url, &bench.free_key).await?;
    let path = "/v1/chat/completions";
    let target = |proxy: &str| Target {
        url: format!("{proxy}{path}"),
        key: bench.free_key.clone(),
    };
    let (off, on) = (target(&quiet_url), target(&bench.proxy));
    throughput(http, &off, 8, 1).await;
    throughput(http, &on, 8, 1).await;
    let rate = args.admission_rate;
    let half = args.seconds.div_ceil(2);
    let (mut lat_off, mut lat_on) = (Latencies::default(), Latencies::default());
    for first_off in [true, false] {
        for is_off in [first_off, !first_off] {
            tokio::time::sleep(DRAIN).await;
            let (t, into) = if is_off {
                (&off, &mut lat_off)
            } else {
                (&on, &mut lat_on)
            };
            into.absorb(open_loop(http, t, rate, half).await);
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "| usage events at {rate} req/s | off | on | on added |"
    )?;
    writeln!(out, "|---|---|---|---|")?;
    pair_rows(out, "", &lat_off, &lat_on)?;
    pair_throughput(out, "", http, args, (&off, &on)).await?;
    drop(quiet);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(micros: &[u64]) -> Latencies {
        Latencies {
            micros: micros.to_vec(),
            errors: 0,
            round_p99: Vec::new(),
        }
    }

    #[test]
    fn medians_of_odd_even_and_no_values() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn a_stall_in_one_round_spoils_the_pooled_p99_not_the_median_of_rounds() {
        let quiet: Vec<u64> = (0..100).map(|i| 100 + i).collect();
        let mut stalled = quiet.clone();
        stalled.extend([50_000; 5]);
        let (mut direct, mut proxy) = (Latencies::default(), Latencies::default());
        for r in 0..3 {
            direct.absorb(run(&quiet));
            // The proxy adds 100 µs; its second round meets a stall.
            let plus: Vec<u64> = if r == 1 { &stalled } else { &quiet }
                .iter()
                .map(|m| m + 100)
                .collect();
            proxy.absorb(run(&plus));
        }
        let lat = [direct, proxy];
        assert!(lat[1].pct(0.99) - lat[0].pct(0.99) > 10.0);
        let added = median_of_rounds(&lat, |r| r[1] - r[0]);
        assert!((added - 0.1).abs() < 1e-9, "{added}");
        assert_eq!(lat[1].round_p99.len(), 3);
    }
}
