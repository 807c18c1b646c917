//! For generated answers, the translated stream, reassembled the way each dialect's
//! SDK reassembles it, equals the translation of the whole answer.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::super::ir::{Answer, Finish, OutPart, Usage};
use super::super::{answer, translate_answer};
use super::{Dialect, exchange, run_stream, sse};
use crate::usage::StreamEnd;

pub(super) const NOW: u64 = 1_700_000_000;

pub(super) fn text() -> impl Strategy<Value = String> {
    "[a-z0-9 \"\\\\\n\u{e9}\u{1F600}{}]{1,24}"
}

pub(super) fn arguments() -> impl Strategy<Value = String> {
    prop::collection::btree_map("[a-z]{1,6}", text(), 0..3)
        .prop_map(|m| serde_json::to_string(&m).unwrap_or_default())
}

fn part(signed: bool) -> impl Strategy<Value = OutPart<'static>> {
    prop_oneof![
        text().prop_map(|t| OutPart::Text(t.into())),
        (text(), "[A-Za-z0-9+/]{4,12}").prop_map(move |(t, s)| OutPart::Thinking {
            text: t.into(),
            signature: signed.then(|| s.into()),
        }),
        ("[a-z]{3,8}", "[a-z_]{1,10}", arguments()).prop_map(|(id, name, arguments)| {
            OutPart::ToolCall {
                id: format!("call_{id}").into(),
                name: name.into(),
                arguments: arguments.into(),
            }
        }),
    ]
}

fn finish() -> impl Strategy<Value = Finish> {
    prop_oneof![
        Just(Finish::Stop),
        Just(Finish::Length),
        Just(Finish::ToolUse),
        Just(Finish::Refusal)
    ]
}

fn usage(cache: bool) -> impl Strategy<Value = Usage> {
    (0u64..5000, 0u64..5000, 0u64..500, 0u64..500).prop_map(move |(input, output, read, write)| {
        let (read, write) = if cache { (read, write) } else { (0, 0) };
        Usage {
            input: input + read + write,
            output,
            cache_read: read,
            cache_write: write,
            reasoning: None,
        }
    })
}

/// An Anthropic answer: any parts in any order, thinking signed.
pub(super) fn anthropic_answer() -> impl Strategy<Value = Answer<'static>> {
    (
        prop::collection::vec(part(true), 0..6),
        finish(),
        usage(true),
    )
        .prop_map(|(parts, finish, usage)| Answer {
            id: "msg_01".into(),
            model: "claude-x".into(),
            parts,
            finish,
            stop_sequence: None,
            usage,
        })
}

/// A chat answer: unsigned reasoning, then text, then tool calls (the order one
/// message holds them in).
pub(super) fn chat_answer() -> impl Strategy<Value = Answer<'static>> {
    (
        prop::option::of(text()),
        prop::option::of(text()),
        prop::collection::vec(part(false), 0..4),
        finish(),
        usage(false),
    )
        .prop_map(|(reasoning, content, calls, finish, mut usage)| {
            let mut parts = Vec::new();
            parts.extend(reasoning.map(|t| OutPart::Thinking {
                text: t.into(),
                signature: None,
            }));
            parts.extend(content.map(|t| OutPart::Text(t.into())));
            parts.extend(
                calls
                    .into_iter()
                    .filter(|p| matches!(p, OutPart::ToolCall { .. })),
            );
            // Chat cannot say a refusal's reason without refusal text.
            let finish = if finish == Finish::Refusal {
                Finish::Stop
            } else {
                finish
            };
            usage.cache_write = 0;
            Answer {
                id: "chatcmpl-1".into(),
                model: "gpt-x".into(),
                parts,
                finish,
                stop_sequence: None,
                usage,
            }
        })
}

/// `text` cut into pieces of `sizes` characters (cycled).
pub(super) fn pieces(text: &str, sizes: &[usize]) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < chars.len() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(3)
            .max(1);
        out.push(chars[at..(at + n).min(chars.len())].iter().collect());
        at += n;
        i += 1;
    }
    out
}

