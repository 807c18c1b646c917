//! One real request through the whole system: the three binaries as separate
//! processes on Postgres, a fake OpenAI-compatible upstream, accounts and keys made
//! through REST, calls both ways, and the rollup checked to the token.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::apikey;
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{
    System, UPSTREAM_SECRET, chat, expected_tokens, start_system, start_system_with, wait_for_key,
};

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
    let deadline = Instant::now() + Duration::from_secs(10);
    let bill = loop {
        let bill = sys.bill(&main_key).await;
        let requests: u64 = bill["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requests"].as_u64().unwrap())
            .sum();
        if requests >= 2 {
            break bill;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached the rollup: {bill}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
    assert_eq!(
        rows(format!("/x-bill?account={main_id}"), child_key.clone())
            .await
            .0,
        404
    );
    assert_eq!(
        rows("/x-bill?account=nope".into(), main_key.clone())
            .await
            .0,
        400
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
        rows("/x-bill?by=provider_key".into(), child_key.clone())
            .await
            .0,
        403
    );
    for bad in [
        "by=key",
        format!("by=provider_key&account={child_id}").as_str(),
    ] {
        assert_eq!(
            rows(format!("/x-bill?{bad}"), main_key.clone()).await.0,
            400
        );
    }

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
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
    let (_, child) = sys
        .post("/x-users", &main_key, json!({"name": "sub"}))
        .await;
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    wait_for_key(&sys, &main_key).await;
    let accounts = sys.count("control", "SELECT count(*) FROM accounts");
    let providers = sys.count("control", "SELECT count(*) FROM provider_keys");
    let revision = sys.count("control", "SELECT revision FROM config_revision");

    let raw = |path: &str, key: &str, body: &'static str| {
        sys.http
            .post(sys.admin(path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let expect_error = |r: reqwest::Response, want: u16| async move {
        assert_eq!(r.status().as_u16(), want);
        let v: Value = r.json().await.unwrap();
        let message = v["error"]["message"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        message
    };

    // Admin and Manage API.
    expect_error(raw("/x-users", &main_key, "{not json").await.unwrap(), 400).await;
    expect_error(raw("/x-users", &main_key, "{}").await.unwrap(), 400).await;
    let m = expect_error(
        raw("/x-users", &main_key, r#"{"name":"x","quota":5}"#)
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(m.contains("quota"), "{m}");
    expect_error(
        raw("/x-users", &main_key, r#"{"name":"   "}"#)
            .await
            .unwrap(),
        400,
    )
    .await;
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(70 * 1024));
    let r = sys
        .http
        .post(sys.admin("/x-users"))
        .bearer_auth(&main_key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    expect_error(r, 413).await;
    expect_error(raw("/x-users", "", r#"{"name":"x"}"#).await.unwrap(), 401).await;
    expect_error(
        raw(
            "/x-users",
            apikey::generate().clear.expose(),
            r#"{"name":"x"}"#,
        )
        .await
        .unwrap(),
        401,
    )
    .await;
    let key_body = |base: &str, models: Value| json!({"provider": "openai", "base_url": base, "secret": "sk-abc-123456789", "models": models});
    for (body, key, want) in [
        (
            key_body(&fake.base_url(), json!(["gpt-*"])),
            &child_key,
            403u16,
        ),
        (key_body(&fake.base_url(), json!(["gpt-*"])), &sys.root, 403),
        (
            key_body("ftp://example.com", json!(["gpt-*"])),
            &main_key,
            400,
        ),
        (
            key_body("https://user:pw@example.com/v1", json!(["gpt-*"])),
            &main_key,
            400,
        ),
        (key_body(&fake.base_url(), json!(["g*pt"])), &main_key, 400),
        (key_body(&fake.base_url(), json!([])), &main_key, 400),
        (
            json!({"provider": "bogus", "base_url": fake.base_url(), "secret": "s", "models": ["m"]}),
            &main_key,
            400,
        ),
        (
            json!({"provider": "openai", "base_url": fake.base_url(), "secret": "", "models": ["m"]}),
            &main_key,
            400,
        ),
        (
            json!({"provider": "openai", "base_url": fake.base_url(), "secret": "s", "models": ["m"], "level": 5000}),
            &main_key,
            400,
        ),
    ] {
        let (status, v) = sys.post("/x-keys", key, body.clone()).await;
        assert_eq!(status.as_u16(), want, "{body} → {v}");
        assert!(v["error"]["message"].is_string());
    }
    for q in [
        "from=yesterday",
        "granularity=hour",
        "from=2026-02-30",
        "from=2026-05-01&to=2026-04-01",
        "bogus=1",
    ] {
        let r = sys
            .http
            .get(format!("{}?{q}", sys.admin("/x-bill")))
            .bearer_auth(&main_key)
            .send()
            .await
            .unwrap();
        expect_error(r, 400).await;
    }

    // Proxy API.
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

    // Nothing was stored, nothing reached the upstream.
    assert_eq!(
        sys.count("control", "SELECT count(*) FROM accounts"),
        accounts
    );
    assert_eq!(
        sys.count("control", "SELECT count(*) FROM provider_keys"),
        providers
    );
    assert_eq!(
        sys.count("control", "SELECT revision FROM config_revision"),
        revision
    );
    assert_eq!(fake.calls(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sys.count("usage", "SELECT count(*) FROM usage_events"), 0);
}

fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// The gRPC face runs the same operations with the same authorisation as REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_face_matches_rest() {
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
    };
    let view = admin
        .add_provider_key(authed(&key, add(vec!["gpt-*".into()], fake.base_url())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.secret_hint, "****6789");

    // The same refusals as REST, as gRPC codes.
    let err = manage
        .create_account(authed(
            apikey::generate().clear.expose(),
            pb::CreateAccountRequest {
                name: "x".into(),
                policy: None,
                billing: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = manage
        .create_account(tonic::Request::new(pb::CreateAccountRequest {
            name: "x".into(),
            policy: None,
            billing: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = manage
        .create_account(authed(
            &key,
            pb::CreateAccountRequest {
                name: String::new(),
                policy: None,
                billing: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = admin
        .add_provider_key(authed(&key, add(vec!["g*pt".into()], fake.base_url())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let child = manage
        .create_account(authed(
            &key,
            pb::CreateAccountRequest {
                name: "child".into(),
                policy: None,
                billing: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let err = admin
        .add_provider_key(authed(
            &child.api_key,
            add(vec!["gpt-*".into()], fake.base_url()),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = manage
        .get_bill(authed(
            &key,
            pb::GetBillRequest {
                granularity: "hour".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bill = manage
            .get_bill(authed(&key, pb::GetBillRequest::default()))
            .await
            .unwrap()
            .into_inner();
        if let Some(row) = bill.rows.first() {
            assert_eq!(row.requests, 1);
            assert_eq!(row.input_tokens, expected_tokens("be brief", "over grpc").0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached the gRPC bill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The rest of the Manage face: policies, the tree, keys, dashboards, logs, news.
    let narrow = pb::Policy {
        models: Some(pb::StringList {
            values: vec!["gpt-4o-mini".into()],
        }),
        ..Default::default()
    };
    let wide = pb::Policy {
        models: Some(pb::StringList {
            values: vec!["*".into()],
        }),
        ..Default::default()
    };
    let (status, _) = sys
        .call(
            Method::PATCH,
            format!("/x-users/{}", main_account.id),
            sys.root.clone(),
            Some(json!({"policy": {"models": ["gpt-*"]}})),
        )
        .await;
    assert_eq!(status, 200);
    let err = manage
        .create_account(authed(
            &key,
            pb::CreateAccountRequest {
                name: "greedy".into(),
                policy: Some(wide),
                billing: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("models *"), "{}", err.message());
    let team = manage
        .create_account(authed(
            &key,
            pb::CreateAccountRequest {
                name: "team".into(),
                policy: Some(narrow),
                billing: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let team_id = team.account.unwrap().id;
    let info = manage
        .get_info(authed(
            &key,
            pb::GetInfoRequest {
                id: team_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        info.effective_policy.unwrap().models.unwrap().values,
        vec!["gpt-4o-mini".to_owned()]
    );
    let renamed = manage
        .update_account(authed(
            &key,
            pb::UpdateAccountRequest {
                id: team_id.clone(),
                name: Some("renamed".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.account.unwrap().name, "renamed");
    let err = manage
        .update_account(authed(
            &team.api_key,
            pb::UpdateAccountRequest {
                id: team_id.clone(),
                name: Some("me".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let tree = manage
        .list_accounts(authed(
            &key,
            pb::ListAccountsRequest {
                descendants: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tree.accounts.len(), 2);
    let me = manage
        .get_self(authed(&team.api_key, pb::GetSelfRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.keys.len(), 1);
    assert!(me.keys[0].in_use);
    let extra = manage
        .create_key(authed(
            &key,
            pb::CreateKeyRequest {
                account_id: team_id.clone(),
                expires_at_unix_ms: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(apikey::is_well_formed(&extra.api_key));
    manage
        .revoke_key(authed(
            &team.api_key,
            pb::RevokeKeyRequest {
                key_id: extra.key.unwrap().id,
            },
        ))
        .await
        .unwrap();
    let rotated = manage
        .rotate_key(authed(
            &team.api_key,
            pb::RotateKeyRequest {
                overlap_seconds: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let err = manage
        .get_self(authed(&team.api_key, pb::GetSelfRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let models = manage
        .list_models(authed(&rotated.api_key, pb::ListModelsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(models.models, vec!["gpt-4o-mini".to_owned()]);
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
    let posted = manage
        .post_news(authed(
            &key,
            pb::PostNewsRequest {
                title: "hello team".into(),
                body: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let news = manage
        .list_news(authed(&rotated.api_key, pb::ListNewsRequest { limit: 0 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(news.items[0].title, "hello team");
    manage
        .delete_news(authed(&key, pb::DeleteNewsRequest { id: posted.id }))
        .await
        .unwrap();
    let credit = manage
        .allocate_credit(authed(
            &key,
            pb::AllocateCreditRequest {
                account_id: team_id.clone(),
                amount_nanos: 100,
                note: "grant".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (credit.allocated_nanos, credit.available_to_delegate_nanos),
        (100, Some(100))
    );
    let err = manage
        .allocate_credit(authed(
            &key,
            pb::AllocateCreditRequest {
                account_id: team_id.clone(),
                amount_nanos: -101,
                note: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let seen = manage
        .get_credit(authed(
            &rotated.api_key,
            pb::GetCreditRequest {
                account_id: team_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.ledger.len(), 1);
    let gone = manage
        .delete_account(authed(
            &key,
            pb::DeleteAccountRequest {
                id: team_id,
                cascade: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.deleted, 1);
}

/// Policies never exceed the parent; narrowing a parent narrows the effective policy
/// of every descendant; only ancestors change an account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_never_exceed_the_parent() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let patch =
        |path: String, key: String, body: Value| sys.call(Method::PATCH, path, key, Some(body));
    let info = |key: String, id: Option<String>| {
        let path = id.map_or_else(|| "/x-info".to_owned(), |id| format!("/x-info?id={id}"));
        sys.call(Method::GET, path, key, None)
    };

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
    let accounts = sys.count("control", "SELECT count(*) FROM accounts");

    // Wider than the parent: refused with 422, naming every offending entry.
    let (status, err) = sys
        .post(
            "/x-users",
            &main_key,
            json!({"name": "greedy", "policy": {"models": ["gpt-*", "claude-3"], "rpm": 500, "client_cidrs": ["11.0.0.0/8"]}}),
        )
        .await;
    assert_eq!(status.as_u16(), 422, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    for entry in ["models gpt-*", "rpm", "500", "client_cidrs 11.0.0.0/8"] {
        assert!(message.contains(entry), "{message} should name {entry}");
    }
    assert!(!message.contains("claude-3"), "{message}");
    assert_eq!(
        sys.count("control", "SELECT count(*) FROM accounts"),
        accounts
    );

    // Within bounds.
    let (status, child) = sys
        .post(
            "/x-users",
            &main_key,
            json!({"name": "team", "policy": {"models": ["gpt-4o-mini"], "rpm": 50}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let child_id = child["account"]["id"].as_str().unwrap().to_owned();
    let (_, sibling) = sys
        .post("/x-users", &main_key, json!({"name": "other"}))
        .await;
    let sibling_key = sibling["api_key"].as_str().unwrap().to_owned();
    let sibling_id = sibling["account"]["id"].as_str().unwrap().to_owned();

    let (status, view) = info(main_key.clone(), Some(child_id.clone())).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["effective_policy"]["models"], json!(["gpt-4o-mini"]));
    assert_eq!(view["effective_policy"]["rpm"], 50);
    assert_eq!(
        view["effective_policy"]["client_cidrs"],
        json!(["10.0.0.0/8", "127.0.0.0/8"])
    );
    assert_eq!(
        view["policy"],
        json!({"models": ["gpt-4o-mini"], "rpm": 50})
    );
    assert_eq!(view["ancestors"], json!([main_id]));

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

    // The dashboard lists exactly what the data plane lets each account call.
    let models = |key: String| {
        let call = sys.call(Method::GET, "/dashboard/models".into(), key, None);
        async move { call.await.1["models"].clone() }
    };
    assert_eq!(models(child_key.clone()).await, json!(["gpt-4o-mini"]));
    assert_eq!(
        models(main_key.clone()).await,
        json!(["claude*", "gpt-4o*"])
    );
    assert_eq!(
        sys.call(
            Method::GET,
            "/dashboard/models".into(),
            sys.root.clone(),
            None
        )
        .await
        .0,
        403
    );
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

    // The operator narrows the main account: the child's effective policy narrows at
    // once, its own policy is untouched.
    let (status, v) = patch(
        format!("/x-users/{main_id}"),
        sys.root.clone(),
        json!({"policy": {"models": ["claude*"]}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // The data plane enforces the narrowed policy from the next snapshot on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(child_key.clone(), "gpt-4o-mini").await.0 != 403 {
        assert!(Instant::now() < deadline, "narrowed parent not enforced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, view) = info(child_key.clone(), None).await;
    assert_eq!(view["effective_policy"]["models"], json!([]));
    assert_eq!(view["effective_policy"]["rpm"], 50);
    assert_eq!(
        view["policy"],
        json!({"models": ["gpt-4o-mini"], "rpm": 50})
    );
    let (status, err) = patch(
        format!("/x-users/{child_id}"),
        main_key.clone(),
        json!({"policy": {"models": ["gpt-4o-mini"]}}),
    )
    .await;
    assert_eq!(status, 422, "{err}");

    // Only ancestors change an account; other trees stay invisible.
    let (status, _) = patch(
        format!("/x-users/{child_id}"),
        child_key.clone(),
        json!({"name": "me"}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = patch(
        format!("/x-users/{main_id}"),
        child_key.clone(),
        json!({"name": "boss"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = patch(
        format!("/x-users/{child_id}"),
        sibling_key.clone(),
        json!({"name": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = info(sibling_key.clone(), Some(child_id.clone())).await;
    assert_eq!(status, 404);
    let (status, _) = info(child_key.clone(), Some(main_id.clone())).await;
    assert_eq!(status, 404);
    let (status, v) = info(sibling_key.clone(), None).await;
    assert_eq!(
        (status, v["account"]["id"].as_str()),
        (200, Some(sibling_id.as_str()))
    );

    // Bad updates change nothing.
    let revision = sys.count("control", "SELECT revision FROM config_revision");
    for (path, body, want) in [
        (
            format!("/x-users/{child_id}"),
            json!({"status": "paused"}),
            400,
        ),
        (format!("/x-users/{child_id}"), json!({}), 400),
        (
            format!("/x-users/{child_id}"),
            json!({"policy": {"client_cidrs": ["10.0.0.0/33"]}}),
            400,
        ),
        (
            format!("/x-users/{child_id}"),
            json!({"policy": {"rpm": 0}}),
            400,
        ),
        (format!("/x-users/{child_id}"), json!({"nmae": "typo"}), 400),
        (format!("/x-users/{child_id}"), json!({"name": ""}), 400),
        (
            format!("/x-users/{}", switchyard_core::ids::AccountId::new()),
            json!({"name": "x"}),
            404,
        ),
        ("/x-users/not-an-id".to_owned(), json!({"name": "x"}), 400),
    ] {
        let (status, v) = patch(path.clone(), main_key.clone(), body.clone()).await;
        assert_eq!(status, want, "{path} {body} → {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    assert_eq!(
        sys.count("control", "SELECT revision FROM config_revision"),
        revision
    );

    // Disabling an account reaches the data plane: its key stops working.
    wait_for_key(&sys, &sibling_key).await;
    let (status, _) = patch(
        format!("/x-users/{sibling_id}"),
        main_key.clone(),
        json!({"status": "disabled"}),
    )
    .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
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
            break;
        }
        assert!(
            Instant::now() < deadline,
            "disabled account still served: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And its Manage API access ends at once.
    let (status, _) = info(sibling_key, None).await;
    assert_eq!(status, 403);
}

/// Several keys per account, expiry, revocation, and rotation with and without an
/// overlap window, seen by the Manage API and by the data plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_keys_rotate_expire_and_revoke() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, main_key) = sys.owner("acme", &fake).await;
    let (_, child) = sys
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    let child_id = child["account"]["id"].as_str().unwrap().to_owned();
    let (_, sibling) = sys
        .post("/x-users", &main_key, json!({"name": "other"}))
        .await;
    let sibling_key = sibling["api_key"].as_str().unwrap().to_owned();
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
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = proxy_status(key.clone()).await;
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "expected {want}, still {got}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    // A second key, then its revocation.
    let (status, extra) = sys.post("/x-self/keys", &main_key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{extra}");
    let extra_key = extra["api_key"].as_str().unwrap().to_owned();
    let extra_id = extra["key"]["id"].as_str().unwrap().to_owned();
    assert!(apikey::is_well_formed(&extra_key));
    eventually(extra_key.clone(), 200).await;
    let me: Value = sys
        .http
        .get(sys.admin("/x-self"))
        .bearer_auth(&main_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["keys"].as_array().unwrap().len(), 2);
    assert_eq!(me["keys"][0]["in_use"], true);
    assert_eq!(me["account"]["name"], "acme");
    assert!(
        !me.to_string().contains(&extra_key),
        "a listed key shows only its tail"
    );
    let r = sys
        .http
        .delete(sys.admin(&format!("/x-self/keys/{extra_id}")))
        .bearer_auth(&main_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually(extra_key.clone(), 401).await;
    let r = sys
        .http
        .get(sys.admin("/x-self"))
        .bearer_auth(&extra_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A key that expires: refused once the time has passed.
    let soon = switchyard_core::time::parse_utc_day("2000-01-01").unwrap();
    let (status, _) = sys
        .post(
            "/x-self/keys",
            &main_key,
            json!({"expires_at_unix_ms": soon}),
        )
        .await;
    assert_eq!(status.as_u16(), 400);
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

    // A parent issues a key for its child; a sibling cannot.
    let (status, issued) = sys
        .post(&format!("/x-users/{child_id}/keys"), &main_key, json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    eventually(issued["api_key"].as_str().unwrap().to_owned(), 200).await;
    let (status, _) = sys
        .post(
            &format!("/x-users/{child_id}/keys"),
            &sibling_key,
            json!({}),
        )
        .await;
    assert_eq!(status.as_u16(), 404);

    // Rotation with an overlap: both keys work for now.
    let (status, rotated) = sys
        .post("/x-self/rotate", &main_key, json!({"overlap_seconds": 600}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    eventually(new_key.clone(), 200).await;
    assert_eq!(proxy_status(main_key.clone()).await, 200);
    // Rotation without one: the key used stops at once, on the Manage API and, with the
    // next snapshot, on the proxy.
    let (status, again) = sys.post("/x-self/rotate", &new_key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let newest = again["api_key"].as_str().unwrap().to_owned();
    let r = sys
        .http
        .get(sys.admin("/x-self"))
        .bearer_auth(&new_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    eventually(new_key.clone(), 401).await;
    eventually(newest.clone(), 200).await;

    // Bad input changes nothing.
    let revision = sys.count("control", "SELECT revision FROM config_revision");
    for (path, body) in [
        ("/x-self/rotate", json!({"overlap_seconds": 99_999_999})),
        ("/x-self/rotate", json!({"overlap": 5})),
        ("/x-self/keys", json!({"expires_at_unix_ms": "tomorrow"})),
    ] {
        let (status, v) = sys.post(path, &newest, body.clone()).await;
        assert_eq!(status.as_u16(), 400, "{path} {body} → {v}");
    }
    for (path, key, want) in [
        ("/x-self/keys/not-a-key".to_owned(), newest.clone(), 400u16),
        (
            format!("/x-self/keys/{}", switchyard_core::ids::IssuedKeyId::new()),
            newest.clone(),
            404,
        ),
        (format!("/x-self/keys/{extra_id}"), sibling_key.clone(), 404),
    ] {
        let r = sys
            .http
            .delete(sys.admin(&path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{path}");
    }
    let r = sys
        .http
        .get(sys.admin("/x-self"))
        .bearer_auth(&sys.root)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        sys.count("control", "SELECT revision FROM config_revision"),
        revision
    );
}

/// Provider keys: list, get, update (a new secret reaches the upstream), disable,
/// delete; only the owning main account sees them; the secret never comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_lifecycle() {
    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, main) = sys
        .post("/x-users", &sys.root, json!({"name": "acme"}))
        .await;
    let main_key = main["api_key"].as_str().unwrap().to_owned();
    let (_, other) = sys
        .post("/x-users", &sys.root, json!({"name": "other"}))
        .await;
    let other_key = other["api_key"].as_str().unwrap().to_owned();
    let (_, child) = sys
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let (status, pk) = sys
        .post(
            "/x-keys",
            &main_key,
            json!({"provider": "openai", "base_url": fake.base_url(), "secret": "sk-first-secret-0001", "models": ["gpt*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = pk["id"].as_str().unwrap().to_owned();
    assert_eq!(pk["health"], "unknown");
    let send = |method: Method, path: String, key: String, body: Option<Value>| {
        sys.call(method, path, key, body)
    };

    let (status, list) = send(Method::GET, "/x-keys".into(), main_key.clone(), None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("sk-first-secret"));
    let (status, one) = send(Method::GET, format!("/x-keys/{id}"), main_key.clone(), None).await;
    assert_eq!(
        (status, one["secret_hint"].as_str()),
        (200, Some("****0001"))
    );
    assert_eq!(
        send(Method::GET, "/x-keys".into(), child_key.clone(), None)
            .await
            .0,
        403
    );
    assert_eq!(
        send(
            Method::GET,
            format!("/x-keys/{id}"),
            other_key.clone(),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        send(
            Method::PATCH,
            format!("/x-keys/{id}"),
            other_key.clone(),
            Some(json!({"level": 2}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        send(
            Method::DELETE,
            format!("/x-keys/{id}"),
            other_key.clone(),
            None
        )
        .await
        .0,
        404
    );

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
    assert_eq!(
        (v["secret_hint"].as_str(), v["level"].as_u64()),
        (Some("****0002"), Some(2))
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
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
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new secret never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Bad updates change nothing.
    let revision = sys.count("control", "SELECT revision FROM config_revision");
    for body in [
        json!({}),
        json!({"status": "paused"}),
        json!({"models": []}),
        json!({"models": ["a*b"]}),
        json!({"weight": 0}),
        json!({"secret": "  "}),
        json!({"base_url": "ftp://x"}),
        json!({"provider": "cohere"}),
        json!({"colour": "red"}),
    ] {
        let (status, v) = send(
            Method::PATCH,
            format!("/x-keys/{id}"),
            main_key.clone(),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body} → {v}");
    }
    assert_eq!(
        send(Method::GET, "/x-keys/nope".into(), main_key.clone(), None)
            .await
            .0,
        400
    );
    assert_eq!(
        sys.count("control", "SELECT revision FROM config_revision"),
        revision
    );

    // Disabled: nothing serves the model any more; deleted: gone.
    let (status, _) = send(
        Method::PATCH,
        format!("/x-keys/{id}"),
        main_key.clone(),
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while call().await != 404 {
        assert!(
            Instant::now() < deadline,
            "a disabled provider key still serves"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        send(
            Method::DELETE,
            format!("/x-keys/{id}"),
            main_key.clone(),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        send(Method::GET, format!("/x-keys/{id}"), main_key.clone(), None)
            .await
            .0,
        404
    );
    assert_eq!(
        sys.count("control", "SELECT count(*) FROM provider_keys"),
        0
    );

    // Every change is in the owner's audit log, newest first, secrets redacted.
    let (status, log) = send(Method::GET, "/x-audit".into(), main_key.clone(), None).await;
    assert_eq!(status, 200, "{log}");
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "provider_key.delete",
            "provider_key.update",
            "provider_key.update",
            "provider_key.create",
            "account.create",
            "account.create",
        ]
    );
    let text = log.to_string();
    assert!(
        !text.contains("sk-first-secret") && !text.contains("sk-second-secret"),
        "{text}"
    );
    let update = &log[2];
    assert_eq!(update["before"]["secret_hint"], "****0001");
    assert_eq!(update["after"]["secret_hint"], "****0002");
    assert_eq!(update["actor"], main["account"]["id"]);
    let seq = log[0]["seq"].as_i64().unwrap();
    let (_, older) = send(
        Method::GET,
        format!("/x-audit?before={seq}&limit=2"),
        main_key.clone(),
        None,
    )
    .await;
    assert_eq!(older.as_array().unwrap().len(), 2);
    assert_eq!(older[0]["action"], "provider_key.update");
    let (_, theirs) = send(Method::GET, "/x-audit".into(), other_key.clone(), None).await;
    assert_eq!(theirs.as_array().unwrap().len(), 1);
    assert_eq!(
        send(Method::GET, "/x-audit".into(), child_key.clone(), None)
            .await
            .0,
        403
    );
    assert_eq!(
        send(
            Method::GET,
            "/x-audit?limit=0".into(),
            main_key.clone(),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        send(
            Method::GET,
            "/x-audit?limit=x".into(),
            main_key.clone(),
            None
        )
        .await
        .0,
        400
    );
    let (status, everything) = send(Method::GET, "/x-audit".into(), sys.root.clone(), None).await;
    assert_eq!(status, 200);
    assert_eq!(everything.as_array().unwrap().len(), 7);
}

/// The tree: children and descendants paged, deletion refused while descendants
/// exist unless cascading, and deleted accounts' keys stop working everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_tree_listing_and_deletion() {
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
    let dev_id = dev["account"]["id"].as_str().unwrap().to_owned();
    sys.post("/x-users", &main_key, json!({"name": "ops"}))
        .await;
    let get = |path: String, key: String| sys.call(Method::GET, path, key, None);
    let delete = |path: String, key: String| sys.call(Method::DELETE, path, key, None);
    let names = |v: &Value| -> Vec<(String, u64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["depth"].as_u64().unwrap(),
                )
            })
            .collect()
    };

    let (status, dna) = get("/x-dna".into(), main_key.clone()).await;
    assert_eq!(status, 200, "{dna}");
    assert_eq!(
        names(&dna),
        vec![("team".into(), 1), ("ops".into(), 1), ("dev".into(), 2)]
    );
    let (_, children) = get("/x-users".into(), main_key.clone()).await;
    assert_eq!(
        names(&children),
        vec![("team".into(), 1), ("ops".into(), 1)]
    );
    let (_, page) = get("/x-dna?offset=1&limit=1".into(), main_key.clone()).await;
    assert_eq!(names(&page), vec![("ops".into(), 1)]);
    let (_, sub) = get(format!("/x-dna?id={team_id}"), main_key.clone()).await;
    assert_eq!(names(&sub), vec![("dev".into(), 1)]);
    let (_, mine) = get("/x-dna".into(), team_key.clone()).await;
    assert_eq!(names(&mine), vec![("dev".into(), 1)]);
    assert_eq!(
        get(format!("/x-dna?id={team_id}"), dev_key.clone()).await.0,
        404
    );
    let (status, mains) = get("/x-users".into(), sys.root.clone()).await;
    assert_eq!((status, names(&mains)), (200, vec![("acme".into(), 1)]));
    for bad in [
        "/x-dna?limit=0",
        "/x-dna?id=nope",
        "/x-dna?offset=-1",
        "/x-dna?depth=2",
    ] {
        assert_eq!(get(bad.into(), main_key.clone()).await.0, 400, "{bad}");
    }

    // Deletion: refused while descendants exist, unless cascading.
    wait_for_key(&sys, &dev_key).await;
    let accounts = sys.count("control", "SELECT count(*) FROM accounts");
    let (status, err) = delete(format!("/x-users/{team_id}"), main_key.clone()).await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cascade")
    );
    assert_eq!(
        delete(format!("/x-users/{team_id}?cascade=true"), dev_key.clone())
            .await
            .0,
        404
    );
    assert_eq!(
        delete(format!("/x-users/{team_id}?cascade=true"), team_key.clone())
            .await
            .0,
        403
    );
    assert_eq!(
        delete(
            format!("/x-users/{team_id}?cascade=maybe"),
            main_key.clone()
        )
        .await
        .0,
        400
    );
    assert_eq!(
        sys.count("control", "SELECT count(*) FROM accounts"),
        accounts
    );
    let (status, done) = delete(format!("/x-users/{team_id}?cascade=true"), main_key.clone()).await;
    assert_eq!((status, done["deleted"].as_u64()), (200, Some(2)), "{done}");
    assert_eq!(
        sys.count("control", "SELECT count(*) FROM accounts"),
        accounts - 2
    );
    assert_eq!(get("/x-self".into(), dev_key.clone()).await.0, 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = sys
            .http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(&dev_key)
            .json(&chat("x", false))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a deleted account's key still works"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        get(format!("/x-info?id={dev_id}"), main_key.clone())
            .await
            .0,
        404
    );
    let (_, log) = get("/x-audit?limit=1".into(), main_key.clone()).await;
    assert_eq!(log[0]["action"], "account.delete");
    assert_eq!(log[0]["before"]["name"], "team");
}

/// Rules of a main account: the whole document (`/x-conf`) and single entries
/// (`/x-config`), validated as a whole; a bad edit changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_validated_as_a_whole() {
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
    let (_, child) = sys
        .post("/x-users", &main_key, json!({"name": "team"}))
        .await;
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let call = |method: Method, path: &str, body: Option<Value>| {
        sys.call(method, path.to_owned(), main_key.clone(), body)
    };

    let (status, empty) = call(Method::GET, "/x-conf", None).await;
    assert_eq!((status, empty), (200, json!({})));
    let doc = json!({
        "model_mapper": {"gpt-4": "gpt-4o", "old": "gpt-4"},
        "level_mapper": {"gpt-4o*": 1, "*": 2},
        "switch_over": {"1": 2},
        "resources": ["/v1/chat/completions"],
        "model_limits": {"gpt-4o*": {"rpm": 100, "tpm": 100000}},
        "pricing": {"gpt-4o*": {"input_per_million_nanos": 2500000000u64, "cached_input_per_million_nanos": 0,
                                 "output_per_million_nanos": 10000000000u64, "per_request_nanos": 0}}
    });
    let (status, stored) = call(Method::PUT, "/x-conf", Some(doc.clone())).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(call(Method::GET, "/x-conf", None).await.1, doc);

    // Whole-document problems are all named, and nothing changes.
    let revision = sys.count("control", "SELECT revision FROM config_revision");
    let (status, err) = call(
        Method::PUT,
        "/x-conf",
        Some(json!({"model_mapper": {"a": "b", "b": "a"}, "level_mapper": {"x*": 9}, "switch_over": {"1": 2, "2": 1}})),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    for want in ["mapping cycle", "level 9 has no provider key", "never ends"] {
        assert!(message.contains(want), "{message} should say {want}");
    }
    for (method, path, body, want) in [
        (
            Method::PUT,
            "/x-conf",
            json!({"pricing": {"m": {"input_per_million_nanos": -1}}}),
            400,
        ),
        (Method::PUT, "/x-conf", json!({"levels": {}}), 400),
        (Method::PATCH, "/x-conf", json!({"bogus": {}}), 400),
        (Method::PUT, "/x-config/levels?key=a", json!(1), 400),
        (Method::PUT, "/x-config/switch_over?key=2", json!(1), 422),
        (Method::PUT, "/x-config/level_mapper?key=g*x", json!(1), 400),
        (Method::PUT, "/x-config/model_mapper", json!("x"), 400),
        (
            Method::DELETE,
            "/x-config/model_mapper?key=nope",
            Value::Null,
            404,
        ),
    ] {
        let (status, v) = call(method.clone(), path, Some(body.clone())).await;
        assert_eq!(status, want, "{method} {path} {body} → {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    assert_eq!(
        sys.count("control", "SELECT revision FROM config_revision"),
        revision
    );
    assert_eq!(call(Method::GET, "/x-conf", None).await.1, doc);

    // Sections replace only themselves; entries one at a time.
    let (status, v) = call(Method::PATCH, "/x-conf", Some(json!({"resources": null}))).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("resources").is_none());
    assert_eq!(v["model_mapper"], doc["model_mapper"]);
    let (status, v) = call(
        Method::PUT,
        "/x-config/model_mapper?key=legacy",
        Some(json!("gpt-4o")),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, section) = call(Method::GET, "/x-config/model_mapper", None).await;
    assert_eq!(
        section,
        json!({"gpt-4": "gpt-4o", "legacy": "gpt-4o", "old": "gpt-4"})
    );
    let (status, _) = call(Method::DELETE, "/x-config/model_mapper?key=legacy", None).await;
    assert_eq!(status, 200);
    let (status, v) = call(Method::PUT, "/x-config/resources?key=/v1/audio/*", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resources"], json!(["/v1/audio/*"]));
    assert_eq!(call(Method::GET, "/x-config/nope", None).await.0, 400);

    // Only a main account has rules.
    assert_eq!(
        sys.call(Method::GET, "/x-conf".into(), child_key.clone(), None)
            .await
            .0,
        403
    );
    assert_eq!(
        sys.call(Method::PUT, "/x-conf".into(), child_key, Some(json!({})))
            .await
            .0,
        403
    );
    let (_, log) = call(Method::GET, "/x-audit?limit=1", None).await;
    assert_eq!(log[0]["action"], "rules.update");
    assert_eq!(log[0]["after"]["resources"], json!(["/v1/audio/*"]));

    // The rules reach the data plane: the Resources rule bounds every account of the
    // tree, and prices turn into the cost of each call.
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = proxy(&main_key).await;
        if status == 403 {
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("/v1/chat/completions is not among"),
                "{v}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Resources rule never reached the data plane"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = call(Method::PATCH, "/x-conf", Some(json!({"resources": null}))).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy(&main_key).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "clearing the Resources rule never reached the data plane"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (input, output) = expected_tokens("be brief", "hi");
    // gpt-4o* costs 2,500 nano-dollars per input token and 10,000 per output token.
    let per_call = i64::try_from(input * 2_500 + output * 10_000).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bill = sys.bill(&main_key).await;
        if let Some(row) = bill["rows"].as_array().unwrap().first() {
            let requests = row["requests"].as_i64().unwrap();
            assert_eq!(
                row["cost_nanos"].as_i64().unwrap(),
                per_call * requests,
                "{bill}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "usage never reached the bill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while sys.status().await["data_planes"]
        .as_array()
        .is_none_or(|d| d.len() != 1)
    {
        assert!(Instant::now() < deadline, "the data plane never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(25);
    while !sys.control.log().contains("not re-sealing yet") {
        assert!(Instant::now() < deadline, "{}", sys.control.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sealed_under(&sys), "k1");
    assert_eq!(call(&sys).await, StatusCode::OK);

    // The data plane gets the new keyring: the next look re-seals, and calls go on.
    sys.data_kek = both.clone();
    let replacement = sys.another_data_plane(&[]).await;
    let mut previous = std::mem::replace(&mut sys.data, replacement);
    previous.kill();
    // A new leader first lets data planes reconnect (`reseal::SETTLE`, 10 s).
    let deadline = Instant::now() + Duration::from_secs(25);
    while sealed_under(&sys) != "k2" {
        assert!(Instant::now() < deadline, "{}", sys.control.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_key(&sys, &main_key).await;
    assert_eq!(call(&sys).await, StatusCode::OK);
    last_audit_is_a_reseal_to(&sys, &main_key, "k2").await;
}

/// The Admin face over gRPC: provider keys, rules and the audit log, with the REST
/// face's validation and refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_admin_face_matches_rest() {
    use switchyard_proto::v1 as pb;
    use switchyard_proto::v1::admin_service_client::AdminServiceClient;
    use tonic::Code;

    let sys = start_system(32 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, key) = sys.owner("acme", &fake).await;
    let (_, child) = sys.post("/x-users", &key, json!({"name": "team"})).await;
    let child_key = child["api_key"].as_str().unwrap().to_owned();
    let channel = tonic::transport::Endpoint::from_shared(sys.control.url("grpc"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = AdminServiceClient::new(channel);

    let keys = admin
        .list_provider_keys(authed(&key, pb::ListProviderKeysRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.keys.len(), 1);
    let id = keys.keys[0].id.clone();
    assert_eq!(keys.keys[0].health, "unknown");
    let updated = admin
        .update_provider_key(authed(
            &key,
            pb::UpdateProviderKeyRequest {
                id: id.clone(),
                models: Some(pb::StringList {
                    values: vec!["gpt*".into()],
                }),
                level: Some(2),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.level, updated.models.clone()),
        (2, vec!["gpt*".to_owned()])
    );
    let err = admin
        .update_provider_key(authed(
            &key,
            pb::UpdateProviderKeyRequest {
                id: id.clone(),
                weight: Some(0),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = admin
        .get_provider_key(authed(
            &child_key,
            pb::GetProviderKeyRequest { id: id.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        admin
            .get_provider_key(authed(&key, pb::GetProviderKeyRequest { id: id.clone() }))
            .await
            .unwrap()
            .into_inner()
            .level,
        2
    );

    // Rules: whole, patched, by entry; refused documents change nothing.
    let rules = pb::Rules {
        model_mapper: [("gpt-4".to_owned(), "gpt-4o".to_owned())].into(),
        level_mapper: [("gpt*".to_owned(), 2)].into(),
        ..Default::default()
    };
    let stored = admin
        .put_rules(authed(&key, pb::PutRulesRequest { rules: Some(rules) }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored.model_mapper.get("gpt-4").map(String::as_str),
        Some("gpt-4o")
    );
    let bad = pb::Rules {
        switch_over: [(2, 7)].into(),
        ..Default::default()
    };
    let err = admin
        .put_rules(authed(&key, pb::PutRulesRequest { rules: Some(bad) }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("backup level 7 has no provider key"),
        "{}",
        err.message()
    );
    let patched = admin
        .patch_rules(authed(
            &key,
            pb::PatchRulesRequest {
                rules: Some(pb::Rules {
                    resources: Some(pb::StringList {
                        values: vec!["/v1/chat/completions".into()],
                    }),
                    ..Default::default()
                }),
                sections: vec!["resources".into(), "model_mapper".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(patched.model_mapper.is_empty());
    assert_eq!(patched.level_mapper.get("gpt*"), Some(&2));
    assert_eq!(
        patched.resources.unwrap().values,
        vec!["/v1/chat/completions".to_owned()]
    );
    let with_price = admin
        .put_rule_entry(authed(
            &key,
            pb::PutRuleEntryRequest {
                section: "pricing".into(),
                key: "gpt*".into(),
                value_json: r#"{"per_request_nanos": 5}"#.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_price.pricing["gpt*"].per_request_nanos, 5);
    let err = admin
        .put_rule_entry(authed(
            &key,
            pb::PutRuleEntryRequest {
                section: "pricing".into(),
                key: "gpt*".into(),
                value_json: "{".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let cleared = admin
        .delete_rule_entry(authed(
            &key,
            pb::DeleteRuleEntryRequest {
                section: "pricing".into(),
                key: "gpt*".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(cleared.pricing.is_empty());
    assert_eq!(
        admin
            .get_rules(authed(&key, pb::GetRulesRequest {}))
            .await
            .unwrap()
            .into_inner(),
        cleared
    );
    let err = admin
        .get_rules(authed(&child_key, pb::GetRulesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The audit log holds all of it, newest first.
    let audit = admin
        .get_audit(authed(
            &key,
            pb::GetAuditRequest {
                before: None,
                limit: 3,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = audit.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec!["rules.update", "rules.update", "rules.update"]
    );
    admin
        .delete_provider_key(authed(
            &key,
            pb::DeleteProviderKeyRequest { id: id.clone() },
        ))
        .await
        .unwrap();
    let err = admin
        .get_provider_key(authed(&key, pb::GetProviderKeyRequest { id }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
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

    // Only the direct parent sets billing; bad billing is refused.
    let patch = |path: String, key: &str, body: Value| {
        sys.call(Method::PATCH, path, key.to_owned(), Some(body))
    };
    assert_eq!(
        patch(
            format!("/x-users/{customer_id}"),
            &main_key,
            json!({"billing": {}})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        patch(
            format!("/x-users/{customer_id}"),
            &reseller_key,
            json!({"billing": {"multiplier_ppm": 5_000_000_000u64}})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        patch(
            format!("/x-users/{customer_id}"),
            &reseller_key,
            json!({"billing": {"markup": 2}})
        )
        .await
        .0,
        400
    );
    let (_, info) = sys
        .call(
            Method::GET,
            format!("/x-info?id={customer_id}"),
            reseller_key.clone(),
            None,
        )
        .await;
    assert_eq!(
        info["billing"]["prices"]["gpt*"]["per_request_nanos"],
        1_000_000
    );

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
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let bill = sys.bill(&main_key).await;
        let rows = bill["rows"].as_array().unwrap().clone();
        if rows.len() == 2 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached the bill: {bill}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
