//! Streams, event by event, both ways.

use serde_json::{Value, json};

use super::super::StreamTranslator;
use super::{Dialect, datas, exchange, run_stream, sse};
use crate::usage::StreamEnd;

const C: Dialect = Dialect::Chat;
const M: Dialect = Dialect::Messages;

pub(super) fn anthropic_tool_stream() -> Vec<Vec<u8>> {
    let e = |name: &str, data: Value| sse(Some(name), &data);
    vec![
        e(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0}}}),
        ),
        e("ping", json!({"type": "ping"})),
        e(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Paris first."}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
        ),
        e(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        e(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Let me check."}}),
        ),
        e(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        e(
            "content_block_start",
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Par"}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "is\"}"}}),
        ),
        e(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 2}),
        ),
        e(
            "content_block_start",
            json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {}}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Rome\"}"}}),
        ),
        e(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 3}),
        ),
        e(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 89}}),
        ),
        e("message_stop", json!({"type": "message_stop"})),
    ]
}

#[test]
fn anthropic_stream_to_chat_chunks() {
    let (out, end) = run_stream(&exchange(C, M, true), &anthropic_tool_stream());
    assert_eq!(end, StreamEnd::Complete);
    let d = datas(&out);
    let deltas: Vec<&Value> = d
        .iter()
        .filter_map(|c| c["choices"].get(0).map(|c| &c["delta"]))
        .collect();
    assert_eq!(
        deltas,
        [
            &json!({"role": "assistant", "content": ""}),
            &json!({"reasoning_content": "Paris first."}),
            &json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "EqQB"}]}),
            &json!({"content": "Let me check."}),
            &json!({"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Par"}}]}),
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "is\"}"}}]}),
            &json!({"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            &json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"city\": \"Rome\"}"}}]}),
            &json!({}),
        ]
    );
    let first = &d[0];
    assert_eq!(first["id"], "msg_1");
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["model"], "claude-sonnet-4-5");
    assert_eq!(first["created"], 1_700_000_000);
    let finish = &d[d.len() - 3];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let usage = &d[d.len() - 2];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 112, "completion_tokens": 89, "total_tokens": 201, "prompt_tokens_details": {"cached_tokens": 100}})
    );
    assert_eq!(d[d.len() - 1], "[DONE]");
    // Without include_usage, no usage chunk.
    let (out, _) = run_stream(&exchange(C, M, false), &anthropic_tool_stream());
    assert!(datas(&out).iter().all(|c| c.get("usage").is_none()));
    assert!(out.ends_with("data: [DONE]\n\n"));
}

pub(super) fn chat_tool_stream() -> Vec<Vec<u8>> {
    let chunk = |delta: Value, finish: Value| {
        sse(
            None,
            &json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1",
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
        )
    };
    vec![
        chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ),
        chunk(json!({"content": "On it"}), Value::Null),
        chunk(json!({"content": "."}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": ":\"Paris\"}"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
        sse(
            None,
            &json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1", "choices": [],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70, "prompt_tokens_details": {"cached_tokens": 10}}}),
        ),
        b"data: [DONE]\n\n".to_vec(),
    ]
}

#[test]
fn chat_stream_to_anthropic_events() {
    let (out, end) = run_stream(&exchange(M, C, true), &chat_tool_stream());
    assert_eq!(end, StreamEnd::Complete);
    let names: Vec<&str> = out
        .split("\n\n")
        .filter_map(|e| e.lines().next()?.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let d = datas(&out);
    assert_eq!(d[0]["message"]["id"], "chatcmpl-9");
    assert_eq!(d[0]["message"]["model"], "gpt-4.1");
    assert_eq!(d[1]["content_block"], json!({"type": "text", "text": ""}));
    assert_eq!(
        d[2]["delta"],
        json!({"type": "text_delta", "text": "On it"})
    );
    assert_eq!(
        d[5],
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}})
    );
    assert_eq!(
        d[7],
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ":\"Paris\"}"}})
    );
    assert_eq!(d[9]["content_block"]["id"], "call_b");
    assert_eq!(d[10]["delta"]["partial_json"], "{\"city\":\"Rome\"}");
    assert_eq!(d[11], json!({"type": "content_block_stop", "index": 2}));
    assert_eq!(
        d[12],
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
               "usage": {"input_tokens": 40, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10}})
    );
}

