//! The scripted conversation ([`crate::Behaviour::Scripted`]): one tool round trip,
//! as real clients and coding agents hold it, in every protocol, JSON and SSE.
//!
//! - A tool result in the request (OpenAI's `tool` message or Responses'
//!   `function_call_output`, Anthropic's `tool_result`): answer with text naming the
//!   last one, `tool said: <output>`.
//! - Otherwise, a user message carrying `[[tool NAME {json arguments}]]` while the
//!   request offers a function tool NAME: answer with a call of NAME with those
//!   arguments. The client (its prompt) picks the tool and what it does, so the
//!   fake needs to know nothing of any agent's tools.
//! - Otherwise an echo of the last user message, as the plain fake answers.
//!
//! Gemini's `generateContent` plays the same turns with `functionCall` and
//! `functionResponse` parts. Anthropic requests asking for extended thinking get a
//! signed thinking block first.
//! Credentials not told to be scripted get the plain fake's answers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::{Behaviour, Dialect, Fake, count_tokens, error, pieces, text_of};

/// What the fake says next.
#[derive(Debug, PartialEq)]
enum Turn {
    Call { name: String, arguments: String },
    Say(String),
}

/// The next turn of the conversation, from the user texts (in order), the last tool
/// output, and the names of the function tools offered.
fn next_turn(user_texts: &[String], tool_output: Option<String>, tools: &[String]) -> Turn {
    if let Some(output) = tool_output {
        return Turn::Say(format!("tool said: {}", output.trim()));
    }
    let asked = user_texts
        .iter()
        .rev()
        .find_map(|text| tool_marker(text))
        .filter(|(name, _)| tools.contains(name));
    match asked {
        Some((name, arguments)) => Turn::Call {
            name,
            arguments: arguments.to_string(),
        },
        None => Turn::Say(format!(
            "echo: {}",
            user_texts.last().map(String::as_str).unwrap_or_default()
        )),
    }
}

/// `[[tool NAME {json}]]` in `text`: the tool's name and its arguments.
fn tool_marker(text: &str) -> Option<(String, Value)> {
    let start = text.find("[[tool ")? + "[[tool ".len();
    let rest = &text[start..];
    let (name, rest) = rest.split_once(' ')?;
    let end = rest.find("]]")?;
    let arguments: Value = serde_json::from_str(&rest[..end]).ok()?;
    arguments.is_object().then(|| (name.to_owned(), arguments))
}

/// Whether calls with this credential are scripted: the protocol's key, or a
/// subscription login's bearer (`crate::logins`).
fn scripted(fake: &Fake, dialect: Dialect, headers: &HeaderMap) -> bool {
    let secret = crate::credential(dialect, headers);
    let login = crate::credential(Dialect::OpenAi, headers);
    fake.behaviours.lock().is_ok_and(|m| {
        [secret, login]
            .iter()
            .any(|c| m.get(*c) == Some(&Behaviour::Scripted))
    })
}

/// Read a scripted call's body as JSON (recorded like any other).
async fn read(
    fake: &Fake,
    dialect: Dialect,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, Box<Response>> {
    fake.read::<Value>(dialect, headers, body)
        .await
        .map(|(v, _)| v)
}

fn strings(values: &[Value], pick: impl Fn(&Value) -> Option<&Value>) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| pick(v).and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn array<'a>(body: &'a Value, field: &str) -> &'a [Value] {
    body.get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn sse_event(kind: Option<&str>, data: &Value) -> String {
    match kind {
        Some(kind) => format!("event: {kind}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !scripted(&fake, Dialect::OpenAi, &headers) {
        return crate::openai::chat(State(fake), headers, body).await;
    }
    let req = match read(&fake, Dialect::OpenAi, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let messages = array(&req, "messages");
    let with_role =
        |role: &'static str| move |m: &&Value| m.get("role").and_then(Value::as_str) == Some(role);
    let user_texts: Vec<String> = messages
        .iter()
        .filter(with_role("user"))
        .map(|m| text_of(&m["content"]))
        .collect();
    let tool_output = messages
        .iter()
        .rfind(with_role("tool"))
        .map(|m| text_of(&m["content"]));
    let tools = strings(array(&req, "tools"), |t| t.pointer("/function/name"));
    let turn = next_turn(&user_texts, tool_output, &tools);
    let prompt: Vec<String> = messages.iter().map(|m| text_of(&m["content"])).collect();
    let (input, output) = tokens(&prompt.join(" "), &turn);
    fake.record_tokens(input, output);
    let usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output});
    let model = req.get("model").cloned().unwrap_or(Value::Null);
    let (message, finish) = match &turn {
        Turn::Say(text) => (json!({"role": "assistant", "content": text}), "stop"),
        Turn::Call { name, arguments } => (
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_fake", "type": "function", "function": {"name": name, "arguments": arguments}}]}),
            "tool_calls",
        ),
    };
    if req.get("stream") != Some(&Value::Bool(true)) {
        let body = json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                          "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage});
        return fake.json(&body, Behaviour::Succeed);
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        sse_event(
            None,
            &json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    match &turn {
        Turn::Say(text) => events.extend(
            pieces(text)
                .into_iter()
                .map(|p| chunk(json!({ "content": p }), None)),
        ),
        Turn::Call { name, arguments } => {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_fake", "type": "function",
                                       "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
                None,
            ));
        }
    }
    events.push(chunk(json!({}), Some(finish)));
    if req.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
        events.push(sse_event(
            None,
            &json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                    "model": model, "choices": [], "usage": usage}),
        ));
    }
    events.push("data: [DONE]\n\n".to_owned());
    fake.sse(events, Behaviour::Succeed)
}

