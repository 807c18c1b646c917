//! Hostile input against the real processes: bodies the data plane can judge bad
//! (invalid UTF-8, token limits out of range, nesting a million levels deep) are
//! refused with 400 in the client protocol's error shape, reach no upstream and
//! leave no usage event; and made-up model names add no metric series.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_core::crypto::Keyring;
use switchyard_core::json_bounds::MAX_JSON_DEPTH;
use switchyard_core::request::MAX_TOKEN_LIMIT;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{
    System, settle, start_system_opts, usage_count_settled, usage_logs,
};

/// A main account whose provider keys (one per protocol) serve every model.
async fn owner(sys: &System, fake: &FakeUpstream, name: &str) -> String {
    let (status, created) = sys.post("/x-users", &sys.root, json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    for (kind, secret) in [("openai", "sk-oa-000001"), ("anthropic", "sk-ant-000002")] {
        let (status, pk) = sys
            .post(
                "/x-keys",
                &key,
                json!({"provider": kind, "base_url": fake.base_url(), "secret": secret, "models": ["*"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pk}");
    }
    settle(sys).await;
    key
}

/// Requests that reached the fake upstream at all, whatever their body.
fn upstream_requests(fake: &FakeUpstream) -> usize {
    fake.observed().authorizations.lock().unwrap().len()
}

/// One raw body to a proxied path, as an OpenAI or an Anthropic client sends it.
async fn send(sys: &System, key: &str, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let mut r = sys
        .http
        .post(sys.proxy(path))
        .header("content-type", "application/json")
        .body(body);
    r = if path.starts_with("/v1/messages") {
        r.header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    } else {
        r.bearer_auth(key)
    };
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The message of a 400 in the shape of the path's protocol.
fn refusal_message(path: &str, body: &Value) -> String {
    if path.starts_with("/v1/messages") {
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    } else {
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    }
    body["error"]["message"].as_str().unwrap().to_owned()
}

fn with_field(model: &str, field: &str, value: &str) -> Vec<u8> {
    format!(
        r#"{{"model":"{model}","{field}":{value},"messages":[{{"role":"user","content":"hi"}}]}}"#
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_the_router_can_judge_are_refused_before_any_upstream() {
    let kek = Keyring::generate_spec("k1").to_string();
    let sys = start_system_opts(8 * 1024 * 1024, &kek, &kek, &[]).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let key = owner(&sys, &fake, "acme").await;

    let mut invalid_utf8 =
        br#"{"model":"M","max_tokens":16,"messages":[{"role":"user","content":"caf"#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\"}]}");
    let levels = 1_000_000;
    let mut deep = br#"{"model":"M","max_tokens":16,"messages":"#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', levels));
    deep.extend(std::iter::repeat_n(b']', levels));
    deep.push(b'}');
    let above = (MAX_TOKEN_LIMIT + 1).to_string();

    // (path, body with `M` for the model, what the message must name)
    let mut cases: Vec<(&str, Vec<u8>, String)> = Vec::new();
    for (path, model) in [
        ("/v1/chat/completions", "gpt-4o-mini"),
        ("/v1/messages", "claude-sonnet-4"),
    ] {
        let named = |body: &[u8]| {
            String::from_utf8_lossy(body)
                .replace("\"M\"", &format!("\"{model}\""))
                .into_bytes()
        };
        let mut bad_utf8 = invalid_utf8.clone();
        // Replace the model in place, keeping the invalid bytes.
        let at = bad_utf8.windows(3).position(|w| w == b"\"M\"").unwrap();
        bad_utf8.splice(at..at + 3, format!("\"{model}\"").into_bytes());
        cases.push((path, bad_utf8, "not valid UTF-8".into()));
        cases.push((
            path,
            named(&deep),
            format!("deeper than {MAX_JSON_DEPTH} levels"),
        ));
        for value in [
            "0",
            "-1",
            "1.5",
            "1e3",
            "\"64\"",
            "9223372036854775808",
            above.as_str(),
        ] {
            cases.push((
                path,
                with_field(model, "max_tokens", value),
                "`max_tokens` must be an integer from 1 to 2147483647".into(),
            ));
        }
    }
    // An explicit null is a refusal for Anthropic (its API requires the integer) ...
    cases.push((
        "/v1/messages",
        with_field("claude-sonnet-4", "max_tokens", "null"),
        "got null".into(),
    ));
    // ... and OpenAI's other names for the limit are bounded alike.
    cases.push((
        "/v1/chat/completions",
        with_field("gpt-4o-mini", "max_completion_tokens", "0"),
        "`max_completion_tokens` must be".into(),
    ));
    cases.push((
        "/v1/responses",
        br#"{"model":"gpt-4o-mini","input":"hi","max_output_tokens":-5}"#.to_vec(),
        "`max_output_tokens` must be".into(),
    ));

    for (path, body, names) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let (status, answer) = send(&sys, &key, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {shown}: {answer}");
        let message = refusal_message(path, &answer);
        assert!(message.contains(&names), "{path} {shown}: {message}");
    }
    assert_eq!(
        upstream_requests(&fake),
        0,
        "a refused body reached the upstream"
    );

    // OpenAI's null means no limit: that call is served. It is the tree's only usage
    // event, so none of the refusals left one.
    let (status, answer) = send(
        &sys,
        &key,
        "/v1/chat/completions",
        with_field("gpt-4o-mini", "max_tokens", "null"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(upstream_requests(&fake), 1);
    let events = usage_logs(&sys, &key, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(usage_count_settled(&sys, &key).await, 1);
}

/// The value of each `switchyard_requests_total` series' `model` label.
fn request_models(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("switchyard_requests_total{"))
        .map(|l| {
            let start = l.find("model=\"").unwrap() + "model=\"".len();
            let len = l[start..].find('"').unwrap();
            l[start..start + len].to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_model_names_add_no_metric_series() {
    let kek = Keyring::generate_spec("k1").to_string();
    let sys = start_system_opts(1024 * 1024, &kek, &kek, &[]).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let key = owner(&sys, &fake, "acme").await;
    // One name the owner spells out (a price): it keeps its own series.
    let (status, body) = sys
        .call(
            reqwest::Method::PUT,
            "/x-conf".into(),
            key.clone(),
            Some(json!({"pricing": {"gpt-4o-mini": {"input_per_million_nanos": 1}}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&sys).await;

    let made_up = 200;
    for i in 0..made_up {
        let body = json!({"model": format!("made-up-{i}"), "messages": [{"role": "user", "content": "hi"}]});
        let (status, answer) = send(
            &sys,
            &key,
            "/v1/chat/completions",
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _) = send(
        &sys,
        &key,
        "/v1/chat/completions",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upstream_requests(&fake), made_up + 1);

    let metrics = sys
        .http
        .get(sys.proxy("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let models = request_models(&metrics);
    assert!(
        models.iter().all(|m| !m.starts_with("made-up-")),
        "{metrics}"
    );
    // The probes of `settle`'s helpers and these calls: a handful of series at most.
    assert!(models.len() <= 6, "{models:?}\n{metrics}");
    let series = |model: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("switchyard_requests_total{")
                    && l.contains(r#"route="/v1/chat/completions""#)
                    && l.contains(r#"status="200""#)
                    && l.contains(&format!(r#"model="{model}""#))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        series("other"),
        Some(f64::from(made_up as u32)),
        "{metrics}"
    );
    assert_eq!(series("gpt-4o-mini"), Some(1.0), "{metrics}");
}
