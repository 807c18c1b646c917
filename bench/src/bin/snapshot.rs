//! Snapshots at scale: 10,000 accounts (1,000 owners with 9 sub-accounts each) and
//! 100,000 issued keys. Measures, on this machine:
//! - the control plane's encoding of the snapshot (after its database read) and its
//!   size on the wire;
//! - the delta of one change (a revoked key): computing it, its size;
//! - the data plane's apply-and-swap, as its snapshot stream does it: of that delta
//!   (issued keys only: the served key table patched), of a delta of one account
//!   disabled (the configuration's tables rebuilt, the key table shared) and of the
//!   whole snapshot;
//! - lookups running on other threads while swaps happen, against lookups alone;
//! - the resident memory of a real data-plane process that cold-starts from the
//!   snapshot written to its snapshot file;
//! - calls through a real data-plane process while a stand-in control plane streams
//!   a change every 200 ms, against the same calls with no change.
//!
//! `cargo run --release -p switchyard-bench --bin snapshot`

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message;
use switchyard_core::apikey;
use switchyard_core::crypto::Keyring;
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use switchyard_core::policy::Policy;
use switchyard_core::rules::Rules;
use switchyard_core::snapshot::{
    Account, Compiled, IssuedKey, ProviderKey, ProviderKind, Snapshot, Status,
};
use switchyard_data_plane::live::Live;
use switchyard_data_plane::persist::SnapshotFile;
use switchyard_data_plane::sync::{Follower, Step};
use switchyard_wire::delta::diff;
use switchyard_wire::snapshot::{decode, decode_configuration, encode};

#[path = "snapshot/during_changes.rs"]
mod during_changes;

const OWNERS: usize = 1_000;
const CHILDREN: usize = 9;
const KEYS_PER_ACCOUNT: usize = 10;

struct World {
    snapshot: Snapshot,
    /// Clear keys of a sample of accounts, for lookups.
    sample_keys: Vec<String>,
}

fn world(keyring: &Keyring) -> anyhow::Result<World> {
    let mut accounts = Vec::with_capacity(OWNERS * (CHILDREN + 1));
    let mut issued_keys = Vec::new();
    let mut provider_keys = Vec::new();
    let mut rules = BTreeMap::new();
    let mut sample_keys = Vec::new();
    for o in 0..OWNERS {
        let owner = AccountId::new();
        let mut tree = vec![(owner, None)];
        tree.extend((0..CHILDREN).map(|_| (AccountId::new(), Some(owner))));
        for (i, (id, parent)) in tree.into_iter().enumerate() {
            accounts.push(Account {
                id,
                parent,
                name: format!("account-{o}-{i}"),
                status: Status::Active,
                policy: Policy::default(),
                billing: Default::default(),
            });
            for k in 0..KEYS_PER_ACCOUNT {
                let key = apikey::generate();
                if o % 50 == 0 && k == 0 {
                    sample_keys.push(key.clear.expose().clone());
                }
                issued_keys.push(IssuedKey {
                    id: IssuedKeyId::new(),
                    account: id,
                    hash: key.hash,
                    expires_at_ms: None,
                    status: Status::Active,
                });
            }
        }
        for level in 1..=2 {
            let id = ProviderKeyId::new();
            let secret = keyring
                .seal(b"sk-bench-provider-secret", id.0.as_bytes())
                .context("sealing")?;
            provider_keys.push(ProviderKey {
                id,
                owner,
                kind: ProviderKind::OpenAi,
                passthrough: false,
                base_url: "https://api.openai.example/v1".into(),
                secret,
                level,
                models: vec!["gpt-4o*".parse()?],
                weight: 1,
                status: Status::Active,
                discovered_models: Vec::new(),
            });
        }
        rules.insert(owner, Rules::default());
    }
    Ok(World {
        snapshot: Snapshot {
            version: 1,
            accounts,
            issued_keys,
            provider_keys,
            rules,
        },
        sample_keys,
    })
}

/// Median and maximum of `runs` (at least one) timings of `f`, and its last result.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    time_prepared(runs, || (), |()| f())
}