pub(super) fn anthropic_stream(a: &Answer<'_>, sizes: &[usize]) -> Vec<Vec<u8>> {
    let e = |name: &str, data: Value| sse(Some(name), &data);
    let mut out = vec![e(
        "message_start",
        json!({"type": "message_start", "message": {"id": a.id, "type": "message", "role": "assistant", "model": a.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": a.usage.input - a.usage.cache_read - a.usage.cache_write, "output_tokens": 1,
                      "cache_read_input_tokens": a.usage.cache_read, "cache_creation_input_tokens": a.usage.cache_write}}}),
    )];
    for (index, p) in a.parts.iter().enumerate() {
        let delta = |d: Value| {
            e(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": d}),
            )
        };
        let (block, deltas): (Value, Vec<Vec<u8>>) = match p {
            OutPart::Text(t) => (
                json!({"type": "text", "text": ""}),
                pieces(t, sizes)
                    .into_iter()
                    .map(|p| delta(json!({"type": "text_delta", "text": p})))
                    .collect(),
            ),
            OutPart::Thinking { text, signature } => {
                let mut d: Vec<Vec<u8>> = pieces(text, sizes)
                    .into_iter()
                    .map(|p| delta(json!({"type": "thinking_delta", "thinking": p})))
                    .collect();
                d.push(delta(
                    json!({"type": "signature_delta", "signature": signature}),
                ));
                (
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    d,
                )
            }
            OutPart::RedactedThinking(data) => (
                json!({"type": "redacted_thinking", "data": data}),
                Vec::new(),
            ),
            OutPart::ToolCall {
                id,
                name,
                arguments,
            } => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                pieces(arguments, sizes)
                    .into_iter()
                    .map(|p| delta(json!({"type": "input_json_delta", "partial_json": p})))
                    .collect(),
            ),
        };
        out.push(e(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        out.extend(deltas);
        out.push(e(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push(e(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": super::super::messages_answer::finish_name(a.finish), "stop_sequence": null},
               "usage": {"output_tokens": a.usage.output}}),
    ));
    out.push(e("message_stop", json!({"type": "message_stop"})));
    out
}

pub(super) fn chat_stream(a: &Answer<'_>, sizes: &[usize]) -> Vec<Vec<u8>> {
    let chunk = |delta: Value, finish: Value| {
        sse(
            None,
            &json!({"id": a.id, "object": "chat.completion.chunk", "created": 1, "model": a.model,
                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let mut call = 0;
    for p in &a.parts {
        match p {
            OutPart::Text(t) => out.extend(
                pieces(t, sizes)
                    .into_iter()
                    .map(|p| chunk(json!({"content": p}), Value::Null)),
            ),
            OutPart::Thinking { text, .. } => out.extend(
                pieces(text, sizes)
                    .into_iter()
                    .map(|p| chunk(json!({"reasoning_content": p}), Value::Null)),
            ),
            OutPart::RedactedThinking(_) => {}
            OutPart::ToolCall {
                id,
                name,
                arguments,
            } => {
                out.push(chunk(
                    json!({"tool_calls": [{"index": call, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                out.extend(pieces(arguments, sizes).into_iter().map(|p| {
                    chunk(
                        json!({"tool_calls": [{"index": call, "function": {"arguments": p}}]}),
                        Value::Null,
                    )
                }));
                call += 1;
            }
        }
    }
    out.push(chunk(
        json!({}),
        json!(super::super::chat_answer::finish_name(a.finish)),
    ));
    out.push(sse(None, &json!({"id": a.id, "object": "chat.completion.chunk", "created": 1, "model": a.model, "choices": [],
        "usage": {"prompt_tokens": a.usage.input, "completion_tokens": a.usage.output, "total_tokens": a.usage.input + a.usage.output,
                  "prompt_tokens_details": {"cached_tokens": a.usage.cache_read}}})));
    out.push(b"data: [DONE]\n\n".to_vec());
    out
}

pub(super) fn data_of(event: &str) -> Option<Value> {
    let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
    serde_json::from_str(data).ok()
}

/// A chat stream reassembled as the OpenAI SDK does, with the thinking-block
/// convention: reasoning streamed since the last signature is that signature's block.
fn reassemble_chat(stream: &str) -> Value {
    let (mut content, mut reasoning, mut since) = (String::new(), String::new(), String::new());
    let mut blocks = Vec::new();
    let mut calls: Vec<Value> = Vec::new();
    let (mut id, mut model, mut finish, mut usage) =
        (Value::Null, Value::Null, Value::Null, Value::Null);
    for chunk in stream.split("\n\n").filter_map(data_of) {
        id = chunk["id"].clone();
        model = chunk["model"].clone();
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        let d = &choice["delta"];
        if let Some(t) = d["content"].as_str() {
            content.push_str(t);
        }
        if let Some(t) = d["reasoning_content"].as_str() {
            reasoning.push_str(t);
            since.push_str(t);
        }
        for b in d["thinking_blocks"].as_array().into_iter().flatten() {
            if b["type"] == "thinking" {
                blocks.push(json!({"type": "thinking", "thinking": std::mem::take(&mut since), "signature": b["signature"]}));
            } else {
                blocks.push(b.clone());
            }
        }
        for c in d["tool_calls"].as_array().into_iter().flatten() {
            let i = c["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push(json!({"id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": ""}}));
            }
            let args = format!(
                "{}{}",
                calls[i]["function"]["arguments"].as_str().unwrap(),
                c["function"]["arguments"].as_str().unwrap_or("")
            );
            calls[i]["function"]["arguments"] = json!(args);
        }
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if content.is_empty() {
            Value::Null
        } else {
            json!(content)
        },
    );
    message.insert("refusal".into(), Value::Null);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), json!(reasoning));
    }
    if !blocks.is_empty() {
        message.insert("thinking_blocks".into(), json!(blocks));
    }
    if !calls.is_empty() {
        message.insert("tool_calls".into(), json!(calls));
    }
    json!({"id": id, "object": "chat.completion", "created": NOW, "model": model,
           "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}], "usage": usage})
}

/// An Anthropic stream reassembled as Anthropic's SDK does.
fn reassemble_messages(stream: &str) -> Value {
    let mut message = Value::Null;
    let mut partial: Vec<String> = Vec::new();
    for event in stream.split("\n\n").filter_map(data_of) {
        match event["type"].as_str().unwrap() {
            "message_start" => message = event["message"].clone(),
            "content_block_start" => {
                message["content"]
                    .as_array_mut()
                    .unwrap()
                    .push(event["content_block"].clone());
                partial.push(String::new());
            }
            "content_block_delta" => {
                let i = event["index"].as_u64().unwrap() as usize;
                let block = &mut message["content"][i];
                let d = &event["delta"];
                let append = |block: &mut Value, key: &str, piece: &Value| {
                    let joined = format!(
                        "{}{}",
                        block[key].as_str().unwrap(),
                        piece.as_str().unwrap()
                    );
                    block[key] = json!(joined);
                };
                match d["type"].as_str().unwrap() {
                    "text_delta" => append(block, "text", &d["text"]),
                    "thinking_delta" => append(block, "thinking", &d["thinking"]),
                    "signature_delta" => append(block, "signature", &d["signature"]),
                    "input_json_delta" => partial[i].push_str(d["partial_json"].as_str().unwrap()),
                    other => panic!("unknown delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = event["index"].as_u64().unwrap() as usize;
                if message["content"][i]["type"] == "tool_use" && !partial[i].is_empty() {
                    message["content"][i]["input"] = serde_json::from_str(&partial[i]).unwrap();
                }
            }
            "message_delta" => {
                message["stop_reason"] = event["delta"]["stop_reason"].clone();
                message["stop_sequence"] = event["delta"]["stop_sequence"].clone();
                for (k, v) in event["usage"].as_object().unwrap() {
                    message["usage"][k] = v.clone();
                }
            }
            "message_stop" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    message
}

pub(super) fn whole(client: Dialect, upstream: Dialect, a: &Answer<'_>) -> Value {
    let body = answer::write(upstream, a, 1);
    let t = translate_answer(&exchange(client, upstream, true), 200, &body, NOW);
    assert_eq!(t.status, 200);
    serde_json::from_slice(&t.body).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn anthropic_stream_to_chat_reassembles_to_the_whole(a in anthropic_answer(), sizes in prop::collection::vec(1usize..9, 1..4)) {
        let (stream, end) = run_stream(&exchange(Dialect::Chat, Dialect::Messages, true), &anthropic_stream(&a, &sizes));
        prop_assert_eq!(end, StreamEnd::Complete);
        prop_assert_eq!(reassemble_chat(&stream), whole(Dialect::Chat, Dialect::Messages, &a));
    }

    #[test]
    fn chat_stream_to_anthropic_reassembles_to_the_whole(a in chat_answer(), sizes in prop::collection::vec(1usize..9, 1..4)) {
        let (stream, end) = run_stream(&exchange(Dialect::Messages, Dialect::Chat, true), &chat_stream(&a, &sizes));
        prop_assert_eq!(end, StreamEnd::Complete);
        prop_assert_eq!(reassemble_messages(&stream), whole(Dialect::Messages, Dialect::Chat, &a));
    }
}

/// A Responses stream reassembled from its events: each item as `output_item.done`
/// gives it (after checking that its deltas add up to it), and the final response's
/// status and usage.
fn reassemble_responses(stream: &str) -> Value {
    let mut streamed: std::collections::HashMap<String, String> = Default::default();
    let mut items = Vec::new();
    let mut last = Value::Null;
    for event in stream.split("\n\n").filter_map(data_of) {
        let kind = event["type"].as_str().unwrap().to_owned();
        if kind.ends_with(".delta") {
            let id = event["item_id"].as_str().unwrap().to_owned();
            streamed
                .entry(id)
                .or_default()
                .push_str(event["delta"].as_str().unwrap());
        } else if kind == "response.output_item.done" {
            let item = event["item"].clone();
            let id = item["id"].as_str().unwrap();
            let told = streamed.remove(id).unwrap_or_default();
            let whole = match item["type"].as_str().unwrap() {
                "message" => item["content"][0]["text"].as_str().unwrap().to_owned(),
                "reasoning" => item["summary"]
                    .get(0)
                    .map_or(String::new(), |s| s["text"].as_str().unwrap().to_owned()),
                _ => item["arguments"].as_str().unwrap().to_owned(),
            };
            assert_eq!(told, whole, "deltas of {id}");
            items.push(item);
        } else if kind == "response.completed" || kind == "response.incomplete" {
            last = event["response"].clone();
        }
    }
    assert_eq!(
        last["output"],
        json!(items),
        "the final response repeats the items"
    );
    last
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn anthropic_stream_to_responses_reassembles_to_the_whole(a in anthropic_answer(), sizes in prop::collection::vec(1usize..9, 1..4)) {
        let (stream, end) = run_stream(&exchange(Dialect::Responses, Dialect::Messages, true), &anthropic_stream(&a, &sizes));
        prop_assert_eq!(end, StreamEnd::Complete);
        prop_assert_eq!(reassemble_responses(&stream), whole(Dialect::Responses, Dialect::Messages, &a));
    }

    #[test]
    fn chat_stream_to_responses_reassembles_to_the_whole(a in chat_answer(), sizes in prop::collection::vec(1usize..9, 1..4)) {
        let (stream, end) = run_stream(&exchange(Dialect::Responses, Dialect::Chat, true), &chat_stream(&a, &sizes));
        prop_assert_eq!(end, StreamEnd::Complete);
        prop_assert_eq!(reassemble_responses(&stream), whole(Dialect::Responses, Dialect::Chat, &a));
    }
}

/// A Gemini answer as its whole body and as a stream of chunks: thoughts, text and
/// function calls in any order; the last chunk carries the finish reason and usage.
fn gemini_bodies() -> impl Strategy<Value = (Value, Vec<Vec<u8>>)> {
    let part = prop_oneof![
        text().prop_map(|t| json!({"text": t, "thought": true})),
        text().prop_map(|t| json!({"text": t})),
        ("[a-z_]{1,10}", arguments()).prop_map(|(name, args)| {
            json!({"functionCall": {"name": name, "args": serde_json::from_str::<Value>(&args).unwrap()}})
        }),
    ];
    (
        prop::collection::vec(part, 0..6),
        prop::collection::vec(1usize..9, 1..4),
        prop_oneof![Just("STOP"), Just("MAX_TOKENS"), Just("SAFETY")],
        (0u64..5000, 0u64..5000, 0u64..100),
    )
        .prop_map(|(parts, sizes, finish, (prompt, out, cached))| {
            let usage = json!({"promptTokenCount": prompt + cached, "candidatesTokenCount": out,
                               "cachedContentTokenCount": cached, "totalTokenCount": prompt + cached + out});
            let whole = json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}],
                               "usageMetadata": usage, "modelVersion": "gemini-x", "responseId": "g-1"});
            let chunk = |parts: Value, last: bool| {
                let mut c = json!({"candidates": [{"content": {"role": "model", "parts": parts}}],
                                   "modelVersion": "gemini-x", "responseId": "g-1"});
                if last {
                    c["candidates"][0]["finishReason"] = json!(finish);
                    c["usageMetadata"] = usage.clone();
                }
                sse(None, &c)
            };
            let mut stream = Vec::new();
            for p in &parts {
                match p["text"].as_str() {
                    Some(t) => stream.extend(pieces(t, &sizes).into_iter().map(|piece| {
                        let mut q = p.clone();
                        q["text"] = json!(piece);
                        chunk(json!([q]), false)
                    })),
                    None => stream.push(chunk(json!([p]), false)),
                }
            }
            stream.push(chunk(json!([]), true));
            (whole, stream)
        })
}

fn reassembled(client: Dialect, stream: &str) -> Value {
    match client {
        Dialect::Chat => reassemble_chat(stream),
        Dialect::Messages => reassemble_messages(stream),
        _ => reassemble_responses(stream),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn gemini_stream_reassembles_to_the_whole_in_every_dialect((whole_body, stream) in gemini_bodies()) {
        for client in [Dialect::Chat, Dialect::Messages, Dialect::Responses] {
            let ex = exchange(client, Dialect::Gemini, true);
            let (out, end) = run_stream(&ex, &stream);
            prop_assert_eq!(end, StreamEnd::Complete);
            let whole = translate_answer(&ex, 200, &serde_json::to_vec(&whole_body).unwrap(), NOW);
            let whole: Value = serde_json::from_slice(&whole.body).unwrap();
            prop_assert_eq!(reassembled(client, &out), whole, "{:?}", client);
        }
    }
}
