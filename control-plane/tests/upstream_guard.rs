//! Provider base URLs that would reach a private or special-purpose address are
//! refused when a key is created or changed: literal addresses by what they are,
//! host names by what they resolve to (through a resolver the test supplies). A name
//! that does not resolve now (or not in time) is accepted; the data plane checks
//! every address when it connects.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

use std::net::IpAddr;
use std::sync::Arc;

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::Router;
use axum::http::Method;
use common::call;
use serde_json::{Value, json};
use switchyard_control_plane::publisher::Publisher;
use switchyard_control_plane::rest;
use switchyard_control_plane::service::{OperatorOptions, Service};
use switchyard_control_plane::store::Store;
use switchyard_core::apikey::{self, KeyHash};
use switchyard_core::crypto::Keyring;
use switchyard_core::netguard::{Resolve, Resolving, UpstreamNetworks};
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use switchyard_tests::backends::TestDb;

/// Host names of the test's own choosing; any other does not resolve.
struct Table;

impl Resolve for Table {
    fn resolve(&self, host: &str) -> Resolving {
        let answer: &[&str] = match host {
            "some-host.test" | "127.0.0.1.nip.io" => &["127.0.0.1"],
            "metadata.test" => &["169.254.169.254"],
            "mixed.test" => &["8.8.8.8", "10.0.0.7"],
            "router.internal" => &["10.1.2.3"],
            "api.provider.test" => &["8.8.4.4", "2606:4700::1"],
            // Never answers: the write waits its bounded time, then accepts.
            "slow.test" => return Box::pin(std::future::pending()),
            _ => {
                return Box::pin(std::future::ready(Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such test host",
                ))));
            }
        };
        let ips: Vec<IpAddr> = answer.iter().map(|t| t.parse().unwrap()).collect();
        Box::pin(std::future::ready(Ok(ips)))
    }
}