/// [`time`] of `f` alone, on an input `prepare` makes (untimed) before each run.
fn time_prepared<P, T>(
    runs: usize,
    mut prepare: impl FnMut() -> P,
    mut f: impl FnMut(P) -> T,
) -> (Duration, Duration, T) {
    let mut took = Vec::with_capacity(runs.max(1));
    let mut run = || {
        let input = prepare();
        let start = Instant::now();
        let out = f(input);
        took.push(start.elapsed());
        out
    };
    let mut last = run();
    for _ in 1..runs {
        last = run();
    }
    took.sort();
    (took[took.len() / 2], took[took.len() - 1], last)
}

/// How the data plane took an update: `keys` (patched), `delta` (rebuilt), ….
fn path(step: &Step) -> &'static str {
    match step {
        Step::Applied { how, .. } => how,
        Step::NeedFull { .. } => "refused: whole snapshot needed",
        Step::Rejected { .. } => "refused: invalid",
        Step::Nothing => "nothing",
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Lookups on `threads` threads for `for_how_long`, against whatever `live` holds:
/// (lookups, p99 µs, max µs, failures).
fn lookups(
    live: &Arc<Live>,
    keys: &[String],
    threads: usize,
    for_how_long: Duration,
) -> (u64, f64, f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (live, keys, stop) = (live.clone(), keys.to_vec(), stop.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut failures = 0u64;
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let key = &keys[i % keys.len()];
                    i += 1;
                    let start = Instant::now();
                    let ok = live.load().is_some_and(|c| c.authenticate(key, 0).is_ok());
                    lat.push(start.elapsed().as_nanos() as u64);
                    failures += u64::from(!ok);
                }
                (lat, failures)
            })
        })
        .collect();
    std::thread::sleep(for_how_long);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut failures = 0;
    for h in handles {
        if let Ok((lat, f)) = h.join() {
            all.extend(lat);
            failures += f;
        }
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    (all.len() as u64, pct(0.99), pct(1.0), failures)
}

