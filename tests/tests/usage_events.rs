//! What a usage event records, end to end through the real binaries: the client's
//! session from its session header, shown and filtered in `/dashboard/logs`.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use reqwest::{Method, StatusCode};
use serde_json::Value;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{System, chat, start_system, usage_logs, wait_for_key};

/// A chat call with `headers`; its status.
async fn chat_with(sys: &System, key: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat("hello", false));
    for (name, value) in headers {
        r = r.header(*name, *value);
    }
    r.send().await.unwrap().status()
}

async fn logs(sys: &System, key: &str, query: &str) -> (u16, Value) {
    sys.call(
        Method::GET,
        format!("/dashboard/logs{query}"),
        key.into(),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_from_client_headers_show_in_the_logs() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, key) = sys.owner("sessions", &fake).await;
    wait_for_key(&sys, &key).await;

    let claude = "0c5e6a1e-6a0b-4c1e-9f55-claude-code";
    let calls: [&[(&str, &str)]; 4] = [
        // Claude Code's header wins over Switchyard's own.
        &[
            ("x-claude-code-session-id", claude),
            ("x-switchyard-session", "own"),
        ],
        // Codex CLI's.
        &[("session_id", "codex-7")],
        // A value the store cannot hold is dropped; the call goes on.
        &[("x-switchyard-session", "two words")],
        &[],
    ];
    for headers in calls {
        assert_eq!(chat_with(&sys, &key, headers).await, StatusCode::OK);
    }

    let events = usage_logs(&sys, &key, 4).await;
    let mut sessions: Vec<Value> = events.iter().map(|e| e["session"].clone()).collect();
    sessions.sort_by_key(Value::to_string);
    let mut want = vec![
        Value::from(claude),
        Value::from("codex-7"),
        Value::Null,
        Value::Null,
    ];
    want.sort_by_key(Value::to_string);
    assert_eq!(sessions, want);

    // Filtered by session.
    let (status, page) = logs(&sys, &key, &format!("?session={claude}")).await;
    assert_eq!(status, 200, "{page}");
    let found = page["events"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{page}");
    assert_eq!(found[0]["session"], claude);
    assert_eq!(found[0]["path"], "/v1/chat/completions");
    let (_, page) = logs(&sys, &key, "?session=nobody").await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(0));
    // A filter the store could never hold is a clear error.
    let (status, page) = logs(&sys, &key, "?session=a%20b").await;
    assert_eq!(status, 400, "{page}");
    assert!(page["error"]["message"].is_string());
}
