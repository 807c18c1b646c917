//! OpenAI's endpoints.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Dialect, Fake, Message, agentic, count_tokens, echo_last_user, error, pieces, text_of,
};

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    tools: Vec<agentic::Tool>,
    #[serde(default)]
    reasoning_effort: Option<String>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn bad_request(message: &str) -> Response {
    error(
        Dialect::OpenAi,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message,
    )
}

pub(crate) async fn chat(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, behaviour): (ChatRequest, _) = match fake.read(Dialect::OpenAi, &headers, &body).await
    {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let prompt: String = req
        .messages
        .iter()
        .map(|m| text_of(&m.content))
        .collect::<Vec<_>>()
        .join(" ");
    let (last_user, reply) = echo_last_user(&req.messages);
    let calls = agentic::calls(&req.tools, &last_user, "call_fake_");
    let reasoning =
        agentic::reasons(req.reasoning_effort.as_deref()).then(|| agentic::reasoning(&last_user));
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    let (input, output) = (count_tokens(&prompt), count_tokens(&reply));
    fake.record_tokens(input, output);
    let usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
                       "prompt_tokens_details": {"cached_tokens": 0}});

    if !req.stream {
        let body = json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": req.model,
            "choices": [{"index": 0, "message": agentic::chat_message(&reply, reasoning.as_deref(), &calls), "finish_reason": finish}],
            "usage": usage,
        });
        return fake.json(&body, behaviour);
    }
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let model = req.model;
    let chunk = |delta: Value, finish: Option<&str>| {
        let c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    if let Some(r) = &reasoning {
        events.push(chunk(json!({ "reasoning_content": r }), None));
    }
    events.extend(
        pieces(&reply)
            .into_iter()
            .map(|p| chunk(json!({ "content": p }), None)),
    );
    events.extend(
        agentic::chat_call_deltas(&calls)
            .into_iter()
            .map(|d| chunk(d, None)),
    );
    events.push(chunk(json!({}), Some(finish)));
    if include_usage {
        let c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [], "usage": usage});
        events.push(format!("data: {c}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    fake.sse(events, behaviour)
}

#[derive(Deserialize)]
struct ResponsesRequest {
    model: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    stream: bool,
}

/// Texts of a Responses `input`: a string, or items whose content is text or parts.
fn input_texts(input: &Value) -> Vec<(String, String)> {
    match input {
        Value::String(s) => vec![("user".to_owned(), s.clone())],
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let role = item
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("user")
                    .to_owned();
                (role, item.get("content").map(text_of).unwrap_or_default())
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) async fn responses(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, behaviour): (ResponsesRequest, _) =
        match fake.read(Dialect::OpenAi, &headers, &body).await {
            Ok(r) => r,
            Err(r) => return *r,
        };
    let texts = input_texts(&req.input);
    let prompt: String = req
        .instructions
        .iter()
        .cloned()
        .chain(texts.iter().map(|(_, t)| t.clone()))
        .collect::<Vec<_>>()
        .join(" ");
    let last_user = texts
        .iter()
        .rev()
        .find(|(r, _)| r == "user")
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    let reply = format!("echo: {last_user}");
    let (input, output) = (count_tokens(&prompt), count_tokens(&reply));
    fake.record_tokens(input, output);
    let usage = json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": input + output});
    let message = |text: &str, status: &str| {
        json!({"type": "message", "id": "msg_fake", "status": status, "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]})
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_fake", "object": "response", "created_at": 0, "status": status,
               "model": req.model, "output": output, "usage": usage})
    };
    if !req.stream {
        let body = response("completed", json!([message(&reply, "completed")]), usage);
        return fake.json(&body, behaviour);
    }
    let mut seq = 0u64;
    let mut event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(seq);
        seq += 1;
        format!("event: {kind}\ndata: {data}\n\n")
    };
    let mut events = vec![
        event(
            "response.created",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        event(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"type": "message", "id": "msg_fake", "status": "in_progress", "role": "assistant", "content": []}}),
        ),
    ];
    events.extend(output_text_events(&mut event, &reply));
    events.push(event(
        "response.output_item.done",
        json!({"output_index": 0, "item": message(&reply, "completed")}),
    ));
    events.push(event(
        "response.completed",
        json!({"response": response("completed", json!([message(&reply, "completed")]), usage)}),
    ));
    fake.sse(events, behaviour)
}

/// The text of a Responses message as streamed: a delta per word, then the whole.
pub(crate) fn output_text_events(
    event: &mut impl FnMut(&str, Value) -> String,
    text: &str,
) -> Vec<String> {
    let mut events: Vec<String> = pieces(text)
        .into_iter()
        .map(|p| {
            event(
                "response.output_text.delta",
                json!({"item_id": "msg_fake", "output_index": 0, "content_index": 0, "delta": p}),
            )
        })
        .collect();
    events.push(event(
        "response.output_text.done",
        json!({"item_id": "msg_fake", "output_index": 0, "content_index": 0, "text": text}),
    ));
    events
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Value,
}

pub(crate) async fn embeddings(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, behaviour): (EmbeddingsRequest, _) =
        match fake.read(Dialect::OpenAi, &headers, &body).await {
            Ok(r) => r,
            Err(r) => return *r,
        };
    let inputs: Vec<String> = match &req.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => return bad_request("input must be a string or an array"),
    };
    let tokens: u64 = inputs.iter().map(|s| count_tokens(s)).sum();
    fake.record_tokens(tokens, 0);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": [count_tokens(s) as f64, 0.5, -0.25]}))
        .collect();
    let body = json!({"object": "list", "data": data, "model": req.model,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    fake.json(&body, behaviour)
}

#[derive(Deserialize)]
struct SpeechRequest {
    #[serde(default)]
    input: String,
}

/// Bytes of fake audio per word of input.
pub const AUDIO_BYTES_PER_WORD: usize = 16 * 1024;

/// Binary audio, sent in pieces as a real TTS endpoint streams it.
pub(crate) async fn speech(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, _): (SpeechRequest, _) = match fake.read(Dialect::OpenAi, &headers, &body).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let words = usize::try_from(count_tokens(&req.input)).unwrap_or(0);
    fake.record_tokens(count_tokens(&req.input), 0);
    let chunks = (0..words).map(|i| {
        Ok::<_, std::convert::Infallible>(Bytes::from(vec![
            u8::try_from(i % 251).unwrap_or(0);
            AUDIO_BYTES_PER_WORD
        ]))
    });
    (
        [(header::CONTENT_TYPE, "audio/mpeg")],
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
        .into_response()
}

/// A transcription: reports the model and the size of the upload it received.
pub(crate) async fn transcription(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let behaviour = match fake.admit(Dialect::OpenAi, &headers).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("multipart/form-data") {
        return bad_request("expected multipart/form-data");
    }
    if fake.record
        && let Ok(mut sizes) = fake.observed.upload_sizes.lock()
    {
        sizes.push(body.len());
    }
    let text = format!("received {} bytes", body.len());
    let input = 1 + u64::try_from(body.len() / 1024).unwrap_or(0);
    let output = count_tokens(&text);
    fake.record_tokens(input, output);
    let answer = json!({"text": text, "usage": {"type": "tokens", "input_tokens": input, "output_tokens": output, "total_tokens": input + output}});
    fake.json(&answer, behaviour)
}
