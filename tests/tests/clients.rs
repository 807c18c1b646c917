//! Real clients, pinned (`scripts/ensure-clients.sh`), against the real binaries and
//! the fake upstream playing a scripted conversation: the OpenAI and Anthropic Python
//! SDKs, Claude Code in print mode and Codex CLI's `exec`, each with a tool round
//! trip where it has tools. After each scenario the owner's bill shows every call the
//! upstream answered metered to the sub-account whose key the client used, and the
//! labels the client sent (end user, session) in the bill by label.
//!
//! Each scenario takes the owner's provider kind: each client runs on an owner whose
//! keys speak its own protocol, and on owners whose only keys speak another (the
//! data plane translates; the logs show both protocols of every call). A client that
//! is not installed skips its test, saying why.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use serde_json::Value;
use switchyard_core::types::ProviderKind;
use switchyard_fake_upstream::{DEFAULT_MODELS, FakeUpstream};
use switchyard_tests::clients::{self, Client, Tenant};
use switchyard_tests::system::{System, start_system};

async fn system() -> (System, FakeUpstream) {
    let sys = start_system(1024 * 1024).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    (sys, fake)
}

async fn python(sys: &System, tenant: &Tenant, script: &str, args: &[&str]) -> Value {
    clients::python(script, args, &sys.data.url("http"), &tenant.member_key)
        .await
        .unwrap()
}

/// How a tool's result travels to an upstream of `kind`: Anthropic's `tool_result`
/// block, Gemini's `functionResponse` part, or on OpenAI's side `openai`, which
/// depends on the endpoint the call reaches.
fn tool_result_carrier(kind: ProviderKind, openai: &'static str) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "tool_result",
        ProviderKind::Gemini => "functionResponse",
        _ => openai,
    }
}

/// Every call that went upstream of the `n` (at least) the owner's logs hold went
/// from `client` to `upstream` (the protocols' names as `x-switchyard-translated`
/// gives them); the others (no upstream protocol) the data plane answered itself.
async fn translated(sys: &System, tenant: &Tenant, n: usize, client: &str, upstream: &str) {
    let logged = clients::protocols_logged(sys, tenant, n).await;
    let sent: Vec<_> = logged.iter().filter(|(_, u)| !u.is_empty()).collect();
    assert!(!sent.is_empty(), "{logged:?}");
    let expected = (client.to_owned(), upstream.to_owned());
    assert!(sent.iter().all(|p| **p == expected), "{logged:?}");
}

/// The model list a client of `client`'s protocol sees on an owner whose keys are
/// of `kind`: what the upstream lists, only from keys of the endpoint's own protocol
/// (docs/request-path.md), so none across protocols.
fn listed(kind: ProviderKind, client: ProviderKind) -> Value {
    if kind == client {
        serde_json::json!(DEFAULT_MODELS)
    } else {
        serde_json::json!([])
    }
}

/// The protocol name of an upstream of `kind` in the logs.
fn upstream_protocol(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "anthropic-messages",
        ProviderKind::Gemini => "gemini",
        _ => "openai-chat",
    }
}

/// A chat completion's `tool` message.
const OPENAI_CHAT: &str = r#""role":"tool""#;
/// A Responses input's `function_call_output` item.
const OPENAI_RESPONSES: &str = "function_call_output";

/// An SDK's tool round trip as its script printed it: a call of `get_weather` for
/// `city`, both turns' stop reasons, the answer naming the tool's result (`weather in
/// city`), and that result sent upstream in a body holding `carrier`.
fn tool_round_trip(
    fake: &FakeUpstream,
    out: &Value,
    (city, weather): (&str, &str),
    stops: [&str; 2],
    carrier: &str,
) {
    assert_eq!(out["tool"], "get_weather", "{out}");
    assert_eq!(out["arguments"]["city"], city, "{out}");
    assert_eq!(out["stops"], serde_json::json!(stops), "{out}");
    let result = format!("{weather} in {city}");
    assert_eq!(out["text"], format!("tool said: {result}"), "{out}");
    let carried = clients::bodies_holding(fake, &result);
    assert!(
        carried.iter().any(|b| b.to_string().contains(carrier)),
        "{carried:?}"
    );
}

