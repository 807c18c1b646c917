//! Gemini clients, the answer side: whole answers and errors in Gemini's shape,
//! streams as `GenerateContentResponse` chunks, golden files of real Google GenAI SDK
//! and Gemini CLI requests, and the stream-equals-whole property for the Gemini
//! writer.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::{
    ClientHeaders, GeminiCall, StreamTranslator, error_answer, translate_answer, translate_request,
};
use super::golden::{check, read, stream};
use super::property::{
    anthropic_answer, anthropic_stream, chat_answer, chat_stream, data_of, whole,
};
use super::{Dialect, datas, exchange, run_stream, sse};
use crate::error::ErrorCode;
use crate::usage::StreamEnd;

const C: Dialect = Dialect::Chat;
const M: Dialect = Dialect::Messages;
const G: Dialect = Dialect::Gemini;

fn answer_json(upstream: Dialect, status: u16, body: &[u8]) -> (u16, Value) {
    let a = translate_answer(&exchange(G, upstream, false), status, body, 7);
    (a.status, serde_json::from_slice(&a.body).unwrap())
}

#[test]
fn whole_answers_in_gemini_shape() {
    let anthropic = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "c2ln"},
            {"type": "redacted_thinking", "data": "RED"},
            {"type": "text", "text": "Calling."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2}});
    let (status, g) = answer_json(M, 200, &serde_json::to_vec(&anthropic).unwrap());
    assert_eq!(status, 200);
    assert_eq!(
        g,
        json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "Hmm.", "thought": true, "thoughtSignature": "YW50aHJvcGljLnRoaW5raW5nOmMybG4="},
                {"text": "", "thought": true, "thoughtSignature": "YW50aHJvcGljLnJlZGFjdGVkOlJFRA=="},
                {"text": "Calling."},
                {"functionCall": {"id": "toolu_1", "name": "f", "args": {"a": 1}}}
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 17, "candidatesTokenCount": 20, "totalTokenCount": 37,
                              "cachedContentTokenCount": 5},
            "modelVersion": "claude-x", "responseId": "msg_1"
        })
    );
    let openai = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Cut",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "g", "arguments": "{not json"}}]},
            "finish_reason": "length"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 30, "total_tokens": 39,
                  "completion_tokens_details": {"reasoning_tokens": 12}}});
    let (_, g) = answer_json(C, 200, &serde_json::to_vec(&openai).unwrap());
    assert_eq!(g["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(
        g["candidates"][0]["content"]["parts"][1]["functionCall"]["args"],
        json!({"_invalid_arguments": "{not json"})
    );
    assert_eq!(
        g["usageMetadata"],
        json!({"promptTokenCount": 9, "candidatesTokenCount": 18, "thoughtsTokenCount": 12, "totalTokenCount": 39})
    );
    let refused = json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "stop_reason": "refusal", "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 0}});
    let (_, g) = answer_json(M, 200, &serde_json::to_vec(&refused).unwrap());
    assert_eq!(g["candidates"][0]["finishReason"], "SAFETY");
}

