//! The whole system as separate processes: a throwaway Postgres, the usage
//! collector, the control plane and the data plane, with helpers to call them.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::apikey;
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::{FakeUpstream, count_tokens};

use crate::HarnessError;
use crate::etcd::EtcdServer;
use crate::pg::PgServer;
use crate::procs::Proc;
use crate::wait::{self, PATIENCE};

pub const UPSTREAM_SECRET: &str = "sk-upstream-secret-0123456789";

pub struct System {
    pub control_db: String,
    pub usage_db: String,
    pub _collector: Proc,
    pub control: Proc,
    pub data: Proc,
    pub pg: PgServer,
    pub root: String,
    pub http: reqwest::Client,
    /// The data plane's key-encryption keys, for more replicas.
    pub data_kek: String,
    /// The control plane's, for a restart.
    pub control_kek: String,
    pub _dir: tempfile::TempDir,
}

impl System {
    pub fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.control.url("http"))
    }

    pub fn proxy(&self, path: &str) -> String {
        format!("{}{path}", self.data.url("http"))
    }

    /// A proxied call to `path` with `key` in both protocols' credential headers (and
    /// Anthropic's version), so either protocol's endpoint reads it.
    pub async fn proxied(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.proxy(path))
            .header("authorization", format!("Bearer {key}"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Replace the rules of the owner whose key is `owner` by one price for every model.
    pub async fn price_every_model(&self, owner: &str, price: Value) {
        let (status, body) = self
            .call(
                Method::PUT,
                "/x-conf".into(),
                owner.to_owned(),
                Some(json!({"pricing": {"*": price}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Set one of the owner's limit settings (`/x-config/limits?key=`), as the owner
    /// whose key is `owner`.
    pub async fn set_limit_setting(&self, owner: &str, entry: &str, value: Value) {
        let (status, body) = self
            .call(
                Method::PUT,
                format!("/x-config/limits?key={entry}"),
                owner.to_owned(),
                Some(value),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Kill the collector (SIGKILL) and leave it down.
    pub fn kill_collector(&mut self) {
        self._collector.kill();
    }

    /// Kill the control plane (SIGKILL) and leave it down.
    pub fn kill_control(&mut self) {
        self.control.kill();
    }

    /// Start the control plane again on the addresses it had, with the same database.
    pub fn restart_control(&mut self) {
        let (http, grpc) = (
            self.control.addr("http").to_string(),
            self.control.addr("grpc").to_string(),
        );
        let spec = ServiceSpec {
            control_db: &self.control_db,
            usage_db: &self.usage_db,
            root: &self.root,
            control_kek: &self.control_kek,
            data_kek: &self.data_kek,
            data_args: &[],
            data_env: &[],
            env: &[],
        };
        self.control = spawn_control(
            self._dir.path(),
            &spec,
            &self._collector.url("grpc"),
            (&http, &grpc),
            &[],
        )
        .unwrap();
    }

    /// Start the collector again on the address it had, with the same database.
    pub fn restart_collector(&mut self) {
        let grpc = self._collector.addr("grpc").to_string();
        self._collector = spawn_collector(self._dir.path(), &self.usage_db, &grpc).unwrap();
    }

    /// Another data-plane replica following the same control plane and collector,
    /// with `args` added; returned once it serves a snapshot.
    pub async fn another_data_plane(&self, args: &[&str]) -> Proc {
        let data = spawn_data_plane(
            self._dir.path(),
            &self.control.url("grpc"),
            &self._collector.url("grpc"),
            &self.data_kek,
            args,
            &[],
        )
        .unwrap();
        wait_ready(&self.http, &data).await;
        data
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.admin(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A main account made by the operator, with one provider key (the fake) serving
    /// every model: its creation answer and its key.
    pub async fn owner(&self, name: &str, fake: &FakeUpstream) -> (Value, String) {
        let (created, key, _) = main_account(
            self,
            fake,
            name,
            &[("openai", "sk-abc-123456789", 1, &["*"])],
        )
        .await;
        (created, key)
    }

    /// A main account as [`System::owner`] makes, whose limits fail open while the
    /// limit store is down: its key.
    pub async fn owner_failing_open(&self, name: &str, fake: &FakeUpstream) -> String {
        let (_, key) = self.owner(name, fake).await;
        self.set_limit_setting(&key, "when_store_down", json!("fail_open"))
            .await;
        key
    }

    /// Any Admin/Manage call: the status and the JSON answer (`null` when none).
    pub async fn call(
        &self,
        method: Method,
        path: String,
        key: String,
        body: Option<Value>,
    ) -> (u16, Value) {
        rest(&self.http, method, &self.admin(&path), &key, body).await
    }

    /// `GET /dashboard/status` as the operator sees it.
    pub async fn status(&self) -> Value {
        let (status, body) = self
            .call(
                Method::GET,
                "/dashboard/status".into(),
                self.root.clone(),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn bill(&self, key: &str) -> Value {
        let r = self
            .http
            .get(self.admin("/x-bill"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub fn count(&self, db: &str, sql: &str) -> i64 {
        self.pg.query(db, sql).unwrap().parse().unwrap()
    }
}

/// How to start the three services.
pub struct ServiceSpec<'a> {
    pub control_db: &'a str,
    pub usage_db: &'a str,
    pub root: &'a str,
    pub control_kek: &'a str,
    pub data_kek: &'a str,
    /// Extra data-plane flags.
    pub data_args: &'a [&'a str],
    /// Extra data-plane environment.
    pub data_env: &'a [(&'a str, &'a str)],
    /// Environment for every process (the data plane's own comes after it).
    pub env: &'a [(&'a str, &'a str)],
}

/// The collector, the control plane and the data plane as separate processes, wired
/// to each other on loopback.
pub struct Services {
    pub collector: Proc,
    pub control: Proc,
    pub data: Proc,
}

/// A data plane following `control_url` and delivering usage to `collector_url`.
pub fn spawn_data_plane(
    dir: &Path,
    control_url: &str,
    collector_url: &str,
    kek: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Proc, HarnessError> {
    let all: Vec<&str> = [
        "--listen",
        "127.0.0.1:0",
        "--control-plane-url",
        control_url,
        "--collector-url",
        collector_url,
    ]
    .into_iter()
    // The fake upstreams are on loopback; a test of the refusal says which networks
    // it allows instead.
    .chain(
        ["--allow-private-upstreams"]
            .into_iter()
            .filter(|_| !args.contains(&"--allowed-upstream-networks")),
    )
    .chain(args.iter().copied())
    .collect();
    let env: Vec<(&str, &str)> = std::iter::once(("SWITCHYARD_KEK", kek))
        .chain(env.iter().copied())
        .collect();
    Proc::spawn("switchyard-data-plane", &all, &env, dir)
}

/// A usage collector on `usage_db`, its gRPC listener on `grpc` (port 0: any).
pub fn spawn_collector(dir: &Path, usage_db: &str, grpc: &str) -> Result<Proc, HarnessError> {
    spawn_collector_with(dir, usage_db, grpc, &[])
}

/// [`spawn_collector`] with `extra` flags.
pub fn spawn_collector_with(
    dir: &Path,
    usage_db: &str,
    grpc: &str,
    extra: &[&str],
) -> Result<Proc, HarnessError> {
    spawn_collector_env(dir, usage_db, grpc, extra, &[])
}

/// [`spawn_collector_with`] with `env` set.
pub fn spawn_collector_env(
    dir: &Path,
    usage_db: &str,
    grpc: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Proc, HarnessError> {
    let args: Vec<&str> = [
        "--database-url",
        usage_db,
        "--grpc-listen",
        grpc,
        "--http-listen",
        "127.0.0.1:0",
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .collect();
    Proc::spawn("switchyard-usage-collector", &args, env, dir)
}

/// A control plane on `control_db`, listening on `http` and `grpc` (port 0: any),
/// with `extra` flags (a `--resync-seconds` there replaces the default of 1).
pub fn spawn_control(
    dir: &Path,
    spec: &ServiceSpec<'_>,
    collector_url: &str,
    (http, grpc): (&str, &str),
    extra: &[&str],
) -> Result<Proc, HarnessError> {
    let args: Vec<&str> = [
        "--database-url",
        spec.control_db,
        "--http-listen",
        http,
        "--grpc-listen",
        grpc,
        "--collector-url",
        collector_url,
        "--allow-private-upstreams",
    ]
    .into_iter()
    .chain(
        ["--resync-seconds", "1"]
            .into_iter()
            .filter(|_| !extra.contains(&"--resync-seconds")),
    )
    .chain(
        ["--reseal-check-seconds", "1"]
            .into_iter()
            .filter(|_| !extra.contains(&"--reseal-check-seconds")),
    )
    .chain(extra.iter().copied())
    .collect();
    let env: Vec<(&str, &str)> = [
        ("SWITCHYARD_ROOT_KEY", spec.root),
        ("SWITCHYARD_KEK", spec.control_kek),
    ]
    .into_iter()
    .chain(spec.env.iter().copied())
    .collect();
    Proc::spawn("switchyard-control-plane", &args, &env, dir)
}

pub fn spawn_services(dir: &Path, spec: &ServiceSpec<'_>) -> Result<Services, HarnessError> {
    let collector = spawn_collector_env(dir, spec.usage_db, "127.0.0.1:0", &[], spec.env)?;
    let collector_url = collector.url("grpc");
    let control = spawn_control(
        dir,
        spec,
        &collector_url,
        ("127.0.0.1:0", "127.0.0.1:0"),
        &[],
    )?;
    let data_env: Vec<(&str, &str)> = spec.env.iter().chain(spec.data_env).copied().collect();
    let data = spawn_data_plane(
        dir,
        &control.url("grpc"),
        &collector_url,
        spec.data_kek,
        spec.data_args,
        &data_env,
    )?;
    Ok(Services {
        collector,
        control,
        data,
    })
}

pub async fn start_system(max_request_body: usize) -> System {
    let kek = Keyring::generate_spec("k1").to_string();
    start_system_with(max_request_body, &kek, &kek).await
}

/// The system with separate keyrings for the control plane (seals) and the data plane
/// (opens), as during a key-encryption-key rotation.
pub async fn start_system_with(
    max_request_body: usize,
    control_kek: &str,
    data_kek: &str,
) -> System {
    start_system_opts(max_request_body, control_kek, data_kek, &[]).await
}

/// The system with extra data-plane flags (short timeouts for failure scenarios).
pub async fn start_system_opts(
    max_request_body: usize,
    control_kek: &str,
    data_kek: &str,
    data_args: &[&str],
) -> System {
    start_system_env(max_request_body, control_kek, data_kek, data_args, &[]).await
}

/// [`start_system_opts`] with `env` set for every process.
pub async fn start_system_env(
    max_request_body: usize,
    control_kek: &str,
    data_kek: &str,
    data_args: &[&str],
    env: &[(&str, &str)],
) -> System {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pg = PgServer::start().unwrap();
    let control_db = pg.create_database("control").unwrap();
    let usage_db = pg.create_database("usage").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = apikey::generate_with_prefix("sy-root-")
        .clear
        .expose()
        .clone();

    let body_limit = max_request_body.to_string();
    let data_args: Vec<&str> = ["--max-request-body", body_limit.as_str()]
        .into_iter()
        .chain(data_args.iter().copied())
        .collect();
    let Services {
        collector,
        control,
        data,
    } = spawn_services(
        dir.path(),
        &ServiceSpec {
            control_db: &control_db,
            usage_db: &usage_db,
            root: &root,
            control_kek,
            data_kek,
            data_args: &data_args,
            data_env: &[],
            env,
        },
    )
    .unwrap();
    let http = reqwest::Client::new();
    wait_ready(&http, &data).await;
    System {
        control_db,
        usage_db,
        _collector: collector,
        control,
        data,
        pg,
        root,
        http,
        data_kek: data_kek.to_owned(),
        control_kek: control_kek.to_owned(),
        _dir: dir,
    }
}

/// Until a data plane serves a snapshot.
async fn wait_ready(http: &reqwest::Client, data: &Proc) {
    let ready = format!("{}/readyz", data.url("http"));
    wait::until_ok(
        Duration::from_secs(30),
        "the data plane to become ready",
        async || {
            let serves = http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if serves { Ok(()) } else { Err(data.log_tail()) }
        },
    )
    .await;
}

/// A main account made by the operator with the given provider keys, (kind, secret,
/// level, models), once every data plane has them: its creation answer, its key, and
/// the provider keys' ids in order.
pub async fn owner_with_keys(
    sys: &System,
    fake: &FakeUpstream,
    name: &str,
    keys: &[(&str, &str, u32, &[&str])],
) -> (Value, String, Vec<String>) {
    let made = main_account(sys, fake, name, keys).await;
    settle(sys).await;
    made
}

/// As [`owner_with_keys`], without waiting for the data planes.
async fn main_account(
    sys: &System,
    fake: &FakeUpstream,
    name: &str,
    keys: &[(&str, &str, u32, &[&str])],
) -> (Value, String, Vec<String>) {
    let (status, created) = sys.post("/x-users", &sys.root, json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for (kind, secret, level, models) in keys {
        let (status, pk) = sys
            .post(
                "/x-keys",
                &key,
                json!({"provider": kind, "base_url": fake.base_url(), "secret": secret, "models": models, "level": level}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pk}");
        ids.push(pk["id"].as_str().unwrap().to_owned());
    }
    (created, key, ids)
}

pub fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": content}]})
}

/// Calls the proxy until the snapshot carrying `key` has reached the data plane.
pub async fn wait_for_key(sys: &System, key: &str) {
    wait_for_key_at(sys, &sys.data.url("http"), key).await;
}

/// Calls the data plane at `url` until it knows `key`.
pub async fn wait_for_key_at(sys: &System, url: &str, key: &str) {
    // The newest configuration first: a data plane that holds the key but not yet
    // the provider key written just after it would still refuse calls.
    let newest = sys.status().await["config_revision"].as_u64().unwrap_or(0);
    let what = format!("the key to reach the data plane at {url}");
    wait::until(PATIENCE, what, async || {
        let serves = sys
            .http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == StatusCode::OK);
        let version = match serves {
            Some(r) => r.json::<Value>().await.unwrap_or(Value::Null)["snapshot_version"]
                .as_u64()
                .unwrap_or(0),
            None => 0,
        };
        if version >= newest {
            let r = sys
                .http
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .body("{")
                .send()
                .await
                .unwrap();
            if r.status() != StatusCode::UNAUTHORIZED {
                return Some(());
            }
        }
        None
    })
    .await;
}

/// The newest usage events of `key`'s tree (up to 500), once `n` have arrived.
/// How many usage events `key`'s tree has once delivery is quiet: the same count
/// twice, a quarter second apart (events leave the data plane in batches).
pub async fn usage_count_settled(sys: &System, key: &str) -> usize {
    let mut last = usage_logs(sys, key, 0).await.len();
    loop {
        // The pause is the measure of quiet: no new event within it.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = usage_logs(sys, key, 0).await.len();
        if now == last {
            return now;
        }
        last = now;
    }
}

pub async fn usage_logs(sys: &System, key: &str, n: usize) -> Vec<Value> {
    let what = format!("{n} usage events");
    wait::until_ok(Duration::from_secs(15), what, async || {
        let (status, page) = sys
            .call(
                Method::GET,
                "/dashboard/logs?limit=500".into(),
                key.into(),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= n {
            Ok(events)
        } else {
            Err(format!("{} arrived", events.len()))
        }
    })
    .await
}

pub fn expected_tokens(system: &str, user: &str) -> (u64, u64) {
    (
        count_tokens(&format!("{system} {user}")),
        count_tokens(&format!("echo: {user}")),
    )
}

/// Waits until the snapshot carrying the latest change is applied (rules, keys):
/// the control plane's status shows every replica at its newest revision, which is
/// returned.
pub async fn settle(sys: &System) -> u64 {
    wait::until_ok(
        PATIENCE,
        "every data plane to apply the newest revision",
        async || {
            let body = sys.status().await;
            let revision = body["config_revision"].as_u64().unwrap();
            let planes = body["data_planes"].as_array().cloned().unwrap_or_default();
            if !planes.is_empty()
                && planes
                    .iter()
                    .all(|p| p["applied_version"].as_u64() >= Some(revision))
            {
                Ok(revision)
            } else {
                Err(body)
            }
        },
    )
    .await
}

/// What replicas of the control plane share, as processes: the collector, etcd, one
/// Postgres server holding the control plane's and the collector's databases, one
/// key-encryption key, the operator's key and the folder their files go in. Fields
/// drop in order: processes before the servers they use.
pub struct Replicated {
    pub collector: Proc,
    pub etcd: EtcdServer,
    pub pg: PgServer,
    pub dir: tempfile::TempDir,
    pub control_db: String,
    pub usage_db: String,
    pub kek: String,
    pub root: String,
}

impl Replicated {
    pub fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pg = PgServer::start().unwrap();
        let control_db = pg.create_database("control").unwrap();
        let usage_db = pg.create_database("usage").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let etcd = EtcdServer::start().unwrap();
        let kek = Keyring::generate_spec("k1").to_string();
        let root = apikey::generate_with_prefix("sy-root-")
            .clear
            .expose()
            .clone();
        let collector = spawn_collector(dir.path(), &usage_db, "127.0.0.1:0").unwrap();
        Self {
            collector,
            etcd,
            pg,
            dir,
            control_db,
            usage_db,
            kek,
            root,
        }
    }

    /// Control-plane replica `name`, electing and signalling under etcd `prefix`
    /// with a two-second lease, with `extra` flags.
    pub fn control_plane(&self, name: &str, prefix: &str, extra: &[&str]) -> Proc {
        let spec = ServiceSpec {
            control_db: &self.control_db,
            usage_db: &self.usage_db,
            root: &self.root,
            control_kek: &self.kek,
            data_kek: &self.kek,
            data_args: &[],
            data_env: &[],
            env: &[],
        };
        let endpoint = self.etcd.endpoint();
        let mut args = vec![
            "--etcd-endpoints",
            &endpoint,
            "--etcd-prefix",
            prefix,
            "--etcd-lease-seconds",
            "2",
            "--replica-id",
            name,
        ];
        args.extend_from_slice(extra);
        spawn_control(
            self.dir.path(),
            &spec,
            &self.collector.url("grpc"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            &args,
        )
        .unwrap()
    }

    /// Data-plane replica `name`, following the control planes at `control_urls`.
    pub fn data_plane(&self, control_urls: &str, name: &str) -> Proc {
        spawn_data_plane(
            self.dir.path(),
            control_urls,
            &self.collector.url("grpc"),
            &self.kek,
            &["--replica-id", name],
            &[],
        )
        .unwrap()
    }
}

/// One REST call to `url` with `key`, and its answer's status and JSON (null when
/// none).
pub async fn rest(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}
