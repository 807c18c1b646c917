//! Gemini as an upstream: requests from each client dialect, answers and streams
//! back in the client's.

use serde_json::{Value, json};

use super::super::{Refusal, translate_answer};
use super::{Dialect, body, datas, exchange, refused, request, run_stream, sse};
use crate::usage::StreamEnd;

const C: Dialect = Dialect::Chat;
const M: Dialect = Dialect::Messages;
const R: Dialect = Dialect::Responses;
const G: Dialect = Dialect::Gemini;

#[test]
fn chat_request_to_gemini() {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let t = request(
        C,
        G,
        &json!({
            "model": "gemini-2.5-flash",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "4C"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather of a city", "parameters": schema}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "max_completion_tokens": 500,
            "temperature": 0.2,
            "stop": ["END"],
            "reasoning_effort": "low",
            "stream": true
        }),
    );
    assert_eq!(
        t.path,
        "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert!(t.set_headers.is_empty());
    assert_eq!(
        body(&t),
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Weather?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}}]},
                {"role": "model", "parts": [{"functionCall": {"id": "call_1", "name": "weather", "args": {"city": "Oslo"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"id": "call_1", "name": "weather", "response": {"output": "4C"}}}]}
            ],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "tools": [{"functionDeclarations": [{"name": "weather", "description": "Weather of a city", "parametersJsonSchema": schema}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
            "generationConfig": {
                "maxOutputTokens": 500, "temperature": 0.2, "stopSequences": ["END"],
                "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}
            }
        })
    );
    let whole = request(
        C,
        G,
        &json!({"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": schema}}}),
    );
    assert_eq!(whole.path, "/models/gemini-2.5-pro:generateContent");
    assert_eq!(
        body(&whole)["generationConfig"],
        json!({"responseMimeType": "application/json", "responseJsonSchema": schema})
    );
}

#[test]
fn messages_and_responses_requests_to_gemini() {
    let t = request(
        M,
        G,
        &json!({"model": "gemini-2.5-pro", "max_tokens": 100, "top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "tool_use", "id": "tu", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu", "content": "boom", "is_error": true}]}
        ]}),
    );
    let b = body(&t);
    assert_eq!(
        b["contents"][1]["parts"],
        json!([{"functionCall": {"id": "tu", "name": "f", "args": {}}}])
    );
    assert_eq!(
        b["contents"][2]["parts"][0]["functionResponse"]["response"],
        json!({"error": "boom"})
    );
    assert_eq!(
        b["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 2048, "includeThoughts": true})
    );
    assert!(t.dropped_header().unwrap().contains("thinking ("));
    let r = request(
        R,
        G,
        &json!({"model": "gemini-2.5-flash", "input": "hi", "reasoning": {"effort": "minimal"}}),
    );
    assert_eq!(
        body(&r),
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
               "generationConfig": {"thinkingConfig": {"thinkingBudget": 0, "includeThoughts": false}}})
    );
    for (client, req, what) in [
        (
            C,
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            "by URL",
        ),
        (
            C,
            json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}),
            "answers no tool call",
        ),
    ] {
        let e = refused(client, G, &req);
        assert!(e.to_string().contains(what), "{e}");
    }
    // Gemini to Gemini: nothing to translate.
    assert!(matches!(
        refused(G, G, &json!({})),
        Refusal::Unsupported { .. }
    ));
}

fn gemini_answer() -> Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Considering the city.", "thought": true},
            {"text": "Checking."},
            {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
                          "cachedContentTokenCount": 40, "totalTokenCount": 150},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "gresp-1"
    })
}

