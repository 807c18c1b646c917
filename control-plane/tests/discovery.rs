//! Provider keys learn their upstream's model list, on SQLite and on Postgres, through
//! the real router and a running fake upstream: when added, when asked, when
//! re-pointed, in both
//! protocols (Anthropic's in pages); an upstream without a list, one refusing the
//! credential, and an address the operator no longer allows each leave their reason
//! on the key and nothing else broken.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

#[expect(dead_code, reason = "this suite uses part of the shared helpers")]
mod common;

use axum::Router;
use axum::http::Method;
use common::call;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchyard_control_plane::publisher::Publisher;
use switchyard_control_plane::rest;
use switchyard_control_plane::service::{OperatorOptions, Service};
use switchyard_control_plane::store::Store;
use switchyard_core::apikey::{self, KeyHash};
use switchyard_core::crypto::Keyring;
use switchyard_core::netguard::UpstreamNetworks;
use switchyard_fake_upstream::{Behaviour, FakeUpstream};
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use switchyard_tests::wait;

switchyard_tests::every_backend!(
    keys_learn_their_upstreams_models,
    the_leader_asks_every_active_key_again
);

/// The service over the store at `url`, upstreams allowed anywhere or not.
async fn service(
    url: &str,
    keyring: &Arc<Keyring>,
    root: &str,
    allow_private: bool,
    discover_on_write: bool,
) -> Arc<Service> {
    let usage = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    Arc::new(Service::new(
        Store::open(url).await.unwrap(),
        keyring.clone(),
        KeyHash::of(root),
        Publisher::new(),
        UsageServiceClient::new(usage),
        OperatorOptions {
            upstream_networks: UpstreamNetworks::new(allow_private, Vec::new()),
            resolver: None,
            discover_on_write,
        },
    ))
}

/// The REST router over [`service`], asking upstreams when keys are written.
async fn router(url: &str, keyring: &Arc<Keyring>, root: &str, allow_private: bool) -> Router {
    rest::router(service(url, keyring, root, allow_private, true).await)
}