/// Whether `/readyz` answers 200 (one plain HTTP/1.0 request).
fn ready(addr: std::net::SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut conn) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    if conn.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() -> anyhow::Result<()> {
    let spec = Keyring::generate_spec("k1");
    let keyring = Keyring::parse(&spec)?;
    let World {
        snapshot,
        sample_keys,
    } = world(&keyring)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| snapshot: {} accounts, {} issued keys, {} provider keys | median | max | target |",
        snapshot.accounts.len(),
        snapshot.issued_keys.len(),
        snapshot.provider_keys.len()
    )?;
    writeln!(out, "|---|---|---|---|")?;

    // The control plane: encode what it read.
    let (enc_mid, enc_max, full) = time(5, || encode(&snapshot));
    writeln!(
        out,
        "| control plane: encode the snapshot (ms) | {} | {} | compile < 1000 |",
        ms(enc_mid),
        ms(enc_max)
    )?;
    let full_bytes = full.encoded_len();
    writeln!(
        out,
        "| full snapshot on the wire (MiB) | {:.1} | | |",
        full_bytes as f64 / 1_048_576.0
    )?;

    // One change: a revoked key.
    let mut changed = full.clone();
    changed.version = 2;
    if let Some(k) = changed.issued_keys.get_mut(12_345) {
        k.status = switchyard_proto::v1::Status::Disabled.into();
    }
    let (diff_mid, diff_max, delta) = time(5, || diff(&full, &changed));
    writeln!(
        out,
        "| control plane: delta of one revoked key (ms) | {} | {} | |",
        ms(diff_mid),
        ms(diff_max)
    )?;
    writeln!(
        out,
        "| one-key delta on the wire (bytes) | {} | | < 1024 |",
        delta.encoded_len()
    )?;

    // The data plane, as its snapshot stream does it (`sync::Follower`): the whole
    // snapshot, then deltas, each to one atomic swap.
    let live = Arc::new(Live::default());
    let (whole_mid, whole_max, _) = time_prepared(
        3,
        || full.clone(),
        // The state goes back out of the timed part: freeing it is not the update's.
        |full| {
            let mut follower = Follower::default();
            (follower.update(&live, Some(full), None), follower)
        },
    );
    writeln!(
        out,
        "| data plane: decode, compile and swap the whole snapshot (ms) | {} | {} | |",
        ms(whole_mid),
        ms(whole_max)
    )?;
    let (dec_mid, dec_max, decoded) = time(3, || decode(full.clone()));
    writeln!(
        out,
        "| of which: decode (ms) | {} | {} | |",
        ms(dec_mid),
        ms(dec_max)
    )?;
    if let Ok(decoded) = decoded {
        let (c_mid, c_max, _) = time(3, || Compiled::build(decoded.clone()));
        writeln!(
            out,
            "| of which: compile the lookup tables (ms) | {} | {} | |",
            ms(c_mid),
            ms(c_max)
        )?;
    }
    // Each run starts from a data plane serving version 1, as the stream left it.
    let serving_base = || {
        let at_base = Live::default();
        let mut follower = Follower::default();
        follower.update(&at_base, Some(full.clone()), None);
        (at_base, follower)
    };
    let (key_mid, key_max, (step, ..)) =
        time_prepared(5, serving_base, |(at_base, mut follower)| {
            let step = follower.update(&at_base, None, Some(delta.clone()));
            (step, at_base, follower)
        });
    writeln!(
        out,
        "| data plane: apply the one-key delta and swap (ms; path: {}) | {} | {} | < 50 |",
        path(&step),
        ms(key_mid),
        ms(key_max)
    )?;
    // A change of configuration (an account disabled) rebuilds the configuration's
    // tables and shares the key table.
    let mut disabled = full.clone();
    disabled.version = 2;
    if let Some(a) = disabled.accounts.get_mut(5_000) {
        a.status = switchyard_proto::v1::Status::Disabled.into();
    }
    let account_delta = diff(&full, &disabled);
    let (acc_mid, acc_max, (step, ..)) =
        time_prepared(3, serving_base, |(at_base, mut follower)| {
            let step = follower.update(&at_base, None, Some(account_delta.clone()));
            (step, at_base, follower)
        });
    writeln!(
        out,
        "| data plane: apply the delta of one account disabled and swap (ms; path: {}) | {} | {} | < 50 |",
        path(&step),
        ms(acc_mid),
        ms(acc_max)
    )?;

    let (conf_mid, conf_max, config) = time(5, || decode_configuration(&disabled));
    writeln!(
        out,
        "| of which: decode the configuration (ms) | {} | {} | |",
        ms(conf_mid),
        ms(conf_max)
    )?;
    if let (Ok(config), Some(served)) = (config, live.load()) {
        let (t_mid, t_max, _) = time_prepared(
            5,
            || config.clone(),
            |config| served.patched(2, Some(config), Vec::new(), &[]),
        );
        writeln!(
            out,
            "| of which: rebuild the configuration's tables (ms) | {} | {} | |",
            ms(t_mid),
            ms(t_max)
        )?;
    }

    // Lookups while nothing changes, then while swaps happen back to back.
    let threads = 2;
    let quiet = lookups(&live, &sample_keys, threads, Duration::from_secs(2));
    let swapping = Arc::new(AtomicBool::new(true));
    let swapper = {
        let (live, full, swapping) = (live.clone(), full.clone(), swapping.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            let mut version = 1_000u64;
            while swapping.load(Ordering::Relaxed) {
                let mut s = full.clone();
                s.version = version;
                version += 1;
                if let Ok(s) = decode(s)
                    && let Ok(c) = Compiled::build_after(s, live.load().as_deref())
                {
                    live.install_followed(c);
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let busy = lookups(&live, &sample_keys, threads, Duration::from_secs(4));
    swapping.store(false, Ordering::Relaxed);
    let swaps = swapper.join().unwrap_or(0);
    writeln!(out)?;
    writeln!(
        out,
        "| lookups on {threads} threads | lookups | p99 (µs) | max (µs) | failed |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    writeln!(
        out,
        "| no swaps | {} | {:.1} | {:.1} | {} |",
        quiet.0, quiet.1, quiet.2, quiet.3
    )?;
    writeln!(
        out,
        "| {swaps} whole-snapshot swaps meanwhile | {} | {:.1} | {:.1} | {} |",
        busy.0, busy.1, busy.2, busy.3
    )?;

    // A real data plane holding it: cold start from the snapshot file.
    let dir = tempfile::tempdir()?;
    let file = SnapshotFile::new(dir.path().join("snapshot.bin"));
    file.save(&full.encode_to_vec())?;
    let file_arg = file.path().display().to_string();
    let dp = switchyard_tests::procs::Proc::spawn(
        "switchyard-data-plane",
        &[
            "--listen",
            "127.0.0.1:0",
            "--control-plane-url",
            "http://127.0.0.1:9",
            "--snapshot-file",
            &file_arg,
            "--usage-events",
            "off",
        ],
        &[("SWITCHYARD_KEK", spec.as_str()), ("RUST_LOG", "warn")],
        dir.path(),
    )?;
    let started = Instant::now();
    let addr = dp.addr("http");
    let mut loaded = None;
    while started.elapsed() < Duration::from_secs(60) {
        if ready(addr) {
            loaded = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss = rss_kib(dp.pid()).unwrap_or(0);
    writeln!(out)?;
    writeln!(
        out,
        "| data-plane process, cold start from the snapshot file | value | target |"
    )?;
    writeln!(out, "|---|---|---|")?;
    writeln!(
        out,
        "| ready after (ms) | {} | |",
        loaded.map_or("never".into(), ms)
    )?;
    writeln!(
        out,
        "| resident memory (MiB) | {:.0} | < 300 |",
        rss as f64 / 1024.0
    )?;
    drop(dp);

    calls_during_changes(&mut out, full, &spec, &sample_keys)
}

/// Calls through a data-plane process, with and without a change streamed every
/// 200 ms (see `during_changes`), each phase 5 s at 500 calls a second.
fn calls_during_changes(
    out: &mut impl Write,
    mut full: switchyard_proto::v1::Snapshot,
    spec: &str,
    sample_keys: &[String],
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let upstream = switchyard_tests::procs::Proc::spawn(
        "switchyard-fake-upstream",
        &["--listen", "127.0.0.1:0"],
        &[("RUST_LOG", "warn")],
        dir.path(),
    )?;
    let base_url = format!("{}/v1", upstream.url("http"));
    for p in &mut full.provider_keys {
        p.base_url.clone_from(&base_url);
    }
    let version = full.version;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (quiet, changing) = runtime.block_on(async {
        let (control, streaming) =
            during_changes::stand_in_control_plane(full, Duration::from_millis(200)).await?;
        let dp = switchyard_tests::procs::Proc::spawn(
            "switchyard-data-plane",
            &[
                "--listen",
                "127.0.0.1:0",
                "--control-plane-url",
                &control,
                "--usage-events",
                "off",
                // The fake upstream is on loopback.
                "--allow-private-upstreams",
            ],
            &[("SWITCHYARD_KEK", spec), ("RUST_LOG", "warn")],
            dir.path(),
        )?;
        let base = dp.url("http");
        switchyard_data_plane::install_tls_provider();
        let client = reqwest::Client::new();
        let started = Instant::now();
        while during_changes::served_version(&client, &base).await != Some(version) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the data plane never served the snapshot:\n{}",
                dp.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Warm the connections, then measure without and with changes.
        during_changes::open_loop(&client, &base, sample_keys, 500, 1).await;
        let quiet = during_changes::open_loop(&client, &base, sample_keys, 500, 5).await;
        streaming.store(true, std::sync::atomic::Ordering::Relaxed);
        let changing = during_changes::open_loop(&client, &base, sample_keys, 500, 5).await;
        streaming.store(false, std::sync::atomic::Ordering::Relaxed);
        drop(dp);
        anyhow::Ok((quiet, changing))
    })?;
    drop(upstream);
    writeln!(out)?;
    writeln!(
        out,
        "| calls through a data-plane process at 500/s, 5 s | p50 (ms) | p99 (ms) | max (ms) | failed | swaps |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for (name, phase) in [
        ("no changes", &quiet),
        (
            "a change every 200 ms (keys and accounts alternating)",
            &changing,
        ),
    ] {
        let at = |q: f64| {
            phase
                .latencies
                .get(((phase.latencies.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or_default()
        };
        writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} |",
            ms3(at(0.5)),
            ms3(at(0.99)),
            ms3(at(1.0)),
            phase.failed,
            phase.swaps
        )?;
    }
    Ok(())
}

fn ms3(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}
