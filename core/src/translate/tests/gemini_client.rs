//! Gemini clients: each mapping of a `generateContent` request into Chat
//! Completions and Messages, the model and stream from the path, what is refused and
//! what is dropped.

use serde_json::{Value, json};

use super::super::{ClientHeaders, GeminiCall, Refusal, TranslatedRequest, translate_request};
use super::{Dialect, body};

const C: Dialect = Dialect::Chat;
const M: Dialect = Dialect::Messages;
const G: Dialect = Dialect::Gemini;

pub(super) fn translate_at(
    path: &str,
    upstream: Dialect,
    body: &[u8],
) -> Result<TranslatedRequest, Refusal> {
    let headers = ClientHeaders {
        gemini: Some(GeminiCall::parse(path).unwrap()),
        ..ClientHeaders::default()
    };
    translate_request(G, upstream, body, headers)
}

pub(super) fn translate(upstream: Dialect, body: &Value) -> Result<TranslatedRequest, Refusal> {
    translate_at(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        upstream,
        &serde_json::to_vec(body).unwrap(),
    )
}

pub(super) fn to(upstream: Dialect, req: &Value) -> Value {
    body(&translate(upstream, req).unwrap())
}

pub(super) fn refused(upstream: Dialect, req: &Value) -> String {
    match translate(upstream, req) {
        Err(e) => e.to_string(),
        Ok(t) => panic!(
            "expected a refusal, got {}",
            String::from_utf8_lossy(&t.body)
        ),
    }
}

pub(super) fn user(parts: Value) -> Value {
    json!({"role": "user", "parts": parts})
}

#[test]
fn the_path_gives_model_and_stream() {
    let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let t = translate_at(
        "/v1beta/models/claude-x:streamGenerateContent?alt=sse",
        M,
        body,
    )
    .unwrap();
    let b = body_of(&t);
    assert_eq!(
        (b["model"].as_str(), b["stream"].as_bool()),
        (Some("claude-x"), Some(true))
    );
    assert!(t.exchange.stream && t.exchange.include_usage);
    let t = translate_at("/v1/models/gpt-4o:generateContent", C, body).unwrap();
    let b = body_of(&t);
    assert_eq!(b["model"], "gpt-4o");
    assert_eq!(b.get("stream"), None);
    // Counting tokens is not translated; a Gemini body without its path cannot be read.
    let e = translate_at("/v1beta/models/m:countTokens", M, body).unwrap_err();
    assert!(matches!(e, Refusal::Unsupported { .. }), "{e}");
    let e = translate_request(G, M, body, ClientHeaders::default()).unwrap_err();
    assert!(e.to_string().contains("path"), "{e}");
}

fn body_of(t: &TranslatedRequest) -> Value {
    body(t)
}

