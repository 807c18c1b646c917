//! What an agent's calls get back besides the echo: tool calls and reasoning, in both
//! protocols' shapes, so translated conversations can be tested end to end.
//!
//! The rules: with tools offered, the answer calls the first one (arguments
//! `{"echo": <last user text>}`); when the last user message says `in parallel`, it
//! calls every tool offered, one call each. OpenAI chat answers reasoning
//! (`reasoning_content`) when asked with a `reasoning_effort` other than `none` or
//! `minimal`; Anthropic answers a signed `thinking` block when `thinking.type` is
//! `enabled`.

use serde::Deserialize;
use serde_json::{Value, json};

/// A tool as either protocol offers it: OpenAI's under `function`, Anthropic's flat.
#[derive(Deserialize)]
pub(crate) struct Tool {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    function: Option<Function>,
}

#[derive(Deserialize)]
struct Function {
    name: String,
}

impl Tool {
    fn name(&self) -> &str {
        self.function
            .as_ref()
            .map(|f| f.name.as_str())
            .or(self.name.as_deref())
            .unwrap_or("tool")
    }
}

/// One tool call the answer makes.
pub(crate) struct Call {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// The calls answering `last_user` with `tools` offered (see the module's rules).
pub(crate) fn calls(tools: &[Tool], last_user: &str, id_prefix: &str) -> Vec<Call> {
    let take = if last_user.contains("in parallel") {
        tools.len()
    } else {
        1
    };
    tools
        .iter()
        .take(take)
        .enumerate()
        .map(|(i, t)| Call {
            id: format!("{id_prefix}{i}"),
            name: t.name().to_owned(),
            arguments: json!({"echo": last_user}).to_string(),
        })
        .collect()
}

/// The reasoning an answer shows for `last_user`.
pub(crate) fn reasoning(last_user: &str) -> String {
    format!("considering: {last_user}")
}

/// Whether an OpenAI `reasoning_effort` asks for reasoning.
pub(crate) fn reasons(effort: Option<&str>) -> bool {
    effort.is_some_and(|e| !matches!(e, "none" | "minimal"))
}

/// Anthropic's `thinking` setting: whether it is on.
#[derive(Deserialize)]
pub(crate) struct Thinking {
    #[serde(rename = "type")]
    kind: String,
}

pub(crate) fn thinks(thinking: Option<&Thinking>) -> bool {
    thinking.is_some_and(|t| t.kind == "enabled")
}

/// The signature the fake signs its thinking with.
pub(crate) const SIGNATURE: &str = "sig_fake";

/// An OpenAI chat message: the text, the reasoning if any, the tool calls if any.
pub(crate) fn chat_message(reply: &str, reasoning: Option<&str>, calls: &[Call]) -> Value {
    let mut message = json!({"role": "assistant", "content": reply});
    if let Some(r) = reasoning {
        message["reasoning_content"] = json!(r);
    }
    if !calls.is_empty() {
        message["tool_calls"] = calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
    }
    message
}

/// The deltas of an OpenAI chat stream after its content: each call opened with its
/// id and name, then its arguments.
pub(crate) fn chat_call_deltas(calls: &[Call]) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            [
                json!({"tool_calls": [{"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}),
                json!({"tool_calls": [{"index": i, "function": {"arguments": c.arguments}}]}),
            ]
        })
        .collect()
}

/// Anthropic content blocks for `calls`.
pub(crate) fn tool_use_blocks(calls: &[Call]) -> Vec<Value> {
    calls
        .iter()
        .map(|c| {
            let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
            json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input})
        })
        .collect()
}
