//! Operating the system: traces exported over OTLP with the client's trace context
//! continued to the upstream, Prometheus metrics on every service, and JSON logs
//! that carry request ids and never a secret or a prompt, with every process
//! logging at debug level.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::{Behaviour, FakeUpstream};
use switchyard_tests::otlp::{OtlpReceiver, ReceivedSpan};
use switchyard_tests::system::{System, chat, settle, start_system_env, wait_for_key};
use switchyard_tests::wait::{self, PATIENCE};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// A secret of no recognisable shape: only the code's types keep it out of logs.
const PLAIN_SECRET: &str = "plain-provider-secret-0123";
/// A secret shaped like a provider key, for a key that is rate-limited.
const SHAPED_SECRET: &str = "sk-proj-ratelimited-0123456789";
const PROMPT: &str = "the prompt words zebra-4711 must stay private";

/// The sum of the samples of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

async fn scrape(sys: &System, url: String) -> String {
    let r = sys.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

/// Spans of the client's trace, once the request span and its usage are in.
async fn client_trace(otlp: &OtlpReceiver) -> Vec<ReceivedSpan> {
    let what = "the client's trace to arrive complete";
    wait::until_ok(Duration::from_secs(20), what, async || {
        let spans: Vec<ReceivedSpan> = otlp
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == CLIENT_TRACE)
            .collect();
        let names = |n: &str| spans.iter().filter(|s| s.name == n).count();
        if names("/v1/chat/completions") == 1
            && names("usage.emit") == 1
            && names("route.try") == 2
            && names("upstream") == 2
        {
            Ok(spans)
        } else {
            Err(format!("{spans:#?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_traced_measured_and_logged_without_secrets() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let kek = Keyring::generate_spec("k1").to_string();
    let sys = start_system_env(
        1024 * 1024,
        &kek,
        &kek,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    let fake = FakeUpstream::start(None).await.unwrap();
    fake.set_behaviour(
        SHAPED_SECRET,
        Behaviour::RateLimit {
            retry_after_secs: 60,
        },
    );
    let (status, created) = sys
        .post("/x-users", &sys.root, json!({"name": "acme"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    // The rate-limited key first (level 1), the healthy one as the switch-over.
    let mut limited_id = String::new();
    for (secret, level) in [(SHAPED_SECRET, 1), (PLAIN_SECRET, 2)] {
        let (status, pk) = sys
            .post(
                "/x-keys",
                &key,
                json!({"provider": "openai", "base_url": fake.base_url(), "secret": secret, "models": ["*"], "level": level}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pk}");
        if level == 1 {
            limited_id = pk["id"].as_str().unwrap().to_owned();
        }
    }
    let (status, body) = sys
        .call(
            reqwest::Method::PUT,
            "/x-conf".into(),
            key.clone(),
            Some(json!({"switch_over": {"1": 2}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for_key(&sys, &key).await;

    // A traced call: 429 on the first key, answered by the second.
    let traced = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&chat(PROMPT, false))
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), StatusCode::OK);
    let request_id = traced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _: Value = traced.json().await.unwrap();
    let upstream_parent = fake.observed().last_headers.lock().unwrap()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();

    // A stream, and a refused call.
    let streamed = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat(PROMPT, true))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::OK);
    let _ = streamed.text().await.unwrap();
    let refused = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth("sk-sy-not-a-real-key")
        .json(&chat(PROMPT, false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // Traces: the data plane's spans join the client's trace, and the upstream was
    // called as a child of the attempt that reached it.
    let spans = client_trace(&otlp).await;
    let request = spans
        .iter()
        .find(|s| s.name == "/v1/chat/completions")
        .unwrap();
    assert_eq!(request.service, "switchyard-data-plane");
    assert_eq!(request.parent_span_id, CLIENT_SPAN);
    let attr = |s: &ReceivedSpan, k: &str| s.attributes.get(k).cloned().unwrap_or_default();
    assert_eq!(attr(request, "request_id"), request_id);
    assert_eq!(attr(request, "http.response.status_code"), "200");
    assert_eq!(attr(request, "gen_ai.operation.name"), "chat");
    assert_eq!(attr(request, "gen_ai.provider.name"), "openai");
    assert_eq!(attr(request, "gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(attr(request, "gen_ai.response.model"), "gpt-4o-mini");
    assert!(
        attr(request, "gen_ai.usage.input_tokens")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        attr(request, "gen_ai.usage.output_tokens")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    for step in ["auth", "limits", "usage.emit"] {
        let child = spans.iter().find(|s| s.name == step).unwrap();
        assert_eq!(child.parent_span_id, request.span_id, "{step}");
    }
    // One routing try per key, each holding its HTTP exchange with the upstream.
    let tries: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "route.try").collect();
    assert_eq!(tries.len(), 2);
    assert!(tries.iter().all(|s| s.parent_span_id == request.span_id));
    let failed = tries
        .iter()
        .find(|s| attr(s, "error.type") == "rate_limited")
        .unwrap();
    assert_eq!(attr(failed, "switchyard.provider_key"), limited_id);
    let answered = tries
        .iter()
        .find(|s| attr(s, "error.type").is_empty())
        .unwrap();
    let exchange = |of: &ReceivedSpan| {
        spans
            .iter()
            .find(|s| s.name == "upstream" && s.parent_span_id == of.span_id)
            .cloned()
            .unwrap()
    };
    assert_eq!(attr(&exchange(failed), "http.response.status_code"), "429");
    let answered = exchange(answered);
    assert_eq!(attr(&answered, "http.response.status_code"), "200");
    assert_eq!(
        upstream_parent,
        format!("00-{CLIENT_TRACE}-{}-01", answered.span_id)
    );

    // Metrics on every service.
    let dp = scrape(&sys, sys.proxy("/metrics")).await;
    let chat_route = ("route", "/v1/chat/completions");
    // The fake serves every model (`*`); no owner named this one, so it counts as `other`.
    let model = ("model", "other");
    assert_eq!(
        sample(
            &dp,
            "switchyard_requests_total",
            &[chat_route, ("status", "200"), model]
        ),
        Some(2.0),
        "{dp}"
    );
    assert_eq!(
        sample(
            &dp,
            "switchyard_requests_total",
            &[chat_route, ("status", "401"), ("model", "")]
        ),
        Some(1.0),
        "{dp}"
    );
    let limited = [
        ("provider_key", limited_id.as_str()),
        ("reason", "rate_limited"),
    ];
    assert_eq!(
        sample(&dp, "switchyard_upstream_errors_total", &limited),
        Some(1.0)
    );
    assert_eq!(
        sample(&dp, "switchyard_provider_key_cool_downs_total", &limited),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &dp,
            "switchyard_time_to_first_byte_seconds_count",
            &[chat_route]
        ),
        Some(2.0)
    );
    // Every answer is timed, the 400 of `wait_for_key`'s probe among them.
    assert_eq!(
        sample(
            &dp,
            "switchyard_requests_total",
            &[chat_route, ("status", "400")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &dp,
            "switchyard_request_duration_seconds_count",
            &[chat_route]
        ),
        Some(4.0)
    );
    assert!(sample(&dp, "switchyard_snapshot_version", &[]).unwrap() > 0.0);
    assert_eq!(sample(&dp, "switchyard_snapshot_fresh", &[]), Some(1.0));
    assert!(sample(&dp, "switchyard_snapshot_age_seconds", &[]).is_some());
    assert!(sample(&dp, "switchyard_usage_queue_depth", &[]).is_some());

    let cp = scrape(&sys, sys.admin("/metrics")).await;
    assert_eq!(
        sample(
            &cp,
            "switchyard_api_requests_total",
            &[("method", "POST"), ("route", "/x-keys"), ("status", "201")]
        ),
        Some(2.0),
        "{cp}"
    );
    assert!(
        sample(
            &cp,
            "switchyard_api_request_duration_seconds_count",
            &[("route", "/x-users")]
        )
        .is_some()
    );
    assert_eq!(
        sample(&cp, "switchyard_data_planes_connected", &[]),
        Some(1.0)
    );
    assert!(sample(&cp, "switchyard_config_revision", &[]).unwrap() > 0.0);
    assert!(sample(&cp, "switchyard_snapshot_build_seconds_count", &[]).unwrap() >= 1.0);

    settle(&sys).await;
    let collector = format!("{}/metrics", sys._collector.url("http"));
    let text = wait::until_ok(
        PATIENCE,
        "two stored events in the collector's metrics",
        async || {
            let text = scrape(&sys, collector.clone()).await;
            if sample(&text, "switchyard_usage_events_stored_total", &[]) == Some(2.0) {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert!(sample(&text, "switchyard_usage_ingest_lag_seconds_count", &[]).unwrap() >= 1.0);
    assert!(sample(&text, "switchyard_usage_write_duration_seconds_count", &[]).unwrap() >= 1.0);
    let ready = sys
        .http
        .get(format!("{}/readyz", sys._collector.url("http")))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // Logs: JSON lines only, the call's lines name its request id, and no line of
    // any process holds key material or prompt text.
    let logs = [
        ("data plane", sys.data.log()),
        ("control plane", sys.control.log()),
        ("collector", sys._collector.log()),
    ];
    let secrets = [
        ("issued key", key.as_str()),
        ("root key", sys.root.as_str()),
        ("key-encryption key", kek.as_str()),
        ("provider secret", PLAIN_SECRET),
        ("provider secret", SHAPED_SECRET),
        ("prompt", "zebra-4711"),
    ];
    // No span of any call holds them either.
    for span in otlp.spans() {
        for (name, value) in &span.attributes {
            for (what, secret) in secrets {
                assert!(
                    !value.contains(secret),
                    "span {} attribute {name} holds the {what}",
                    span.name
                );
            }
        }
    }
    let mut lines = 0;
    for (process, log) in &logs {
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            lines += 1;
            let parsed: Result<Value, _> = serde_json::from_str(line);
            assert!(
                parsed.is_ok(),
                "{process} wrote a line that is not JSON: {line}"
            );
            for (what, secret) in secrets {
                assert!(
                    !line.contains(secret),
                    "{process} logged the {what}: {line}"
                );
            }
        }
    }
    assert!(lines > 100, "debug logging wrote only {lines} lines");
    let failover = logs[0]
        .1
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "provider key failed; trying the next")
        .unwrap();
    assert_eq!(failover["span"]["request_id"], request_id.as_str());
    assert_eq!(failover["span"]["route"], "/v1/chat/completions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trace_export_the_clients_trace_context_reaches_the_upstream_unchanged() {
    let sys = switchyard_tests::system::start_system(1024 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, key) = sys.owner("acme", &fake).await;
    wait_for_key(&sys, &key).await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("traceparent", &traceparent)
        .header("tracestate", "vendor=opaque")
        .json(&chat("hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = fake.observed().last_headers.lock().unwrap().clone();
    assert_eq!(seen["traceparent"], traceparent.as_str());
    assert_eq!(seen["tracestate"], "vendor=opaque");
}
