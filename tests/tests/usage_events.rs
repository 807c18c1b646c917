//! What a usage event records, end to end through the real binaries: the client's
//! session from its session header, shown and filtered in `/dashboard/logs`; token
//! counting, billed per endpoint apart from generation, spending no credit; the end
//! user and tag, billed per value under the collector's cap.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{
    System, chat, owner_with_keys, settle, start_system, start_system_env, usage_logs, wait_for_key,
};
use switchyard_tests::wait;

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

/// An Anthropic call through the proxy: its status and answer.
async fn anthropic(sys: &System, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let r = sys
        .http
        .post(sys.proxy(path))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The bill's rows per endpoint once `requests` calls are in them.
async fn bill_by_endpoint(sys: &System, key: &str, requests: u64) -> Vec<Value> {
    wait::until(
        std::time::Duration::from_secs(15),
        format_args!("{requests} calls in the bill by endpoint"),
        async || {
            let (status, bill) = sys
                .call(Method::GET, "/x-bill?by=endpoint".into(), key.into(), None)
                .await;
            assert_eq!(status, 200, "{bill}");
            assert_eq!(bill["by"], "endpoint");
            let rows = bill["rows"].as_array().cloned().unwrap_or_default();
            let seen: u64 = rows.iter().filter_map(|r| r["requests"].as_u64()).sum();
            (seen >= requests).then_some(rows)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_counting_is_billed_apart_and_spends_no_credit() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, owner, _) = owner_with_keys(
        &sys,
        &fake,
        "counting",
        &[("anthropic", "sk-ant-0001", 1, &["*"])],
    )
    .await;
    // Every call has a per-request price, and tokens cost too.
    sys.price_every_model(
        &owner,
        json!({
            "input_per_million_nanos": 1_000_000,
            "output_per_million_nanos": 1_000_000,
            "per_request_nanos": 1_000
        }),
    )
    .await;
    // A member whose daily credit is one call's per-request price: were token counting
    // to spend anything, the second count would be refused.
    let (status, member) = sys
        .post(
            "/x-users",
            &owner,
            json!({"name": "member", "policy": {"credit": {"limit_nanos": 1_000, "period": "day"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{member}");
    let member = member["api_key"].as_str().unwrap().to_owned();
    wait_for_key(&sys, &owner).await;
    wait_for_key(&sys, &member).await;
    settle(&sys).await;

    let messages = json!({"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "one two three"}]});
    let mut generation = messages.clone();
    generation["max_tokens"] = json!(16);
    for _ in 0..5 {
        let (status, counted) =
            anthropic(&sys, &member, "/v1/messages/count_tokens", messages.clone()).await;
        assert_eq!(status, StatusCode::OK, "{counted}");
        assert_eq!(counted["input_tokens"], 3);
    }
    // The owner: one generation call and one count.
    let (status, answer) = anthropic(&sys, &owner, "/v1/messages", generation).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = anthropic(&sys, &owner, "/v1/messages/count_tokens", messages).await;
    assert_eq!(status, StatusCode::OK);

    let rows = bill_by_endpoint(&sys, &owner, 7).await;
    let row = |path: &str| {
        rows.iter()
            .find(|r| r["endpoint"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {path}: {rows:?}"))
    };
    let counting = row("/v1/messages/count_tokens");
    assert_eq!(counting["requests"], 6, "{counting}");
    assert_eq!(
        (
            counting["input_tokens"].as_u64(),
            counting["output_tokens"].as_u64(),
            counting["cost_nanos"].as_i64(),
            counting["billed_nanos"].as_i64()
        ),
        (Some(0), Some(0), Some(0), Some(0)),
        "token counting spends nothing: {counting}"
    );
    let generating = row("/v1/messages");
    assert_eq!(generating["requests"], 1, "{generating}");
    assert!(
        generating["input_tokens"].as_u64() > Some(0),
        "{generating}"
    );
    assert!(
        generating["cost_nanos"].as_i64() > Some(1_000),
        "{generating}"
    );
    assert!(counting.get("account_id").is_none());

    // Per endpoint is the owner's view, like per provider key.
    let (status, _) = sys
        .call(Method::GET, "/x-bill?by=endpoint".into(), member, None)
        .await;
    assert_eq!(status, 403);
}

/// The bill's rows by `by` (user, session or tag) as `(label, folded, requests)`,
/// summed over models, sorted, once `requests` calls are in them.
async fn bill_by_label(
    sys: &System,
    key: &str,
    by: &str,
    requests: u64,
) -> Vec<(String, bool, u64)> {
    wait::until(
        std::time::Duration::from_secs(15),
        format_args!("{requests} calls in the bill by {by}"),
        async || {
            let (status, bill) = sys
                .call(Method::GET, format!("/x-bill?by={by}"), key.into(), None)
                .await;
            assert_eq!(status, 200, "{bill}");
            assert_eq!(bill["by"], by);
            let mut sums = std::collections::BTreeMap::<(String, bool), u64>::new();
            for r in bill["rows"].as_array().cloned().unwrap_or_default() {
                let label = r["label"].as_str().unwrap_or("(no label)").to_owned();
                *sums.entry((label, r["folded"] == true)).or_default() +=
                    r["requests"].as_u64().unwrap_or(0);
            }
            let rows: Vec<(String, bool, u64)> =
                sums.into_iter().map(|((l, f), n)| (l, f, n)).collect();
            let seen: u64 = rows.iter().map(|r| r.2).sum();
            (seen >= requests).then_some(rows)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_users_sessions_and_tags_are_billed_per_value_under_the_cap() {
    let kek = switchyard_core::crypto::Keyring::generate_spec("k1").to_string();
    // Two distinct values per account, day and label kind; the third folds.
    let sys = start_system_env(32 * 1024, &kek, &kek, &[], &[("SWITCHYARD_LABEL_CAP", "2")]).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, key, _) = owner_with_keys(
        &sys,
        &fake,
        "labels",
        &[
            ("openai", "sk-abc-123456789", 1, &["*"]),
            ("anthropic", "sk-ant-0001", 1, &["*"]),
        ],
    )
    .await;
    wait_for_key(&sys, &key).await;

    // An OpenAI-shaped call naming its end user.
    let mut body = chat("hello", false);
    body["user"] = json!("ada");
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    usage_logs(&sys, &key, 1).await;
    // Claude Code: its user in metadata.user_id, its session in its header.
    let claude_user = format!(
        "user_{}_account_0c5e6a1e-6a0b-4c1e-9f55-0123456789ab_session_7d1f0a2e-1b2c-4d3e-8f90-a1b2c3d4e5f6",
        "9f".repeat(32)
    );
    let claude_session = "7d1f0a2e-1b2c-4d3e-8f90-a1b2c3d4e5f6";
    let r = sys
        .http
        .post(sys.proxy("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .header("x-claude-code-session-id", claude_session)
        .json(&json!({
            "model": "claude-sonnet-4",
            "max_tokens": 16,
            "metadata": {"user_id": claude_user},
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    usage_logs(&sys, &key, 2).await;
    // A tagged call, from a third end user: past the cap of two.
    let mut body = chat("hello", false);
    body["user"] = json!("carol");
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-switchyard-tag", "nightly-eval")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let row = |label: &str, folded: bool| (label.to_owned(), folded, 1);
    assert_eq!(
        bill_by_label(&sys, &key, "user", 3).await,
        [
            row("ada", false),
            row("other", true),
            row(&claude_user, false)
        ]
    );
    assert_eq!(
        bill_by_label(&sys, &key, "session", 3).await,
        [(String::new(), false, 2), row(claude_session, false)]
    );
    assert_eq!(
        bill_by_label(&sys, &key, "tag", 3).await,
        [(String::new(), false, 2), row("nightly-eval", false)]
    );
    // The raw event keeps the folded value, and the logs filter by it.
    let (status, page) = logs(&sys, &key, "?user=carol&tag=nightly-eval").await;
    assert_eq!(status, 200, "{page}");
    let found = page["events"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{page}");
    assert_eq!(found[0]["user"], "carol");
    let (_, page) = logs(&sys, &key, &format!("?user={claude_user}")).await;
    assert_eq!(page["events"][0]["session"], claude_session);
    assert_eq!(page["events"][0]["path"], "/v1/messages");
}