#[test]
fn gemini_answers_in_each_client_dialect() {
    let body = serde_json::to_vec(&gemini_answer()).unwrap();
    let chat: Value =
        serde_json::from_slice(&translate_answer(&exchange(C, G, false), 200, &body, 7).body)
            .unwrap();
    let message = &chat["choices"][0]["message"];
    assert_eq!(message["content"], "Checking.");
    assert_eq!(message["reasoning_content"], "Considering the city.");
    assert_eq!(message["tool_calls"][0]["id"], "call_0");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        chat["usage"],
        json!({"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
               "prompt_tokens_details": {"cached_tokens": 40}, "completion_tokens_details": {"reasoning_tokens": 30}})
    );
    let msg: Value =
        serde_json::from_slice(&translate_answer(&exchange(M, G, false), 200, &body, 7).body)
            .unwrap();
    assert_eq!(msg["stop_reason"], "tool_use");
    assert_eq!(
        msg["content"][2],
        json!({"type": "tool_use", "id": "call_0", "name": "weather", "input": {"city": "Oslo"}})
    );
    assert_eq!(msg["usage"]["input_tokens"], 60);
    let resp: Value =
        serde_json::from_slice(&translate_answer(&exchange(R, G, false), 200, &body, 7).body)
            .unwrap();
    assert_eq!(resp["output"].as_array().unwrap().len(), 3);
    // Safety stops are refusals; Gemini's errors keep their kind.
    let blocked = br#"{"candidates":[{"finishReason":"SAFETY"}],"modelVersion":"g"}"#;
    let msg: Value =
        serde_json::from_slice(&translate_answer(&exchange(M, G, false), 200, blocked, 7).body)
            .unwrap();
    assert_eq!(msg["stop_reason"], "refusal");
    let error = br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
    let a = translate_answer(&exchange(M, G, false), 429, error, 7);
    assert_eq!(a.status, 429);
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["message"], "Resource has been exhausted");
}

fn gemini_stream() -> Vec<Vec<u8>> {
    let chunk = |parts: Value, finish: Option<&str>, usage: Option<Value>| {
        let mut c = json!({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
                           "modelVersion": "gemini-2.5-flash", "responseId": "gresp-2"});
        if let Some(f) = finish {
            c["candidates"][0]["finishReason"] = json!(f);
        }
        if let Some(u) = usage {
            c["usageMetadata"] = u;
        }
        sse(None, &c)
    };
    vec![
        chunk(json!([{"text": "Hmm.", "thought": true}]), None, None),
        chunk(json!([{"text": "Hello"}]), None, None),
        chunk(json!([{"text": " there."}]), None, None),
        chunk(
            json!([{"functionCall": {"name": "f", "args": {"a": 1}}}]),
            Some("STOP"),
            Some(json!({"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15})),
        ),
    ]
}

#[test]
fn gemini_streams_in_each_client_dialect() {
    let (out, end) = run_stream(&exchange(C, G, true), &gemini_stream());
    assert_eq!(end, StreamEnd::Complete);
    let d = datas(&out);
    assert_eq!(
        d[1]["choices"][0]["delta"],
        json!({"reasoning_content": "Hmm."})
    );
    assert_eq!(d[2]["choices"][0]["delta"], json!({"content": "Hello"}));
    assert_eq!(d[4]["choices"][0]["delta"]["tool_calls"][0]["id"], "call_0");
    assert_eq!(
        d[5]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":1}"
    );
    assert_eq!(d[6]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(d[7]["usage"]["prompt_tokens"], 10);
    assert_eq!(d[8], "[DONE]");

    let (out, end) = run_stream(&exchange(M, G, true), &gemini_stream());
    assert_eq!(end, StreamEnd::Complete);
    assert!(
        out.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{out}"
    );
    let (out, end) = run_stream(&exchange(R, G, true), &gemini_stream());
    assert_eq!(end, StreamEnd::Complete);
    assert!(out.contains("event: response.completed"), "{out}");

    // Closed before a finish reason: cut short, told so.
    let (out, end) = run_stream(&exchange(M, G, true), &gemini_stream()[..2]);
    assert_eq!(end, StreamEnd::Truncated);
    assert!(out.contains("event: error"), "{out}");
}