// OpenAI's SDK.

async fn openai_chat(sys: &System, fake: &FakeUpstream, kind: ProviderKind) -> Tenant {
    let tenant = clients::tenant(sys, fake, kind, "sdk-chat").await;
    let out = python(sys, &tenant, "openai_sdk.py", &["chat", "ada"]).await;
    assert_eq!(out["text"], "echo: hello from the openai sdk", "{out}");
    assert_eq!(out["finish_reason"], "stop");
    // The fake's rule: a token per word of the prompt (system and user) and reply.
    assert_eq!(out["usage"]["prompt_tokens"], 7, "{out}");
    assert_eq!(out["usage"]["completion_tokens"], 6, "{out}");
    // The model list, in OpenAI's shape: what the upstream lists.
    assert_eq!(out["models"], listed(kind, ProviderKind::OpenAi), "{out}");
    clients::billed_to_member(sys, fake, &tenant, 1).await;
    // `safety_identifier` names the end user.
    assert_eq!(clients::billed_label(sys, &tenant, "user", "ada").await, 1);
    tenant
}

async fn openai_chat_stream(sys: &System, fake: &FakeUpstream, kind: ProviderKind) -> Tenant {
    let tenant = clients::tenant(sys, fake, kind, "sdk-stream").await;
    let out = python(sys, &tenant, "openai_sdk.py", &["stream", "bea"]).await;
    assert_eq!(out["text"], "echo: stream from the openai sdk", "{out}");
    assert!(out["chunks"].as_u64() > Some(3), "{out}");
    assert_eq!(out["usage"]["completion_tokens"], 6, "{out}");
    clients::billed_to_member(sys, fake, &tenant, 1).await;
    // `user` names the end user when there is no `safety_identifier`.
    assert_eq!(clients::billed_label(sys, &tenant, "user", "bea").await, 1);
    tenant
}

async fn openai_tools(sys: &System, fake: &FakeUpstream, kind: ProviderKind) -> Tenant {
    let tenant = clients::tenant(sys, fake, kind, "sdk-tools").await;
    // The call in one answer, then in a stream of deltas.
    for mode in ["tools", "tools-stream"] {
        let out = python(sys, &tenant, "openai_sdk.py", &[mode]).await;
        tool_round_trip(
            fake,
            &out,
            ("Oslo", "sunny"),
            ["tool_calls", "stop"],
            tool_result_carrier(kind, OPENAI_CHAT),
        );
    }
    clients::billed_to_member(sys, fake, &tenant, 4).await;
    tenant
}

