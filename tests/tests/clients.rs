//! Real clients, pinned (`scripts/ensure-clients.sh`), against the real binaries and
//! the fake upstream playing a scripted conversation: the OpenAI and Anthropic Python
//! SDKs, Claude Code in print mode and Codex CLI's `exec`, each with a tool round
//! trip where it has tools. After each scenario the owner's bill shows every call the
//! upstream answered metered to the sub-account whose key the client used, and the
//! labels the client sent (end user, session) in the bill by label.
//!
//! Each scenario takes the owner's provider kind: for now every owner has keys of the
//! client's own protocol. A client that is not installed skips its test, saying why.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use serde_json::Value;
use switchyard_core::types::ProviderKind;
use switchyard_fake_upstream::FakeUpstream;
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

// OpenAI's SDK.

async fn openai_chat(sys: &System, fake: &FakeUpstream, kind: ProviderKind) {
    let tenant = clients::tenant(sys, fake, kind, "sdk-chat").await;
    let out = python(sys, &tenant, "openai_chat.py", &["chat", "ada"]).await;
    assert_eq!(out["text"], "echo: hello from the openai sdk", "{out}");
    assert_eq!(out["finish_reason"], "stop");
    // The fake's rule: a token per word of the prompt (system and user) and reply.
    assert_eq!(out["usage"]["prompt_tokens"], 7, "{out}");
    assert_eq!(out["usage"]["completion_tokens"], 6, "{out}");
    clients::billed_to_member(sys, fake, &tenant, 1).await;
    // `safety_identifier` names the end user.
    assert_eq!(clients::billed_label(sys, &tenant, "user", "ada").await, 1);
}

async fn openai_chat_stream(sys: &System, fake: &FakeUpstream, kind: ProviderKind) {
    let tenant = clients::tenant(sys, fake, kind, "sdk-stream").await;
    let out = python(sys, &tenant, "openai_chat.py", &["stream", "bea"]).await;
    assert_eq!(out["text"], "echo: stream from the openai sdk", "{out}");
    assert!(out["chunks"].as_u64() > Some(3), "{out}");
    assert_eq!(out["usage"]["completion_tokens"], 6, "{out}");
    clients::billed_to_member(sys, fake, &tenant, 1).await;
    // `user` names the end user when there is no `safety_identifier`.
    assert_eq!(clients::billed_label(sys, &tenant, "user", "bea").await, 1);
}

