//! Passthrough provider keys against the real processes and the fake's subscription
//! logins (`fake-upstream/src/logins.rs`): Claude Code's OAuth login and Codex's
//! ChatGPT login, with the exact headers those clients send, their issued Switchyard
//! key in `x-switchyard-key`. The caller's credential arrives upstream unchanged
//! (with its beta flags and ChatGPT account); the call is metered to the sub-account
//! whose key it carried; without that key, or with a bad one, nothing goes upstream;
//! one caller's refused login does not put the key to sleep for another; the
//! credential is in no process's log, no trace, no usage event and no table of
//! either database; and the command line adds and exports such keys without a secret.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::{Behaviour, FakeUpstream};
use switchyard_tests::cli::Site;
use switchyard_tests::otlp::OtlpReceiver;
use switchyard_tests::system::{System, settle, start_system_env, usage_logs, wait_for_key};
use switchyard_tests::wait;

/// Claude Code's OAuth access token for one caller (its shape, made up).
const CLAUDE_TOKEN: &str = "sk-ant-oat01-Pa55thr0ughT0kenOfAliceXyZ0123456789abcdefABCDEF";
/// Another caller's token, which the provider refuses (an expired login).
const REVOKED_TOKEN: &str = "sk-ant-oat01-Exp1redT0kenOfBobQwErTy9876543210fedcbaFEDCBA";
/// The beta flags Claude Code sends with its OAuth login.
const CLAUDE_BETAS: &str = "oauth-2025-04-20,claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14";
/// Codex's ChatGPT login: a JWT (its shape, made up) and the account it acts for.
const CODEX_JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjb2RleC1wYXNzdGhyb3VnaC10ZXN0In0.U2lnbmF0dXJlT2ZUaGVDb2RleExvZ2luMDEyMzQ1";
const CODEX_ACCOUNT: &str = "a1b2c3d4-0000-4e5f-8a9b-codexaccount";

/// The system with every process logging at debug level: the strongest test of what
/// its logs never hold.
async fn start() -> System {
    start_with(&[]).await
}