/// Input and output tokens by the fake's rule.
fn tokens(prompt: &str, turn: &Turn) -> (u64, u64) {
    let output = match turn {
        Turn::Say(text) => count_tokens(text),
        Turn::Call { name, arguments } => count_tokens(name) + count_tokens(arguments),
    };
    (count_tokens(prompt), output)
}

/// `POST /v1/responses`.
pub(crate) async fn responses(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !scripted(&fake, Dialect::OpenAi, &headers) {
        return crate::openai::responses(State(fake), headers, body).await;
    }
    let req = match read(&fake, Dialect::OpenAi, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let items: Vec<Value> = match req.get("input") {
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    let user_texts: Vec<String> = items
        .iter()
        .filter(|i| i.get("role").and_then(Value::as_str) == Some("user"))
        .map(|i| text_of(&i["content"]))
        .collect();
    let tool_output = items
        .iter()
        .rfind(|i| i.get("type").and_then(Value::as_str) == Some("function_call_output"))
        .map(|i| match &i["output"] {
            Value::String(s) => s.clone(),
            other => text_of(other),
        });
    let tools = strings(array(&req, "tools"), |t| {
        (t.get("type").and_then(Value::as_str) == Some("function"))
            .then(|| t.get("name"))
            .flatten()
    });
    let turn = next_turn(&user_texts, tool_output, &tools);
    let prompt: Vec<String> = req
        .get("instructions")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .into_iter()
        .chain(items.iter().map(|i| text_of(&i["content"])))
        .collect();
    let (input, output) = tokens(&prompt.join(" "), &turn);
    fake.record_tokens(input, output);
    let usage = json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": input + output});
    let item = |status: &str, arguments: &str| match &turn {
        Turn::Say(text) => {
            let text = if status == "completed" { text } else { "" };
            let content = if status == "completed" {
                json!([{"type": "output_text", "text": text, "annotations": []}])
            } else {
                json!([])
            };
            json!({"type": "message", "id": "msg_fake", "status": status, "role": "assistant", "content": content})
        }
        Turn::Call { name, .. } => {
            json!({"type": "function_call", "id": "fc_fake", "call_id": "call_fake",
                                          "name": name, "arguments": arguments, "status": status})
        }
    };
    let arguments = match &turn {
        Turn::Call { arguments, .. } => arguments.as_str(),
        Turn::Say(_) => "",
    };
    let model = req.get("model").cloned().unwrap_or(Value::Null);
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_fake", "object": "response", "created_at": 0, "status": status,
               "model": model, "output": output, "usage": usage})
    };
    let done = item("completed", arguments);
    if req.get("stream") != Some(&Value::Bool(true)) {
        return fake.json(
            &response("completed", json!([done]), usage),
            Behaviour::Succeed,
        );
    }
    let mut seq = 0u64;
    let mut event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(seq);
        seq += 1;
        sse_event(Some(kind), &data)
    };
    let mut events = vec![
        event(
            "response.created",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        event(
            "response.output_item.added",
            json!({"output_index": 0, "item": item("in_progress", "")}),
        ),
    ];
    match &turn {
        Turn::Say(text) => {
            let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
            events.push(event(
                "response.content_part.added",
                json!({"item_id": "msg_fake", "output_index": 0, "content_index": 0, "part": part("")}),
            ));
            events.extend(crate::openai::output_text_events(&mut event, text));
            events.push(event(
                "response.content_part.done",
                json!({"item_id": "msg_fake", "output_index": 0, "content_index": 0, "part": part(text)}),
            ));
        }
        Turn::Call { arguments, .. } => {
            events.push(event(
                "response.function_call_arguments.delta",
                json!({"item_id": "fc_fake", "output_index": 0, "delta": arguments}),
            ));
            events.push(event(
                "response.function_call_arguments.done",
                json!({"item_id": "fc_fake", "output_index": 0, "arguments": arguments}),
            ));
        }
    }
    events.push(event(
        "response.output_item.done",
        json!({"output_index": 0, "item": done}),
    ));
    events.push(event(
        "response.completed",
        json!({"response": response("completed", json!([done]), usage)}),
    ));
    fake.sse(events, Behaviour::Succeed)
}

