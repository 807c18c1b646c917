//! Gemini provider keys in the data plane, through the real processes: OpenAI Chat and
//! Anthropic clients served by Gemini keys are metered from Gemini's own
//! `usageMetadata` (whole and streamed), and a Gemini key refused with Google's
//! 400 `API_KEY_INVALID` sleeps as a refused key while the call goes to the next one.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_fake_upstream::{Behaviour, FakeUpstream};
use switchyard_tests::system::{System, settle, start_system, usage_logs};

const TRANSLATED: &str = "x-switchyard-translated";
const BAD: &str = "AIza-gemini-refused-0001";
const GOOD: &str = "AIza-gemini-served-0002";

/// An owner whose only provider keys are two Gemini keys at one level.
async fn gemini_owner(sys: &System, fake: &FakeUpstream) -> String {
    let (status, created) = sys
        .post("/x-users", &sys.root, json!({"name": "gemini-only"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    for secret in [BAD, GOOD] {
        let (status, pk) = sys
            .post(
                "/x-keys",
                &key,
                json!({"provider": "gemini", "base_url": fake.gemini_base_url(),
                       "secret": secret, "models": ["gemini-*"], "level": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pk}");
    }
    settle(sys).await;
    key
}

/// A proxied call: its status, its translation header and its body text.
async fn post(
    sys: &System,
    path: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, Option<String>, String) {
    let r = sys.proxied(path, key, body).await;
    let translated = r
        .headers()
        .get(TRANSLATED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (r.status(), translated, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_keys_are_metered_from_their_usage_and_refused_keys_sleep() {
    let sys = start_system(4 * 1024 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let owner = gemini_owner(&sys, &fake).await;
    fake.set_behaviour(BAD, Behaviour::Reject);

    // OpenAI Chat clients, whole: whichever key round-robin picks first, the refused
    // one is passed over and the call answered.
    let chat = json!({"model": "gemini-2.5-flash", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"}]});
    for _ in 0..2 {
        let (status, translated, text) = post(&sys, "/v1/chat/completions", &owner, &chat).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(translated.as_deref(), Some("openai-chat->gemini"));
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            answer["choices"][0]["message"]["content"], "echo: hello there",
            "{answer}"
        );
    }
    assert!(
        fake.calls_with(BAD) >= 1,
        "round-robin tried the refused key"
    );
    assert!(fake.calls_with(GOOD) >= 2);

    // Streamed, with the usage chunk the client asked for.
    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let (status, translated, text) = post(&sys, "/v1/chat/completions", &owner, &stream).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(translated.as_deref(), Some("openai-chat->gemini"));
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let streamed: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, "echo: hello there", "{text}");
    assert!(events.iter().any(|e| e["usage"].is_object()), "{text}");

    // An Anthropic client on the same keys.
    let messages = json!({"model": "gemini-2.5-flash", "max_tokens": 64,
                          "messages": [{"role": "user", "content": "hi gemini"}]});
    let (status, translated, text) = post(&sys, "/v1/messages", &owner, &messages).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(translated.as_deref(), Some("anthropic-messages->gemini"));
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["content"][0]["text"], "echo: hi gemini", "{answer}");

    // Every call metered from what Gemini reported, not estimated: the logs add up
    // to the tokens the upstream counted.
    let events = usage_logs(&sys, &owner, 4).await;
    assert_eq!(events.len(), 4, "{events:?}");
    let (mut input, mut output) = (0, 0);
    for e in &events {
        assert_eq!(e["status"], 200, "{e}");
        assert_eq!(e["usage_source"], "reported", "{e}");
        assert_eq!(e["upstream_protocol"], "gemini", "{e}");
        assert!(e["input_tokens"].as_u64().unwrap() > 0, "{e}");
        input += e["input_tokens"].as_u64().unwrap();
        output += e["output_tokens"].as_u64().unwrap();
    }
    let clients: Vec<&str> = events
        .iter()
        .filter_map(|e| e["client_protocol"].as_str())
        .collect();
    assert!(clients.contains(&"openai-chat"), "{clients:?}");
    assert!(clients.contains(&"anthropic-messages"), "{clients:?}");
    let observed = fake.observed();
    assert_eq!(input, observed.input_tokens.load(Ordering::SeqCst));
    assert_eq!(output, observed.output_tokens.load(Ordering::SeqCst));
}
