//! The whole system as separate processes: the three binaries on Postgres, a fake
//! OpenAI-compatible upstream, accounts and keys made through REST and gRPC, calls
//! through the data plane both ways, and the rollups checked to the token; what
//! each change does to the data plane once its snapshot arrives; key-encryption-key
//! rotation and shutdown. The REST contract alone (refusals, listings, the audit
//! log) runs in process: `control-plane/tests/api_*.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::apikey;
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{
    System, UPSTREAM_SECRET, chat, expected_tokens, settle, start_system, start_system_with,
    wait_for_key,
};
use switchyard_tests::wait::{self, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_travels_the_whole_system() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(Some(UPSTREAM_SECRET.into()))
        .await
        .unwrap();

    // The operator creates a main account; the account adds its provider key.
    let (status, created) = sys
        .post("/x-users", &sys.root, json!({"name": "acme"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let main_key = created["api_key"].as_str().unwrap().to_owned();
    let main_id = created["account"]["id"].as_str().unwrap().to_owned();
    assert!(apikey::is_well_formed(&main_key));
    assert!(created["account"]["parent_id"].is_null());
    let (status, pk) = sys
        .post(
            "/x-keys",
            &main_key,
            json!({"provider": "openai", "base_url": fake.base_url(), "secret": UPSTREAM_SECRET, "models": ["gpt-4o*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pk}");
    assert_eq!(pk["secret_hint"], "****6789");
    assert!(!pk.to_string().contains(UPSTREAM_SECRET));
    // At rest the secret is sealed, and the issued key is only a hash.
    assert_eq!(sys.count("control", &format!("SELECT count(*) FROM provider_keys WHERE position('{UPSTREAM_SECRET}' in encode(secret_blob, 'escape')) > 0")), 0);
    assert_eq!(
        sys.count(
            "control",
            &format!(
                "SELECT count(*) FROM issued_keys WHERE hash = '{}'",
                apikey::KeyHash::of(&main_key).to_hex()
            )
        ),
        1
    );
    assert_eq!(
        sys.count(
            "control",
            &format!(
                "SELECT count(*) FROM issued_keys WHERE tail LIKE '%{}%'",
                &main_key[6..30]
            )
        ),
        0
    );

    // A sub-account with its own key.
    let (status, child) = sys
        .post("/x-users", &main_key, json!({"name": "team-a"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    assert_eq!(child["account"]["parent_id"], main_id.as_str());
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let child_id = child["account"]["id"].as_str().unwrap().to_owned();
    wait_for_key(&sys, &child_key).await;

    // Non-streaming.
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&main_key)
        .json(&chat("hello from the test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hello from the test"
    );
    let (in1, out1) = expected_tokens("be brief", "hello from the test");
    assert_eq!(body["usage"]["prompt_tokens"], in1);
    assert_eq!(body["usage"]["completion_tokens"], out1);
    // The owner's secret reached the upstream, opened just in time.
    assert_eq!(
        fake.observed()
            .authorizations
            .lock()
            .unwrap()
            .last()
            .unwrap(),
        &format!("Bearer {UPSTREAM_SECRET}")
    );

    // Streaming, from the sub-account. The fake holds the stream after its first
    // content chunk: receiving that chunk first proves events pass through as they come.
    fake.hold_streams();
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&child_key)
        .json(&chat("stream me please", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    let mut received = String::new();
    while !received.contains("echo:") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the first events arrive while the upstream still holds the rest")
            .unwrap()
            .unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(!received.contains("[DONE]"));
    fake.release_streams();
    while let Some(chunk) = body.next().await {
        received.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(received.ends_with("data: [DONE]\n\n"), "{received}");
    let text: String = received
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| d.starts_with('{'))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "echo: stream me please");
    // The router asked the upstream for usage and kept that chunk from the client,
    // who did not ask for it.
    assert_eq!(
        fake.observed().bodies.lock().unwrap().last().unwrap()["stream_options"]["include_usage"],
        true
    );
    assert!(!received.contains("\"usage\""), "{received}");
    let (in2, out2) = expected_tokens("be brief", "stream me please");

    // A wrong key gets a 401 in OpenAI's shape.
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(apikey::generate().clear.expose())
        .json(&chat("x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-request-id"));
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["type"], "authentication_error");
    assert_eq!(err["error"]["code"], "invalid_api_key");
    assert!(err["error"]["message"].is_string());
    assert_eq!(fake.calls(), 2);

    // The rollups, exact: the owner sees its tree, the sub-account only itself.
    let bill = wait::until_ok(PATIENCE, "usage to reach the rollup", async || {
        let bill = sys.bill(&main_key).await;
        let requests: u64 = bill["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requests"].as_u64().unwrap())
            .sum();
        if requests >= 2 { Ok(bill) } else { Err(bill) }
    })
    .await;
    let rows = bill["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{bill}");
    let row_of = |id: &str| rows.iter().find(|r| r["account_id"] == id).unwrap().clone();
    let main_row = row_of(&main_id);
    let child_row = row_of(&child_id);
    assert_eq!(
        (
            main_row["requests"].as_u64(),
            main_row["input_tokens"].as_u64(),
            main_row["output_tokens"].as_u64()
        ),
        (Some(1), Some(in1), Some(out1))
    );
    assert_eq!(
        (
            child_row["requests"].as_u64(),
            child_row["input_tokens"].as_u64(),
            child_row["output_tokens"].as_u64()
        ),
        (Some(1), Some(in2), Some(out2))
    );
    assert_eq!(main_row["model"], "gpt-4o-mini");
    assert_eq!(main_row["errors"], 0);
    let total_in: u64 = rows
        .iter()
        .map(|r| r["input_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total_in,
        fake.observed()
            .input_tokens
            .load(std::sync::atomic::Ordering::SeqCst)
    );
    let child_bill = sys.bill(&child_key).await;
    assert_eq!(child_bill["rows"].as_array().unwrap().len(), 1);
    assert_eq!(child_bill["rows"][0]["account_id"], child_id.as_str());
    assert_eq!(sys.count("usage", "SELECT count(*) FROM usage_events"), 2);
    // Filters: one account's subtree, one model; only within the caller's tree.
    let rows = |path: String, key: String| {
        let call = sys.call(Method::GET, path, key, None);
        async move {
            let (status, v) = call.await;
            (status, v["rows"].as_array().map_or(0, Vec::len))
        }
    };
    assert_eq!(
        rows(format!("/x-bill?account={child_id}"), main_key.clone()).await,
        (200, 1)
    );
    assert_eq!(
        rows("/x-bill?model=gpt-4o-mini".into(), main_key.clone()).await,
        (200, 2)
    );
    assert_eq!(
        rows("/x-bill?model=other".into(), main_key.clone()).await,
        (200, 0)
    );
    // The owner sees what its provider key carried for the whole tree; nobody else does.
    let (status, by_key) = sys
        .call(
            Method::GET,
            "/x-bill?by=provider_key".into(),
            main_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{by_key}");
    assert_eq!(by_key["by"], "provider_key");
    let key_rows = by_key["rows"].as_array().unwrap();
    assert_eq!(key_rows.len(), 1, "{by_key}");
    assert_eq!(key_rows[0]["provider_key_id"], pk["id"]);
    assert!(key_rows[0].get("account_id").is_none());
    assert_eq!(
        (
            key_rows[0]["requests"].as_u64(),
            key_rows[0]["input_tokens"].as_u64()
        ),
        (Some(2), Some(total_in))
    );

    assert_eq!(
        sys.call(
            Method::GET,
            "/dashboard/billing".into(),
            main_key.clone(),
            None
        )
        .await
        .1["rows"],
        bill["rows"]
    );

    // Request logs page through the raw events, newest first, without content.
    let logs = |path: String, key: String| sys.call(Method::GET, path, key, None);
    let (status, page) = logs("/dashboard/logs".into(), main_key.clone()).await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["account_id"], child_id.as_str());
    assert_eq!(events[0]["streamed"], true);
    assert_eq!(events[1]["account_id"], main_id.as_str());
    assert_eq!(events[1]["input_tokens"], in1);
    assert_eq!(events[1]["usage_source"], "reported");
    assert!(
        !page.to_string().contains("hello from the test"),
        "logs carry no content"
    );
    assert!(page["next"].is_null());
    let (_, first) = logs("/dashboard/logs?limit=1".into(), main_key.clone()).await;
    let cursor = first["next"].as_str().unwrap().to_owned();
    let (_, second) = logs(
        format!("/dashboard/logs?limit=1&before={cursor}"),
        main_key.clone(),
    )
    .await;
    assert_eq!(second["events"][0]["id"], events[1]["id"]);
    let count = |v: &Value| v["events"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count(&logs("/dashboard/logs".into(), child_key.clone()).await.1),
        1
    );
    assert_eq!(
        count(
            &logs(
                format!("/dashboard/logs?account={child_id}"),
                main_key.clone()
            )
            .await
            .1
        ),
        1
    );
    assert_eq!(
        count(
            &logs("/dashboard/logs?model=other".into(), main_key.clone())
                .await
                .1
        ),
        0
    );
    assert_eq!(
        count(
            &logs("/dashboard/logs?status=200".into(), main_key.clone())
                .await
                .1
        ),
        2
    );
    for bad in [
        "/dashboard/logs?before=garbage",
        "/dashboard/logs?limit=0",
        "/dashboard/logs?from=10&to=5",
        "/dashboard/logs?status=abc",
    ] {
        assert_eq!(logs(bad.into(), main_key.clone()).await.0, 400, "{bad}");
    }
    assert_eq!(
        logs(
            format!("/dashboard/logs?account={main_id}"),
            child_key.clone()
        )
        .await
        .0,
        404
    );

    // Graceful shutdown: the data plane exits cleanly.
    let mut data = sys.data;
    let status = data.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{status}\n{}", data.log_tail());
    // No secret, issued key or upstream credential appears in any log.
    for log in [data.log(), sys.control.log()] {
        for secret in [
            UPSTREAM_SECRET,
            main_key.as_str(),
            child_key.as_str(),
            sys.root.as_str(),
        ] {
            assert!(!log.contains(secret), "a log line carries key material");
        }
    }
}

/// Bad calls on the proxy get a clear error in OpenAI's shape, and nothing reaches
/// the upstream or the usage store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proxy_input_gets_clear_errors_and_changes_nothing() {
    let sys = start_system(1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, created) = sys
        .post("/x-users", &sys.root, json!({"name": "acme"}))
        .await;
    let main_key = created["api_key"].as_str().unwrap().to_owned();
    let (status, _) = sys
        .post("/x-keys", &main_key, json!({"provider": "openai", "base_url": fake.base_url(), "secret": "sk-abc-123456789", "models": ["gpt-*"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    wait_for_key(&sys, &main_key).await;

    let expect_error = |r: reqwest::Response, want: u16| async move {
        assert_eq!(r.status().as_u16(), want);
        let v: Value = r.json().await.unwrap();
        let message = v["error"]["message"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        message
    };
    let proxy = |key: &str, body: &'static str| {
        sys.http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    expect_error(proxy(&main_key, "{not json").await.unwrap(), 400).await;
    let m = expect_error(proxy(&main_key, r#"{"messages":[]}"#).await.unwrap(), 400).await;
    assert!(m.contains("model"), "{m}");
    expect_error(proxy(&main_key, r#"{"model":42}"#).await.unwrap(), 400).await;
    let m = expect_error(
        proxy(&main_key, r#"{"model":"llama-3","messages":[]}"#)
            .await
            .unwrap(),
        404,
    )
    .await;
    assert!(m.contains("llama-3"), "{m}");
    let big = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2048)
    );
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&main_key)
        .body(big)
        .send()
        .await
        .unwrap();
    expect_error(r, 413).await;
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .json(&chat("x", false))
        .send()
        .await
        .unwrap();
    expect_error(r, 401).await;
    let r = sys
        .http
        .post(sys.proxy("/v1/nope"))
        .bearer_auth(&main_key)
        .send()
        .await
        .unwrap();
    expect_error(r, 404).await;

    // Nothing reached the upstream. Nor the usage store: a good call after them
    // marks the end, since usage leaves the data plane in the order it was queued;
    // once its event is stored, any event of the bad calls would be too.
    assert_eq!(fake.calls(), 0);
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&main_key)
        .json(&chat("x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stored = wait::until(PATIENCE, "the good call's usage event", async || {
        let n = sys.count("usage", "SELECT count(*) FROM usage_events");
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(stored, 1);
}

fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// An account and a provider key made over gRPC serve calls through the data plane,
/// whose use shows in the gRPC bill, logs and status. (The gRPC faces' operations
/// and refusals alone: `control-plane/tests/api_grpc.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_made_over_grpc_serve_calls() {
    use switchyard_proto::v1 as pb;
    use switchyard_proto::v1::admin_service_client::AdminServiceClient;
    use switchyard_proto::v1::manage_service_client::ManageServiceClient;
    use tonic::Code;

    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(Some(UPSTREAM_SECRET.into()))
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(sys.control.url("grpc"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut manage = ManageServiceClient::new(channel.clone());
    let mut admin = AdminServiceClient::new(channel);

    let created = manage
        .create_account(authed(
            &sys.root,
            pb::CreateAccountRequest {
                name: "grpc-co".into(),
                policy: None,
                billing: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let key = created.api_key.clone();
    assert!(apikey::is_well_formed(&key));
    let main_account = created.account.clone().unwrap();
    assert!(main_account.parent_id.is_empty());

    let add = |models: Vec<String>, base_url: String| pb::AddProviderKeyRequest {
        provider: "openai".into(),
        base_url,
        secret: UPSTREAM_SECRET.into(),
        models,
        level: None,
        weight: None,
        ..Default::default()
    };
    let view = admin
        .add_provider_key(authed(&key, add(vec!["gpt-*".into()], fake.base_url())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.secret_hint, "****6789");

    // The key made over gRPC works on the proxy, and its use shows in the gRPC bill.
    wait_for_key(&sys, &key).await;
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("over grpc", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let row = wait::until(PATIENCE, "usage to reach the gRPC bill", async || {
        let bill = manage
            .get_bill(authed(&key, pb::GetBillRequest::default()))
            .await
            .unwrap()
            .into_inner();
        bill.rows.first().cloned()
    })
    .await;
    assert_eq!(row.requests, 1);
    assert_eq!(row.input_tokens, expected_tokens("be brief", "over grpc").0);

    // What needs the data plane and the collector: the status, the logs.
    let status = manage
        .get_status(authed(&key, pb::GetStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.data_planes.len(), 1);
    let logs = manage
        .get_logs(authed(&key, pb::GetLogsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(logs.events.len(), 1);
    assert_eq!(logs.events[0].model_served, "gpt-4o-mini");
    let err = manage
        .get_logs(authed(
            &key,
            pb::GetLogsRequest {
                before: "garbage".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// The data plane enforces each account's effective policy (model, resource, client
/// network), and follows a narrowed parent and a disabled account with the next
/// snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_plane_enforces_effective_policies() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let patch =
        |path: String, key: String, body: Value| sys.call(Method::PATCH, path, key, Some(body));

    let (status, main) = sys
        .post(
            "/x-users",
            &sys.root,
            json!({"name": "acme", "policy": {"models": ["gpt-4o*", "claude*"], "rpm": 100, "client_cidrs": ["10.0.0.0/8", "127.0.0.0/8"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{main}");
    let main_key = main["api_key"].as_str().unwrap().to_owned();
    let main_id = main["account"]["id"].as_str().unwrap().to_owned();
    sys.post(
        "/x-keys",
        &main_key,
        json!({"provider": "openai", "base_url": fake.base_url(), "secret": "sk-abc-123456789", "models": ["*"]}),
    )
    .await;
    let (status, child) = sys
        .post(
            "/x-users",
            &main_key,
            json!({"name": "team", "policy": {"models": ["gpt-4o-mini"], "rpm": 50}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let (_, sibling) = sys
        .post("/x-users", &main_key, json!({"name": "other"}))
        .await;
    let sibling_key = sibling["api_key"].as_str().unwrap().to_owned();
    let sibling_id = sibling["account"]["id"].as_str().unwrap().to_owned();

    // The data plane enforces the effective policy: model, resource, client network.
    let call = |key: String, model: &'static str| {
        let http = sys.http.clone();
        let url = sys.proxy("/v1/chat/completions");
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": model, "messages": []}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    wait_for_key(&sys, &child_key).await;
    assert_eq!(call(child_key.clone(), "gpt-4o-mini").await.0, 200);
    let (status, err) = call(child_key.clone(), "gpt-4o").await;
    assert_eq!(status, 403, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"gpt-4o\" is not among this account's allowed models"),
        "{err}"
    );
    let (_, remote) = sys
        .post(
            "/x-users",
            &main_key,
            json!({"name": "remote", "policy": {"client_cidrs": ["10.0.0.0/8"]}}),
        )
        .await;
    let remote_key = remote["api_key"].as_str().unwrap().to_owned();
    let (_, embed) = sys
        .post(
            "/x-users",
            &main_key,
            json!({"name": "embed", "policy": {"resources": ["/v1/embeddings"]}}),
        )
        .await;
    let embed_key = embed["api_key"].as_str().unwrap().to_owned();
    wait_for_key(&sys, &remote_key).await;
    wait_for_key(&sys, &embed_key).await;
    let (status, err) = call(remote_key, "gpt-4o").await;
    assert_eq!(status, 403, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client address 127.0.0.1"),
        "{err}"
    );
    let (status, err) = call(embed_key, "gpt-4o").await;
    assert_eq!(status, 403, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/chat/completions is not among"),
        "{err}"
    );
    assert_eq!(fake.calls(), 1);

    // The dashboard shows the data plane and the snapshot it applied.
    let (status, health) = sys
        .call(
            Method::GET,
            "/dashboard/status".into(),
            main_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        health["data_planes"].as_array().unwrap().len(),
        1,
        "{health}"
    );
    assert!(
        health["snapshot_version"].as_u64().unwrap()
            >= health["data_planes"][0]["applied_version"]
                .as_u64()
                .unwrap()
    );

    // The operator narrows the main account: the data plane enforces the narrowed
    // policy from the next snapshot on.
    let (status, v) = patch(
        format!("/x-users/{main_id}"),
        sys.root.clone(),
        json!({"policy": {"models": ["claude*"]}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    wait::until(PATIENCE, "the narrowed parent to be enforced", async || {
        (call(child_key.clone(), "gpt-4o-mini").await.0 == 403).then_some(())
    })
    .await;

    // Disabling an account reaches the data plane: its key stops working.
    wait_for_key(&sys, &sibling_key).await;
    let (status, _) = patch(
        format!("/x-users/{sibling_id}"),
        main_key.clone(),
        json!({"status": "disabled"}),
    )
    .await;
    assert_eq!(status, 200);
    wait::until_ok(PATIENCE, "the disabled account to be refused", async || {
        let r = sys
            .http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(&sibling_key)
            .json(&chat("x", false))
            .send()
            .await
            .unwrap();
        // The narrowed main account already refuses this model with a 403; wait for
        // the refusal that names the disabled account.
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status == StatusCode::FORBIDDEN
            && v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("is disabled")
        {
            Ok(())
        } else {
            Err(format!("{status} {v}"))
        }
    })
    .await;
}

/// Several keys per account, expiry, revocation, and rotation with and without an
/// overlap window, as the data plane sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_keys_rotate_expire_and_revoke() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, main_key) = sys.owner("acme", &fake).await;
    let (_, child) = sys
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    let child_id = child["account"]["id"].as_str().unwrap().to_owned();
    let proxy_status = |key: String| {
        let http = sys.http.clone();
        let url = sys.proxy("/v1/chat/completions");
        async move {
            http.post(url)
                .bearer_auth(key)
                .json(&chat("hi", false))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let eventually = |key: String, want: u16| async move {
        wait::until_ok(
            PATIENCE,
            format!("the proxy to answer {want}"),
            async || {
                let got = proxy_status(key.clone()).await;
                if got == want { Ok(()) } else { Err(got) }
            },
        )
        .await;
    };

    // A second key, then its revocation.
    let (status, extra) = sys.post("/x-self/keys", &main_key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{extra}");
    let extra_key = extra["api_key"].as_str().unwrap().to_owned();
    let extra_id = extra["key"]["id"].as_str().unwrap().to_owned();
    eventually(extra_key.clone(), 200).await;
    let r = sys
        .http
        .delete(sys.admin(&format!("/x-self/keys/{extra_id}")))
        .bearer_auth(&main_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually(extra_key.clone(), 401).await;

    // A key that expires: refused once the time has passed.
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let (status, short) = sys
        .post(
            "/x-self/keys",
            &main_key,
            json!({"expires_at_unix_ms": now_ms + 3000}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{short}");
    let short_key = short["api_key"].as_str().unwrap().to_owned();
    eventually(short_key.clone(), 200).await;
    eventually(short_key.clone(), 401).await;

    // A parent issues a key for its child.
    let (status, issued) = sys
        .post(&format!("/x-users/{child_id}/keys"), &main_key, json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    eventually(issued["api_key"].as_str().unwrap().to_owned(), 200).await;

    // Rotation with an overlap: both keys work for now.
    let (status, rotated) = sys
        .post("/x-self/rotate", &main_key, json!({"overlap_seconds": 600}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    eventually(new_key.clone(), 200).await;
    assert_eq!(proxy_status(main_key.clone()).await, 200);
    // Rotation without one: the key used stops with the next snapshot on the proxy.
    let (status, again) = sys.post("/x-self/rotate", &new_key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let newest = again["api_key"].as_str().unwrap().to_owned();
    eventually(new_key.clone(), 401).await;
    eventually(newest.clone(), 200).await;
}

/// Provider keys as the data plane sees them: a new secret reaches the upstream and
/// a disabled key serves no more, each with the next snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_key_changes_reach_the_upstream() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, main) = sys
        .post("/x-users", &sys.root, json!({"name": "acme"}))
        .await;
    let main_key = main["api_key"].as_str().unwrap().to_owned();
    let (status, pk) = sys
        .post(
            "/x-keys",
            &main_key,
            json!({"provider": "openai", "base_url": fake.base_url(), "secret": "sk-first-secret-0001", "models": ["gpt*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = pk["id"].as_str().unwrap().to_owned();
    let send = |method: Method, path: String, key: String, body: Option<Value>| {
        sys.call(method, path, key, body)
    };

    // A new secret reaches the upstream with the next snapshot.
    wait_for_key(&sys, &main_key).await;
    let call = || {
        let http = sys.http.clone();
        let url = sys.proxy("/v1/chat/completions");
        let key = main_key.clone();
        async move {
            http.post(url)
                .bearer_auth(key)
                .json(&chat("hi", false))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(call().await, 200);
    let (status, v) = send(
        Method::PATCH,
        format!("/x-keys/{id}"),
        main_key.clone(),
        Some(json!({"secret": "sk-second-secret-0002", "level": 2})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    wait::until_ok(
        PATIENCE,
        "the new secret to reach the upstream",
        async || {
            assert_eq!(call().await, 200);
            let last = fake
                .observed()
                .authorizations
                .lock()
                .unwrap()
                .last()
                .cloned()
                .unwrap();
            if last == "Bearer sk-second-secret-0002" {
                Ok(())
            } else {
                Err(last)
            }
        },
    )
    .await;

    // Disabled: nothing serves the model any more.
    let (status, _) = send(
        Method::PATCH,
        format!("/x-keys/{id}"),
        main_key.clone(),
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200);
    wait::until_ok(
        PATIENCE,
        "a disabled provider key to stop serving",
        async || {
            let got = call().await;
            if got == 404 { Ok(()) } else { Err(got) }
        },
    )
    .await;
}

/// A deleted account's keys stop working on the proxy with the next snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_accounts_keys_stop_working() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, main_key) = sys.owner("acme", &fake).await;
    let (_, team) = sys
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    let team_key = team["api_key"].as_str().unwrap().to_owned();
    let team_id = team["account"]["id"].as_str().unwrap().to_owned();
    let (_, dev) = sys
        .post("/x-users", &team_key, json!({"name": "dev"}))
        .await;
    let dev_key = dev["api_key"].as_str().unwrap().to_owned();

    wait_for_key(&sys, &dev_key).await;
    let (status, done) = sys
        .call(
            Method::DELETE,
            format!("/x-users/{team_id}?cascade=true"),
            main_key.clone(),
            None,
        )
        .await;
    assert_eq!((status, done["deleted"].as_u64()), (200, Some(2)), "{done}");
    wait::until_ok(
        PATIENCE,
        "a deleted account's key to be refused",
        async || {
            let r = sys
                .http
                .post(sys.proxy("/v1/chat/completions"))
                .bearer_auth(&dev_key)
                .json(&chat("x", false))
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::UNAUTHORIZED {
                Ok(())
            } else {
                Err(r.status())
            }
        },
    )
    .await;
}

/// A main account's rules reach the data plane: the Resources rule bounds every
/// account of the tree, and prices turn into the cost of each call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reach_the_data_plane() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, main_key) = sys.owner("acme", &fake).await;
    let (status, _) = sys
        .post(
            "/x-keys",
            &main_key,
            json!({"provider": "openai", "base_url": fake.base_url(), "secret": "sk-abc-123456789", "models": ["*"], "level": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let call = |method: Method, path: &str, body: Option<Value>| {
        sys.call(method, path.to_owned(), main_key.clone(), body)
    };
    let doc = json!({
        "model_mapper": {"gpt-4": "gpt-4o", "old": "gpt-4"},
        "level_mapper": {"gpt-4o*": 1, "*": 2},
        "switch_over": {"1": 2},
        "resources": ["/v1/audio/*"],
        "model_limits": {"gpt-4o*": {"rpm": 100, "tpm": 100000}},
        "pricing": {"gpt-4o*": {"input_per_million_nanos": 2500000000u64, "cached_input_per_million_nanos": 0,
                                 "output_per_million_nanos": 10000000000u64, "per_request_nanos": 0}}
    });
    let (status, stored) = call(Method::PUT, "/x-conf", Some(doc.clone())).await;
    assert_eq!(status, 200, "{stored}");
    // No call before the rules arrive: every call served is priced.
    settle(&sys).await;

    let proxy = |key: &str| {
        let r = sys
            .http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat("hi", false))
            .send();
        async move {
            let r = r.await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let v = wait::until_ok(
        PATIENCE,
        "the Resources rule to reach the data plane",
        async || {
            let (status, v) = proxy(&main_key).await;
            if status == 403 { Ok(v) } else { Err(status) }
        },
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/chat/completions is not among"),
        "{v}"
    );
    let (status, _) = call(Method::PATCH, "/x-conf", Some(json!({"resources": null}))).await;
    assert_eq!(status, 200);
    wait::until_ok(
        PATIENCE,
        "clearing the Resources rule to reach the data plane",
        async || {
            let (status, v) = proxy(&main_key).await;
            if status == 200 { Ok(()) } else { Err(v) }
        },
    )
    .await;
    let (input, output) = expected_tokens("be brief", "hi");
    // gpt-4o* costs 2,500 nano-dollars per input token and 10,000 per output token.
    let per_call = i64::try_from(input * 2_500 + output * 10_000).unwrap();
    let (bill, row) = wait::until(PATIENCE, "usage to reach the bill", async || {
        let bill = sys.bill(&main_key).await;
        let row = bill["rows"].as_array().unwrap().first().cloned()?;
        Some((bill, row))
    })
    .await;
    let requests = row["requests"].as_i64().unwrap();
    assert_eq!(
        row["cost_nanos"].as_i64().unwrap(),
        per_call * requests,
        "{bill}"
    );
}

/// Key-encryption-key rotation without downtime: data planes already hold the new and
/// the old key, `switchyard-control-plane reseal` moves every secret to the new one
/// while calls keep flowing, and none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_encryption_keys_rotate_without_downtime() {
    let old = Keyring::generate_spec("k1").to_string();
    let new = Keyring::generate_spec("k2").to_string();
    let both = format!("{new},{old}");
    let sys = start_system_with(32 * 1024, &old, &both).await;
    let fake = FakeUpstream::start(Some("sk-abc-123456789".into()))
        .await
        .unwrap();
    let (_, main_key) = sys.owner("acme", &fake).await;
    wait_for_key(&sys, &main_key).await;
    assert_eq!(
        sys.pg
            .query("control", "SELECT secret_key_id FROM provider_keys")
            .unwrap(),
        "k1"
    );

    let calls = {
        let http = sys.http.clone();
        let url = sys.proxy("/v1/chat/completions");
        let key = main_key.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..150 {
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&chat("rotate", false))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
                // Paced: the calls span the re-seal and the snapshot after it.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        })
    };
    // Some calls pass under the old key before the re-seal starts.
    wait::until(PATIENCE, "calls under the old key", async || {
        (fake.calls() >= 10).then_some(())
    })
    .await;
    let bin = switchyard_tests::procs::bin_dir()
        .unwrap()
        .join("switchyard-control-plane");
    let out = std::process::Command::new(bin)
        .args(["--database-url", &sys.control_db, "reseal"])
        .env("SWITCHYARD_KEK", &both)
        .env_remove("SWITCHYARD_ROOT_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"resealed\":1"));
    assert_eq!(
        sys.pg
            .query("control", "SELECT secret_key_id FROM provider_keys")
            .unwrap(),
        "k2"
    );

    // Calls kept working through the rotation and after the new snapshot arrived.
    let statuses = calls.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        fake.observed()
            .authorizations
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer sk-abc-123456789")
    );
    last_audit_is_a_reseal_to(&sys, &main_key, "k2").await;
}

/// The newest audit entry `key` sees records a re-seal under `key_id`.
async fn last_audit_is_a_reseal_to(sys: &System, key: &str, key_id: &str) {
    let (_, log) = sys
        .call(Method::GET, "/x-audit?limit=1".into(), key.to_owned(), None)
        .await;
    assert_eq!(log[0]["action"], "provider_key.reseal");
    assert_eq!(log[0]["after"]["key_id"], key_id);
}

/// A rotation needs no command: the control plane re-seals provider secrets under
/// its new active key by itself, but only once every data plane holds that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_reseals_once_every_data_plane_holds_the_new_key() {
    let old = Keyring::generate_spec("k1").to_string();
    let new = Keyring::generate_spec("k2").to_string();
    let both = format!("{new},{old}");
    let mut sys = start_system_with(32 * 1024, &old, &old).await;
    let fake = FakeUpstream::start(Some("sk-abc-123456789".into()))
        .await
        .unwrap();
    let (_, main_key) = sys.owner("acme", &fake).await;
    wait_for_key(&sys, &main_key).await;
    let sealed_under = |sys: &System| {
        sys.pg
            .query("control", "SELECT secret_key_id FROM provider_keys")
            .unwrap()
    };
    let call = |sys: &System| {
        let r = sys
            .http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(&main_key)
            .json(&chat("rotate", false))
            .send();
        async move { r.await.unwrap().status() }
    };
    assert_eq!(sealed_under(&sys), "k1");

    // The control plane moves to the new key first. Its data plane cannot open
    // secrets sealed under it yet, so nothing is re-sealed, look after look.
    sys.control_kek = both.clone();
    sys.kill_control();
    sys.restart_control();
    wait::until(PATIENCE, "the data plane to come back", async || {
        sys.status().await["data_planes"]
            .as_array()
            .is_some_and(|d| d.len() == 1)
            .then_some(())
    })
    .await;
    wait::until_ok(
        Duration::from_secs(25),
        "the control plane to hold off re-sealing",
        async || {
            if sys.control.log().contains("not re-sealing yet") {
                Ok(())
            } else {
                Err(sys.control.log_tail())
            }
        },
    )
    .await;
    // Nothing observable may change here: a further look or two must still hold off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sealed_under(&sys), "k1");
    assert_eq!(call(&sys).await, StatusCode::OK);

    // The data plane gets the new keyring: the next look re-seals, and calls go on.
    sys.data_kek = both.clone();
    let replacement = sys.another_data_plane(&[]).await;
    let mut previous = std::mem::replace(&mut sys.data, replacement);
    previous.kill();
    // A new leader first lets data planes reconnect (`reseal::SETTLE`, 10 s).
    wait::until_ok(
        Duration::from_secs(25),
        "the secrets to be re-sealed under k2",
        async || {
            if sealed_under(&sys) == "k2" {
                Ok(())
            } else {
                Err(sys.control.log_tail())
            }
        },
    )
    .await;
    wait_for_key(&sys, &main_key).await;
    assert_eq!(call(&sys).await, StatusCode::OK);
    last_audit_is_a_reseal_to(&sys, &main_key, "k2").await;
}

/// A reseller bills its customers at its own prices; usage keeps both what the
/// providers cost and what each account is billed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resellers_bill_their_customers() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, main_key) = sys.owner("acme", &fake).await;
    // The owner's price: 1,000 nano-dollars per input token, 2,000 per output token.
    let (status, _) = sys
        .call(
            Method::PUT,
            "/x-config/pricing?key=gpt*".into(),
            main_key.clone(),
            Some(json!({"input_per_million_nanos": 1_000_000_000u64, "output_per_million_nanos": 2_000_000_000u64})),
        )
        .await;
    assert_eq!(status, 200);
    // The reseller is billed the cost plus 50%; it bills its customer a flat price per request.
    let (status, reseller) = sys
        .post(
            "/x-users",
            &main_key,
            json!({"name": "reseller", "billing": {"multiplier_ppm": 1_500_000}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reseller}");
    let reseller_key = reseller["api_key"].as_str().unwrap().to_owned();
    let reseller_id = reseller["account"]["id"].as_str().unwrap().to_owned();
    let (status, customer) = sys
        .post(
            "/x-users",
            &reseller_key,
            json!({"name": "customer", "billing": {"prices": {"gpt*": {"per_request_nanos": 1_000_000}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{customer}");
    let customer_key = customer["api_key"].as_str().unwrap().to_owned();
    let customer_id = customer["account"]["id"].as_str().unwrap().to_owned();

    for key in [&reseller_key, &customer_key] {
        wait_for_key(&sys, key).await;
        let r = sys
            .http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat("hi", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (input, output) = expected_tokens("be brief", "hi");
    let cost = i64::try_from(input * 1_000 + output * 2_000).unwrap();
    let rows = wait::until_ok(PATIENCE, "usage to reach the bill", async || {
        let bill = sys.bill(&main_key).await;
        let rows = bill["rows"].as_array().unwrap().clone();
        if rows.len() == 2 { Ok(rows) } else { Err(bill) }
    })
    .await;
    let row = |id: &str| rows.iter().find(|r| r["account_id"] == id).unwrap().clone();
    let r = row(&reseller_id);
    assert_eq!(
        (r["cost_nanos"].as_i64(), r["billed_nanos"].as_i64()),
        (Some(cost), Some(cost * 3 / 2))
    );
    let c = row(&customer_id);
    assert_eq!(
        (c["cost_nanos"].as_i64(), c["billed_nanos"].as_i64()),
        (Some(cost), Some(1_000_000))
    );
    let (_, logs) = sys
        .call(
            Method::GET,
            "/dashboard/logs".into(),
            customer_key.clone(),
            None,
        )
        .await;
    assert_eq!(logs["events"][0]["billed_nanos"], 1_000_000);
}