async fn openai_tools(sys: &System, fake: &FakeUpstream, kind: ProviderKind) {
    let tenant = clients::tenant(sys, fake, kind, "sdk-tools").await;
    let out = python(sys, &tenant, "openai_chat.py", &["tools"]).await;
    assert_eq!(out["tool"], "get_weather", "{out}");
    assert_eq!(out["arguments"]["city"], "Oslo", "{out}");
    assert_eq!(
        out["finish_reasons"],
        serde_json::json!(["tool_calls", "stop"])
    );
    assert_eq!(out["text"], "tool said: sunny in Oslo", "{out}");
    // The tool's result reached the upstream as a `tool` message.
    let carried = clients::bodies_holding(fake, "sunny in Oslo");
    assert!(
        carried.iter().any(|b| b["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["role"] == "tool")),
        "{carried:?}"
    );
    clients::billed_to_member(sys, fake, &tenant, 2).await;
}

async fn openai_responses(sys: &System, fake: &FakeUpstream, kind: ProviderKind) {
    let tenant = clients::tenant(sys, fake, kind, "sdk-responses").await;
    let out = python(sys, &tenant, "openai_responses.py", &["json"]).await;
    assert_eq!(out["text"], "echo: hello from the responses api", "{out}");
    assert_eq!(out["status"], "completed");
    assert_eq!(out["usage"]["input_tokens"], 7, "{out}");
    let out = python(sys, &tenant, "openai_responses.py", &["stream"]).await;
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
}

// Anthropic's SDK.

async fn anthropic_messages(sys: &System, fake: &FakeUpstream, kind: ProviderKind) {
    let tenant = clients::tenant(sys, fake, kind, "sdk-messages").await;
    let out = python(sys, &tenant, "anthropic_messages.py", &["messages", "cy"]).await;
    assert_eq!(out["text"], "echo: hello from the anthropic sdk", "{out}");
    assert_eq!(out["stop_reason"], "end_turn");
    assert_eq!(out["usage"]["input_tokens"], 7, "{out}");
    assert_eq!(out["usage"]["output_tokens"], 6, "{out}");
    let out = python(sys, &tenant, "anthropic_messages.py", &["stream", "cy"]).await;
    assert_eq!(out["text"], "echo: stream from the anthropic sdk", "{out}");
    assert_eq!(out["final_text"], out["text"]);
    assert_eq!(out["usage"]["output_tokens"], 6, "{out}");
    clients::billed_to_member(sys, fake, &tenant, 2).await;
    // `metadata.user_id` names the end user.
    assert_eq!(clients::billed_label(sys, &tenant, "user", "cy").await, 2);
}

async fn anthropic_tools(sys: &System, fake: &FakeUpstream, kind: ProviderKind) {
    let tenant = clients::tenant(sys, fake, kind, "sdk-tool-use").await;
    let out = python(sys, &tenant, "anthropic_messages.py", &["tools"]).await;
    assert_eq!(out["tool"], "get_weather", "{out}");
    assert_eq!(out["arguments"]["city"], "Lima", "{out}");
    assert_eq!(
        out["stop_reasons"],
        serde_json::json!(["tool_use", "end_turn"])
    );
    assert_eq!(out["text"], "tool said: foggy in Lima", "{out}");
    let carried = clients::bodies_holding(fake, "foggy in Lima");
    assert!(
        carried
            .iter()
            .any(|b| b.to_string().contains("tool_result")),
        "{carried:?}"
    );
    clients::billed_to_member(sys, fake, &tenant, 2).await;
}

async fn anthropic_thinking(sys: &System, fake: &FakeUpstream, kind: ProviderKind) {
    let tenant = clients::tenant(sys, fake, kind, "sdk-thinking").await;
    let out = python(sys, &tenant, "anthropic_messages.py", &["thinking"]).await;
    assert_eq!(out["thinking"], "thinking about: think it over", "{out}");
    assert_eq!(out["text"], "echo: think it over", "{out}");
    assert_eq!(out["blocks"], serde_json::json!(["thinking", "text"]));
    assert_eq!(out["signature"], "sig-fake");
    let asked = clients::bodies_holding(fake, "think it over");
    assert!(
        asked.iter().any(|b| b["thinking"]["budget_tokens"] == 1024),
        "{asked:?}"
    );
    clients::billed_to_member(sys, fake, &tenant, 1).await;
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
}

// The coding agents. Each reads a file of the work directory through its own tool:
// the file's text reaches the upstream only as the tool's result.

const NOTES: &str = "the launch code is swordfish-42";

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), format!("{NOTES}\n")).unwrap();
    dir
}

async fn claude_code(sys: &System, fake: &FakeUpstream, kind: ProviderKind) {
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
    let result = out["result"].as_str().unwrap();
    assert!(result.starts_with("tool said:"), "{out}");
    assert!(result.contains(NOTES), "{out}");
    // The file's text went upstream as the Read tool's result.
    let carried = clients::bodies_holding(fake, "swordfish-42");
    assert!(
        carried
            .iter()
            .any(|b| b.to_string().contains("tool_result")),
        "{carried:?}"
    );
    clients::billed_to_member(sys, fake, &tenant, 2).await;
    // Claude Code names its session in a header of every call.
    let answered = fake.calls_with(&tenant.secret);
    assert_eq!(
        clients::billed_label(sys, &tenant, "session", session).await,
        answered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_reads_a_file_through_switchyard() {
    if Client::ClaudeCode.missing() {
        return;
    }
    let (sys, fake) = system().await;
    claude_code(&sys, &fake, ProviderKind::Anthropic).await;
}

async fn codex(sys: &System, fake: &FakeUpstream, kind: ProviderKind) {
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
    assert!(last.starts_with("tool said:"), "{last}\n{}", run.stderr);
    assert!(last.contains(NOTES), "{last}");
    // The command's output went upstream as the function call's output.
    let carried = clients::bodies_holding(fake, "swordfish-42");
    assert!(
        carried
            .iter()
            .any(|b| b.to_string().contains("function_call_output")),
        "{carried:?}"
    );
    clients::billed_to_member(sys, fake, &tenant, 2).await;
    // Codex names its session in a header of every call; `codex exec` prints it.
    let session = run
        .stderr
        .lines()
        .chain(run.stdout.lines())
        .find_map(|l| l.strip_prefix("session id: "))
        .unwrap()
        .trim()
        .to_owned();
    let answered = fake.calls_with(&tenant.secret);
    assert_eq!(
        clients::billed_label(sys, &tenant, "session", &session).await,
        answered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_a_command_through_switchyard() {
    if Client::CodexCli.missing() {
        return;
    }
    let (sys, fake) = system().await;
    codex(&sys, &fake, ProviderKind::OpenAi).await;
}
