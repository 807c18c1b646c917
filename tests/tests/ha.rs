//! Several control-plane replicas over one database and one etcd, four data planes
//! spread over them: a write on either replica is enforced by every data plane
//! within a second; a replica dies and its data planes move to the other without a
//! failed call; etcd restarts and the replicas hear each other again.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::etcd::EtcdServer;
use switchyard_tests::pg::PgServer;
use switchyard_tests::procs::Proc;
use switchyard_tests::system::{Replicated, chat, rest, spawn_collector_with};
use switchyard_tests::wait::{self, PATIENCE};

const SECRET: &str = "sk-ha-123456789";

/// Each test runs a whole cluster of processes. Run side by side on two cores, the
/// propagation test would time the other clusters' start-up, not propagation.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    controls: Vec<Proc>,
    data_planes: Vec<Proc>,
    http: reqwest::Client,
    shared: Replicated,
}

impl Cluster {
    /// Two control planes (`cp-a`, `cp-b`) that re-read the database only every
    /// 60 seconds, so whatever reaches the other replica sooner came through etcd;
    /// four data planes, the first two following `cp-a` first, the others `cp-b`.
    async fn start() -> Self {
        // First: it installs the TLS provider the HTTP client needs.
        let shared = Replicated::start();
        let mut c = Self {
            controls: Vec::new(),
            data_planes: Vec::new(),
            http: reqwest::Client::new(),
            shared,
        };
        c.controls = vec![c.control_plane("cp-a"), c.control_plane("cp-b")];
        let (a, b) = (c.controls[0].url("grpc"), c.controls[1].url("grpc"));
        for i in 0..4 {
            let urls = if i < 2 {
                format!("{a},{b}")
            } else {
                format!("{b},{a}")
            };
            let dp = c.shared.data_plane(&urls, &format!("dp-{i}"));
            c.data_planes.push(dp);
        }
        c
    }

    fn control_plane(&self, name: &str) -> Proc {
        self.shared
            .control_plane(name, "/ha-test/", &["--resync-seconds", "60"])
    }

