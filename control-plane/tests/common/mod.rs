//! The control plane's REST API in process, for the contract suites (`api_*.rs`):
//! the real router over a real store (SQLite or Postgres, through `every_backend!`),
//! called with `tower::ServiceExt::oneshot`, no socket. No data plane or collector
//! runs: what needs them is in `tests/tests/e2e.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard_control_plane::grpc::ApiGrpc;
use switchyard_control_plane::publisher::Publisher;
use switchyard_control_plane::rest;
use switchyard_control_plane::service::{OperatorOptions, Service};
use switchyard_control_plane::store::Store;
use switchyard_core::apikey::{self, KeyHash};
use switchyard_core::crypto::Keyring;
use switchyard_core::netguard::UpstreamNetworks;
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use tower::ServiceExt;

/// A provider base URL on loopback (allowed here, as in the end-to-end suites);
/// nothing calls it.
pub const UPSTREAM: &str = "http://127.0.0.1:1/v1";

/// The Admin and Manage faces over gRPC, called as the server's handlers are, without
/// a socket.
pub fn grpc(app: &App) -> ApiGrpc {
    ApiGrpc {
        service: app.service.clone(),
    }
}

/// A gRPC request carrying `key` as its bearer token.
pub fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// The REST router over a fresh store, the operator's root key, and a connection
/// of its own to the store's database for counting rows.
pub struct App {
    pub router: Router,
    pub service: Arc<Service>,
    pub root: String,
    pool: sqlx::AnyPool,
}

/// Reads a test's JSON answer, `null` when there is none.
pub async fn read_json(response: axum::response::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// One request to `router`: `key` as a bearer token (none when empty), `body` (its
/// content type and text) as it is sent; the status and the JSON answer.
pub async fn send(
    router: &Router,
    method: Method,
    path: &str,
    key: &str,
    body: Option<(&str, String)>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if !key.is_empty() {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = match body {
        Some((content_type, body)) => request
            .header("content-type", content_type)
            .body(Body::from(body)),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    read_json(response).await
}

/// Any Admin/Manage call to `router` with a JSON body: the status and the JSON
/// answer (`null` when none).
pub async fn call(
    router: &Router,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| ("application/json", b.to_string()));
    let (status, v) = send(router, method, path, key, body).await;
    (status.as_u16(), v)
}

impl App {
    /// Provider keys may point at loopback and private addresses (nothing calls
    /// them). Bills and logs ask a collector none runs here (an allowed one answers
    /// 503); what a request is refused for is decided before that.
    pub async fn new(url: &str) -> Self {
        Self::with_upstreams(url, true).await
    }

    /// As [`App::new`], with loopback and private upstream addresses allowed or not.
    pub async fn with_upstreams(url: &str, allow_private_upstreams: bool) -> Self {
        let usage = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        Self::with_collector(url, allow_private_upstreams, UsageServiceClient::new(usage)).await
    }

    /// As [`App::new`], asking the usage collector at `collector` (an `http://` URL)
    /// for bills and logs.
    pub async fn with_collector_at(url: &str, collector: String) -> Self {
        let usage = tonic::transport::Endpoint::from_shared(collector)
            .unwrap()
            .connect_lazy();
        Self::with_collector(url, true, UsageServiceClient::new(usage)).await
    }

    /// As [`App::with_upstreams`], asking `usage` (a collector) for bills and logs.
    pub async fn with_collector(
        url: &str,
        allow_private_upstreams: bool,
        usage: UsageServiceClient<tonic::transport::Channel>,
    ) -> Self {
        let store = Store::open(url).await.unwrap();
        let root = apikey::generate_with_prefix("sy-root-")
            .clear
            .expose()
            .clone();
        let keyring = Keyring::parse(&Keyring::generate_spec("k1")).unwrap();
        let service = Arc::new(Service::new(
            store,
            Arc::new(keyring),
            KeyHash::of(&root),
            Publisher::new(),
            usage,
            OperatorOptions {
                upstream_networks: UpstreamNetworks::new(allow_private_upstreams, Vec::new()),
                resolver: None,
                // The contract tests name upstreams that answer nothing.
                discover_on_write: false,
            },
        ));
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        Self {
            router: rest::router(service.clone()),
            service,
            root,
            pool,
        }
    }

    /// As [`App::new`], over a usage collector running in this process on a
    /// database of its own, whose store a test feeds directly; the collector runs
    /// until the returned trigger is dropped.
    pub async fn with_usage(
        url: &str,
    ) -> (
        Self,
        switchyard_usage_collector::store::UsageStore,
        switchyard_runtime::ShutdownTrigger,
    ) {
        let usage = switchyard_usage_collector::store::UsageStore::open(&usage_database(url).await)
            .await
            .unwrap();
        let grpc = switchyard_runtime::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap();
        let (stop, shutdown) = switchyard_runtime::shutdown_pair();
        tokio::spawn(switchyard_usage_collector::run(
            usage.clone(),
            switchyard_usage_collector::Listeners {
                grpc,
                http: switchyard_runtime::bind("127.0.0.1:0").await.unwrap(),
            },
            None,
            shutdown,
        ));
        let client = UsageServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        (Self::with_collector(url, true, client).await, usage, stop)
    }

    /// One request: `key` as a bearer token (none when empty), `body` as it is sent.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<(&str, String)>,
    ) -> (StatusCode, Value) {
        send(&self.router, method, path, key, body).await
    }

    /// `POST` of a JSON body.
    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            path,
            key,
            Some(("application/json", body.to_string())),
        )
        .await
    }

    /// `POST` of a body exactly as given, as JSON.
    pub async fn post_raw(&self, path: &str, key: &str, body: &str) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            path,
            key,
            Some(("application/json", body.to_owned())),
        )
        .await
    }

    /// Any Admin/Manage call: the status and the JSON answer (`null` when none).
    pub async fn call(
        &self,
        method: Method,
        path: String,
        key: String,
        body: Option<Value>,
    ) -> (u16, Value) {
        call(&self.router, method, &path, &key, body).await
    }

    /// A main account made by the operator, with one provider key serving every
    /// model: its creation answer and its key.
    pub async fn owner(&self, name: &str) -> (Value, String) {
        let (status, created) = self
            .post("/x-users", &self.root, json!({"name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let key = created["api_key"].as_str().unwrap_or_default().to_owned();
        let (status, pk) = self
            .post(
                "/x-keys",
                &key,
                json!({"provider": "openai", "base_url": UPSTREAM, "secret": "sk-abc-123456789", "models": ["*"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pk}");
        (created, key)
    }

    /// One number from the store's database (`SELECT count(*) …`).
    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// The database of a collector beside the control plane's at `url`: another SQLite
/// file in its directory, or another database on its Postgres server.
async fn usage_database(url: &str) -> String {
    if url.starts_with("sqlite:") {
        return url.replace("test.db", "usage.db");
    }
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query("CREATE DATABASE usage_store")
        .execute(&pool)
        .await
        .unwrap();
    let (server, _) = url.rsplit_once('/').unwrap();
    format!("{server}/usage_store")
}