async fn openai_responses(sys: &System, fake: &FakeUpstream, kind: ProviderKind) -> Tenant {
    let tenant = clients::tenant(sys, fake, kind, "sdk-responses").await;
    let out = python(sys, &tenant, "openai_sdk.py", &["responses"]).await;
    assert_eq!(out["text"], "echo: hello from the responses api", "{out}");
    assert_eq!(out["status"], "completed");
    assert_eq!(out["usage"]["input_tokens"], 7, "{out}");
    let out = python(sys, &tenant, "openai_sdk.py", &["responses-stream"]).await;
    assert_eq!(out["text"], "echo: stream the responses api", "{out}");
    assert_eq!(out["final_text"], out["text"]);
    let events: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(events.first(), Some(&"response.created"), "{out}");
    assert_eq!(events.last(), Some(&"response.completed"), "{out}");
    assert_eq!(out["usage"]["output_tokens"], 5, "{out}");
    clients::billed_to_member(sys, fake, &tenant, 2).await;
    tenant
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_chats_streams_calls_tools_and_uses_responses() {
    if Client::PythonSdks.missing() {
        return;
    }
    let (sys, fake) = system().await;
    openai_chat(&sys, &fake, ProviderKind::OpenAi).await;
    openai_chat_stream(&sys, &fake, ProviderKind::OpenAi).await;
    openai_tools(&sys, &fake, ProviderKind::OpenAi).await;
    openai_responses(&sys, &fake, ProviderKind::OpenAi).await;

    // On an owner whose only keys are Anthropic's.
    let kind = ProviderKind::Anthropic;
    let upstream = upstream_protocol(kind);
    let tenant = openai_chat(&sys, &fake, kind).await;
    translated(&sys, &tenant, 1, "openai-chat", upstream).await;
    let tenant = openai_chat_stream(&sys, &fake, kind).await;
    translated(&sys, &tenant, 1, "openai-chat", upstream).await;
    let tenant = openai_tools(&sys, &fake, kind).await;
    translated(&sys, &tenant, 4, "openai-chat", upstream).await;
    let tenant = openai_responses(&sys, &fake, kind).await;
    translated(&sys, &tenant, 2, "openai-responses", upstream).await;
}

// Anthropic's SDK.

async fn anthropic_messages(sys: &System, fake: &FakeUpstream, kind: ProviderKind) -> Tenant {
    let tenant = clients::tenant(sys, fake, kind, "sdk-messages").await;
    let out = python(sys, &tenant, "anthropic_sdk.py", &["messages", "cy"]).await;
    assert_eq!(out["text"], "echo: hello from the anthropic sdk", "{out}");
    assert_eq!(out["stop_reason"], "end_turn");
    assert_eq!(out["usage"]["input_tokens"], 7, "{out}");
    assert_eq!(out["usage"]["output_tokens"], 6, "{out}");
    // Across protocols the data plane estimates the count itself: nothing upstream.
    let counted_upstream = kind == ProviderKind::Anthropic;
    if counted_upstream {
        assert_eq!(out["counted"], 7, "{out}");
    } else {
        assert!(out["counted"].as_u64() > Some(0), "{out}");
    }
    // The model list, in Anthropic's shape.
    assert_eq!(
        out["models"],
        listed(kind, ProviderKind::Anthropic),
        "{out}"
    );
    let out = python(sys, &tenant, "anthropic_sdk.py", &["stream", "cy"]).await;
    assert_eq!(out["text"], "echo: stream from the anthropic sdk", "{out}");
    assert_eq!(out["final_text"], out["text"]);
    assert_eq!(out["usage"]["output_tokens"], 6, "{out}");
    // Generation twice and token counting once: upstream in the same protocol, else
    // estimated by the data plane, and billed as a call either way.
    clients::billed_to_member(sys, fake, &tenant, 2 + u64::from(counted_upstream)).await;
    // `metadata.user_id` names the end user.
    assert_eq!(clients::billed_label(sys, &tenant, "user", "cy").await, 2);
    tenant
}

async fn anthropic_tools(sys: &System, fake: &FakeUpstream, kind: ProviderKind) -> Tenant {
    let tenant = clients::tenant(sys, fake, kind, "sdk-tool-use").await;
    let out = python(sys, &tenant, "anthropic_sdk.py", &["tools"]).await;
    tool_round_trip(
        fake,
        &out,
        ("Lima", "foggy"),
        ["tool_use", "end_turn"],
        tool_result_carrier(kind, OPENAI_CHAT),
    );
    clients::billed_to_member(sys, fake, &tenant, 2).await;
    tenant
}

async fn anthropic_thinking(sys: &System, fake: &FakeUpstream, kind: ProviderKind) -> Tenant {
    let tenant = clients::tenant(sys, fake, kind, "sdk-thinking").await;
    let out = python(sys, &tenant, "anthropic_sdk.py", &["thinking"]).await;
    assert_eq!(out["text"], "echo: think it over", "{out}");
    let asked = clients::bodies_holding(fake, "think it over");
    // The budget asked for, as the upstream's protocol asks for thinking. The fake's
    // other protocols answer without reasoning: only the text comes back.
    let (budget, blocks): (&str, &[&str]) = match kind {
        ProviderKind::Anthropic => ("/thinking/budget_tokens", &["thinking", "text"]),
        ProviderKind::Gemini => ("/generationConfig/thinkingConfig/thinkingBudget", &["text"]),
        _ => ("/reasoning_effort", &["text"]),
    };
    let expected = match kind {
        ProviderKind::Anthropic | ProviderKind::Gemini => serde_json::json!(1024),
        _ => serde_json::json!("low"),
    };
    assert!(
        asked.iter().any(|b| b.pointer(budget) == Some(&expected)),
        "{asked:?}"
    );
    assert_eq!(out["blocks"], serde_json::json!(blocks), "{out}");
    if kind == ProviderKind::Anthropic {
        assert_eq!(out["thinking"], "thinking about: think it over", "{out}");
        assert_eq!(out["signature"], "sig-fake");
    }
    clients::billed_to_member(sys, fake, &tenant, 1).await;
    tenant
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_sends_messages_streams_uses_tools_and_thinks() {
    if Client::PythonSdks.missing() {
        return;
    }
    let (sys, fake) = system().await;
    anthropic_messages(&sys, &fake, ProviderKind::Anthropic).await;
    anthropic_tools(&sys, &fake, ProviderKind::Anthropic).await;
    anthropic_thinking(&sys, &fake, ProviderKind::Anthropic).await;

    // On owners whose only keys are OpenAI's, then Gemini's.
    for kind in [ProviderKind::OpenAi, ProviderKind::Gemini] {
        let tenant = anthropic_messages(&sys, &fake, kind).await;
        let tools = anthropic_tools(&sys, &fake, kind).await;
        let thinking = anthropic_thinking(&sys, &fake, kind).await;
        for (tenant, calls) in [(tenant, 3), (tools, 2), (thinking, 1)] {
            translated(
                &sys,
                &tenant,
                calls,
                "anthropic-messages",
                upstream_protocol(kind),
            )
            .await;
        }
    }
}

// The coding agents. Each reads a file of the work directory through its own tool:
// the file's text reaches the upstream only as the tool's result.

const NOTES: &str = "the launch code is swordfish-42";

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), format!("{NOTES}\n")).unwrap();
    dir
}

