//! Routing across provider keys against the real processes and a fake upstream that
//! misbehaves per credential: round-robin spread, cool-down and recovery, Retry-After,
//! switch-over after same-level failures, explicit failure when all fail, streams that
//! stall before their first event or break after it, and client disconnects.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::{Behaviour, FakeUpstream};
use switchyard_tests::system::{
    System, chat, settle, start_system_opts, usage_count_settled, usage_logs, wait_for_key,
};
use switchyard_tests::wait::{self, PATIENCE};

/// A data plane with short timeouts so failure scenarios take seconds.
async fn start() -> System {
    let kek = Keyring::generate_spec("k1").to_string();
    start_system_opts(
        4 * 1024 * 1024,
        &kek,
        &kek,
        &[
            "--first-byte-timeout-seconds",
            "1",
            "--tries-per-level",
            "2",
            "--trusted-proxies",
            "127.0.0.1/32",
        ],
    )
    .await
}

/// A main account with the given provider keys: (kind, secret, level, models); its
/// key, once every data plane has it.
async fn owner_with_keys(
    sys: &System,
    fake: &FakeUpstream,
    name: &str,
    keys: &[(&str, &str, u32, &[&str])],
) -> String {
    switchyard_tests::system::owner_with_keys(sys, fake, name, keys)
        .await
        .1
}

/// Replace the owner's rules and wait until every data plane applies them.
async fn put_rules(sys: &System, key: &str, rules: Value) {
    let (status, body) = sys
        .call(Method::PUT, "/x-conf".into(), key.into(), Some(rules))
        .await;
    assert_eq!(status, 200, "{body}");
    settle(sys).await;
}

