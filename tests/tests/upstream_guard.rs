//! The data plane connects to no private address it was not allowed, whatever the
//! control plane accepted: the client gets an error in its protocol's shape naming
//! the refused address, and the upstream gets nothing (not the tenant's secret, not
//! its body). A data plane allowed private upstreams serves the same key.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{System, chat, start_system_opts, wait_for_key_at};

async fn post(sys: &System, base: &str, path: &str, key: &str, body: &Value) -> (u16, Value) {
    let r = sys
        .http
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_data_plane_never_connects_to_a_loopback_upstream_unless_allowed() {
    let kek = Keyring::generate_spec("k1").to_string();
    // The control plane allows private upstreams (the harness's); this data plane
    // allows only a documentation network, so loopback stays refused.
    let sys = start_system_opts(
        4 * 1024 * 1024,
        &kek,
        &kek,
        &["--allowed-upstream-networks", "192.0.2.0/24"],
    )
    .await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (status, created) = sys.post("/x-users", &sys.root, json!({"name": "t"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    for (kind, models) in [("openai", "gpt*"), ("anthropic", "claude*")] {
        let (status, pk) = sys
            .post(
                "/x-keys",
                &key,
                json!({"provider": kind, "base_url": fake.base_url(), "secret": "sk-tenant-0123456789", "models": [models]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pk}");
    }
    let strict = sys.data.url("http");
    wait_for_key_at(&sys, &strict, &key).await;

    let refusal = "the upstream address is not allowed: 127.0.0.1 is loopback";
    let (status, body) = post(
        &sys,
        &strict,
        "/v1/chat/completions",
        &key,
        &chat("hello", false),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(refusal), "{message}");
    assert_eq!(body["error"]["code"], "upstream_failed", "{body}");

    let messages = json!({"model": "claude-sonnet-4", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hello"}]});
    let (status, body) = post(&sys, &strict, "/v1/messages", &key, &messages).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["type"], "error", "Anthropic's shape: {body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(refusal), "{message}");
    assert_eq!(fake.calls(), 0, "nothing reached the upstream");

    // Allowed private upstreams, another data plane serves the same key.
    let open_plane = sys.another_data_plane(&[]).await;
    let open = open_plane.url("http");
    wait_for_key_at(&sys, &open, &key).await;
    let (status, body) = post(
        &sys,
        &open,
        "/v1/chat/completions",
        &key,
        &chat("hi", false),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(fake.calls() >= 1);
}