/// An agent's tool round trip: its last answer names the tool's result (the notes),
/// which went upstream in a body holding `carrier`; its calls, two at least, are
/// billed to the member.
async fn agent_round_trip(
    sys: &System,
    fake: &FakeUpstream,
    tenant: &Tenant,
    answer: &str,
    carrier: &str,
) {
    assert!(answer.starts_with("tool said:"), "{answer}");
    assert!(answer.contains(NOTES), "{answer}");
    let carried = clients::bodies_holding(fake, NOTES);
    assert!(
        carried.iter().any(|b| b.to_string().contains(carrier)),
        "{carried:?}"
    );
    clients::billed_to_member(sys, fake, tenant, 2).await;
}

/// The calls made for `tenant`: those the upstream answered and those the data plane
/// answered itself (once [`clients::billed_to_member`] has seen them all billed).
async fn every_call(sys: &System, fake: &FakeUpstream, tenant: &Tenant) -> u64 {
    fake.calls_with(&tenant.secret) + clients::answered_locally(sys, tenant).await
}

/// Every call an agent made upstream for `tenant` went from `client` to `kind`'s
/// protocol.
async fn agent_translated(
    sys: &System,
    fake: &FakeUpstream,
    tenant: &Tenant,
    client: &str,
    kind: ProviderKind,
) {
    let calls = usize::try_from(fake.calls_with(&tenant.secret)).unwrap();
    translated(sys, tenant, calls, client, upstream_protocol(kind)).await;
}

/// Every call made for `tenant` is billed under `session`.
async fn session_of_every_call(sys: &System, fake: &FakeUpstream, tenant: &Tenant, session: &str) {
    let answered = every_call(sys, fake, tenant).await;
    assert_eq!(
        clients::billed_label(sys, tenant, "session", session).await,
        answered
    );
}