/// The REST router over a fresh SQLite store with `networks`, and a main account's key.
async fn main_account(db: &TestDb, networks: UpstreamNetworks) -> (Router, String) {
    let store = Store::open(&db.url).await.unwrap();
    let root = apikey::generate_with_prefix("sy-root-")
        .clear
        .expose()
        .clone();
    let usage = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    let service = Arc::new(Service::new(
        store,
        Arc::new(Keyring::parse(&Keyring::generate_spec("k1")).unwrap()),
        KeyHash::of(&root),
        Publisher::new(),
        UsageServiceClient::new(usage),
        OperatorOptions {
            upstream_networks: networks,
            resolver: Some(Arc::new(Table)),
            // Its upstreams are made up (some public): never asked for models.
            discover_on_write: false,
        },
    ));
    let app = rest::router(service);
    let (status, v) = call(
        &app,
        Method::POST,
        "/x-users",
        &root,
        Some(json!({"name": "main"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    (app, v["api_key"].as_str().unwrap().to_owned())
}

async fn create(app: &Router, key: &str, base_url: &str) -> (u16, Value) {
    call(
        app,
        Method::POST,
        "/x-keys",
        key,
        Some(json!({
            "provider": "openai",
            "base_url": base_url,
            "secret": "sk-tenant-secret-123456789",
            "models": ["*"],
        })),
    )
    .await
}

/// The refusal's message, after checking it is a 400 in the OpenAI error shape.
fn refused(answer: (u16, Value), base_url: &str) -> String {
    let (status, v) = answer;
    assert_eq!(status, 400, "{base_url}: {v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn creating_a_key_for_a_forbidden_address_is_refused() {
    let db = TestDb::sqlite().unwrap();
    let (app, main) = main_account(&db, UpstreamNetworks::default()).await;

    for (base_url, says) in [
        ("http://some-host.test:8000/v1", "127.0.0.1 is loopback"),
        ("http://127.0.0.1.nip.io/v1", "127.0.0.1 is loopback"),
        (
            "http://metadata.test/latest",
            "169.254.169.254 is link-local",
        ),
        ("https://mixed.test/v1", "10.0.0.7 is a private network"),
        ("http://[::127.0.0.1]/v1", "carries 127.0.0.1, loopback"),
        (
            "http://[64:ff9b::a9fe:a9fe]/v1",
            "carries 169.254.169.254, link-local",
        ),
        (
            "http://[2002:a9fe:a9fe::]/v1",
            "carries 169.254.169.254, link-local",
        ),
        ("http://[fec0::1]/v1", "fec0::1 is site-local"),
        ("http://[ff02::1]/v1", "ff02::1 is multicast"),
        ("http://224.0.0.1/v1", "224.0.0.1 is multicast"),
        (
            "http://198.18.0.1/v1",
            "198.18.0.1 is reserved for benchmarking",
        ),
        ("http://localhost:11434/v1", "local or internal host"),
    ] {
        let message = refused(create(&app, &main, base_url).await, base_url);
        assert!(message.contains(says), "{base_url}: {message}");
    }

    let (status, v) = call(&app, Method::GET, "/x-keys", &main, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 0, "nothing was stored: {v}");

    // Public answers pass; so does a name that does not resolve now (the data plane
    // checks every address it connects to).
    for base_url in [
        "https://api.provider.test/v1",
        "https://not-yet.test/v1",
        "https://slow.test/v1",
        "https://8.8.8.8/v1",
        "https://[2606:4700::1]/v1",
    ] {
        let (status, v) = create(&app, &main, base_url).await;
        assert_eq!(status, 201, "{base_url}: {v}");
    }
}

#[tokio::test]
async fn changing_a_keys_base_url_to_a_forbidden_address_is_refused() {
    let db = TestDb::sqlite().unwrap();
    let (app, main) = main_account(&db, UpstreamNetworks::default()).await;
    let (status, key) = create(&app, &main, "https://api.provider.test/v1").await;
    assert_eq!(status, 201, "{key}");
    let path = format!("/x-keys/{}", key["id"].as_str().unwrap());

    for (base_url, says) in [
        ("http://some-host.test/v1", "127.0.0.1 is loopback"),
        ("http://127.0.0.1.nip.io:8080/v1", "127.0.0.1 is loopback"),
        (
            "http://[::ffff:169.254.169.254]/",
            "carries 169.254.169.254",
        ),
        ("http://100.64.0.1/v1", "carrier-grade NAT"),
    ] {
        let answer = call(
            &app,
            Method::PATCH,
            &path,
            &main,
            Some(json!({"base_url": base_url})),
        )
        .await;
        let message = refused(answer, base_url);
        assert!(message.contains(says), "{base_url}: {message}");
    }
    let (status, v) = call(&app, Method::GET, &path, &main, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["base_url"], "https://api.provider.test/v1", "unchanged");

    let (status, v) = call(
        &app,
        Method::PATCH,
        &path,
        &main,
        Some(json!({"base_url": "https://8.8.8.8/v2"})),
    )
    .await;
    assert_eq!(
        (status, v["base_url"].as_str()),
        (200, Some("https://8.8.8.8/v2")),
        "{v}"
    );
}

#[tokio::test]
async fn the_operator_allows_networks_of_its_own_or_every_address() {
    let db = TestDb::sqlite().unwrap();
    let some = UpstreamNetworks::new(false, vec!["10.1.0.0/16".parse().unwrap()]);
    let (app, main) = main_account(&db, some).await;
    for base_url in ["http://router.internal/v1", "http://10.1.9.9:8000/v1"] {
        let (status, v) = create(&app, &main, base_url).await;
        assert_eq!(status, 201, "{base_url}: {v}");
    }
    let message = refused(
        create(&app, &main, "http://some-host.test/v1").await,
        "some-host.test",
    );
    assert!(message.contains("127.0.0.1 is loopback"), "{message}");

    let db = TestDb::sqlite().unwrap();
    let (app, main) = main_account(&db, UpstreamNetworks::new(true, Vec::new())).await;
    for base_url in [
        "http://some-host.test/v1",
        "http://127.0.0.1:8000/v1",
        "http://localhost:11434/v1",
    ] {
        let (status, v) = create(&app, &main, base_url).await;
        assert_eq!(status, 201, "{base_url}: {v}");
    }
}