/// `POST /v1/messages`.
pub(crate) async fn messages(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !scripted(&fake, Dialect::Anthropic, &headers) {
        return crate::anthropic::messages(State(fake), headers, body).await;
    }
    if headers.get("anthropic-version").is_none() {
        return error(
            Dialect::Anthropic,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version header is required",
        );
    }
    let req = match read(&fake, Dialect::Anthropic, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let messages = array(&req, "messages");
    let users: Vec<&Value> = messages
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .collect();
    let parts = |m: &Value| -> Vec<Value> {
        match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(parts) => parts.clone(),
            _ => Vec::new(),
        }
    };
    let user_texts: Vec<String> = users
        .iter()
        .map(|m| {
            let texts: Vec<Value> = parts(m)
                .into_iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .collect();
            text_of(&Value::Array(texts))
        })
        .collect();
    let tool_output = users
        .iter()
        .flat_map(|m| parts(m))
        .rfind(|p| p.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|p| text_of(&p["content"]));
    let tools = strings(array(&req, "tools"), |t| t.get("name"));
    let turn = next_turn(&user_texts, tool_output, &tools);
    let thinks = matches!(
        req.pointer("/thinking/type").and_then(Value::as_str),
        Some("enabled" | "adaptive")
    );
    let thought = format!(
        "thinking about: {}",
        user_texts.last().map(String::as_str).unwrap_or_default()
    );
    let prompt: Vec<String> = std::iter::once(text_of(&req["system"]))
        .chain(user_texts.iter().cloned())
        .collect();
    let (input, mut output) = tokens(&prompt.join(" "), &turn);
    if thinks {
        output += count_tokens(&thought);
    }
    fake.record_tokens(input, output);
    let (block, stop_reason) = match &turn {
        Turn::Say(text) => (json!({"type": "text", "text": text}), "end_turn"),
        Turn::Call { name, arguments } => (
            json!({"type": "tool_use", "id": "toolu_fake", "name": name,
                   "input": serde_json::from_str::<Value>(arguments).unwrap_or(Value::Null)}),
            "tool_use",
        ),
    };
    let thinking = json!({"type": "thinking", "thinking": thought, "signature": "sig-fake"});
    let content: Vec<Value> = thinks
        .then(|| thinking.clone())
        .into_iter()
        .chain([block])
        .collect();
    let model = req.get("model").cloned().unwrap_or(Value::Null);
    if req.get("stream") != Some(&Value::Bool(true)) {
        let body = json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                          "content": content, "stop_reason": stop_reason, "stop_sequence": null,
                          "usage": {"input_tokens": input, "output_tokens": output}});
        return fake.json(&body, Behaviour::Succeed);
    }
    let event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        sse_event(Some(kind), &data)
    };
    let mut events = vec![event(
        "message_start",
        json!({"message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                           "content": [], "stop_reason": null, "stop_sequence": null,
                           "usage": {"input_tokens": input, "output_tokens": 1}}}),
    )];
    for (index, block) in content.iter().enumerate() {
        let delta = |d: Value| event("content_block_delta", json!({"index": index, "delta": d}));
        match block["type"].as_str() {
            Some("thinking") => {
                events.push(event(
                    "content_block_start",
                    json!({"index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                ));
                events.push(delta(
                    json!({"type": "thinking_delta", "thinking": block["thinking"]}),
                ));
                events.push(delta(
                    json!({"type": "signature_delta", "signature": block["signature"]}),
                ));
            }
            Some("tool_use") => {
                events.push(event(
                    "content_block_start",
                    json!({"index": index, "content_block": {"type": "tool_use", "id": block["id"],
                                                             "name": block["name"], "input": {}}}),
                ));
                events.push(delta(
                    json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
                ));
            }
            _ => {
                events.push(event(
                    "content_block_start",
                    json!({"index": index, "content_block": {"type": "text", "text": ""}}),
                ));
                let text = block["text"].as_str().unwrap_or_default();
                events.extend(
                    pieces(text)
                        .into_iter()
                        .map(|p| delta(json!({"type": "text_delta", "text": p}))),
                );
            }
        }
        events.push(event("content_block_stop", json!({"index": index})));
    }
    events.push(event(
        "message_delta",
        json!({"delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output}}),
    ));
    events.push(event("message_stop", json!({})));
    fake.sse(events, Behaviour::Succeed)
}

/// Whether a Gemini call's credential is scripted.
pub(crate) fn gemini_scripted(fake: &Fake, headers: &HeaderMap) -> bool {
    scripted(fake, Dialect::Gemini, headers)
}

/// A function response's output as Gemini's convention has it (`{"output": …}`),
/// else the whole response as text.
fn function_output(part: &Value) -> Option<String> {
    let response = part.pointer("/functionResponse/response")?;
    Some(match response.get("output") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => text_of(other),
        None => response.to_string(),
    })
}

/// `models/{model}:generateContent` (`stream` `None`) or `:streamGenerateContent`
/// (`Some(true)`: SSE; `Some(false)`: one JSON array) for a scripted credential: the
/// same turns in Gemini's parts (`functionCall`, `functionResponse`).
pub(crate) async fn gemini(
    fake: &Arc<Fake>,
    headers: &HeaderMap,
    body: &[u8],
    model: &str,
    stream: Option<bool>,
) -> Response {
    let req = match read(fake, Dialect::Gemini, headers, body).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let contents = array(&req, "contents");
    let parts_of = |c: &Value| array(c, "parts").to_vec();
    let user_texts: Vec<String> = contents
        .iter()
        .filter(|c| c.get("role").and_then(Value::as_str).unwrap_or("user") == "user")
        .map(|c| text_of(&Value::Array(parts_of(c))))
        .filter(|t| !t.is_empty())
        .collect();
    let tool_output = contents
        .iter()
        .flat_map(|c| array(c, "parts"))
        .rev()
        .find_map(function_output);
    let tools: Vec<String> = array(&req, "tools")
        .iter()
        .flat_map(|t| strings(array(t, "functionDeclarations"), |d| d.get("name")))
        .collect();
    let turn = next_turn(&user_texts, tool_output, &tools);
    let prompt: Vec<String> = req
        .get("systemInstruction")
        .into_iter()
        .chain(contents)
        .map(|c| text_of(&Value::Array(parts_of(c))))
        .collect();
    let (input, output) = tokens(&prompt.join(" "), &turn);
    fake.record_tokens(input, output);
    let usage = json!({"promptTokenCount": input, "candidatesTokenCount": output,
                       "totalTokenCount": input + output});
    let chunk = |parts, finish, usage| crate::gemini::response(model, parts, finish, usage);
    let (pieces_of_turn, last) = match &turn {
        Turn::Say(text) => (pieces(text), json!({"text": ""})),
        Turn::Call { name, arguments } => {
            let args: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
            (
                Vec::new(),
                json!({"functionCall": {"name": name, "args": args}}),
            )
        }
    };
    let Some(sse) = stream else {
        let parts = match &turn {
            Turn::Say(text) => vec![json!({ "text": text })],
            Turn::Call { .. } => vec![last],
        };
        return fake.json(
            &chunk(parts, Some("STOP"), Some(&usage)),
            Behaviour::Succeed,
        );
    };
    let mut chunks: Vec<Value> = pieces_of_turn
        .into_iter()
        .map(|p| chunk(vec![json!({ "text": p })], None, None))
        .collect();
    chunks.push(chunk(vec![last], Some("STOP"), Some(&usage)));
    if sse {
        let events = chunks
            .iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect();
        fake.sse(events, Behaviour::Succeed)
    } else {
        fake.json(&Value::Array(chunks), Behaviour::Succeed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(all: &[&str]) -> Vec<String> {
        all.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_marker_calls_an_offered_tool_and_a_result_ends_the_round() {
        let tools = texts(&["Read", "Bash"]);
        let asked = texts(&["read it [[tool Read {\"file_path\": \"/tmp/x\"}]] now"]);
        assert_eq!(
            next_turn(&asked, None, &tools),
            Turn::Call {
                name: "Read".into(),
                arguments: r#"{"file_path":"/tmp/x"}"#.into()
            }
        );
        assert_eq!(
            next_turn(&asked, Some(" 42\n".into()), &tools),
            Turn::Say("tool said: 42".into())
        );
        // A tool not offered, or no marker: an echo.
        assert_eq!(
            next_turn(&texts(&["[[tool Write {}]]"]), None, &tools),
            Turn::Say("echo: [[tool Write {}]]".into())
        );
        assert_eq!(
            next_turn(&texts(&["hi"]), None, &tools),
            Turn::Say("echo: hi".into())
        );
        // Arguments must be a JSON object.
        assert_eq!(tool_marker("[[tool Read [1]]]"), None);
        assert_eq!(tool_marker("[[tool Read {oops}]]"), None);
    }
}
