//! OpenAI Responses clients: requests to both upstreams, answers and streams rebuilt
//! as Responses.

use serde_json::{Value, json};

use super::super::{Refusal, StreamTranslator, translate_answer};
use super::{Dialect, body, datas, exchange, refused, request, run_stream};
use crate::usage::StreamEnd;

const R: Dialect = Dialect::Responses;
const C: Dialect = Dialect::Chat;
const M: Dialect = Dialect::Messages;

#[test]
fn responses_requests_to_messages() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false});
    let t = request(
        R,
        M,
        &json!({
            "model": "claude-sonnet-4-5",
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use metric units."},
                {"role": "user", "content": [
                    {"type": "input_text", "text": "Weather here?"},
                    {"type": "input_image", "image_url": "https://example.com/sky.jpg"}
                ]},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "4C"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 4C.", "annotations": []}]}
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
            "tool_choice": {"type": "function", "name": "weather"},
            "max_output_tokens": 300,
            "text": {"format": {"type": "json_schema", "name": "w", "schema": schema, "strict": true}},
            "temperature": 0.5
        }),
    );
    assert_eq!(t.path, "/messages");
    assert!(!t.exchange.stream);
    assert_eq!(
        body(&t),
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 300,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/sky.jpg"}}
                ]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "4C"}]}]},
                {"role": "assistant", "content": [{"type": "text", "text": "It is 4C."}]}
            ],
            "temperature": 0.5,
            "tools": [{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
            "tool_choice": {"type": "tool", "name": "weather"},
            "output_config": {"format": {"type": "json_schema", "schema": schema}}
        })
    );
}

#[test]
fn responses_input_string_and_reasoning_to_chat() {
    let t = request(
        R,
        C,
        &json!({"model": "gpt-4.1", "input": "Hello", "reasoning": {"effort": "high"}, "stream": true, "store": true}),
    );
    assert_eq!(t.path, "/chat/completions");
    assert_eq!(
        body(&t),
        json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hello"}], "reasoning_effort": "high",
               "stream": true, "stream_options": {"include_usage": true}})
    );
    assert!(t.dropped_header().unwrap().starts_with("store ("));
}

#[test]
fn reasoning_items_round_trip_only_when_they_came_from_anthropic() {
    let req = |encrypted: &str| {
        json!({"model": "m", "input": [
            {"role": "user", "content": "q"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}], "encrypted_content": encrypted},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "ok"}]}
        ]})
    };
    let ours = request(R, M, &req("anthropic.thinking:sig=="));
    assert_eq!(
        body(&ours)["messages"][1]["content"],
        json!([{"type": "thinking", "thinking": "thought", "signature": "sig=="},
               {"type": "tool_use", "id": "c", "name": "f", "input": {}}])
    );
    let redacted = request(R, M, &req("anthropic.redacted:blob"));
    assert_eq!(
        body(&redacted)["messages"][1]["content"][0],
        json!({"type": "redacted_thinking", "data": "blob"})
    );
    let openai = request(R, M, &req("gAAAAABoXyz"));
    assert_eq!(
        body(&openai)["messages"][1]["content"][0]["type"],
        "tool_use"
    );
    assert!(openai.dropped_header().unwrap().contains("reasoning items"));
}

#[test]
fn responses_refusals() {
    let cases = [
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "file_search"}]}),
            "tools of type `file_search`",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}}]}),
            "tools of type `custom`",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}),
            "images by file_id",
        ),
        (
            json!({"model": "m", "input": [{"type": "local_shell_call", "call_id": "c", "action": {}}]}),
            "local_shell_call",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "x", "include": ["message.output_text.logprobs"]}),
            "include",
        ),
    ];
    for (req, what) in cases {
        let r = refused(R, M, &req);
        assert!(matches!(r, Refusal::Unsupported { .. }), "{req}: {r}");
        assert!(r.to_string().contains(what), "{r} should name {what}");
    }
    let to_responses = refused(C, R, &json!({"model": "m", "messages": []}));
    assert!(
        to_responses.to_string().contains("OpenAI Responses"),
        "{to_responses}"
    );
    let same = refused(
        M,
        M,
        &json!({"model": "m", "max_tokens": 1, "messages": []}),
    );
    assert!(matches!(same, Refusal::Unsupported { .. }));
}

#[test]
fn anthropic_answer_as_a_response() {
    let t = translate_answer(
        &exchange(R, M, false),
        200,
        &serde_json::to_vec(&json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 10}
        }))
        .unwrap(),
        1_700_000_000,
    );
    assert_eq!(t.status, 200);
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        v,
        json!({
            "id": "resp_msg_1", "object": "response", "created_at": 1_700_000_000, "status": "completed",
            "error": null, "incomplete_details": null, "model": "claude-x",
            "output": [
                {"type": "reasoning", "id": "rs_0_msg_1", "summary": [{"type": "summary_text", "text": "hmm"}],
                 "encrypted_content": "anthropic.thinking:sig"},
                {"type": "message", "id": "msg_1_msg_1", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Calling.", "annotations": []}]},
                {"type": "function_call", "id": "fc_2_msg_1", "call_id": "toolu_1", "name": "f", "arguments": "{\"a\":1}", "status": "completed"}
            ],
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": 15, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 7,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 22}
        })
    );
    // Cut by the token limit: incomplete, and said why.
    let t = translate_answer(
        &exchange(R, C, false),
        200,
        br#"{"id":"c","model":"g","choices":[{"index":0,"message":{"role":"assistant","content":"par"},"finish_reason":"length"}]}"#,
        0,
    );
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    // Errors keep OpenAI's shape.
    let t = translate_answer(
        &exchange(R, M, false),
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        0,
    );
    assert_eq!(t.status, 503);
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["error"]["message"], "Overloaded");
}

#[test]
fn anthropic_stream_as_responses_events() {
    let (out, end) = run_stream(
        &exchange(R, M, true),
        &super::streams::anthropic_tool_stream(),
    );
    assert_eq!(end, StreamEnd::Complete);
    let d = datas(&out);
    let kinds: Vec<&str> = d.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, e) in d.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    assert!(out.starts_with("event: response.created\ndata: "));
    assert_eq!(d[7]["item"]["encrypted_content"], "anthropic.thinking:EqQB");
    assert_eq!(d[17]["arguments"], "{\"city\": \"Paris\"}");
    let done = &d[23]["response"];
    assert_eq!(done["id"], "resp_msg_1");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"].as_array().unwrap().len(), 4);
    assert_eq!(done["output"][3]["arguments"], "{\"city\": \"Rome\"}");
    assert_eq!(done["usage"]["input_tokens"], 112);
    assert_eq!(done["usage"]["output_tokens"], 89);
}

#[test]
fn a_broken_responses_stream_fails_the_response() {
    let mut t = StreamTranslator::new(&exchange(R, C, true), 0);
    let mut out = Vec::new();
    t.feed(&super::streams::chat_tool_stream()[1], &mut out);
    t.broken("reset", &mut out);
    let text = String::from_utf8(out).unwrap();
    let d = datas(&text);
    let last = d.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["error"]["message"], "reset");
    // Nothing is read from a Responses upstream.
    let (out, end) = run_stream(&exchange(C, R, true), &[b"data: {}\n\n".to_vec()]);
    assert_eq!(end, StreamEnd::Failed);
    assert!(out.contains("not translated"), "{out}");
}