#[test]
fn a_stream_cut_short_ends_with_the_clients_error_event() {
    let events = anthropic_tool_stream();
    let (out, end) = run_stream(&exchange(C, M, true), &events[..8]);
    assert_eq!(end, StreamEnd::Truncated);
    let last = datas(&out).pop().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("before its last event"),
        "{last}"
    );
    assert!(!out.contains("[DONE]"));

    let events = chat_tool_stream();
    let (out, end) = run_stream(&exchange(M, C, true), &events[..5]);
    assert_eq!(end, StreamEnd::Truncated);
    assert!(out.ends_with("\n\n"));
    let last_event = out.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last_event.starts_with("event: error\ndata: {\"type\":\"error\""),
        "{last_event}"
    );
    assert!(!out.contains("message_stop"));
}

#[test]
fn broken_and_upstream_errors_are_told_once() {
    let mut t = StreamTranslator::new(&exchange(M, C, true), 0);
    let mut out = Vec::new();
    t.feed(&chat_tool_stream()[0], &mut out);
    t.broken("connection reset", &mut out);
    assert!(t.ended());
    let told = out.len();
    t.broken("again", &mut out);
    t.feed(&chat_tool_stream()[1], &mut out);
    assert_eq!(out.len(), told, "nothing after the end");
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("event: error") && text.contains("connection reset"),
        "{text}"
    );

    // The upstream's own error event becomes the client's.
    let overloaded = sse(
        Some("error"),
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    let events = [anthropic_tool_stream()[0].clone(), overloaded];
    let (out, end) = run_stream(&exchange(C, M, true), &events);
    assert_eq!(end, StreamEnd::Failed);
    let last = datas(&out).pop().unwrap();
    assert_eq!(last["error"]["message"], "Overloaded");
    assert_eq!(last["error"]["code"], "unavailable");

    let chat_error = sse(
        None,
        &json!({"error": {"message": "server error", "type": "server_error"}}),
    );
    let (out, end) = run_stream(&exchange(M, C, true), &[chat_error]);
    assert_eq!(end, StreamEnd::Failed);
    assert!(out.starts_with("event: error\n"), "{out}");

    // An event that is not JSON is the upstream's failure, told as such.
    let (out, end) = run_stream(&exchange(M, C, true), &[b"data: {not json\n\n".to_vec()]);
    assert_eq!(end, StreamEnd::Failed);
    assert!(out.contains("could not be read"), "{out}");
}

#[test]
fn interleaved_tool_arguments_cannot_be_told_to_anthropic_clients() {
    let chunk = |delta: Value| {
        sse(
            None,
            &json!({"id": "c", "model": "g", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]}),
        )
    };
    let events = [
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}]}),
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{"}}]}),
        ),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]})),
    ];
    let (out, end) = run_stream(&exchange(M, C, true), &events);
    assert_eq!(end, StreamEnd::Failed);
    assert!(out.contains("interleaved"), "{out}");
}

/// The router's own stream meter, run over a translated stream, finds its usage and
/// its protocol's last event: what the client receives is the client's protocol.
#[test]
fn the_stream_meter_reads_translated_streams() {
    use crate::endpoint::UsageShape;
    use crate::usage::{StreamMeter, TokenUsage};

    let meter = |shape: UsageShape, stream: &str| {
        let mut m = StreamMeter::new(shape);
        for event in stream.split_inclusive("\n\n") {
            if let Some(data) = crate::sse::event_data(event.as_bytes()) {
                m.observe(&data);
            }
        }
        (m.usage(), m.end())
    };
    let anthropic = anthropic_tool_stream();
    let chat = chat_tool_stream();
    let anthropic_usage = TokenUsage {
        input: 112,
        output: 89,
        cached: 100,
        cache_write: 0,
    };
    let chat_usage = TokenUsage {
        input: 50,
        output: 20,
        cached: 10,
        cache_write: 0,
    };
    for (client, upstream, events, shape, usage) in [
        (C, M, &anthropic, UsageShape::OpenAiChat, anthropic_usage),
        (
            Dialect::Responses,
            M,
            &anthropic,
            UsageShape::OpenAiResponses,
            anthropic_usage,
        ),
        (M, C, &chat, UsageShape::Anthropic, chat_usage),
        (
            Dialect::Responses,
            C,
            &chat,
            UsageShape::OpenAiResponses,
            chat_usage,
        ),
    ] {
        let (out, _) = run_stream(&exchange(client, upstream, true), events);
        assert_eq!(
            meter(shape, &out),
            (Some(usage), StreamEnd::Complete),
            "{client:?} from {upstream:?}"
        );
        // Cut short, the client's stream ends as its protocol's failure.
        let (out, _) = run_stream(&exchange(client, upstream, true), &events[..4]);
        assert_ne!(
            meter(shape, &out).1,
            StreamEnd::Complete,
            "{client:?} from {upstream:?}"
        );
    }
}