/// [`start`] with more environment for every process.
async fn start_with(env: &[(&str, &str)]) -> System {
    let kek = Keyring::generate_spec("k1").to_string();
    let env: Vec<(&str, &str)> = [("RUST_LOG", "debug")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    start_system_env(4 * 1024 * 1024, &kek, &kek, &[], &env).await
}

/// Every span received once the calls' are in: `messages` Messages calls and one
/// Responses call, each with its attempts.
async fn traces(otlp: &OtlpReceiver, messages: usize) -> String {
    wait::until_ok(Duration::from_secs(20), "the calls' traces", async || {
        let spans = otlp.spans();
        let named = |n: &str| spans.iter().filter(|s| s.name == n).count();
        if named("/v1/messages") >= messages
            && named("/v1/responses") >= 1
            && named("upstream") >= 3
        {
            Ok(format!("{spans:?}"))
        } else {
            Err(format!("{spans:#?}"))
        }
    })
    .await
}

/// A main account with a passthrough key for each login and a sub-account `dev`:
/// the main account's key, dev's key and dev's account id, once the data plane has
/// them all.
async fn owner(sys: &System, fake: &FakeUpstream) -> (String, String, String) {
    let (status, created) = sys
        .post("/x-users", &sys.root, json!({"name": "acme"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let main = created["api_key"].as_str().unwrap().to_owned();
    for (protocol, path, models) in [
        ("anthropic", "/claude", json!(["claude-*"])),
        ("openai", "/backend-api/codex", json!(["gpt-5*"])),
    ] {
        let (status, pk) = sys
            .post(
                "/x-keys",
                &main,
                json!({"provider": "passthrough", "protocol": protocol, "base_url": format!("http://{}{path}", fake.addr), "models": models}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pk}");
        assert_eq!(pk["secret_hint"], "", "{pk}");
    }
    let (status, dev) = sys.post("/x-users", &main, json!({"name": "dev"})).await;
    assert_eq!(status, StatusCode::CREATED, "{dev}");
    let dev_key = dev["api_key"].as_str().unwrap().to_owned();
    let dev_id = dev["account"]["id"].as_str().unwrap().to_owned();
    wait_for_key(sys, &dev_key).await;
    settle(sys).await;
    (main, dev_key, dev_id)
}

/// A Messages call as Claude Code makes it with its OAuth login: its bearer and
/// beta flags, `x-app`, its User-Agent, and (when given) the issued key.
async fn claude_call(
    sys: &System,
    token: &str,
    switchyard_key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = sys
        .http
        .post(sys.proxy("/v1/messages"))
        .header("authorization", format!("Bearer {token}"))
        .header("anthropic-beta", CLAUDE_BETAS)
        .header("anthropic-version", "2023-06-01")
        .header("x-app", "cli")
        .header("user-agent", "claude-cli/2.1.12 (external, cli)")
        .json(&json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."}],
            "messages": [{"role": "user", "content": "say hi"}],
        }));
    if let Some(key) = switchyard_key {
        request = request.header("x-switchyard-key", key);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A Responses stream as Codex makes it with its ChatGPT login.
async fn codex_call(sys: &System, switchyard_key: &str) -> (StatusCode, String) {
    let r = sys
        .http
        .post(sys.proxy("/v1/responses"))
        .header("authorization", format!("Bearer {CODEX_JWT}"))
        .header("chatgpt-account-id", CODEX_ACCOUNT)
        .header("originator", "codex_cli_rs")
        .header("openai-beta", "responses=experimental")
        .header("session_id", "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
        .header("user-agent", "codex_cli_rs/0.46.0 (Debian 12; x86_64)")
        .header("accept", "text/event-stream")
        .header("x-switchyard-key", switchyard_key)
        .json(&json!({
            "model": "gpt-5-codex",
            "instructions": "You are Codex.",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}],
            "stream": true,
            "store": false,
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.text().await.unwrap_or_default())
}

/// A header the fake's last call carried.
fn last_header(fake: &FakeUpstream, name: &str) -> Option<String> {
    fake.last_header(name)
}

/// The fake's last call carried these headers with exactly these values.
fn arrived(fake: &FakeUpstream, headers: &[(&str, &str)]) {
    for (name, value) in headers {
        assert_eq!(last_header(fake, name).as_deref(), Some(*value), "{name}");
    }
}

/// Both logins go upstream unchanged, governed and metered to the caller's
/// sub-account; calls without their issued key are refused before the upstream; no
/// credential is left in any log, trace, event or table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_logins_pass_through_governed_and_leave_no_trace() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let sys = start_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (main, dev_key, dev_id) = owner(&sys, &fake).await;

    // Claude Code's login: its bearer and beta flags arrive as they left.
    let (status, body) = claude_call(&sys, CLAUDE_TOKEN, Some(&dev_key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["type"], "message", "{body}");
    arrived(
        &fake,
        &[
            ("authorization", &format!("Bearer {CLAUDE_TOKEN}")),
            ("anthropic-beta", CLAUDE_BETAS),
        ],
    );
    assert!(
        last_header(&fake, "user-agent").is_some_and(|ua| ua.starts_with("claude-cli/2.1.12")),
        "{:?}",
        last_header(&fake, "user-agent")
    );
    for never in ["x-switchyard-key", "x-api-key"] {
        assert_eq!(last_header(&fake, never), None, "{never}");
    }
    assert_eq!(fake.calls_with(CLAUDE_TOKEN), 1);

    // Codex's login: its bearer and ChatGPT account, on the Responses stream.
    let (status, stream) = codex_call(&sys, &dev_key).await;
    assert_eq!(status, StatusCode::OK, "{stream}");
    assert!(stream.contains("response.completed"), "{stream}");
    arrived(
        &fake,
        &[
            ("authorization", &format!("Bearer {CODEX_JWT}")),
            ("chatgpt-account-id", CODEX_ACCOUNT),
            ("originator", "codex_cli_rs"),
        ],
    );
    assert_eq!(last_header(&fake, "x-switchyard-key"), None);
    assert_eq!(fake.calls_with(CODEX_JWT), 1);

    // Without the issued key (the login alone), or with a bad one: refused in
    // Anthropic's shape, and nothing reaches the upstream.
    let upstream_calls = fake.calls();
    let (status, body) = claude_call(&sys, CLAUDE_TOKEN, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        (&body["type"], &body["error"]["type"]),
        (&json!("error"), &json!("authentication_error")),
        "{body}"
    );
    let (status, body) = claude_call(&sys, CLAUDE_TOKEN, Some("sk-sy-not-a-real-key")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    // The issued key alone, as an ordinary client sends it: no credential of its
    // own for a passthrough key, so told what to send.
    let r = sys
        .http
        .post(sys.proxy("/v1/messages"))
        .header("x-api-key", &dev_key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-switchyard-key"),
        "{body}"
    );
    assert_eq!(fake.calls(), upstream_calls, "nothing went upstream");
    assert_eq!(fake.calls_with(CLAUDE_TOKEN), 1);

    // A refused login: the provider's own answer, to its caller.
    fake.set_behaviour(REVOKED_TOKEN, Behaviour::Reject);
    let (status, body) = claude_call(&sys, REVOKED_TOKEN, Some(&dev_key)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body["error"]["message"], "OAuth token has expired",
        "{body}"
    );

    // Metered to dev, whose key the calls carried: the two answered ones and the
    // refused login.
    let events = usage_logs(&sys, &main, 3).await;
    let ours: Vec<&Value> = events
        .iter()
        .filter(|e| e["account_id"] == json!(dev_id))
        .collect();
    assert_eq!(ours.len(), 3, "{events:?}");
    let mut statuses: Vec<i64> = ours.iter().map(|e| e["status"].as_i64().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 401], "{events:?}");
    assert!(
        ours.iter().any(|e| e["path"] == "/v1/responses"),
        "{events:?}"
    );

    // No credential anywhere: logs of every process, traces, usage events, both
    // databases.
    let secrets = [
        CLAUDE_TOKEN,
        REVOKED_TOKEN,
        CODEX_JWT,
        // The secret parts alone, in case a prefix were cut.
        &CLAUDE_TOKEN["sk-ant-oat01-".len()..],
        CODEX_JWT.rsplit('.').next().unwrap(),
    ];
    let events_text = serde_json::to_string(&events).unwrap();
    let places = [
        ("data plane log", sys.data.log()),
        ("control plane log", sys.control.log()),
        ("collector log", sys._collector.log()),
        ("usage events", events_text),
        ("traces", traces(&otlp, 5).await),
        ("control plane database", dump(&sys, &sys.control_db)),
        ("usage database", dump(&sys, &sys.usage_db)),
    ];
    for (place, text) in &places {
        assert!(text.len() > 100, "{place} is nearly empty: {text}");
        for secret in secrets {
            assert!(!text.contains(secret), "{place} holds a credential");
        }
    }
    // The logs did record the calls (at debug level), so their silence means something.
    assert!(places[0].1.contains("/v1/messages"));
}

/// Every table of a database, as text.
fn dump(sys: &System, url: &str) -> String {
    let name = url.rsplit('/').next().unwrap();
    sys.pg
        .query(name, "SELECT database_to_xml(true, false, '')")
        .unwrap()
}

/// One caller's login refused by the provider is that caller's: the key stays
/// awake and serves the next caller at once.
#[tokio::test]
async fn a_refused_login_does_not_put_the_key_to_sleep_for_others() {
    let sys = start().await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, dev_key, _) = owner(&sys, &fake).await;
    fake.set_behaviour(REVOKED_TOKEN, Behaviour::Reject);
    for _ in 0..3 {
        let (status, body) = claude_call(&sys, REVOKED_TOKEN, Some(&dev_key)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    }
    // Each refusal reached the provider: none was cut short by a sleeping key.
    assert_eq!(fake.calls_with(REVOKED_TOKEN), 3);
    let (status, body) = claude_call(&sys, CLAUDE_TOKEN, Some(&dev_key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fake.calls_with(CLAUDE_TOKEN), 1);
}

/// The command line adds a passthrough key with its protocol and no secret, refuses
/// a secret for one, and the tree as code exports it (and applies it again) without
/// any `secret_from`.
#[tokio::test]
async fn the_command_line_adds_and_exports_passthrough_keys() {
    let sys = start().await;
    let site = Site::at(&sys.control.url("http"), &sys.root);
    site.main_account("acme");
    let added = site
        .run(&[
            "provider-keys",
            "add",
            "--kind",
            "passthrough",
            "--protocol",
            "openai",
            "--base-url",
            "http://127.0.0.1:9/backend-api/codex",
            "--models",
            "gpt-5*",
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(
        (
            &added["provider"],
            &added["protocol"],
            &added["secret_hint"]
        ),
        (&json!("passthrough"), &json!("openai"), &json!(""))
    );
    let refused = site.run(&[
        "provider-keys",
        "add",
        "--kind",
        "passthrough",
        "--protocol",
        "anthropic",
        "--base-url",
        "http://127.0.0.1:9",
        "--models",
        "claude-*",
        "--secret-stdin",
    ]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    let table = site.run(&["provider-keys", "list"]).ok().stdout;
    assert!(
        table.contains("passthrough") && table.contains("openai"),
        "{table}"
    );

    let exported = site.run(&["export"]).ok().stdout;
    assert!(
        exported.contains("provider: passthrough") && exported.contains("protocol: openai"),
        "{exported}"
    );
    assert!(
        !exported
            .lines()
            .any(|l| l.trim_start().starts_with("secret_from:")),
        "{exported}"
    );
    let file = site.home.path().join("tree.yaml");
    std::fs::write(&file, &exported).unwrap();
    let diff = site
        .run(&["diff", "-f", file.to_str().unwrap()])
        .ok()
        .stdout;
    assert!(!diff.contains("provider key"), "the same key: {diff}");
}
