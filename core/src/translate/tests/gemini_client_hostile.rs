//! Gemini clients' hostile inputs: paths naming bad models or no method, bodies
//! that are not requests, bad base64, invalid UTF-8, deep nesting, huge part counts.

use serde_json::{Value, json};

use super::super::{GeminiCall, GeminiMethod, GeminiPathError, Refusal};
use super::Dialect;
use super::gemini_client::{refused, to, translate_at, user};
use crate::error::ErrorCode;

const C: Dialect = Dialect::Chat;
const M: Dialect = Dialect::Messages;

#[test]
fn the_call_is_read_from_the_path() {
    let generate = GeminiMethod::Generate;
    for (path, model, method) in [
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "gemini-2.5-flash",
            generate,
        ),
        (
            "/v1/models/gemini-2.0-flash-001:generateContent",
            "gemini-2.0-flash-001",
            generate,
        ),
        (
            "/v1beta/models/gpt-4o:streamGenerateContent?alt=sse",
            "gpt-4o",
            GeminiMethod::Stream,
        ),
        (
            "/v1beta/models/m:streamGenerateContent",
            "m",
            GeminiMethod::Stream,
        ),
        (
            "/v1alpha/models/claude-sonnet-4-5:countTokens",
            "claude-sonnet-4-5",
            GeminiMethod::CountTokens,
        ),
        (
            "/v1beta/models/ft:gpt-4o:org::x1:generateContent",
            "ft:gpt-4o:org::x1",
            generate,
        ),
    ] {
        let call = GeminiCall::parse(path).unwrap();
        assert_eq!((call.model, call.method), (model, method), "{path}");
    }
    let long = format!("/v1beta/models/{}:generateContent", "m".repeat(201));
    for (path, code) in [
        ("/v1beta/models/:generateContent", ErrorCode::InvalidRequest),
        (
            "/v1beta/models/a/b:generateContent",
            ErrorCode::InvalidRequest,
        ),
        (
            "/v1beta/models/a\nb:generateContent",
            ErrorCode::InvalidRequest,
        ),
        (
            "/v1beta/models/a\u{7f}b:generateContent",
            ErrorCode::InvalidRequest,
        ),
        (
            "/v1beta/models/a%0Ab:generateContent",
            ErrorCode::InvalidRequest,
        ),
        (
            "/v1beta/models/a b:generateContent",
            ErrorCode::InvalidRequest,
        ),
        (long.as_str(), ErrorCode::InvalidRequest),
        (
            "/v1beta/models/m:streamGenerateContent?alt=json",
            ErrorCode::InvalidRequest,
        ),
        ("/v1beta/models/m:embedContent", ErrorCode::NotFound),
        ("/v1beta/models/m", ErrorCode::NotFound),
        ("/v1beta/tunedModels/m:generateContent", ErrorCode::NotFound),
        ("/v2/models/m:generateContent", ErrorCode::NotFound),
    ] {
        let e = GeminiCall::parse(path).unwrap_err();
        assert_eq!(e.code(), code, "{path}: {e}");
    }
    // Control characters in an error's echo of the path are escaped.
    let e = GeminiCall::parse("/v1beta/x\u{1b}[31m:generateContent").unwrap_err();
    assert!(
        matches!(&e, GeminiPathError::NotFound(p) if p.contains("\\u{1b}")),
        "{e}"
    );
}

#[test]
fn hostile_gemini_bodies_are_refused_in_place() {
    for (req, place) in [
        (
            json!({"contents": [user(json!([{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}]))]}),
            "contents[0].parts[0].inlineData.data: not base64",
        ),
        (
            json!({"contents": [user(json!([{"inlineData": {"mimeType": "image/png", "data": "QUJD="}}]))]}),
            "not base64",
        ),
        (
            json!({"contents": [user(json!([{"inlineData": {"mimeType": "image/png", "data": "QUJDRA==="}}]))]}),
            "not base64",
        ),
        (
            json!({"contents": [user(json!([{"inlineData": {"mimeType": "image/png", "data": "A"}}]))]}),
            "not base64",
        ),
        (
            json!({"contents": [user(json!([{"text": "a", "functionCall": {"name": "f"}}]))]}),
            "a part holds one of",
        ),
        (
            json!({"contents": [user(json!([{}]))]}),
            "the part is empty",
        ),
        (
            json!({"contents": [user(json!([{"text": 5}]))]}),
            "contents[0].parts[0]",
        ),
        (
            json!({"contents": [user(json!([{"txet": "x"}]))]}),
            "unknown field `txet`",
        ),
        (
            json!({"contents": [{"role": "system", "parts": []}]}),
            "unknown role `system`",
        ),
        (
            json!({"contents": [], "unknownField": 1}),
            "unknown field `unknownField`",
        ),
        (
            json!({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": [1]}}]}]}),
            "functionCall.args: must be a JSON object",
        ),
        (
            json!({"contents": [], "generationConfig": {"topK": 1.5}}),
            "topK",
        ),
        (
            json!({"contents": [], "systemInstruction": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}}),
            "system instructions are text",
        ),
        (
            json!({"contents": [], "tools": [{"functionDeclarations": [{"name": "f", "parameters": [1]}]}]}),
            "must be a schema object",
        ),
        (json!({"contents": "hi"}), "contents"),
    ] {
        let e = refused(M, &req);
        assert!(e.contains(place), "{e} should say {place}");
    }
    for body in [&b""[..], b"null", b"[]", b"{", b"{\"contents\": []}}"] {
        let e = translate_at("/v1beta/models/m:generateContent", C, body).unwrap_err();
        assert!(matches!(e, Refusal::Malformed { .. }), "{e}");
    }
    // Invalid UTF-8, a lone surrogate, nesting past the bound.
    let mut bad = br#"{"contents":[{"parts":[{"text":"caf"#.to_vec();
    bad.extend_from_slice(&[0xC3, 0x28]);
    bad.extend_from_slice(br#""}]}]}"#);
    let e = translate_at("/v1beta/models/m:generateContent", M, &bad).unwrap_err();
    assert!(e.to_string().contains("UTF-8"), "{e}");
    let lone = br#"{"contents":[{"parts":[{"text":"\ud800"}]}]}"#;
    assert!(translate_at("/v1beta/models/m:generateContent", M, lone).is_err());
    let deep = format!(
        r#"{{"contents":[],"tools":[{{"functionDeclarations":[{{"name":"f","parameters":{}{}}}]}}]}}"#,
        "{\"items\":".repeat(200),
        "}".repeat(200)
    );
    let e = translate_at("/v1beta/models/m:generateContent", M, deep.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("deeper than"), "{e}");
}

#[test]
fn a_huge_parts_count_translates_whole() {
    let parts: Vec<Value> = (0..50_000)
        .map(|i| json!({"text": format!("p{i} ")}))
        .collect();
    let m = to(M, &json!({"contents": [user(json!(parts))]}));
    let blocks = m["messages"][0]["content"].as_array().unwrap();
    assert_eq!(blocks.len(), 50_000);
    assert_eq!(blocks[49_999]["text"], "p49999 ");
}
