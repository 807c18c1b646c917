//! Whole answers and errors, both ways.

use serde_json::{Value, json};

use super::super::translate_answer;
use super::{Dialect, exchange};

const C: Dialect = Dialect::Chat;
const M: Dialect = Dialect::Messages;

fn answer(client: Dialect, upstream: Dialect, status: u16, body: &Value) -> (u16, Value) {
    let t = translate_answer(
        &exchange(client, upstream, false),
        status,
        &serde_json::to_vec(body).unwrap(),
        1_700_000_000,
    );
    (t.status, serde_json::from_slice(&t.body).unwrap())
}

#[test]
fn anthropic_answer_to_chat() {
    let (status, chat) = answer(
        C,
        M,
        200,
        &json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 50, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}
        }),
    );
    assert_eq!(status, 200);
    assert_eq!(
        chat,
        json!({
            "id": "msg_01", "object": "chat.completion", "created": 1_700_000_000, "model": "claude-sonnet-4-5",
            "choices": [{"index": 0, "message": {
                "role": "assistant", "content": "Checking.", "refusal": null,
                "reasoning_content": "Two cities.",
                "thinking_blocks": [{"type": "thinking", "thinking": "Two cities.", "signature": "sig"}],
                "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
                ]
            }, "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 130, "completion_tokens": 50, "total_tokens": 180,
                      "prompt_tokens_details": {"cached_tokens": 100}, "cache_creation_input_tokens": 20}
        })
    );
}

#[test]
fn chat_answer_to_anthropic() {
    let (status, msg) = answer(
        M,
        C,
        200,
        &json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sure.",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                               {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "not json"}}]},
                "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
                      "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 5}}
        }),
    );
    assert_eq!(status, 200);
    assert_eq!(
        msg,
        json!({
            "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4.1",
            "content": [
                {"type": "text", "text": "Sure."},
                {"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}},
                {"type": "tool_use", "id": "call_2", "name": "g", "input": {"_invalid_arguments": "not json"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 30, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100}
        })
    );
}

#[test]
fn finish_and_stop_reasons_map_both_ways() {
    let anthropic_to_chat = [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ];
    for (stop, finish) in anthropic_to_chat {
        let (_, chat) = answer(
            C,
            M,
            200,
            &json!({"id": "m", "model": "c", "content": [{"type": "text", "text": "x"}], "stop_reason": stop,
                    "usage": {"input_tokens": 1, "output_tokens": 1}}),
        );
        assert_eq!(chat["choices"][0]["finish_reason"], finish, "{stop}");
    }
    let chat_to_anthropic = [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
    ];
    for (finish, stop) in chat_to_anthropic {
        let (_, msg) = answer(
            M,
            C,
            200,
            &json!({"id": "c", "model": "g", "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}]}),
        );
        assert_eq!(msg["stop_reason"], stop, "{finish}");
    }
    // A matched stop sequence is named when Anthropic names it.
    let (_, msg) = answer(
        M,
        M,
        200,
        &json!({"id": "m", "model": "c", "content": [], "stop_reason": "stop_sequence", "stop_sequence": "###", "usage": {}}),
    );
    assert_eq!(msg["stop_sequence"], "###");
    // A refusal in the chat answer is the text, and the reason.
    let (_, msg) = answer(
        M,
        C,
        200,
        &json!({"id": "c", "model": "g", "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}]}),
    );
    assert_eq!(msg["stop_reason"], "refusal");
    assert_eq!(msg["content"][0]["text"], "I can't help with that.");
}

#[test]
fn errors_keep_their_kind_in_the_clients_shape() {
    let cases = [
        (
            C,
            M,
            529,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            503,
            "api_error",
            "Overloaded",
        ),
        (
            C,
            M,
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "messages: bad"}}),
            400,
            "invalid_request_error",
            "messages: bad",
        ),
        (
            C,
            M,
            429,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}),
            429,
            "rate_limit_error",
            "slow",
        ),
        (
            M,
            C,
            429,
            json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
            402,
            "billing_error",
            "You exceeded your current quota",
        ),
        (
            M,
            C,
            401,
            json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error", "code": "invalid_api_key"}}),
            401,
            "authentication_error",
            "Incorrect API key",
        ),
        (
            M,
            C,
            500,
            json!("<html>oops</html>"),
            502,
            "api_error",
            "not an error of its protocol",
        ),
    ];
    for (client, upstream, status, body, want_status, want_type, want_message) in cases {
        let (got_status, got) = answer(client, upstream, status, &body);
        assert_eq!(got_status, want_status, "{body}");
        assert_eq!(got["error"]["type"], want_type, "{body}");
        assert!(
            got["error"]["message"]
                .as_str()
                .unwrap()
                .contains(want_message),
            "{got}"
        );
        if client == M {
            assert_eq!(got["type"], "error");
        }
    }
    let (status, got) = answer(C, M, 200, &json!({"id": 5}));
    assert_eq!(status, 502);
    assert!(
        got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be read")
    );
}
