//! What a call leaves behind, against the real processes: a stream that ends before
//! its protocol's last event, cleanly or by a cut, is a broken stream on every stream
//! protocol (the client told so, the usage event non-2xx and incomplete, with the
//! tokens it consumed, and the limits settled at them), and every call writes one
//! access line that names it without its content or any key.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::{Behaviour, FakeUpstream, count_tokens};
use switchyard_tests::system::{
    System, chat, owner_with_keys, settle, start_system_opts, usage_logs,
};
use switchyard_tests::wait;

async fn start(data_args: &[&str]) -> System {
    let kek = Keyring::generate_spec("k1").to_string();
    start_system_opts(4 * 1024 * 1024, &kek, &kek, data_args).await
}

/// A streamed call to `path` with `key`, read to its end.
async fn stream(sys: &System, path: &str, key: &str, body: &Value) -> (StatusCode, String) {
    let r = sys.proxied(path, key, body).await;
    let status = r.status();
    (status, r.text().await.unwrap_or_default())
}

fn messages(content: &str) -> Value {
    json!({"model": "claude-sonnet-4", "max_tokens": 64, "stream": true,
           "messages": [{"role": "user", "content": content}]})
}

fn responses(content: &str) -> Value {
    json!({"model": "gpt-4o-mini", "stream": true, "input": content})
}

/// The last SSE event of a stream.
fn last_event(text: &str) -> &str {
    text.trim_end().rsplit("\n\n").next().unwrap()
}

/// Every usage event of `key`'s tree for `path`, once `n` have arrived in all.
async fn events_for(sys: &System, key: &str, n: usize, path: &str) -> Vec<Value> {
    usage_logs(sys, key, n)
        .await
        .into_iter()
        .filter(|e| e["path"] == path)
        .collect()
}