/// A POST to the proxy with one credential header (`authorization` or `x-api-key`).
async fn post_json(
    sys: &System,
    path: &str,
    auth: (&str, &str),
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let mut r = sys
        .http
        .post(sys.proxy(path))
        .header(auth.0, auth.1)
        .json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// A streamed answer read to its end.
async fn status_and_text(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    (status, r.text().await.unwrap())
}

async fn call_chat(
    sys: &System,
    key: &str,
    body: &Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let bearer = format!("Bearer {key}");
    let r = post_json(
        sys,
        "/v1/chat/completions",
        ("authorization", &bearer),
        &[],
        body,
    )
    .await;
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_cool_down_recover_and_switch_over() {
    let sys = start().await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let key = owner_with_keys(
        &sys,
        &fake,
        "acme",
        &[
            ("openai", "sk-a-0001", 1, &["gpt*"]),
            ("openai", "sk-b-0002", 1, &["gpt*"]),
            ("openai", "sk-c-0003", 2, &["gpt*"]),
        ],
    )
    .await;
    put_rules(&sys, &key, json!({"switch_over": {"1": 2}})).await;
    let body = chat("hi", false);

    // Round-robin: the level-1 keys share the calls evenly; the backup level idles.
    for _ in 0..20 {
        assert_eq!(call_chat(&sys, &key, &body).await.0, 200);
    }
    let (a, b) = (fake.calls_with("sk-a-0001"), fake.calls_with("sk-b-0002"));
    assert_eq!(a + b, 20);
    assert!((9..=11).contains(&a), "a={a} b={b}");
    assert_eq!(fake.calls_with("sk-c-0003"), 0);

    // A failing key sleeps; the healthy one takes every call meanwhile, none fails.
    fake.set_behaviour("sk-a-0001", Behaviour::Fail { status: 500 });
    let a_before = fake.calls_with("sk-a-0001");
    for _ in 0..10 {
        assert_eq!(call_chat(&sys, &key, &body).await.0, 200);
    }
    assert_eq!(
        fake.calls_with("sk-a-0001") - a_before,
        1,
        "slept after one failure"
    );
    // Recovery: once its cool-down (1 s after the first failure) passes and it works
    // again, it is back in the rotation.
    fake.set_behaviour("sk-a-0001", Behaviour::Succeed);
    // The cool-down runs out unseen: nothing to poll for, the clock decides.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let a_before = fake.calls_with("sk-a-0001");
    for _ in 0..6 {
        assert_eq!(call_chat(&sys, &key, &body).await.0, 200);
    }
    assert!(fake.calls_with("sk-a-0001") - a_before >= 2);

    // 429 honours Retry-After: the key is left alone for the time the provider asked.
    fake.set_behaviour(
        "sk-a-0001",
        Behaviour::RateLimit {
            retry_after_secs: 3,
        },
    );
    let limited_at = Instant::now();
    let a_before = fake.calls_with("sk-a-0001");
    for _ in 0..12 {
        assert_eq!(call_chat(&sys, &key, &body).await.0, 200);
        // Paced: the calls span the time the provider asked to be left alone.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if limited_at.elapsed() < Duration::from_secs(3) {
        assert_eq!(fake.calls_with("sk-a-0001") - a_before, 1);
    }
    fake.set_behaviour("sk-a-0001", Behaviour::Succeed);

    // Same-level failures switch over to the backup level.
    fake.set_behaviour("sk-a-0001", Behaviour::Fail { status: 503 });
    fake.set_behaviour("sk-b-0002", Behaviour::Reject);
    // The Retry-After of 3 s and the cool-downs run out unseen: the clock decides.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let before = usage_count_settled(&sys, &key).await;
    let (status, headers, answer) = call_chat(&sys, &key, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(fake.calls_with("sk-c-0003"), 1);
    let newest = &usage_logs(&sys, &key, before + 1).await[0];
    assert_eq!(newest["level"], 2);
    assert_eq!(newest["status"], 200);

    // Every key failing: an explicit error that says so, in OpenAI's shape.
    fake.set_behaviour("sk-c-0003", Behaviour::Fail { status: 500 });
    // The cool-down runs out unseen: nothing to poll for, the clock decides.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, headers, answer) = call_chat(&sys, &key, &body).await;
    assert_eq!(status, 502, "{answer}");
    assert!(headers.contains_key("x-request-id"));
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("failed"), "{message}");
    assert!(message.contains("gpt-4o-mini"), "{message}");
    assert_eq!(answer["error"]["type"], "api_error");
    // Right after, every key sleeps: refused at once with the wait, no upstream call.
    let calls = fake.calls_with("sk-c-0003");
    let (status, headers, answer) = call_chat(&sys, &key, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert!(headers.contains_key("retry-after"));
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cooling down")
    );
    assert_eq!(fake.calls_with("sk-c-0003"), calls);

    // The data plane reports key health to the control plane: the refused credential
    // shows as unhealthy to its owner, with when it is tried again.
    let rejected = wait::until_ok(PATIENCE, "key health to be reported", async || {
        let (status, listed) = sys
            .call(Method::GET, "/x-keys".into(), key.clone(), None)
            .await;
        assert_eq!(status, 200, "{listed}");
        let keys = listed.as_array().cloned().unwrap_or_default();
        // Secrets this short have no hint: the refused one is the only unhealthy key.
        let unhealthy: Vec<&Value> = keys.iter().filter(|k| k["health"] == "unhealthy").collect();
        let backup = keys.iter().find(|k| k["level"] == 2).unwrap();
        if unhealthy.len() == 1 && backup["health"] != "unknown" {
            Ok(unhealthy[0].clone())
        } else {
            Err(format!("{keys:?}"))
        }
    })
    .await;
    assert!(rejected["health_until_unix_ms"].as_i64().unwrap() > 0);

    // Never a provider the owner did not configure: another owner's key is untouched.
    owner_with_keys(
        &sys,
        &fake,
        "other",
        &[("openai", "sk-z-0009", 1, &["gpt*"])],
    )
    .await;
    let (status, _, _) = call_chat(&sys, &key, &body).await;
    assert_ne!(status, 200);
    assert_eq!(fake.calls_with("sk-z-0009"), 0);
}

/// A level holding keys of both protocols: chat calls spread over the OpenAI keys
/// alone, in equal parts (the Anthropic key, created last and so last in the level's
/// order, hands no extra share to the key after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_of_mixed_protocols_spreads_calls_over_the_keys_that_serve_them() {
    let sys = start().await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let key = owner_with_keys(
        &sys,
        &fake,
        "mixed",
        &[
            ("openai", "sk-mix-a-0001", 1, &["*"]),
            ("openai", "sk-mix-b-0002", 1, &["*"]),
            ("anthropic", "sk-ant-mix-0003", 1, &["*"]),
        ],
    )
    .await;
    let body = chat("hi", false);
    for _ in 0..30 {
        assert_eq!(call_chat(&sys, &key, &body).await.0, 200);
    }
    let (a, b) = (
        fake.calls_with("sk-mix-a-0001"),
        fake.calls_with("sk-mix-b-0002"),
    );
    assert_eq!(a + b, 30);
    // 15 each, within 2: the spread's largest deviation over any 30 calls.
    assert!((13..=17).contains(&a), "a={a} b={b}");
    assert_eq!(fake.calls_with("sk-ant-mix-0003"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_retry_before_their_first_event_and_report_breaks_after_it() {
    let sys = start().await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let key = owner_with_keys(
        &sys,
        &fake,
        "acme",
        &[
            ("openai", "sk-stall-01", 1, &["gpt*"]),
            ("openai", "sk-good-02", 1, &["gpt*"]),
            ("anthropic", "sk-ant-cut-03", 1, &["claude*"]),
        ],
    )
    .await;
    fake.set_behaviour("sk-stall-01", Behaviour::Stall);
    let stream_body = chat("stream me please", true);
    let bearer = format!("Bearer {key}");
    let (sys_ref, bearer_ref) = (&sys, &bearer);
    let stream = |body: Value| async move {
        post_json(
            sys_ref,
            "/v1/chat/completions",
            ("authorization", bearer_ref),
            &[],
            &body,
        )
        .await
    };

    // A stall before the first byte moves to the next key within the timeout; the
    // client sees one clean stream.
    for _ in 0..2 {
        let (status, text) = status_and_text(stream(stream_body.clone()).await).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("data: [DONE]"), "{text}");
        assert!(!text.contains("\"error\""), "{text}");
    }
    assert_eq!(fake.calls_with("sk-good-02"), 2);

    // A stream cut before its first event is retried too.
    fake.set_behaviour("sk-stall-01", Behaviour::CutAfter { events: 0 });
    // The stalled key's cool-down runs out unseen: the clock decides.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for _ in 0..2 {
        let (_, text) = status_and_text(stream(stream_body.clone()).await).await;
        assert!(text.contains("data: [DONE]"), "{text}");
    }

    // A cut after the stream started ends it with an error event, never [DONE].
    fake.set_behaviour("sk-stall-01", Behaviour::Stall);
    fake.set_behaviour("sk-good-02", Behaviour::CutAfter { events: 3 });
    let (status, text) = status_and_text(stream(stream_body.clone()).await).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("data: {\"error\":"), "{text}");
    fake.set_behaviour("sk-good-02", Behaviour::Succeed);

    // Anthropic streams end with Anthropic's `error` event.
    fake.set_behaviour("sk-ant-cut-03", Behaviour::CutAfter { events: 3 });
    let messages = json!({"model": "claude-sonnet-4", "max_tokens": 64, "stream": true,
                          "messages": [{"role": "user", "content": "hello there"}]});
    let r = post_json(
        &sys,
        "/v1/messages",
        ("x-api-key", &key),
        &[("anthropic-version", "2023-06-01")],
        &messages,
    )
    .await;
    let (_, text) = status_and_text(r).await;
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.trim_end().ends_with("}"), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last.starts_with("event: error\ndata: {\"type\":\"error\""),
        "{text}"
    );
    assert!(!text.contains("message_stop"), "{text}");

    // A client that leaves a started stream: the stream drains upstream and its
    // usage is still recorded, to the token.
    let before = usage_count_settled(&sys, &key).await;
    fake.hold_streams();
    let mut r = stream(chat("leave early please", true)).await;
    let first = r.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(r);
    // The client is gone before the upstream goes on; nothing outside shows the
    // data plane noticing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.release_streams();
    let events = usage_logs(&sys, &key, before + 1).await;
    let left = &events[0];
    assert_eq!(left["status"], 200, "{left}");
    assert_eq!(left["usage_source"], "reported");
    assert_eq!(left["output_tokens"], 4); // "echo: leave early please"

    // A client that leaves a non-streamed call cancels the upstream call at once.
    fake.set_behaviour("sk-good-02", Behaviour::Stall);
    let abandoned = fake
        .observed()
        .abandoned
        .load(std::sync::atomic::Ordering::SeqCst);
    let slow = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .timeout(Duration::from_millis(300))
        .json(&chat("never mind", false))
        .send()
        .await;
    assert!(slow.is_err());
    let events = usage_logs(&sys, &key, before + 2).await;
    assert_eq!(events[0]["status"], 499, "{}", events[0]);
    wait::until(
        Duration::from_secs(5),
        "the upstream call to be cancelled",
        async || {
            let now = fake
                .observed()
                .abandoned
                .load(std::sync::atomic::Ordering::SeqCst);
            (now != abandoned).then_some(())
        },
    )
    .await;
}

