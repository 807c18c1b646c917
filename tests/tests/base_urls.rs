//! Provider base URLs in the forms each provider's SDK takes: an Anthropic key
//! registered as the Anthropic SDK names its host (no `/v1`) carries calls, and the
//! key shows the stored form.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use serde_json::json;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{System, start_system, wait_for_key};

/// The system, a fake upstream, and a main account (with no provider key yet): its key.
async fn main_account() -> (System, FakeUpstream, String) {
    let sys = start_system(1 << 20).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (status, created) = sys
        .post("/x-users", &sys.root, json!({"name": "acme"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    (sys, fake, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_key_registered_without_v1_carries_calls() {
    let (sys, fake, key) = main_account().await;
    let sdk_form = fake.base_url().trim_end_matches("/v1").to_owned();
    let (status, pk) = sys
        .post(
            "/x-keys",
            &key,
            json!({"provider": "anthropic", "base_url": format!("{sdk_form}/"), "secret": "sk-ant-123456789", "models": ["claude-*"]}),
        )
        .await;
    assert_eq!(status, 201, "{pk}");
    assert_eq!(
        pk["base_url"],
        json!(format!("{sdk_form}/v1")),
        "the stored form"
    );

    // A whole endpoint pasted as an OpenAI key's base URL is trimmed to its base.
    let (status, openai) = sys
        .post(
            "/x-keys",
            &key,
            json!({"provider": "openai", "base_url": format!("{sdk_form}/v1/chat/completions"), "secret": "sk-abc-123456789", "models": ["gpt-*"]}),
        )
        .await;
    assert_eq!(status, 201, "{openai}");
    assert_eq!(openai["base_url"], json!(format!("{sdk_form}/v1")));

    wait_for_key(&sys, &key).await;
    let r = sys
        .http
        .post(sys.proxy("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "message", "{body}");
    assert_eq!(fake.calls(), 1);
}

/// A base URL that does not lead to the protocol's endpoints: the upstream's bare 404
/// reaches the client as an error in its protocol's shape, naming the provider key and
/// the URL tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_base_url_is_named_in_the_error() {
    let (sys, fake, key) = main_account().await;
    let wrong = format!("{}/openai", fake.base_url());
    let (status, pk) = sys
        .post(
            "/x-keys",
            &key,
            json!({"provider": "openai", "base_url": wrong, "secret": "sk-abc-123456789", "models": ["*"]}),
        )
        .await;
    assert_eq!(status, 201, "{pk}");
    wait_for_key(&sys, &key).await;
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&switchyard_tests::system::chat("hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(pk["id"].as_str().unwrap()), "{message}");
    assert!(
        message.contains(&format!("{wrong}/chat/completions")),
        "{message}"
    );
    assert!(message.contains("base_url"), "{message}");
}