    async fn call(
        &self,
        cp: usize,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.controls[cp].url("http"));
        rest(&self.http, method, &url, key, body).await
    }

    async fn proxy_status(&self, dp: usize, key: &str) -> u16 {
        self.http
            .post(format!(
                "{}/v1/chat/completions",
                self.data_planes[dp].url("http")
            ))
            .bearer_auth(key)
            .json(&chat("are you there", false))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// How long until every data plane answers `key` with `want`, from `since`.
    async fn enforced_everywhere(&self, key: &str, want: u16, since: Instant) -> Duration {
        let patience = (since + Duration::from_secs(15)).saturating_duration_since(Instant::now());
        let mut pending: Vec<usize> = (0..self.data_planes.len()).collect();
        let what = format!("every data plane to answer {want}");
        wait::until_ok(patience, what, async || {
            let mut still = Vec::new();
            for &dp in &pending {
                if self.proxy_status(dp, key).await != want {
                    still.push(dp);
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            Err(format!(
                "data planes {pending:?} do not:\n{}\n--- control planes:\n{}",
                pending
                    .iter()
                    .map(|&dp| self.data_planes[dp].log_tail())
                    .collect::<Vec<_>>()
                    .join("\n---\n"),
                self.controls
                    .iter()
                    .map(Proc::log_tail)
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            ))
        })
        .await;
        since.elapsed()
    }

    async fn status(&self, cp: usize) -> Value {
        let (status, body) = self
            .call(
                cp,
                Method::GET,
                "/dashboard/status",
                &self.shared.root.clone(),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * 0.99).round() as usize;
    samples[i.min(samples.len() - 1)]
}

/// An owner made on `cp-a`, its key served everywhere.
async fn owner(c: &Cluster, fake: &FakeUpstream) -> (String, String) {
    let (status, created) = c
        .call(
            0,
            Method::POST,
            "/x-users",
            &c.shared.root.clone(),
            Some(json!({"name": "ha"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    let (status, pk) = c
        .call(
            0,
            Method::POST,
            "/x-keys",
            &key,
            Some(json!({"provider": "openai", "base_url": fake.base_url(), "secret": SECRET, "models": ["*"]})),
        )
        .await;
    assert_eq!(status, 201, "{pk}");
    c.enforced_everywhere(&key, 200, Instant::now()).await;
    (created["account"]["id"].as_str().unwrap().to_owned(), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_any_replica_reach_every_data_plane_within_a_second() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let c = Cluster::start().await;
    let fake = FakeUpstream::start(Some(SECRET.into())).await.unwrap();
    let (_, owner_key) = owner(&c, &fake).await;
    let mut samples = Vec::new();
    for round in 0..12 {
        // Written on one replica, read by data planes of both.
        let cp = round % 2;
        let (status, child) = c
            .call(
                cp,
                Method::POST,
                "/x-users",
                &owner_key,
                Some(json!({"name": format!("team-{round}")})),
            )
            .await;
        assert_eq!(status, 201, "{child}");
        let key = child["api_key"].as_str().unwrap().to_owned();
        let id = child["account"]["id"].as_str().unwrap().to_owned();
        c.enforced_everywhere(&key, 200, Instant::now()).await;
        let start = Instant::now();
        let (status, body) = match round % 3 {
            // A revoked key.
            0 => {
                let (_, me) = c.call(cp, Method::GET, "/x-self", &key, None).await;
                let key_id = me["keys"][0]["id"].as_str().unwrap().to_owned();
                c.call(
                    cp,
                    Method::DELETE,
                    &format!("/x-self/keys/{key_id}"),
                    &key,
                    None,
                )
                .await
            }
            // A disabled account.
            1 => {
                c.call(
                    cp,
                    Method::PATCH,
                    &format!("/x-users/{id}"),
                    &owner_key,
                    Some(json!({"status": "disabled"})),
                )
                .await
            }
            // A narrowed policy: the model called is no longer allowed.
            _ => {
                c.call(
                    cp,
                    Method::PATCH,
                    &format!("/x-users/{id}"),
                    &owner_key,
                    Some(json!({"policy": {"models": ["other-*"]}})),
                )
                .await
            }
        };
        assert!(status < 300, "{status} {body}");
        // A revoked key is unknown (401); a disabled account or a model outside the
        // policy is refused (403).
        let refused = if round % 3 == 0 { 401 } else { 403 };
        samples.push(c.enforced_everywhere(&key, refused, start).await);
    }
    let worst = *samples.iter().max().unwrap();
    let p99 = p99(&mut samples);
    eprintln!(
        "propagation to 4 data planes over 2 control planes: p50 {:?}, p99 {p99:?}, max {worst:?}",
        samples[samples.len() / 2]
    );
    assert!(p99 <= Duration::from_secs(1), "p99 {p99:?}: {samples:?}");
    // After the first whole snapshot, changes travel as deltas.
    for dp in &c.data_planes {
        let log = dp.log();
        let applied: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("snapshot applied"))
            .collect();
        assert!(
            applied.iter().any(|l| l.contains("\"how\":\"whole\"")),
            "{log}"
        );
        // Revoked keys patch the served tables; account and policy changes rebuild.
        let by = |how: &str| {
            applied
                .iter()
                .filter(|l| l.contains(&format!("\"how\":\"{how}\"")))
                .count()
        };
        assert!(by("keys") >= 4 && by("delta") >= 8, "{log}");
    }

    // Either replica lists every data plane, which one serves it, and no lag.
    let status = c.status(1).await;
    let planes = status["data_planes"].as_array().unwrap();
    assert_eq!(planes.len(), 4, "{status}");
    let served_by: Vec<&str> = planes
        .iter()
        .map(|p| p["control_plane"].as_str().unwrap())
        .collect();
    assert_eq!(served_by, ["cp-a", "cp-a", "cp-b", "cp-b"], "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_replica_and_a_restarted_etcd_cost_no_call() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut c = Cluster::start().await;
    let fake = FakeUpstream::start(Some(SECRET.into())).await.unwrap();
    let (_, key) = owner(&c, &fake).await;

    // Calls through every data plane while cp-a dies: none fails.
    c.controls[0].kill();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for dp in 0..4 {
            assert_eq!(c.proxy_status(dp, &key).await, 200);
        }
    }
    // Its data planes moved to cp-b: a write there reaches all four, and cp-b
    // lists them as its own once cp-a's lease is gone.
    let (status, child) = c
        .call(
            1,
            Method::POST,
            "/x-users",
            &key,
            Some(json!({"name": "after-failover"})),
        )
        .await;
    assert_eq!(status, 201, "{child}");
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let moved = c.enforced_everywhere(&child_key, 200, Instant::now()).await;
    assert!(moved < Duration::from_secs(5), "{moved:?}");
    wait::until_ok(PATIENCE, "every data plane to follow cp-b", async || {
        let status = c.status(1).await;
        let planes = status["data_planes"].as_array().unwrap();
        if planes.len() == 4 && planes.iter().all(|p| p["control_plane"] == "cp-b") {
            Ok(())
        } else {
            Err(status)
        }
    })
    .await;

    // etcd restarts; calls never notice. A new replica, cp-c, comes up with a data
    // plane of its own, and the replicas hear each other through the restarted
    // etcd both ways (their database re-read is a minute away).
    c.shared.etcd.restart().unwrap();
    for dp in 0..4 {
        assert_eq!(c.proxy_status(dp, &key).await, 200);
    }
    let cp_c = c.control_plane("cp-c");
    let dp_c = c.shared.data_plane(&cp_c.url("grpc"), "dp-c");
    c.controls.push(cp_c);
    c.data_planes.push(dp_c);
    c.enforced_everywhere(&key, 200, Instant::now()).await;
    for (cp, name) in [(1, "written-on-b"), (2, "written-on-c")] {
        let (status, child) = c
            .call(
                cp,
                Method::POST,
                "/x-users",
                &key,
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{child}");
        let child_key = child["api_key"].as_str().unwrap().to_owned();
        let took = c.enforced_everywhere(&child_key, 200, Instant::now()).await;
        assert!(took < Duration::from_secs(10), "{name}: {took:?}");
    }
}

/// Whether `proc`'s log says it now leads usage retention.
fn leads_retention(proc: &Proc) -> bool {
    proc.log()
        .lines()
        .rfind(|l| l.contains("usage retention leadership changed"))
        .is_some_and(|l| l.contains("\"leading\":true"))
}

/// Two collectors, one retention job: exactly one leads it, and when that one dies
/// the other takes over once the dead one's lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_collector_leads_retention_and_leadership_moves_when_it_dies() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let pg = PgServer::start().unwrap();
    let usage_db = pg.create_database("usage").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start().unwrap();
    let endpoint = etcd.endpoint();
    let collector = |name: &str| {
        spawn_collector_with(
            dir.path(),
            &usage_db,
            "127.0.0.1:0",
            &[
                "--etcd-endpoints",
                &endpoint,
                "--etcd-lease-seconds",
                "2",
                "--replica-id",
                name,
                "--retention-check-seconds",
                "1",
            ],
        )
        .unwrap()
    };
    let mut collectors = [collector("col-a"), collector("col-b")];
    let leader = wait::until_ok(Duration::from_secs(15), "a leader", async || {
        let leading: Vec<usize> = (0..2)
            .filter(|&i| leads_retention(&collectors[i]))
            .collect();
        assert!(leading.len() < 2, "two leaders");
        leading
            .first()
            .copied()
            .ok_or_else(|| collectors[0].log_tail())
    })
    .await;
    // Still one a moment later: a window in which nothing may change.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!leads_retention(&collectors[1 - leader]));

    collectors[leader].kill();
    let other = &collectors[1 - leader];
    wait::until_ok(Duration::from_secs(15), "leadership to move", async || {
        if leads_retention(other) {
            Ok(())
        } else {
            Err(other.log_tail())
        }
    })
    .await;
}