/// A `multipart/form-data` upload as transcription clients send it.
fn multipart(model: Option<&str>, file: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(model) = model {
        out.extend_from_slice(
            format!("--sy-test-boundary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n").as_bytes(),
        );
    }
    out.extend_from_slice(b"--sy-test-boundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n");
    out.extend_from_slice(file);
    out.extend_from_slice(b"\r\n--sy-test-boundary--\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_in_both_protocols_with_policies_enforced() {
    let sys = start().await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let key = owner_with_keys(
        &sys,
        &fake,
        "acme",
        &[
            (
                "openai",
                "sk-oai-0001",
                1,
                &[
                    "gpt-4o",
                    "gpt-4o-mini",
                    "text-embedding-3-small",
                    "tts-1",
                    "whisper-1",
                ],
            ),
            ("anthropic", "sk-ant-0002", 1, &["claude-sonnet-4"]),
        ],
    )
    .await;
    put_rules(
        &sys,
        &key,
        json!({"model_mapper": {"smart": "gpt-4o", "sonnet": "claude-sonnet-4"}}),
    )
    .await;
    let bearer = format!("Bearer {key}");

    // Anthropic messages, with x-api-key or Bearer; version and beta headers pass
    // through; tool use comes back as the upstream sent it.
    let tools =
        json!([{"name": "read_file", "description": "read", "input_schema": {"type": "object"}}]);
    let msg = json!({"model": "claude-sonnet-4", "max_tokens": 64, "tools": tools,
                     "messages": [{"role": "user", "content": "open main rs"}]});
    for auth in [
        ("x-api-key", key.as_str()),
        ("authorization", bearer.as_str()),
    ] {
        let r = post_json(
            &sys,
            "/v1/messages",
            auth,
            &[
                ("anthropic-version", "2023-06-01"),
                ("anthropic-beta", "tools-2024-05-16"),
            ],
            &msg,
        )
        .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["content"][1]["type"], "tool_use");
        assert_eq!(v["stop_reason"], "tool_use");
        let seen = fake.observed().last_headers.lock().unwrap().clone();
        assert_eq!(seen["anthropic-version"], "2023-06-01");
        assert_eq!(seen["anthropic-beta"], "tools-2024-05-16");
        assert_eq!(seen["x-api-key"], "sk-ant-0002");
        assert!(!seen.contains_key("authorization"));
    }
    // Streaming, the way Claude Code calls: every event passes through in order.
    let mut stream_msg = msg.clone();
    stream_msg["stream"] = json!(true);
    let r = post_json(
        &sys,
        "/v1/messages",
        ("x-api-key", &key),
        &[("anthropic-version", "2023-06-01")],
        &stream_msg,
    )
    .await;
    let text = r.text().await.unwrap();
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    assert!(text.contains("input_json_delta"));
    // Token counting.
    let r = post_json(&sys, "/v1/messages/count_tokens", ("x-api-key", &key), &[("anthropic-version", "2023-06-01")], &json!({"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "one two three"}]})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["input_tokens"], 3);

    // Responses API, JSON and streamed (Codex-style); usage comes from
    // `response.completed`.
    let before = usage_count_settled(&sys, &key).await;
    let r = post_json(
        &sys,
        "/v1/responses",
        ("authorization", &bearer),
        &[],
        &json!({"model": "gpt-4o", "input": "write tests", "stream": true}),
    )
    .await;
    let text = r.text().await.unwrap();
    assert!(text.contains("event: response.output_text.delta"));
    assert!(text.contains("event: response.completed"));
    let events = usage_logs(&sys, &key, before + 1).await;
    assert_eq!(events[0]["path"], "/v1/responses");
    assert_eq!(
        (
            events[0]["input_tokens"].as_u64(),
            events[0]["output_tokens"].as_u64()
        ),
        (Some(2), Some(3))
    );
    let r = post_json(&sys, "/v1/responses", ("authorization", &bearer), &[], &json!({"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi there"}]}]})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["usage"]["input_tokens"], 2);

    // Embeddings.
    let r = post_json(
        &sys,
        "/v1/embeddings",
        ("authorization", &bearer),
        &[],
        &json!({"model": "text-embedding-3-small", "input": ["a b", "c"]}),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["prompt_tokens"], 3);

    // Audio: binary speech streamed back whole, and a large multipart upload streamed
    // to the upstream (model field first, as clients send it).
    let r = post_json(
        &sys,
        "/v1/audio/speech",
        ("authorization", &bearer),
        &[],
        &json!({"model": "tts-1", "input": "three words here", "voice": "alloy"}),
    )
    .await;
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    assert_eq!(r.bytes().await.unwrap().len(), 3 * 16 * 1024);
    let audio = vec![7u8; 3 * 1024 * 1024];
    let upload = |body: Vec<u8>| {
        sys.http
            .post(sys.proxy("/v1/audio/transcriptions"))
            .bearer_auth(&key)
            .header(
                "content-type",
                "multipart/form-data; boundary=sy-test-boundary",
            )
            .body(body)
            .send()
    };
    let r = upload(multipart(Some("whisper-1"), &audio)).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let received = *fake.observed().upload_sizes.lock().unwrap().last().unwrap();
    assert_eq!(received, multipart(Some("whisper-1"), &audio).len());
    assert_eq!(v["text"], format!("received {received} bytes"));
    // No model field: a clear error, nothing sent.
    let uploads = fake.observed().upload_sizes.lock().unwrap().len();
    let r = upload(multipart(None, &audio[..10])).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(fake.observed().upload_sizes.lock().unwrap().len(), uploads);

    // ModelMapper: the forwarded body names the served model, nothing else changes;
    // the usage records both names.
    let r = post_json(&sys, "/v1/chat/completions", ("authorization", &bearer), &[], &json!({"model": "smart", "messages": [{"role": "user", "content": "x"}], "temperature": 0.5})).await;
    assert_eq!(r.status(), 200);
    let sent = fake
        .observed()
        .bodies
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        sent,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "temperature": 0.5})
    );
    // Events arrive asynchronously: wait for the one of this call.
    let events = wait::until(PATIENCE, "this call's usage event", async || {
        let events = usage_logs(&sys, &key, 1).await;
        (events[0]["model_requested"] == "smart").then_some(events)
    })
    .await;
    assert_eq!(
        (
            events[0]["model_requested"].as_str(),
            events[0]["model_served"].as_str()
        ),
        (Some("smart"), Some("gpt-4o"))
    );

    // A model served only in the other protocol, translation turned off by the owner:
    // the error says so, in the client's shape (translated calls: translation.rs).
    let (status, body) = sys
        .call(
            Method::PUT,
            "/x-config/translation?key=enabled".into(),
            key.clone(),
            Some(json!(false)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&sys).await;
    let r = post_json(
        &sys,
        "/v1/messages",
        ("x-api-key", &key),
        &[("anthropic-version", "2023-06-01")],
        &json!({"model": "gpt-4o", "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("translation between protocols is off"),
        "{v}"
    );
    let r = post_json(
        &sys,
        "/v1/chat/completions",
        ("authorization", &bearer),
        &[],
        &json!({"model": "claude-sonnet-4", "messages": []}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic")
    );

    // /v1/models: the owner sees every listed model and alias of the protocol asked.
    let list = |k: String, anthropic: bool| {
        let mut r = sys.http.get(sys.proxy("/v1/models")).bearer_auth(k);
        if anthropic {
            r = r.header("anthropic-version", "2023-06-01");
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let ids = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&list(key.clone(), false).await),
        [
            "gpt-4o",
            "gpt-4o-mini",
            "smart",
            "text-embedding-3-small",
            "tts-1",
            "whisper-1"
        ]
    );
    assert_eq!(
        ids(&list(key.clone(), true).await),
        ["claude-sonnet-4", "sonnet"]
    );

    // A sub-account narrowed by policy: /v1/models shows only what it may call, and
    // each allowlist refuses with its reason, in the client's protocol.
    let (status, child) = sys
        .post(
            "/x-users",
            &key,
            json!({"name": "team", "policy": {
        "models": ["gpt-4o-mini", "claude*"],
        "resources": ["/v1/chat/completions", "/v1/messages", "/v1/models"],
        "client_cidrs": ["203.0.113.0/24"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    wait_for_key(&sys, &child_key).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let ok_ip = from("198.51.100.1, 203.0.113.9");
    let r = sys
        .http
        .get(sys.proxy("/v1/models"))
        .bearer_auth(&child_key)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&r.json().await.unwrap()), ["gpt-4o-mini"]);
    let child_bearer = format!("Bearer {child_key}");
    let r = post_json(
        &sys,
        "/v1/chat/completions",
        ("authorization", &child_bearer),
        &ok_ip,
        &chat("hi", false),
    )
    .await;
    assert_eq!(r.status(), 200);
    // The network allowlist (no forwarded address: the peer is 127.0.0.1).
    let r = post_json(
        &sys,
        "/v1/chat/completions",
        ("authorization", &child_bearer),
        &[],
        &chat("hi", false),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(
        r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1 is not among this account's allowed networks")
    );
    // The resource allowlist.
    let r = post_json(
        &sys,
        "/v1/embeddings",
        ("authorization", &child_bearer),
        &ok_ip,
        &json!({"model": "gpt-4o-mini", "input": "x"}),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(
        r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/embeddings is not among")
    );
    // The model allowlist, in Anthropic's shape on the Anthropic endpoint.
    let r = post_json(
        &sys,
        "/v1/messages",
        ("x-api-key", &child_key),
        &[("anthropic-version", "2023-06-01"), ok_ip[0]],
        &json!({"model": "sonnet", "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"sonnet\" is not among this account's allowed models")
    );
    let r = post_json(
        &sys,
        "/v1/chat/completions",
        ("authorization", &child_bearer),
        &ok_ip,
        &json!({"model": "gpt-4o", "messages": []}),
    )
    .await;
    assert_eq!(r.status(), 403);
    // Unknown keys get the protocol's authentication error.
    let r = post_json(
        &sys,
        "/v1/messages",
        ("x-api-key", "sk-sy-nope"),
        &[("anthropic-version", "2023-06-01")],
        &msg,
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "authentication_error"
    );
}

/// Every usage event says where its tokens came from: reported by the provider,
/// estimated from the text when the answer had none, or incomplete when the call
/// was cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_says_where_its_tokens_came_from() {
    let sys = start().await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let key = owner_with_keys(
        &sys,
        &fake,
        "honest",
        &[("openai", "sk-honest-01", 1, &["*"])],
    )
    .await;
    let call = |body: Vec<u8>| {
        sys.http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let reported = call(serde_json::to_vec(&chat("reported by the provider", false)).unwrap())
        .await
        .unwrap();
    assert_eq!(reported.status(), 200);
    let events = usage_logs(&sys, &key, 1).await;
    assert_eq!(events[0]["usage_source"], "reported");

    // No usage in the answer: counted from the text of the request and the answer.
    fake.set_behaviour("sk-honest-01", Behaviour::OmitUsage);
    let request = serde_json::to_vec(&chat("estimate me from my words", false)).unwrap();
    let answer = call(request.clone()).await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer = answer.bytes().await.unwrap();
    assert!(!String::from_utf8_lossy(&answer).contains("usage"));
    let events = usage_logs(&sys, &key, 2).await;
    let estimated = &events[0];
    assert_eq!(estimated["usage_source"], "estimated", "{estimated}");
    assert_eq!(
        estimated["input_tokens"],
        switchyard_core::usage::estimate_tokens(&request).unwrap()
    );
    assert_eq!(
        estimated["output_tokens"],
        switchyard_core::usage::estimate_tokens(&answer).unwrap()
    );
    assert!(estimated["output_tokens"].as_u64().unwrap() > 0);

    // A stream without usage (the provider ignored the request for it): estimated
    // from the text it streamed.
    let mut body = chat("estimate my stream", true);
    body["stream_options"] = json!({"include_usage": true});
    let request = serde_json::to_vec(&body).unwrap();
    let streamed = call(request.clone()).await.unwrap();
    assert_eq!(streamed.status(), 200);
    let text = streamed.text().await.unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n") && !text.contains("usage"),
        "{text}"
    );
    let events = usage_logs(&sys, &key, 3).await;
    let estimated = &events[0];
    assert_eq!(estimated["usage_source"], "estimated", "{estimated}");
    assert_eq!(estimated["streamed"], true);
    let reply = "echo: estimate my stream";
    assert_eq!(
        estimated["output_tokens"].as_u64(),
        Some((reply.len() as u64).div_ceil(4))
    );
    assert_eq!(
        estimated["input_tokens"],
        switchyard_core::usage::estimate_tokens(&request).unwrap()
    );

    // A stream cut after it started: whatever was seen, the event says incomplete.
    fake.set_behaviour("sk-honest-01", Behaviour::CutAfter { events: 3 });
    let mut body = chat("cut me off please", true);
    body["stream_options"] = json!({"include_usage": true});
    let cut = call(serde_json::to_vec(&body).unwrap()).await.unwrap();
    assert_eq!(cut.status(), 200);
    let text = cut.text().await.unwrap_or_default();
    assert!(!text.contains("[DONE]"), "{text}");
    let events = usage_logs(&sys, &key, 4).await;
    assert_eq!(events[0]["usage_source"], "incomplete", "{}", events[0]);
    assert_eq!(events[0]["status"], 502);
}

/// A call is priced with its owner's prices at request time, its event names the
/// configuration version those prices came from, and prompt-cache reads and writes
/// are priced apart from the rest of the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_the_price_version_that_priced_them() {
    let sys = start().await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let key = owner_with_keys(
        &sys,
        &fake,
        "priced",
        &[("openai", "sk-priced-01", 1, &["*"])],
    )
    .await;
    let mut seen = Vec::new();
    for (n, per_request) in [(1, 100u64), (2, 250)] {
        let (status, body) = sys
            .call(
                Method::PUT,
                "/x-config/pricing?key=*".into(),
                key.clone(),
                Some(json!({"per_request_nanos": per_request})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let revision = settle(&sys).await;
        let (status, _, answer) = call_chat(&sys, &key, &chat("price me", false)).await;
        assert_eq!(status, 200, "{answer}");
        let event = usage_logs(&sys, &key, n).await[0].clone();
        assert_eq!(event["cost_nanos"], per_request, "{event}");
        assert_eq!(event["price_version"], revision, "{event}");
        seen.push(revision);
    }
    assert!(seen[1] > seen[0], "{seen:?}");

    // Anthropic's prompt cache: the first call writes the marked system prompt, the
    // next reads it; each part of the input is counted and priced at its own rate.
    let key = owner_with_keys(
        &sys,
        &fake,
        "cached",
        &[("anthropic", "sk-ant-cached-01", 1, &["claude*"])],
    )
    .await;
    let (status, body) = sys
        .call(
            Method::PUT,
            "/x-config/pricing?key=claude*".into(),
            key.clone(),
            Some(json!({"input_per_million_nanos": 1_000_000_000u64,
                        "cached_input_per_million_nanos": 100_000_000u64,
                        "cache_write_per_million_nanos": 1_250_000_000u64,
                        "output_per_million_nanos": 2_000_000_000u64})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&sys).await;
    let system = "you are a careful cached assistant";
    let message = |stream: bool| {
        json!({"model": "claude-sonnet-4", "max_tokens": 10, "stream": stream,
               "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
               "messages": [{"role": "user", "content": "one two three"}]})
    };
    let headers = [("anthropic-version", "2023-06-01")];
    let send = |stream: bool| {
        let body = message(stream);
        let (sys, key) = (&sys, &key);
        async move {
            let r = post_json(sys, "/v1/messages", ("x-api-key", key), &headers, &body).await;
            let (status, text) = status_and_text(r).await;
            assert_eq!(status, 200, "{text}");
            text
        }
    };
    let answer: Value = serde_json::from_str(&send(false).await).unwrap();
    assert_eq!(answer["usage"]["cache_creation_input_tokens"], 6);
    let text = send(true).await;
    assert!(text.contains("\"cache_read_input_tokens\":6"), "{text}");
    let events = usage_logs(&sys, &key, 2).await;
    let parts = |e: &Value| {
        (
            e["input_tokens"].as_u64(),
            e["cached_tokens"].as_u64(),
            e["cache_write_tokens"].as_u64(),
            e["output_tokens"].as_u64(),
            e["cost_nanos"].as_i64(),
        )
    };
    // 3 fresh × 1000 + 6 written × 1250 + 4 out × 2000, in nano-dollars.
    assert_eq!(
        parts(&events[1]),
        (
            Some(9),
            Some(0),
            Some(6),
            Some(4),
            Some(3_000 + 7_500 + 8_000)
        )
    );
    // 3 fresh × 1000 + 6 read × 100 + 4 out × 2000.
    assert_eq!(
        parts(&events[0]),
        (
            Some(9),
            Some(6),
            Some(0),
            Some(4),
            Some(3_000 + 600 + 8_000)
        )
    );
    let bill = sys.bill(&key).await;
    let row = &bill["rows"][0];
    assert_eq!(
        (
            row["input_tokens"].as_u64(),
            row["cached_tokens"].as_u64(),
            row["cache_write_tokens"].as_u64(),
            row["cost_nanos"].as_i64()
        ),
        (Some(18), Some(6), Some(6), Some(30_100)),
        "{bill}"
    );
}
