//! Protocol translation through the real processes: clients of one protocol served by
//! provider keys of another (JSON, streams, tool calls, thinking), the own protocol
//! preferred, the owner's rule and a policy that turn it off, refusals, a stream cut
//! upstream, the estimate of token counting, and what is billed and logged.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_fake_upstream::{Behaviour, FakeUpstream, count_tokens};
use switchyard_tests::system::{System, owner_with_keys, settle, start_system, usage_logs};

const TRANSLATED: &str = "x-switchyard-translated";
const DROPPED: &str = "x-switchyard-translation-dropped";

/// A call's status, headers and body text.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `data:` payloads of an SSE answer, as JSON where they are.
    fn events(&self) -> Vec<Value> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_owned())))
            .collect()
    }
}

async fn post(sys: &System, path: &str, key: &str, body: &Value) -> Answer {
    let mut r = sys.http.post(sys.proxy(path)).json(body);
    r = if path.starts_with("/v1/messages") {
        r.header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    } else {
        r.bearer_auth(key)
    };
    let r = r.send().await.unwrap();
    Answer {
        status: r.status(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap(),
    }
}

/// The whole system and the fake upstream its provider keys point to.
async fn start() -> (System, FakeUpstream) {
    (
        start_system(4 * 1024 * 1024).await,
        FakeUpstream::start(None).await.unwrap(),
    )
}

/// Set one entry of the owner's rules (`/x-config/{section}?key=`) and wait until
/// every data plane applies it.
async fn set_rule(sys: &System, owner: &str, entry: &str, value: Value) {
    let (status, body) = sys
        .call(
            Method::PUT,
            format!("/x-config/{entry}"),
            owner.to_owned(),
            Some(value),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(sys).await;
}

/// The body of the last call the fake received.
fn last_sent(fake: &FakeUpstream) -> Value {
    fake.observed()
        .bodies
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap()
}

fn tool(name: &str) -> Value {
    json!({"type": "function", "function": {"name": name, "description": "a tool",
           "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_keys_of_the_other_protocol() {
    let (sys, fake) = start().await;
    let (_, claude_owner, _) = owner_with_keys(
        &sys,
        &fake,
        "claude-only",
        &[("anthropic", "sk-ant-only-0001", 1, &["claude*"])],
    )
    .await;
    set_rule(
        &sys,
        &claude_owner,
        "pricing?key=claude*",
        json!({"input_per_million_nanos": 1_000_000_000u64,
               "output_per_million_nanos": 2_000_000_000u64}),
    )
    .await;

    // An OpenAI Chat client, answered whole by an Anthropic key.
    let chat = json!({"model": "claude-sonnet", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"}], "seed": 7});
    let a = post(&sys, "/v1/chat/completions", &claude_owner, &chat).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.header(TRANSLATED),
        Some("openai-chat->anthropic-messages")
    );
    assert!(
        a.header(DROPPED).unwrap().contains("seed"),
        "{:?}",
        a.headers
    );
    let answer = a.json();
    assert_eq!(answer["object"], "chat.completion", "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "echo: hello there"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let (input, output) = (
        count_tokens("be brief hello there"),
        count_tokens("echo: hello there"),
    );
    assert_eq!(answer["usage"]["prompt_tokens"], input, "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], output, "{answer}");
    // What went upstream is an Anthropic request, with Anthropic's key header.
    let sent = last_sent(&fake);
    assert_eq!(sent["system"][0]["text"], "be brief", "{sent}");
    let credential = fake
        .observed()
        .authorizations
        .lock()
        .unwrap()
        .last()
        .cloned();
    assert_eq!(credential.as_deref(), Some("sk-ant-only-0001"));
    assert!(sent["max_tokens"].as_u64().is_some(), "{sent}");

    // Billed at the owner's price from the usage the upstream reported.
    let event = usage_logs(&sys, &claude_owner, 1).await[0].clone();
    assert_eq!(event["input_tokens"], input, "{event}");
    assert_eq!(event["output_tokens"], output, "{event}");
    let cost = i64::try_from(input * 1_000 + output * 2_000).unwrap();
    assert_eq!(event["cost_nanos"], cost, "{event}");
    assert_eq!(event["client_protocol"], "openai-chat", "{event}");
    assert_eq!(event["upstream_protocol"], "anthropic-messages", "{event}");

    // Streamed: the client's chunks, the content whole, the usage chunk it asked for.
    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let a = post(&sys, "/v1/chat/completions", &claude_owner, &stream).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.header(TRANSLATED),
        Some("openai-chat->anthropic-messages")
    );
    let events = a.events();
    assert_eq!(events.last().unwrap(), "[DONE]", "{}", a.text);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "echo: hello there");
    let usage = events.iter().find(|e| e["usage"].is_object()).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], output, "{usage}");
    assert!(a.text.contains("chat.completion.chunk"), "{}", a.text);

    // Tools, called in parallel, then their results sent back.
    let tools = json!([tool("read"), tool("grep")]);
    let ask = json!({"model": "claude-sonnet", "tools": tools, "messages": [
        {"role": "user", "content": "look in parallel"}]});
    let a = post(&sys, "/v1/chat/completions", &claude_owner, &ask).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let message = a.json()["choices"][0]["message"].clone();
    assert_eq!(a.json()["choices"][0]["finish_reason"], "tool_calls");
    let calls = message["tool_calls"].as_array().unwrap().clone();
    let names: Vec<_> = calls
        .iter()
        .map(|c| c["function"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("read"), json!("grep")], "{message}");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["echo"], "look in parallel");
    let mut follow = ask.clone();
    let history = follow["messages"].as_array_mut().unwrap();
    history.push(json!({"role": "assistant", "content": null, "tool_calls": calls}));
    for c in &calls {
        history.push(json!({"role": "tool", "tool_call_id": c["id"], "content": "found it"}));
    }
    history.push(json!({"role": "user", "content": "thanks"}));
    let a = post(&sys, "/v1/chat/completions", &claude_owner, &follow).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let sent = last_sent(&fake);
    let results = &sent["messages"][2]["content"];
    assert_eq!(results[0]["type"], "tool_result", "{sent}");
    assert_eq!(results[1]["type"], "tool_result", "{sent}");
    // Streamed, the calls come as the client's tool-call deltas.
    let mut ask_stream = ask.clone();
    ask_stream["stream"] = json!(true);
    let a = post(&sys, "/v1/chat/completions", &claude_owner, &ask_stream).await;
    let starts: Vec<_> = a
        .events()
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["tool_calls"][0]["function"]["name"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(starts, ["read", "grep"], "{}", a.text);

    // A Responses client on the same Anthropic key: whole and streamed.
    let responses = json!({"model": "claude-sonnet", "instructions": "be brief",
                           "input": "hello there", "store": true});
    let a = post(&sys, "/v1/responses", &claude_owner, &responses).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.header(TRANSLATED),
        Some("openai-responses->anthropic-messages")
    );
    let answer = a.json();
    assert_eq!(answer["object"], "response", "{answer}");
    assert_eq!(answer["status"], "completed", "{answer}");
    assert_eq!(
        answer["output"][0]["content"][0]["text"],
        "echo: hello there"
    );
    let mut responses_stream = responses.clone();
    responses_stream["stream"] = json!(true);
    let a = post(&sys, "/v1/responses", &claude_owner, &responses_stream).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let kinds: Vec<_> = a
        .events()
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("response.created"));
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("response.completed"),
        "{}",
        a.text
    );

    // An Anthropic Messages client on an OpenAI-only owner.
    let (_, gpt_owner, _) = owner_with_keys(
        &sys,
        &fake,
        "gpt-only",
        &[("openai", "sk-oai-only-0002", 1, &["gpt*"])],
    )
    .await;
    let messages = json!({"model": "gpt-5", "max_tokens": 2000, "system": "be brief",
        "messages": [{"role": "user", "content": "hello there"}]});
    let a = post(&sys, "/v1/messages", &gpt_owner, &messages).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.header(TRANSLATED),
        Some("anthropic-messages->openai-chat")
    );
    let answer = a.json();
    assert_eq!(answer["type"], "message", "{answer}");
    assert_eq!(answer["content"][0]["text"], "echo: hello there");
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(answer["usage"]["output_tokens"], output, "{answer}");
    // Thinking and tool use, whole and streamed.
    let agent = json!({"model": "gpt-5", "max_tokens": 8000,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [{"name": "read", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "read the file"}]});
    let a = post(&sys, "/v1/messages", &gpt_owner, &agent).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let answer = a.json();
    let kinds: Vec<_> = answer["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        [json!("thinking"), json!("text"), json!("tool_use")],
        "{answer}"
    );
    assert_eq!(answer["content"][2]["input"]["echo"], "read the file");
    assert_eq!(answer["stop_reason"], "tool_use");
    let sent = last_sent(&fake);
    assert_eq!(sent["reasoning_effort"], "low", "{sent}");
    let mut agent_stream = agent.clone();
    agent_stream["stream"] = json!(true);
    let a = post(&sys, "/v1/messages", &gpt_owner, &agent_stream).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let events = a.events();
    let blocks: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .map(|e| e["content_block"]["type"].clone())
        .collect();
    assert_eq!(
        blocks,
        [json!("thinking"), json!("text"), json!("tool_use")],
        "{}",
        a.text
    );
    assert_eq!(events.last().unwrap()["type"], "message_stop", "{}", a.text);

    // Token counting for a model only OpenAI keys serve: estimated, never sent upstream.
    let calls = fake.calls();
    let a = post(&sys, "/v1/messages/count_tokens", &gpt_owner, &messages).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("x-switchyard-estimated"), Some("true"));
    assert!(a.json()["input_tokens"].as_u64().unwrap() > 0, "{}", a.text);
    assert_eq!(fake.calls(), calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_protocol_first_switches_refusals_and_breaks() {
    let (sys, fake) = start().await;

    // Both kinds serve the model: the client's own protocol takes every call.
    let (_, both, _) = owner_with_keys(
        &sys,
        &fake,
        "both",
        &[
            ("anthropic", "sk-ant-both-0001", 1, &["shared*"]),
            ("openai", "sk-oai-both-0002", 1, &["shared*"]),
        ],
    )
    .await;
    let chat = json!({"model": "shared-1", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..4 {
        let a = post(&sys, "/v1/chat/completions", &both, &chat).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.header(TRANSLATED), None);
    }
    assert_eq!(fake.calls_with("sk-ant-both-0001"), 0);
    // The own key failing, the level's other key takes the call, translated.
    fake.set_behaviour("sk-oai-both-0002", Behaviour::Fail { status: 500 });
    let a = post(&sys, "/v1/chat/completions", &both, &chat).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.header(TRANSLATED),
        Some("openai-chat->anthropic-messages")
    );

    // A refusal: what Anthropic cannot carry is a 400 in the client's shape, naming it,
    // and nothing is sent or billed.
    let (_, claude_owner, _) = owner_with_keys(
        &sys,
        &fake,
        "claude-only",
        &[("anthropic", "sk-ant-only-0003", 1, &["claude*"])],
    )
    .await;
    let calls = fake.calls_with("sk-ant-only-0003");
    let audio = json!({"model": "claude-x", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]});
    let a = post(&sys, "/v1/chat/completions", &claude_owner, &audio).await;
    assert_eq!(a.status, 400, "{}", a.text);
    let error = &a.json()["error"];
    assert!(
        error["message"].as_str().unwrap().contains("audio input"),
        "{}",
        a.text
    );
    assert_eq!(error["type"], "invalid_request_error", "{}", a.text);
    assert_eq!(fake.calls_with("sk-ant-only-0003"), calls);
    let event = usage_logs(&sys, &claude_owner, 1).await[0].clone();
    assert_eq!(event["status"], 400, "{event}");
    assert_eq!(event["cost_nanos"], 0, "{event}");
    // The key was not blamed: the next call is served by it.
    let ok = json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]});
    let a = post(&sys, "/v1/chat/completions", &claude_owner, &ok).await;
    assert_eq!(a.status, 200, "{}", a.text);

    // A stream the upstream cuts ends with the client's protocol's error event.
    fake.set_behaviour("sk-ant-only-0003", Behaviour::CutAfter { events: 3 });
    let mut cut = ok.clone();
    cut["stream"] = json!(true);
    let a = post(&sys, "/v1/chat/completions", &claude_owner, &cut).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let last = a.events().last().cloned().unwrap();
    assert!(last["error"]["message"].is_string(), "{}", a.text);
    assert!(!a.text.contains("[DONE]"), "{}", a.text);
    fake.set_behaviour("sk-ant-only-0003", Behaviour::Succeed);

    // A policy forbidding translation for a sub-account: the old error there only.
    let (status, team) = sys
        .post(
            "/x-users",
            &claude_owner,
            json!({"name": "team", "policy": {"forbid_translation": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{team}");
    let team_key = team["api_key"].as_str().unwrap().to_owned();
    settle(&sys).await;
    let a = post(&sys, "/v1/chat/completions", &team_key, &ok).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(
        a.text.contains("served only by `anthropic` provider keys"),
        "{}",
        a.text
    );
    let a = post(&sys, "/v1/chat/completions", &claude_owner, &ok).await;
    assert_eq!(a.status, 200, "{}", a.text);

    // The owner's rule turns it off for the whole tree.
    set_rule(&sys, &claude_owner, "translation?key=enabled", json!(false)).await;
    let a = post(&sys, "/v1/chat/completions", &claude_owner, &ok).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(
        a.text.contains("served only by `anthropic` provider keys"),
        "{}",
        a.text
    );
    let (status, section) = sys
        .call(
            Method::GET,
            "/x-config/translation".into(),
            claude_owner.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{section}");
    assert_eq!(section, json!({"enabled": false}));
}
