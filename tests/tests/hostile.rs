//! A hostile tenant against metering: values the usage store cannot hold are refused
//! at admission, in the client's protocol, before anything reaches an upstream, and
//! every call after them is still metered, the tenant's own and everyone else's.

use serde_json::{Value, json};
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{chat, start_system, usage_logs, wait_for_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_store_cannot_hold_are_refused_and_metering_goes_on() {
    let sys = start_system(1 << 20).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, attacker) = sys.owner("attacker", &fake).await;
    let (_, neighbour) = sys.owner("neighbour", &fake).await;
    wait_for_key(&sys, &attacker).await;
    wait_for_key(&sys, &neighbour).await;

    let long = "m".repeat(600);
    // Raw bodies: a NUL escape, an overlong name, a lone surrogate, an escape
    // sequence for terminals, whitespace.
    let hostile_models = [
        r#""gpt\u0000x""#.to_owned(),
        format!("{long:?}"),
        r#""gpt\ud800""#.to_owned(),
        r#""gpt\u001b[31m""#.to_owned(),
        r#""gpt 4o""#.to_owned(),
    ];
    for model in &hostile_models {
        let body = format!(r#"{{"model":{model},"messages":[{{"role":"user","content":"hi"}}]}}"#);
        let r = sys
            .http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(&attacker)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{model}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("model")
        );

        // The same on Anthropic's endpoint, in its shape.
        let body = format!(
            r#"{{"model":{model},"max_tokens":5,"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let r = sys
            .http
            .post(sys.proxy("/v1/messages"))
            .header("x-api-key", &attacker)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{model}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
    }
    assert_eq!(fake.calls(), 0, "nothing reached the upstream");

    // Every call after them is metered: the attacker's and the neighbour's.
    for key in [&attacker, &neighbour] {
        let r = sys
            .http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat("hello", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for key in [&attacker, &neighbour] {
        let events = usage_logs(&sys, key, 1).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["model_requested"], json!("gpt-4o-mini"));
    }
    assert_eq!(fake.calls(), 2);
}