async fn claude_code(sys: &System, fake: &FakeUpstream, kind: ProviderKind) -> Tenant {
    let tenant = clients::tenant(sys, fake, kind, "claude-code").await;
    let dir = workdir();
    let notes = dir.path().join("notes.txt");
    let prompt = format!(
        "What do the notes say? [[tool Read {{\"file_path\": \"{}\"}}]]",
        notes.display()
    );
    let session = "5f0c1d2e-3b4a-4c5d-8e6f-7a8b9c0d1e2f";
    let run = clients::claude(
        &sys.data.url("http"),
        &tenant.member_key,
        dir.path(),
        &prompt,
        &[
            "--allowedTools",
            "Read",
            "--model",
            "claude-sonnet-4-5",
            "--session-id",
            session,
        ],
    )
    .await
    .unwrap()
    .ok();
    let out: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(out["is_error"], false, "{out}");
    // The file's text goes upstream as the Read tool's result.
    agent_round_trip(
        sys,
        fake,
        &tenant,
        out["result"].as_str().unwrap(),
        tool_result_carrier(kind, OPENAI_CHAT),
    )
    .await;
    // Claude Code names its session in a header of every call, and its device (with
    // the session again) in `metadata.user_id`: the device is the end user.
    session_of_every_call(sys, fake, &tenant, session).await;
    let answered = every_call(sys, fake, &tenant).await;
    let users = clients::labels_billed(sys, &tenant, "user").await;
    assert_eq!(users.len(), 1, "{users:?}");
    let (device, requests) = &users[0];
    assert_eq!(*requests, answered, "{users:?}");
    // Anthropic's upstream receives it too; OpenAI's takes no end-user id that long,
    // and Gemini's none: the translation leaves it out.
    let sent = clients::bodies_holding(fake, device)
        .iter()
        .find_map(|b| b["metadata"]["user_id"].as_str().map(str::to_owned));
    if kind == ProviderKind::Anthropic {
        let sent: Value = serde_json::from_str(&sent.unwrap()).unwrap();
        assert_eq!(sent["device_id"], device.as_str());
    } else {
        assert_eq!(sent, None);
    }
    tenant
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_reads_a_file_through_switchyard() {
    if Client::ClaudeCode.missing() {
        return;
    }
    let (sys, fake) = system().await;
    claude_code(&sys, &fake, ProviderKind::Anthropic).await;

    // On owners whose only keys are OpenAI's, then Gemini's.
    for kind in [ProviderKind::OpenAi, ProviderKind::Gemini] {
        let tenant = claude_code(&sys, &fake, kind).await;
        agent_translated(&sys, &fake, &tenant, "anthropic-messages", kind).await;
    }

    // Its own login, governed by the issued key.
    claude_code_passthrough(&sys, &fake).await;
}

async fn codex(sys: &System, fake: &FakeUpstream, kind: ProviderKind) -> Tenant {
    let tenant = clients::tenant(sys, fake, kind, "codex").await;
    let dir = workdir();
    let prompt = "What do the notes say? [[tool exec_command {\"cmd\": \"cat notes.txt\"}]]";
    let (run, last) = clients::codex(
        &sys.data.url("http"),
        &tenant.member_key,
        dir.path(),
        prompt,
    )
    .await
    .unwrap();
    let run = run.ok();
    // The command's output goes upstream as the function call's output.
    agent_round_trip(
        sys,
        fake,
        &tenant,
        &last,
        tool_result_carrier(kind, OPENAI_RESPONSES),
    )
    .await;
    // Codex names its session in a header of every call; `codex exec` prints it.
    let session = run
        .stderr
        .lines()
        .chain(run.stdout.lines())
        .find_map(|l| l.strip_prefix("session id: "))
        .unwrap()
        .trim()
        .to_owned();
    session_of_every_call(sys, fake, &tenant, &session).await;
    tenant
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_a_command_through_switchyard() {
    if Client::CodexCli.missing() {
        return;
    }
    let (sys, fake) = system().await;
    codex(&sys, &fake, ProviderKind::OpenAi).await;

    // On an owner whose only keys are Anthropic's.
    let kind = ProviderKind::Anthropic;
    let tenant = codex(&sys, &fake, kind).await;
    agent_translated(&sys, &fake, &tenant, "openai-responses", kind).await;

    // Its own login, governed by the issued key.
    codex_passthrough(&sys, &fake).await;
}

// Passthrough: each agent with its own login (the fake's subscription logins check
// it, `fake-upstream/src/logins.rs`), governed by the issued key it sends in
// `x-switchyard-key`, on an owner whose one key is a passthrough key.

/// Claude Code's OAuth access token (its shape, made up).
const CLAUDE_LOGIN: &str = "sk-ant-oat01-ClaudeCodeL0ginOfDevQwErTy0123456789abcdefABCDEF";
/// Codex's ChatGPT login: a JWT (its shape, made up) and the account it acts for.
const CODEX_LOGIN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjb2RleC1jbGllbnQtdGVzdCJ9.U2lnbmF0dXJlT2ZUaGVDb2RleENsaWVudDAxMjM0NQ";
const CODEX_ACCOUNT: &str = "0f1e2d3c-0000-4b5a-8c9d-codexclient";

/// A header the fake's last call carried.
fn last_header(fake: &FakeUpstream, name: &str) -> Option<String> {
    fake.last_header(name)
}

/// The login arrived upstream as it left the client, without the issued key; the
/// calls are metered to the member whose key was sent.
async fn login_passed_through(sys: &System, fake: &FakeUpstream, tenant: &Tenant) {
    let bearer = format!("Bearer {}", tenant.secret);
    assert_eq!(last_header(fake, "authorization"), Some(bearer));
    assert_eq!(last_header(fake, "x-switchyard-key"), None);
    clients::billed_to_member(sys, fake, tenant, 1).await;
}

/// Without `x-switchyard-key` the client's run fails and nothing reaches the
/// upstream.
fn refused_without_the_issued_key(
    fake: &FakeUpstream,
    tenant: &Tenant,
    before: u64,
    run: &clients::Run,
) {
    let is_error =
        serde_json::from_str::<Value>(run.stdout.trim()).is_ok_and(|out| out["is_error"] == true);
    assert!(!run.success || is_error, "{run:?}");
    assert_eq!(fake.calls_with(&tenant.secret), before, "{run:?}");
}

async fn claude_code_passthrough(sys: &System, fake: &FakeUpstream) {
    let login = ("anthropic", "/claude", "claude-*");
    let tenant = clients::passthrough_tenant(sys, fake, login, CLAUDE_LOGIN, "claude-login").await;
    let dir = workdir();
    let header = format!("x-switchyard-key: {}", tenant.member_key);
    let args = ["--model", "claude-sonnet-4-5"];
    let credentials = [
        ("CLAUDE_CODE_OAUTH_TOKEN", CLAUDE_LOGIN),
        ("ANTHROPIC_CUSTOM_HEADERS", header.as_str()),
    ];
    let url = sys.data.url("http");
    let run = clients::claude_with(&url, &credentials, dir.path(), "say hi", &args)
        .await
        .unwrap()
        .ok();
    let out: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(out["is_error"], false, "{out}");
    assert!(out["result"].as_str().unwrap().contains("say hi"), "{out}");
    // The fake's login checked the OAuth beta flag beside the bearer.
    login_passed_through(sys, fake, &tenant).await;
    assert_eq!(last_header(fake, "x-api-key"), None);

    let before = fake.calls_with(&tenant.secret);
    let run = clients::claude_with(&url, &credentials[..1], dir.path(), "say hi", &args)
        .await
        .unwrap();
    refused_without_the_issued_key(fake, &tenant, before, &run);
}

async fn codex_passthrough(sys: &System, fake: &FakeUpstream) {
    let login = ("openai", "/backend-api/codex", "gpt-5*");
    let tenant = clients::passthrough_tenant(sys, fake, login, CODEX_LOGIN, "codex-login").await;
    let dir = workdir();
    let url = sys.data.url("http");
    let account = format!(r#""chatgpt-account-id" = "{CODEX_ACCOUNT}""#);
    let provider = format!(
        r#"http_headers = {{ "x-switchyard-key" = "{}", {account} }}"#,
        tenant.member_key
    );
    let (run, last) = clients::codex_with(&url, CODEX_LOGIN, &provider, dir.path(), "say hi")
        .await
        .unwrap();
    let run = run.ok();
    assert!(last.contains("say hi"), "{last}\n{run:?}");
    login_passed_through(sys, fake, &tenant).await;
    assert_eq!(
        last_header(fake, "chatgpt-account-id").as_deref(),
        Some(CODEX_ACCOUNT)
    );

    let before = fake.calls_with(&tenant.secret);
    let provider = format!("http_headers = {{ {account} }}");
    let (run, _) = clients::codex_with(&url, CODEX_LOGIN, &provider, dir.path(), "say hi")
        .await
        .unwrap();
    refused_without_the_issued_key(fake, &tenant, before, &run);
}