/// A main account made by the operator: its key.
async fn main_account(app: &Router, root: &str) -> String {
    let (status, v) = call(
        app,
        Method::POST,
        "/x-users",
        root,
        Some(json!({"name": "main"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["api_key"].as_str().unwrap().to_owned()
}

fn root_key() -> String {
    apikey::generate_with_prefix("sy-root-")
        .clear
        .expose()
        .clone()
}

/// `POST /x-keys/{id}/discover`, which answers 200 whatever the upstream said.
async fn discover(app: &Router, key: &str, id: &str) -> Value {
    let (status, v) = call(
        app,
        Method::POST,
        &format!("/x-keys/{id}/discover"),
        key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

fn names(v: &Value) -> Vec<String> {
    v["discovered_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

async fn keys_learn_their_upstreams_models(url: &str) {
    let fake = FakeUpstream::start(None).await.unwrap();
    // 25 models: more than one of the fake's Anthropic pages. A duplicate and a name
    // no call could carry are dropped.
    let listed: Vec<String> = (0..25).map(|i| format!("model-{i:02}")).collect();
    let mut offered: Vec<&str> = listed.iter().rev().map(String::as_str).collect();
    offered.extend(["model-03", "has space", "bell\u{7}"]);
    fake.set_models(&offered);
    fake.set_behaviour("sk-no-list-0003", Behaviour::NoModelList);
    fake.set_behaviour("sk-refused-0004", Behaviour::Reject);

    let keyring = Arc::new(Keyring::parse(&Keyring::generate_spec("k1")).unwrap());
    let root = root_key();
    let app = router(url, &keyring, &root, true).await;
    let main = main_account(&app, &root).await;
    let add = |provider: &'static str, base: String, secret: &'static str| {
        let (app, main) = (app.clone(), main.clone());
        async move {
            let (status, v) = call(
                &app,
                Method::POST,
                "/x-keys",
                &main,
                Some(json!({"provider": provider, "base_url": base, "secret": secret, "models": ["*"]})),
            )
            .await;
            assert_eq!(status, 201, "{v}");
            assert!(v["discovered_at_unix_ms"].is_i64(), "{v}");
            v
        }
    };

    // Added: the key arrives with what its upstream lists, and keeps it.
    let added = add("openai", fake.base_url(), "sk-good-0001").await;
    assert_eq!(names(&added), listed, "{added}");
    assert!(added["discovery_error"].is_null(), "{added}");
    let openai = added["id"].as_str().unwrap().to_owned();
    let (status, v) = call(&app, Method::GET, &format!("/x-keys/{openai}"), &main, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(names(&v), listed, "{v}");

    // Anthropic's list, asked on demand, read across its pages.
    let anthropic = add("anthropic", format!("http://{}", fake.addr), "sk-ant-0002").await;
    let anthropic = anthropic["id"].as_str().unwrap().to_owned();
    let v = discover(&app, &main, &anthropic).await;
    assert_eq!(names(&v), listed, "{v}");
    assert!(v["discovery_error"].is_null(), "{v}");

    // No model list (404): the key says so and keeps its explicit models.
    let no_list = add("openai", fake.base_url(), "sk-no-list-0003").await;
    assert_eq!(no_list["discovery_error"], "no model list", "{no_list}");
    let no_list = no_list["id"].as_str().unwrap().to_owned();
    let v = discover(&app, &main, &no_list).await;
    assert_eq!(v["discovery_error"], "no model list", "{v}");
    assert_eq!(v["discovered_models"], json!([]));
    assert_eq!(v["models"], json!(["*"]));

    // The credential refused (401): the reason is on the key, which is added all
    // the same.
    let refused = add("openai", fake.base_url(), "sk-refused-0004").await;
    let refused = refused["id"].as_str().unwrap().to_owned();
    let v = discover(&app, &main, &refused).await;
    assert!(
        v["discovery_error"]
            .as_str()
            .unwrap()
            .contains("refused the credential (401)"),
        "{v}"
    );
    assert_eq!(v["discovered_models"], json!([]));

    // Nothing else broke: every key listed, the good ones with their models.
    let (status, all) = call(&app, Method::GET, "/x-keys", &main, None).await;
    assert_eq!(status, 200, "{all}");
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 4);
    for k in all {
        let id = k["id"].as_str().unwrap();
        if id == openai || id == anthropic {
            assert_eq!(names(k), listed, "{k}");
        }
    }

    // The upstream's list changes: asked again, the key follows.
    fake.set_models(&["model-new"]);
    let v = discover(&app, &main, &openai).await;
    assert_eq!(names(&v), ["model-new"], "{v}");

    // A failure keeps the list last learnt; re-pointing the key asks the new place.
    fake.set_behaviour("sk-good-0001", Behaviour::Fail { status: 503 });
    let v = discover(&app, &main, &openai).await;
    assert_eq!(names(&v), ["model-new"], "{v}");
    assert!(
        v["discovery_error"].as_str().unwrap().contains("503"),
        "{v}"
    );
    let (status, v) = call(
        &app,
        Method::PATCH,
        &format!("/x-keys/{openai}"),
        &main,
        Some(json!({"base_url": format!("http://{}/other/v1", fake.addr)})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["discovered_models"], json!([]), "{v}");
    assert_eq!(v["discovery_error"], "no model list", "{v}");

    // The operator no longer allows loopback upstreams: the key is not asked, and
    // says why.
    let strict = router(url, &keyring, &root, false).await;
    let before = fake.model_list_calls();
    let v = discover(&strict, &main, &anthropic).await;
    assert!(
        v["discovery_error"]
            .as_str()
            .unwrap()
            .contains("may not have"),
        "{v}"
    );
    assert_eq!(names(&v), listed, "the list last learnt stays: {v}");
    assert_eq!(fake.model_list_calls(), before);
}

/// Keys written while the control plane does not ask upstreams by itself are asked
/// by the `model-discovery` leader's round: active ones only, from when it leads.
async fn the_leader_asks_every_active_key_again(url: &str) {
    let fake = FakeUpstream::start(None).await.unwrap();
    fake.set_models(&["m-1", "m-2"]);
    let keyring = Arc::new(Keyring::parse(&Keyring::generate_spec("k1")).unwrap());
    let root = root_key();
    let service = service(url, &keyring, &root, true, false).await;
    let app = rest::router(service.clone());
    let main = main_account(&app, &root).await;
    let mut ids = Vec::new();
    for secret in ["sk-active-0001", "sk-disabled-0002"] {
        let (status, v) = call(
            &app,
            Method::POST,
            "/x-keys",
            &main,
            Some(json!({"provider": "openai", "base_url": fake.base_url(), "secret": secret, "models": ["*"]})),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        assert!(
            v["discovered_at_unix_ms"].is_null(),
            "not asked on write: {v}"
        );
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let (status, v) = call(
        &app,
        Method::PATCH,
        &format!("/x-keys/{}", ids[1]),
        &main,
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(fake.model_list_calls(), 0);

    let (leading, leader) = tokio::sync::watch::channel(false);
    let (stop, shutdown) = switchyard_runtime::shutdown_pair();
    let rounds = tokio::spawn(
        switchyard_control_plane::model_discovery::discover_when_leading(
            service.discoverer().clone(),
            leader,
            Duration::from_secs(3600),
            shutdown,
        ),
    );
    // Not leading: nothing is asked (the first look is immediate).
    tokio::task::yield_now().await;
    assert_eq!(fake.model_list_calls(), 0);
    leading.send_replace(true);
    let key = |id: String| {
        let (app, main) = (app.clone(), main.clone());
        async move {
            call(&app, Method::GET, &format!("/x-keys/{id}"), &main, None)
                .await
                .1
        }
    };
    let asked = wait::until_ok(
        Duration::from_secs(15),
        "the leader to ask the active key's upstream",
        async || {
            let v = key(ids[0].clone()).await;
            if v["discovered_at_unix_ms"].is_null() {
                Err(v)
            } else {
                Ok(v)
            }
        },
    )
    .await;
    assert_eq!(names(&asked), ["m-1", "m-2"], "{asked}");
    let disabled = key(ids[1].clone()).await;
    assert!(disabled["discovered_at_unix_ms"].is_null(), "{disabled}");
    assert_eq!(fake.model_list_calls(), 1);
    stop.trigger();
    tokio::time::timeout(Duration::from_secs(5), rounds)
        .await
        .unwrap()
        .unwrap();
}