#[test]
fn text_turns_system_and_sampling() {
    let req = json!({
        "contents": [
            {"parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello"}, {"text": ""}, {"text": " there"}]},
            user(json!([{"text": "Bye"}]))
        ],
        "systemInstruction": {"role": "user", "parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
        "generationConfig": {"temperature": 0.3, "topP": 0.9, "topK": 40.0, "maxOutputTokens": 100,
                             "stopSequences": ["END"], "candidateCount": 1, "responseMimeType": "text/plain"}
    });
    let m = to(M, &req);
    assert_eq!(
        m["system"],
        json!([{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}])
    );
    assert_eq!(
        m["messages"][1],
        json!({"role": "assistant", "content": [
        {"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]})
    );
    assert_eq!(
        (m["max_tokens"].as_u64(), m["top_k"].as_u64()),
        (Some(100), Some(40))
    );
    assert_eq!(
        (m["temperature"].as_f64(), m["top_p"].as_f64()),
        (Some(0.3), Some(0.9))
    );
    assert_eq!(m["stop_sequences"], json!(["END"]));
    let t = translate(C, &req).unwrap();
    let c = body(&t);
    assert_eq!(
        c["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(c["messages"][4], json!({"role": "user", "content": "Bye"}));
    assert_eq!(
        (c["max_completion_tokens"].as_u64(), c.get("top_k")),
        (Some(100), None)
    );
    assert_eq!(c["stop"], json!(["END"]));
    assert_eq!(
        t.dropped_header().unwrap(),
        "topK (the target has no such setting)"
    );
    // snake_case, as Gemini's own REST examples write it, reads the same.
    let snake = json!({"contents": [user(json!([{"text": "Hi"}]))],
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "generation_config": {"max_output_tokens": 5, "stop_sequences": ["x"]}});
    let s = to(M, &snake);
    assert_eq!(
        (s["max_tokens"].as_u64(), s["system"][0]["text"].as_str()),
        (Some(5), Some("Be brief."))
    );
}

#[test]
fn function_calls_and_responses_pair_by_id_or_name() {
    let req = json!({"contents": [
        user(json!([{"text": "Weather in Oslo and Rome?"}])),
        {"role": "model", "parts": [
            {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "R2VtaW5p"},
            {"functionCall": {"id": "c-rome", "name": "weather", "args": {"city": "Rome"}}},
            {"functionCall": {"name": "clock"}}
        ]},
        user(json!([
            {"functionResponse": {"id": "c-rome", "name": "weather", "response": {"output": "25C"}}},
            {"functionResponse": {"id": "made-up-by-client", "name": "weather", "response": {"output": {"temp": 4}}}},
            {"functionResponse": {"name": "clock", "response": {"error": "no clock"}}},
            {"text": "Thanks"}
        ]))
    ]});
    let t = translate(M, &req).unwrap();
    let m = body(&t);
    assert_eq!(
        m["messages"][1]["content"],
        json!([
            {"type": "tool_use", "id": "call_0", "name": "weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "c-rome", "name": "weather", "input": {"city": "Rome"}},
            {"type": "tool_use", "id": "call_1", "name": "clock", "input": {}}
        ])
    );
    assert_eq!(
        m["messages"][2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "c-rome", "content": [{"type": "text", "text": "25C"}]},
            {"type": "tool_result", "tool_use_id": "call_0", "content": [{"type": "text", "text": "{\"temp\":4}"}]},
            {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "no clock"}], "is_error": true},
            {"type": "text", "text": "Thanks"}
        ])
    );
    assert!(
        t.dropped_header()
            .unwrap()
            .contains("thoughtSignature (only Gemini"),
        "{:?}",
        t.dropped_header()
    );
    let c = to(C, &req);
    assert_eq!(
        c["messages"][1]["tool_calls"][0]["function"],
        json!({"name": "weather", "arguments": "{\"city\":\"Oslo\"}"})
    );
    assert_eq!(
        c["messages"][2],
        json!({"role": "tool", "tool_call_id": "c-rome", "content": "25C"})
    );
    // A response no call asked for.
    let orphan =
        json!({"contents": [user(json!([{"functionResponse": {"name": "f", "response": {}}}]))]});
    assert!(refused(M, &orphan).contains("answers no function call"));
    // Calls belong to the model, responses to the user.
    let misplaced = json!({"contents": [user(json!([{"functionCall": {"name": "f"}}]))]});
    assert!(refused(M, &misplaced).contains("model turns"));
}

#[test]
fn images_documents_and_files() {
    // The Python SDK writes bytes URL-safe; the targets read the standard alphabet.
    let req = json!({"contents": [user(json!([
        {"inlineData": {"mimeType": "image/png", "data": "iVBO-_8"}},
        {"inline_data": {"mime_type": "application/pdf", "data": "JVBERi0xLjQK", "displayName": "a.pdf"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}
    ]))]});
    let m = to(M, &req);
    assert_eq!(
        m["messages"][0]["content"],
        json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO+/8="}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}, "title": "a.pdf"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
        ])
    );
    let c = to(C, &req);
    assert_eq!(
        c["messages"][0]["content"][0],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO+/8="}})
    );
    for (part, why) in [
        (
            json!({"fileData": {"mimeType": "image/png", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}}),
            "Files API",
        ),
        (
            json!({"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/a.pdf"}}),
            "Cloud Storage",
        ),
        (
            json!({"fileData": {"fileUri": "https://example.com/x"}}),
            "without a mimeType",
        ),
        (
            json!({"inlineData": {"mimeType": "audio/mp3", "data": "AAAA"}}),
            "audio/mp3",
        ),
        (
            json!({"executableCode": {"language": "PYTHON", "code": "1"}}),
            "code execution",
        ),
        (
            json!({"fileData": {"mimeType": "video/mp4", "fileUri": "https://x/v.mp4"}, "videoMetadata": {}}),
            "video",
        ),
    ] {
        let e = refused(M, &json!({"contents": [user(json!([part]))]}));
        assert!(e.contains(why), "{e} should say {why}");
    }
}