/// A broken stream's usage event: the status a break records, incomplete, and the
/// tokens it consumed (its prompt and the text that reached the client).
fn assert_broken(event: &Value) {
    assert_eq!(event["status"], 502, "{event}");
    assert_eq!(event["usage_source"], "incomplete", "{event}");
    assert_eq!(event["streamed"], true, "{event}");
    assert!(event["input_tokens"].as_u64().unwrap() > 0, "{event}");
    assert!(event["output_tokens"].as_u64().unwrap() > 0, "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_end_before_their_last_event_are_broken_on_every_protocol() {
    let sys = start(&[]).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, key, _) = owner_with_keys(
        &sys,
        &fake,
        "early",
        &[
            ("openai", "sk-early-01", 1, &["gpt*"]),
            ("anthropic", "sk-ant-early-02", 1, &["claude*"]),
        ],
    )
    .await;
    // Each stream closes cleanly after its first text, without its last events.
    fake.set_behaviour("sk-early-01", Behaviour::EndAfter { events: 3 });
    fake.set_behaviour("sk-ant-early-02", Behaviour::EndAfter { events: 4 });

    // Chat completions: no finish chunk, no `[DONE]`; the client gets an error chunk.
    let (status, text) = stream(
        &sys,
        "/v1/chat/completions",
        &key,
        &chat("end me early please", true),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("echo:"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let last = last_event(&text);
    assert!(last.starts_with("data: {\"error\":"), "{text}");
    assert!(last.contains("ended before its last event"), "{text}");

    // Anthropic messages: no `message_stop`; Anthropic's `error` event ends it.
    let (_, text) = stream(&sys, "/v1/messages", &key, &messages("end me early")).await;
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
    assert!(
        last_event(&text).starts_with("event: error\ndata: {\"type\":\"error\""),
        "{text}"
    );

    // Responses: no `response.completed`; `error`, then `response.failed`, which is
    // what Codex reads.
    let (_, text) = stream(&sys, "/v1/responses", &key, &responses("end me early")).await;
    assert!(text.contains("response.output_text.delta"), "{text}");
    assert!(!text.contains("response.completed"), "{text}");
    assert!(text.contains("\n\nevent: error\ndata: "), "{text}");
    let last = last_event(&text);
    assert!(last.starts_with("event: response.failed\ndata: "), "{text}");
    let failed: Value = serde_json::from_str(last.split("data: ").nth(1).unwrap()).unwrap();
    assert_eq!(failed["type"], "response.failed");
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(failed["response"]["error"]["code"], "upstream_failed");

    for path in ["/v1/chat/completions", "/v1/messages", "/v1/responses"] {
        let events = events_for(&sys, &key, 3, path).await;
        assert_eq!(events.len(), 1, "{path}: {events:?}");
        assert_broken(&events[0]);
    }
    // Anthropic reported its input at the start: that stands.
    let anthropic = &events_for(&sys, &key, 3, "/v1/messages").await[0];
    assert_eq!(
        anthropic["input_tokens"],
        count_tokens("end me early"),
        "{anthropic}"
    );

    // The same streams sent whole are clean successes.
    fake.set_behaviour("sk-early-01", Behaviour::Succeed);
    fake.set_behaviour("sk-ant-early-02", Behaviour::Succeed);
    let (_, text) = stream(&sys, "/v1/responses", &key, &responses("whole")).await;
    assert!(
        last_event(&text).starts_with("event: response.completed"),
        "{text}"
    );
    let (_, text) = stream(&sys, "/v1/messages", &key, &messages("whole")).await;
    assert!(
        last_event(&text).starts_with("event: message_stop"),
        "{text}"
    );
    let events = usage_logs(&sys, &key, 5).await;
    for event in &events[..2] {
        assert_eq!(event["status"], 200, "{event}");
        assert_eq!(event["usage_source"], "reported", "{event}");
    }
}

/// Streams cut by a transport error after text reached the client are metered with
/// their prompt and the text seen, and the limits are settled at those tokens: a
/// reservation left standing would refuse the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_streams_are_metered_as_far_as_they_went() {
    let sys = start(&[]).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, owner, _) = owner_with_keys(
        &sys,
        &fake,
        "cutters",
        &[("openai", "sk-cut-01", 1, &["gpt*"])],
    )
    .await;
    // 1,500 tokens a minute; each call reserves its prompt and 1,000 more.
    let (status, created) = sys
        .post(
            "/x-users",
            &owner,
            json!({"name": "metered", "policy": {"model_limits": {"gpt*": {"rpm": 100, "tpm": 1500}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    settle(&sys).await;
    fake.set_behaviour("sk-cut-01", Behaviour::CutAfter { events: 4 });

    let mut body = chat("cut me off after some words", true);
    body["max_tokens"] = json!(1000);
    let (status, text) = stream(&sys, "/v1/chat/completions", &key, &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("echo:"), "{text}");
    assert!(last_event(&text).contains("interrupted"), "{text}");

    let mut body = responses("cut me off after some words");
    body["max_output_tokens"] = json!(1000);
    let (status, text) = stream(&sys, "/v1/responses", &key, &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("response.output_text.delta"), "{text}");
    assert!(
        last_event(&text).starts_with("event: response.failed"),
        "{text}"
    );

    let events = usage_logs(&sys, &key, 2).await;
    for event in &events {
        assert_broken(event);
    }
    // Chat: "echo: cut me" reached the client, 12 bytes: 3 tokens.
    let chat_event = &events_for(&sys, &key, 2, "/v1/chat/completions").await[0];
    assert_eq!(chat_event["output_tokens"], 3, "{chat_event}");
}

/// The access line of `request_id` in `log`, once it is there.
async fn access_line(sys: &System, request_id: &str) -> (Value, String) {
    wait::until(
        wait::PATIENCE,
        format_args!("the access line of {request_id}"),
        async || {
            sys.data.log().lines().find_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                (v["target"] == "switchyard::access" && v["fields"]["request_id"] == request_id)
                    .then(|| (v, line.to_owned()))
            })
        },
    )
    .await
}

/// A secret of no recognisable shape: only the code keeps it out of the log.
const PLAIN_SECRET: &str = "plain-provider-secret-0123";
const PROMPT: &str = "the prompt words zebra-4711 must stay private";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_writes_one_access_line_without_content_or_keys() {
    let sys = start(&[]).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let failing = "sk-failing-0123456789";
    let (created, key, ids) = owner_with_keys(
        &sys,
        &fake,
        "logged",
        &[
            ("openai", failing, 1, &["*"]),
            ("openai", PLAIN_SECRET, 2, &["*"]),
        ],
    )
    .await;
    fake.set_behaviour(failing, Behaviour::Fail { status: 503 });
    let (status, body) = sys
        .call(
            Method::PUT,
            "/x-conf".into(),
            key.clone(),
            Some(json!({"switch_over": {"1": 2}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&sys).await;

    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat(PROMPT, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    r.bytes().await.unwrap();

    let (line, text) = access_line(&sys, &request_id).await;
    assert_eq!(line["level"], "INFO", "{text}");
    let f = &line["fields"];
    assert_eq!(f["account"], created["account"]["id"], "{text}");
    assert_eq!(f["issued_key"], created["api_key_id"], "{text}");
    assert_eq!(f["route"], "/v1/chat/completions", "{text}");
    assert_eq!(f["model_requested"], "gpt-4o-mini", "{text}");
    assert_eq!(f["model_served"], "gpt-4o-mini", "{text}");
    // The first key failed; the second, a level down, answered.
    assert_eq!(f["provider_key"], ids[1].as_str(), "{text}");
    assert_eq!(f["level"], 2, "{text}");
    assert_eq!(f["attempts"], 2, "{text}");
    assert_eq!(f["status"], 200, "{text}");
    assert!(f["latency_ms"].is_u64(), "{text}");
    assert!(f["ttfb_ms"].is_u64(), "{text}");
    let (input, output) = (
        count_tokens(&format!("be brief {PROMPT}")),
        count_tokens(&format!("echo: {PROMPT}")),
    );
    assert_eq!(f["input_tokens"], input, "{text}");
    assert_eq!(f["output_tokens"], output, "{text}");
    assert_eq!(f["cached_tokens"], 0, "{text}");
    assert_eq!(f["usage_source"], "reported", "{text}");
    for (what, secret) in [
        ("issued key", key.as_str()),
        ("provider secret", PLAIN_SECRET),
        ("provider secret", failing),
        ("prompt", "zebra-4711"),
    ] {
        assert!(
            !text.contains(secret),
            "the access line holds the {what}: {text}"
        );
    }
    // One line for the call, however many keys it tried.
    let lines = sys
        .data
        .log()
        .lines()
        .filter(|l| l.contains("switchyard::access") && l.contains(&request_id))
        .count();
    assert_eq!(lines, 1);

    // Turned off, a replica writes none; its call is still metered.
    let quiet = sys.another_data_plane(&["--access-log", "off"]).await;
    let r = sys
        .http
        .post(format!("{}/v1/chat/completions", quiet.url("http")))
        .bearer_auth(&key)
        .json(&chat("quiet please", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The access line would be written before the usage event is queued.
    usage_logs(&sys, &key, 2).await;
    assert!(
        !quiet.log().contains("switchyard::access"),
        "{}",
        quiet.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_write_an_access_line_too() {
    let sys = start(&[]).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (created, key, _) = owner_with_keys(
        &sys,
        &fake,
        "refused",
        &[("openai", PLAIN_SECRET, 1, &["*"])],
    )
    .await;
    settle(&sys).await;

    let id_of = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
    // A key that does not exist: refused before any account is known.
    let wrong = format!("{key}x");
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&wrong)
        .json(&chat(PROMPT, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let unknown = id_of(&r);
    // A known key with a body of another media type: refused after admission.
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(chat(PROMPT, false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let typed = id_of(&r);

    let (line, text) = access_line(&sys, &unknown).await;
    assert_eq!(line["fields"]["status"], 401, "{text}");
    assert_eq!(line["fields"]["route"], "/v1/chat/completions", "{text}");
    assert_eq!(line["fields"]["attempts"], 0, "{text}");
    assert!(line["fields"]["account"].is_null(), "{text}");
    let (line, text) = access_line(&sys, &typed).await;
    assert_eq!(line["fields"]["status"], 415, "{text}");
    assert_eq!(
        line["fields"]["account"], created["account"]["id"],
        "{text}"
    );
    assert_eq!(line["fields"]["error"], "unsupported_media_type", "{text}");
    for text in [&text, &access_line(&sys, &unknown).await.1] {
        for secret in [key.as_str(), wrong.as_str(), PLAIN_SECRET, "zebra-4711"] {
            assert!(
                !text.contains(secret),
                "the access line holds a secret: {text}"
            );
        }
    }
}
