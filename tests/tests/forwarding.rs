//! What reaches the upstream from a client's call, as the fake upstream saw it: the
//! query string, the User-Agent with Switchyard's product token, the allow-listed
//! and owner-named headers and none of the others; and what never gets that far: a
//! body of the wrong media type (415) or a hostile query string (400), neither routed
//! nor metered.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::forward::PRODUCT;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{
    System, chat, settle, start_system, usage_count_settled, wait_for_key,
};

/// A main account with an OpenAI and an Anthropic key on the fake; its key.
async fn owner(sys: &System, fake: &FakeUpstream, name: &str) -> String {
    let (_, key) = sys.owner(name, fake).await;
    let (status, pk) = sys
        .post(
            "/x-keys",
            &key,
            json!({"provider": "anthropic", "base_url": fake.base_url(), "secret": "sk-ant-fwd-0001", "models": ["claude*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pk}");
    settle(sys).await;
    wait_for_key(sys, &key).await;
    key
}

async fn put_rules(sys: &System, key: &str, rules: Value) -> (u16, Value) {
    sys.call(Method::PUT, "/x-conf".into(), key.into(), Some(rules))
        .await
}

fn messages() -> Value {
    json!({"model": "claude-3-5-sonnet", "max_tokens": 64,
           "messages": [{"role": "user", "content": "hello there"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_query_the_user_agent_and_allowed_headers_only() {
    let sys = start_system(4 * 1024 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let key = owner(&sys, &fake, "forwarding").await;

    // An owner may add names, never one that must stay behind.
    for refused in ["Authorization", "cookie", "transfer-encoding", "x bad"] {
        let (status, body) = put_rules(&sys, &key, json!({"forward_headers": [refused]})).await;
        assert_eq!(status, 422, "{refused}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("forward_headers"), "{message}");
    }
    let (status, body) = put_rules(&sys, &key, json!({"forward_headers": ["X-Team-Tag"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["forward_headers"], json!(["x-team-tag"]));
    settle(&sys).await;

    // Claude Code's way: a query string, its User-Agent and session headers.
    let r = sys
        .http
        .post(sys.proxy("/v1/messages?beta=true"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "claude-code-20250219")
        .header("x-claude-code-session-id", "5f0c-session")
        .header("x-stainless-os", "Linux")
        .header("x-stainless-retry-count", "0")
        .header("user-agent", "claude-cli/2.1.0 (external, cli)")
        .header("x-team-tag", "blue")
        .header("x-not-listed", "stays")
        .header("cookie", "session=secret")
        .header("api-key", "leak-1")
        .header("x-goog-api-key", "leak-2")
        .json(&messages())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = fake.observed().last_headers.lock().unwrap().clone();
    assert_eq!(
        fake.observed().last_query.lock().unwrap().as_deref(),
        Some("beta=true")
    );
    assert_eq!(
        seen["user-agent"],
        format!("claude-cli/2.1.0 (external, cli) {PRODUCT}").as_str()
    );
    for (name, value) in [
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "claude-code-20250219"),
        ("x-claude-code-session-id", "5f0c-session"),
        ("x-stainless-os", "Linux"),
        ("x-stainless-retry-count", "0"),
        ("x-team-tag", "blue"),
        ("x-api-key", "sk-ant-fwd-0001"),
    ] {
        assert_eq!(
            seen.get(name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{name}"
        );
    }
    for absent in [
        "x-not-listed",
        "cookie",
        "api-key",
        "x-goog-api-key",
        "authorization",
    ] {
        assert!(
            !seen.contains_key(absent),
            "{absent} was forwarded: {seen:?}"
        );
    }

    // An OpenAI client without a User-Agent or query: Switchyard's token alone.
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("openai-beta", "assistants=v2")
        .header("originator", "codex_cli_rs")
        .header("session_id", "sess-7")
        .header("x-client-request-id", "req-9")
        .json(&chat("hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = fake.observed().last_headers.lock().unwrap().clone();
    assert_eq!(fake.observed().last_query.lock().unwrap().as_deref(), None);
    assert_eq!(seen["user-agent"], PRODUCT);
    for (name, value) in [
        ("openai-beta", "assistants=v2"),
        ("originator", "codex_cli_rs"),
        ("session_id", "sess-7"),
        ("x-client-request-id", "req-9"),
        ("authorization", "Bearer sk-abc-123456789"),
    ] {
        assert_eq!(
            seen.get(name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{name}"
        );
    }

    // Hostile query strings: 400 in the protocol's shape, nothing sent upstream.
    let calls = fake.calls();
    let long = format!("/v1/messages?q={}", "a".repeat(3000));
    for path in [
        "/v1/messages?a=%00b",
        "/v1/messages?x=%0d%0aInjected:%201",
        &long,
    ] {
        let r = sys
            .http
            .post(sys.proxy(path))
            .header("x-api-key", &key)
            .json(&messages())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("query string"),
            "{body}"
        );
    }
    assert_eq!(fake.calls(), calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_another_media_type_is_refused_with_415_unrouted_and_unmetered() {
    let sys = start_system(4 * 1024 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let key = owner(&sys, &fake, "media").await;
    let chat_body = chat("hi", false).to_string();
    let messages_body = messages().to_string();
    let send = |path: &'static str, content_type: Option<&'static str>, body: String| {
        let mut r = sys.http.post(sys.proxy(path)).bearer_auth(&key).body(body);
        if let Some(t) = content_type {
            r = r.header("content-type", t);
        }
        async move { r.send().await.unwrap() }
    };

    // Accepted: JSON in any case, with parameters, or undeclared.
    for content_type in [
        Some("application/json"),
        Some("Application/JSON; charset=utf-8"),
        None,
    ] {
        let r = send("/v1/chat/completions", content_type, chat_body.clone()).await;
        assert_eq!(r.status(), 200, "{content_type:?}");
    }
    let calls = fake.calls();
    let events = usage_count_settled(&sys, &key).await;

    // curl -d and text: 415 in each protocol's shape, naming the expected type.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let r = send(
            "/v1/chat/completions",
            Some(content_type),
            chat_body.clone(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("application/json"), "{message}");

        let r = send("/v1/messages", Some(content_type), messages_body.clone()).await;
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("application/json"), "{message}");
    }
    // An upload endpoint keeps its own type.
    let r = send(
        "/v1/audio/transcriptions",
        Some("application/json"),
        chat_body,
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("multipart/form-data"), "{message}");

    // Nothing reached the upstream, nothing was metered.
    assert_eq!(fake.calls(), calls);
    let r = send(
        "/v1/chat/completions",
        None,
        chat("again", false).to_string(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(usage_count_settled(&sys, &key).await, events + 1);
}
