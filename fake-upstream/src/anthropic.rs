//! Anthropic's endpoints: messages (JSON and SSE, text and tool use) and token
//! counting.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Dialect, Fake, Message, agentic, count_tokens, echo_last_user, error, json_response, pieces,
    text_of,
};

#[derive(Deserialize)]
struct MessagesRequest {
    model: String,
    #[serde(default)]
    system: Value,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    tools: Vec<agentic::Tool>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    thinking: Option<agentic::Thinking>,
}

async fn read(
    fake: &Fake,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(MessagesRequest, crate::Behaviour), Box<Response>> {
    if headers.get("anthropic-version").is_none() {
        return Err(Box::new(error(
            Dialect::Anthropic,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version header is required",
        )));
    }
    fake.read(Dialect::Anthropic, headers, body).await
}

fn prompt_of(req: &MessagesRequest) -> String {
    std::iter::once(text_of(&req.system))
        .chain(req.messages.iter().map(|m| text_of(&m.content)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) async fn count(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match read(&fake, &headers, &body).await {
        Ok((req, _)) => json_response(&json!({"input_tokens": count_tokens(&prompt_of(&req))})),
        Err(r) => *r,
    }
}

pub(crate) async fn messages(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, behaviour) = match read(&fake, &headers, &body).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let (last_user, reply) = echo_last_user(&req.messages);
    let input = count_tokens(&prompt_of(&req));
    let output = count_tokens(&reply);
    fake.record_tokens(input, output);
    // A system prompt marked for caching is written to the cache on its first call
    // and read from it afterwards; `input_tokens` counts only the rest, as Anthropic's does.
    let (cache_read, cache_write) = if req.system.to_string().contains("cache_control") {
        let system = text_of(&req.system);
        let tokens = count_tokens(&system).min(input);
        if fake.cached_before(&system) {
            (tokens, 0)
        } else {
            (0, tokens)
        }
    } else {
        (0, 0)
    };
    let fresh = input - cache_read - cache_write;
    // With tools offered, answer the way a coding agent expects: text, then a call to
    // the first tool (to every tool, asked `in parallel`: see `agentic`).
    let calls = agentic::calls(&req.tools, &last_user, "toolu_fake");
    let thinking = agentic::thinks(req.thinking.as_ref()).then(|| agentic::reasoning(&last_user));
    let stop_reason = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    if !req.stream {
        let mut content = Vec::new();
        if let Some(t) = &thinking {
            content
                .push(json!({"type": "thinking", "thinking": t, "signature": agentic::SIGNATURE}));
        }
        content.push(json!({"type": "text", "text": reply}));
        content.extend(agentic::tool_use_blocks(&calls));
        let body = json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": req.model,
                          "content": content, "stop_reason": stop_reason, "stop_sequence": null,
                          "usage": {"input_tokens": fresh, "output_tokens": output,
                                    "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}});
        return fake.json(&body, behaviour);
    }
    let event = |kind: &str, data: Value| format!("event: {kind}\ndata: {data}\n\n");
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
                   "model": req.model, "content": [], "stop_reason": null, "stop_sequence": null,
                   "usage": {"input_tokens": fresh, "output_tokens": 1, "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}}}),
    )];
    let mut index = 0;
    if let Some(t) = &thinking {
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}}),
        ));
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": t}}),
        ));
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": agentic::SIGNATURE}}),
        ));
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    events.push(event(
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
    ));
    for p in pieces(&reply) {
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    ));
    for call in &calls {
        index += 1;
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}),
        ));
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": call.arguments}}),
        ));
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    fake.sse(events, behaviour)
}