#[test]
fn tools_and_tool_config() {
    let openapi = json!({"type": "OBJECT", "properties": {
        "city": {"type": "STRING", "description": "City"},
        "unit": {"type": "STRING", "enum": ["C", "F"], "nullable": true},
        "days": {"type": "ARRAY", "items": {"type": "INTEGER"}, "maxItems": "7"}},
        "required": ["city"], "propertyOrdering": ["city", "unit", "days"]});
    let json_schema = json!({"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": false});
    let req = |config: Value| {
        json!({"contents": [user(json!([{"text": "x"}]))],
               "tools": [{"functionDeclarations": [
                   {"name": "weather", "description": "Weather", "parameters": openapi},
                   {"name": "search", "parametersJsonSchema": json_schema},
                   {"name": "now"}]}],
               "toolConfig": config})
    };
    let m = to(M, &req(json!({"functionCallingConfig": {"mode": "AUTO"}})));
    assert_eq!(
        m["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {
        "city": {"type": "string", "description": "City"},
        "unit": {"type": ["string", "null"], "enum": ["C", "F"]},
        "days": {"type": "array", "items": {"type": "integer"}, "maxItems": 7}},
        "required": ["city"]})
    );
    assert_eq!(m["tools"][1]["input_schema"], json_schema);
    assert_eq!(
        m["tools"][2]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(m["tool_choice"], json!({"type": "auto"}));
    let c = to(
        C,
        &req(json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["search"]}})),
    );
    assert_eq!(
        c["tool_choice"],
        json!({"type": "function", "function": {"name": "search"}})
    );
    assert_eq!(
        c["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
        "string"
    );
    // Several allowed names: the call must be one of them, the others are left out.
    let m = to(
        M,
        &req(
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["search", "now"]}}),
        ),
    );
    assert_eq!(m["tool_choice"], json!({"type": "any"}));
    let names: Vec<&str> = m["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["search", "now"]);
    let c = to(C, &req(json!({"functionCallingConfig": {"mode": "NONE"}})));
    assert_eq!(c["tool_choice"], "none");
    assert!(
        refused(
            M,
            &req(json!({"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["x"]}}))
        )
        .contains("only with mode ANY")
    );
    assert!(
        refused(
            M,
            &req(json!({"functionCallingConfig": {"mode": "VALIDATED"}}))
        )
        .contains("VALIDATED")
    );
    for tool in [
        "googleSearch",
        "codeExecution",
        "urlContext",
        "googleSearchRetrieval",
    ] {
        let e = refused(
            C,
            &json!({"contents": [user(json!([{"text": "x"}]))], "tools": [{tool: {}}]}),
        );
        assert_eq!(
            e,
            format!(
                "Gemini's `{tool}` tool (the target cannot run it) cannot be carried to OpenAI Chat Completions"
            )
        );
    }
}

#[test]
fn generation_config_structured_output_and_thinking() {
    let with = |config: Value| json!({"contents": [user(json!([{"text": "x"}]))], "generationConfig": config});
    let schema = json!({"type": "OBJECT", "properties": {"a": {"type": "NUMBER"}}, "propertyOrdering": ["a"]});
    let c = to(
        C,
        &with(json!({"responseMimeType": "application/json", "responseSchema": schema})),
    );
    assert_eq!(
        c["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output",
        "schema": {"type": "object", "properties": {"a": {"type": "number"}}}, "strict": false}})
    );
    let js = json!({"type": "object", "properties": {"b": {"type": "string"}}});
    let m = to(
        M,
        &with(json!({"responseMimeType": "application/json", "responseJsonSchema": js})),
    );
    assert_eq!(
        m["output_config"],
        json!({"format": {"type": "json_schema", "schema": js}})
    );
    assert_eq!(
        to(C, &with(json!({"responseMimeType": "application/json"})))["response_format"],
        json!({"type": "json_object"})
    );
    assert!(
        refused(M, &with(json!({"responseMimeType": "application/json"})))
            .contains("JSON mode without a schema")
    );
    assert!(
        refused(M, &with(json!({"responseSchema": schema}))).contains("needs responseMimeType")
    );
    assert!(refused(M, &with(json!({"responseMimeType": "text/x.enum"}))).contains("text/x.enum"));
    assert!(refused(M, &with(json!({"candidateCount": 2}))).contains("candidateCount"));
    assert!(refused(C, &with(json!({"responseLogprobs": true}))).contains("logprobs"));
    assert!(refused(C, &with(json!({"responseModalities": ["TEXT", "IMAGE"]}))).contains("IMAGE"));
    // Thinking: a budget, a level, off, or the model's own choice (-1: the target's default).
    let m = to(
        M,
        &with(
            json!({"maxOutputTokens": 4000, "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true}}),
        ),
    );
    assert_eq!(
        m["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    let c = to(
        C,
        &with(json!({"thinkingConfig": {"thinkingLevel": "high"}})),
    );
    assert_eq!(c["reasoning_effort"], "high");
    let m = to(M, &with(json!({"thinkingConfig": {"thinkingBudget": 0}})));
    assert_eq!(m["thinking"], json!({"type": "disabled"}));
    let m = to(
        M,
        &with(json!({"thinkingConfig": {"thinkingBudget": -1, "includeThoughts": true}})),
    );
    assert_eq!(m.get("thinking"), None);
    assert!(
        refused(M, &with(json!({"thinkingConfig": {"thinkingBudget": -5}})))
            .contains("thinkingBudget")
    );
    // Safety settings and sampling hints are dropped, and the answer says so.
    let t = translate(
        M,
        &json!({"contents": [user(json!([{"text": "x"}]))],
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {"seed": 7, "presencePenalty": 0.5}}),
    )
    .unwrap();
    assert_eq!(
        t.dropped_header().unwrap(),
        "safetySettings (the target applies its own safety policy); \
         presencePenalty/frequencyPenalty (sampling hints the translation does not carry); \
         seed (the target does not promise determinism)"
    );
    assert!(
        refused(
            M,
            &json!({"contents": [], "cachedContent": "cachedContents/x"})
        )
        .contains("cachedContent")
    );
}

#[test]
fn thoughts_carry_anthropic_signatures_back() {
    use base64::Engine;
    let url_safe = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let req = json!({"contents": [
        user(json!([{"text": "q"}])),
        {"role": "model", "parts": [
            {"text": "Let me ", "thought": true},
            {"text": "think.", "thought": true},
            {"text": "", "thought": true, "thoughtSignature": url_safe("anthropic.thinking:EqQB+/sig==")},
            {"text": "", "thought": true, "thoughtSignature": url_safe("anthropic.redacted:ENC")},
            {"text": "Gemini's own", "thought": true, "thoughtSignature": "Q2lRQmNzamFm"},
            {"functionCall": {"id": "toolu_1", "name": "f", "args": {}}}
        ]},
        user(json!([{"functionResponse": {"id": "toolu_1", "name": "f", "response": {"output": "ok"}}}]))
    ]});
    let t = translate(M, &req).unwrap();
    let m = body(&t);
    assert_eq!(
        m["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "Let me think.", "signature": "EqQB+/sig=="},
            {"type": "redacted_thinking", "data": "ENC"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
        ])
    );
    let header = t.dropped_header().unwrap();
    assert!(
        header.contains("thoughtSignature (") && header.contains("thought ("),
        "{header}"
    );
    // OpenAI takes no reasoning back.
    let c = to(C, &req);
    assert_eq!(c["messages"][1]["tool_calls"][0]["id"], "toolu_1");
    assert!(
        refused(
            M,
            &json!({"contents": [user(json!([{"text": "t", "thought": true}]))]})
        )
        .contains("model turns")
    );
}

#[test]
fn thinking_waits_for_the_signed_thinking_of_a_tool_loop() {
    // Gemini CLI keeps no thought parts in its history: the last tool-calling turn
    // comes back without Anthropic's signed thinking, which Anthropic then refuses.
    let loop_turns = |model_parts: Value| {
        json!({"contents": [
            user(json!([{"text": "ls"}])),
            {"role": "model", "parts": model_parts},
            user(json!([{"functionResponse": {"id": "t1", "name": "ls", "response": {"output": "a"}}}]))
        ], "generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH", "includeThoughts": true}}})
    };
    let call = json!({"functionCall": {"id": "t1", "name": "ls", "args": {}}});
    let t = translate(M, &loop_turns(json!([{"text": "Listing."}, call]))).unwrap();
    assert_eq!(body(&t).get("thinking"), None);
    assert!(
        t.dropped_header()
            .unwrap()
            .contains("reasoning (Anthropic thinks only when"),
        "{:?}",
        t.dropped_header()
    );
    use base64::Engine;
    let signature = base64::engine::general_purpose::STANDARD.encode("anthropic.thinking:c2ln");
    let signed = json!([{"text": "Plan.", "thought": true, "thoughtSignature": signature}, call]);
    let t = translate(M, &loop_turns(signed)).unwrap();
    assert_eq!(
        body(&t)["thinking"],
        json!({"type": "enabled", "budget_tokens": 16384})
    );
    assert_eq!(t.dropped_header(), None);
}