#[test]
fn errors_in_gemini_shape() {
    let overloaded =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(
        answer_json(M, 529, overloaded),
        (
            503,
            json!({"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}})
        )
    );
    let quota = br#"{"error":{"message":"You exceeded your quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    assert_eq!(
        answer_json(C, 429, quota),
        (
            429,
            json!({"error": {"code": 429, "message": "You exceeded your quota", "status": "RESOURCE_EXHAUSTED"}})
        )
    );
    let (status, g) = answer_json(M, 200, b"{\"content\": 5}");
    assert_eq!(
        (status, g["error"]["status"].as_str()),
        (502, Some("INTERNAL"))
    );
    // A refusal, or the data plane's own error, told to a Gemini client.
    let a = error_answer(
        G,
        ErrorCode::Unprocessable,
        "googleSearch cannot be carried",
    );
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        (a.status, v),
        (
            422,
            json!({"error": {"code": 422, "message": "googleSearch cannot be carried", "status": "INVALID_ARGUMENT"}})
        )
    );
    let a = error_answer(G, ErrorCode::Unauthenticated, "bad key");
    assert_eq!(a.status, 401);
    // Other dialects keep their shapes.
    let a = error_answer(M, ErrorCode::RateLimited, "slow down");
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[test]
fn streams_as_gemini_chunks() {
    let e = |name: &str, data: Value| sse(Some(name), &data);
    let events = vec![
        e(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_9", "model": "claude-x", "content": [],
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        e(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ),
        e(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        e(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "f", "input": {}}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        ),
        e(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        e(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}}),
        ),
        e("message_stop", json!({"type": "message_stop"})),
    ];
    let (out, end) = run_stream(&exchange(G, M, true), &events);
    assert_eq!(end, StreamEnd::Complete);
    let chunk = |parts: Value| {
        json!({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
                                      "modelVersion": "claude-x", "responseId": "msg_9"})
    };
    let mut last = chunk(json!([{"text": ""}]));
    last["candidates"][0]["finishReason"] = json!("STOP");
    last["usageMetadata"] =
        json!({"promptTokenCount": 10, "candidatesTokenCount": 7, "totalTokenCount": 17});
    assert_eq!(
        datas(&out),
        vec![
            chunk(json!([{"text": "Hi"}])),
            // The call is sent whole once its arguments end.
            chunk(json!([{"functionCall": {"id": "toolu_2", "name": "f", "args": {"a": 1}}}])),
            last
        ]
    );
    // Cut short: Gemini's error object ends the stream.
    let (out, end) = run_stream(&exchange(G, M, true), &events[..3]);
    assert_eq!(end, StreamEnd::Truncated);
    let d = datas(&out);
    assert_eq!(d.len(), 2);
    assert_eq!(d[1]["error"]["status"], "INTERNAL");
    // The upstream's error event keeps its kind.
    let error = e(
        "error",
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    let (out, end) = run_stream(&exchange(G, M, true), &[events[0].clone(), error]);
    assert_eq!(end, StreamEnd::Failed);
    assert_eq!(
        datas(&out),
        vec![json!({"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}})]
    );
    // A transport failure mid-stream: the error object, once, and nothing after it.
    let mut t = StreamTranslator::new(&exchange(G, C, true), 1);
    let mut out = Vec::new();
    t.feed(
        &sse(None, &json!({"id": "c1", "model": "gpt-x", "choices": [{"index": 0, "delta": {"content": "Hi"}}]})),
        &mut out,
    );
    t.broken("upstream reset", &mut out);
    t.broken("again", &mut out);
    assert_eq!(t.finish(&mut out), StreamEnd::Failed);
    let d = datas(&String::from_utf8(out).unwrap());
    assert_eq!(d.len(), 2);
    assert_eq!(
        d[0]["candidates"][0]["content"]["parts"],
        json!([{"text": "Hi"}])
    );
    assert_eq!(
        d[1],
        json!({"error": {"code": 502, "message": "upstream reset", "status": "INTERNAL"}})
    );
}

fn gemini_request(name: &str, path: &str, upstream: Dialect) -> super::super::TranslatedRequest {
    let headers = ClientHeaders {
        gemini: Some(GeminiCall::parse(path).unwrap()),
        ..ClientHeaders::default()
    };
    translate_request(G, upstream, &read(name), headers).unwrap()
}

#[test]
fn sdk_requests_on_file() {
    let generate = "/v1beta/models/gemini-2.5-flash:generateContent";
    for (name, upstream, golden, dropped) in [
        (
            "gemini_sdk_text.request.json",
            M,
            "gemini_sdk_text.request.messages.json",
            Some("safetySettings (the target applies its own safety policy)"),
        ),
        (
            "gemini_sdk_text.request.json",
            C,
            "gemini_sdk_text.request.chat.json",
            Some(
                "safetySettings (the target applies its own safety policy); topK (the target has no such setting)",
            ),
        ),
        (
            "gemini_sdk_function_call.request.json",
            M,
            "gemini_sdk_function_call.request.messages.json",
            Some("thoughtSignature (only Gemini reads its own thought signatures)"),
        ),
        (
            "gemini_sdk_function_call.request.json",
            C,
            "gemini_sdk_function_call.request.chat.json",
            Some("thoughtSignature (only Gemini reads its own thought signatures)"),
        ),
        (
            "gemini_sdk_image.request.json",
            M,
            "gemini_sdk_image.request.messages.json",
            None,
        ),
        (
            "gemini_sdk_json_schema.request.json",
            C,
            "gemini_sdk_json_schema.request.chat.json",
            None,
        ),
    ] {
        let t = gemini_request(name, generate, upstream);
        check(golden, &t.body);
        assert_eq!(t.dropped_header().as_deref(), dropped, "{golden}");
    }
    let t = gemini_request(
        "gemini_cli_thinking.request.json",
        "/v1beta/models/claude-sonnet-4-5:streamGenerateContent?alt=sse",
        M,
    );
    check("gemini_cli_thinking.request.messages.json", &t.body);
    assert_eq!(
        t.dropped_header().unwrap(),
        "top_k (Anthropic allows no sampling settings with thinking)"
    );
}

#[test]
fn answers_and_streams_on_file() {
    let a = translate_answer(
        &exchange(G, M, false),
        200,
        &read("anthropic_answer.json"),
        1,
    );
    check("anthropic_answer.gemini.json", &a.body);
    let a = translate_answer(&exchange(G, C, false), 200, &read("openai_answer.json"), 1);
    check("openai_answer.gemini.json", &a.body);
    check(
        "anthropic_thinking_tools.stream.gemini.sse",
        &stream(G, M, "anthropic_thinking_tools.stream.sse"),
    );
    check(
        "openai_tools.stream.gemini.sse",
        &stream(G, C, "openai_tools.stream.sse"),
    );
}

/// Text parts of one kind that follow each other are one (Gemini splits text into
/// parts at will, and a streamed thought's signature comes on its last piece); empty
/// answer text is nothing.
fn joined(parts: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for p in parts {
        let (Some(text), thought) = (p["text"].as_str(), p["thought"] == true) else {
            out.push(p.clone());
            continue;
        };
        if let Some(last) = out.last_mut()
            && last["text"].is_string()
            && (last["thought"] == true) == thought
            && last.get("thoughtSignature").is_none()
        {
            last["text"] = json!(format!("{}{text}", last["text"].as_str().unwrap()));
            if let Some(s) = p.get("thoughtSignature") {
                last["thoughtSignature"] = s.clone();
            }
        } else if thought || !text.is_empty() {
            out.push(p.clone());
        }
    }
    out
}

/// A Gemini stream kept as the SDKs keep it: every chunk's parts in order, the last
/// finish reason and usage.
fn reassemble_gemini(stream: &str) -> Value {
    let mut parts = Vec::new();
    let mut last = Value::Null;
    for chunk in stream.split("\n\n").filter_map(data_of) {
        assert!(chunk.get("error").is_none(), "{chunk}");
        parts.extend(
            chunk["candidates"][0]["content"]["parts"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        last = chunk;
    }
    let mut whole = last;
    whole["candidates"][0]["content"]["parts"] = json!(joined(&parts));
    whole
}

fn normalised(mut whole: Value) -> Value {
    let parts = whole["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap()
        .clone();
    whole["candidates"][0]["content"]["parts"] = json!(joined(&parts));
    whole
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn anthropic_stream_to_gemini_reassembles_to_the_whole(a in anthropic_answer(), sizes in prop::collection::vec(1usize..9, 1..4)) {
        let (stream, end) = run_stream(&exchange(G, M, true), &anthropic_stream(&a, &sizes));
        prop_assert_eq!(end, StreamEnd::Complete);
        prop_assert_eq!(reassemble_gemini(&stream), normalised(whole(G, M, &a)));
    }

    #[test]
    fn chat_stream_to_gemini_reassembles_to_the_whole(a in chat_answer(), sizes in prop::collection::vec(1usize..9, 1..4)) {
        let (stream, end) = run_stream(&exchange(G, C, true), &chat_stream(&a, &sizes));
        prop_assert_eq!(end, StreamEnd::Complete);
        prop_assert_eq!(reassemble_gemini(&stream), normalised(whole(G, C, &a)));
    }
}
