//! Hostile inputs get typed errors (a refusal, or the client's error shape), never a
//! panic and never a body passed on half-read.

use serde_json::{Value, json};

use super::super::{ClientHeaders, Refusal, translate_answer, translate_request};
use super::{Dialect, exchange, run_stream};
use crate::usage::StreamEnd;

const C: Dialect = Dialect::Chat;
const M: Dialect = Dialect::Messages;
const R: Dialect = Dialect::Responses;

fn translate(client: Dialect, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let upstream = match client {
        C | R | Dialect::Gemini => M,
        M => C,
    };
    translate_request(client, upstream, body, ClientHeaders::default()).map(|t| t.body)
}

fn malformed(client: Dialect, body: &[u8]) -> String {
    match translate(client, body) {
        Err(e @ Refusal::Malformed { .. }) => e.to_string(),
        other => panic!("expected a malformed refusal, got {other:?}"),
    }
}

#[test]
fn bodies_that_are_not_requests() {
    for client in [C, M, R] {
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"\"text\"",
            b"{",
            b"{\"model\": \"m\", \"messages\": []",
            b"{\"model\": \"m\", \"messages\": [], \"max_tokens\": 1}}",
        ] {
            malformed(client, body);
        }
    }
}

#[test]
fn invalid_utf8_anywhere_is_refused() {
    let mut body =
        br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"caf"#.to_vec();
    body.extend_from_slice(&[0xC3, 0x28]);
    body.extend_from_slice(br#""}]}"#);
    for client in [C, M, R] {
        assert!(malformed(client, &body).contains("UTF-8"));
    }
    // A lone surrogate escape is not a Unicode string either.
    let lone = br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"\ud800"}]}"#;
    for client in [C, M, R] {
        malformed(client, lone);
    }
}

#[test]
fn nesting_past_the_bound_is_refused_before_parsing() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = format!(
        r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":"x"}}],"tools":[{{"type":"function","function":{{"name":"f","parameters":{deep}}}}}]}}"#
    );
    for client in [C, M, R] {
        assert!(malformed(client, body.as_bytes()).contains("deeper than"));
    }
}

#[test]
fn wrong_types_name_their_place() {
    let cases: [(Dialect, Value, &str); 9] = [
        (C, json!({"model": "m", "messages": "hi"}), "messages"),
        (C, json!({"model": 5, "messages": []}), "model"),
        (
            C,
            json!({"model": "m", "messages": [], "max_tokens": "ten"}),
            "max_tokens",
        ),
        (
            C,
            json!({"model": "m", "messages": [{"role": "user", "content": 7}]}),
            "messages[0]",
        ),
        (
            C,
            json!({"model": "m", "messages": [{"role": 1, "content": "x"}]}),
            "messages[0]",
        ),
        (
            C,
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]}]}),
            "messages[0]",
        ),
        (
            M,
            json!({"model": "m", "max_tokens": -1, "messages": []}),
            "max_tokens",
        ),
        (
            M,
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0]",
        ),
        (
            M,
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}]}),
            "input",
        ),
    ];
    for (client, body, place) in cases {
        let message = malformed(client, &serde_json::to_vec(&body).unwrap());
        assert!(message.contains(place), "{message} should name {place}");
    }
    // Arguments that are not a JSON object cannot become Anthropic's `input`.
    let bad_args = json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1,2"}}]}]});
    assert!(malformed(C, &serde_json::to_vec(&bad_args).unwrap()).contains("not a JSON object"));
}

#[test]
fn huge_bodies_translate_whole() {
    let big = "é\"\\\u{1F600}".repeat(500_000);
    let body = json!({"model": "m", "messages": (0..2000).map(|i| json!({"role": if i % 2 == 0 {"user"} else {"assistant"}, "content": format!("turn {i}")}))
        .chain(std::iter::once(json!({"role": "user", "content": big})))
        .collect::<Vec<_>>()});
    let out = translate(C, &serde_json::to_vec(&body).unwrap()).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let messages = v["messages"].as_array().unwrap();
    // The last user turns join (Anthropic alternates), the text intact.
    let last = messages.last().unwrap()["content"].as_array().unwrap();
    assert_eq!(
        last.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        2_000_000
    );
}

#[test]
fn hostile_answers_and_events_are_the_upstreams_failure() {
    let anthropic_events = [
        &b"data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":7}}\n\n"[..],
        b"data: {\"type\":\"message_start\",\"message\":5}\n\n",
        b"data: \xFF\xFE\n\n",
    ];
    let chat_events = [
        &b"data: {\"choices\": \"x\"}\n\n"[..],
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":7}}]}\n\n",
        b"data: \xFF\xFE\n\n",
    ];
    for (client, upstream, events) in [(C, M, anthropic_events), (M, C, chat_events)] {
        let ex = exchange(client, upstream, true);
        for body in [
            &b"not json"[..],
            b"{\"content\": 5}",
            b"{\"choices\": {}}",
            &[0xFF, 0xFE],
        ] {
            let a = translate_answer(&ex, 200, body, 0);
            assert_eq!(a.status, 502, "{body:?}");
        }
        for event in events {
            let (out, end) = run_stream(&ex, &[event.to_vec()]);
            assert_eq!(end, StreamEnd::Failed, "{}", String::from_utf8_lossy(event));
            assert!(out.contains("could not be read"), "{out}");
        }
    }
}
