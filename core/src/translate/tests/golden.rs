//! Golden files: requests, answers and streams in the shapes current clients and
//! providers send (Claude Code's Messages calls with its beta flags, tools and
//! thinking; the OpenAI SDK's tool calls), translated, and compared with the
//! translation on file in `testdata/`. `SWITCHYARD_BLESS=1` rewrites the files.

use std::path::PathBuf;

use serde_json::Value;

use super::super::{ClientHeaders, StreamTranslator, translate_answer, translate_request};
use super::{Dialect, exchange};
use crate::sse::SseFramer;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/translate/testdata")
        .join(name)
}

pub(super) fn read(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap()
}

/// Compare `produced` with the file `name` (as JSON when it ends in `.json`).
pub(super) fn check(name: &str, produced: &[u8]) {
    let file = path(name);
    let json = name.ends_with(".json");
    if std::env::var_os("SWITCHYARD_BLESS").is_some() {
        let text = if json {
            let v: Value = serde_json::from_slice(produced).unwrap();
            let mut t = serde_json::to_vec_pretty(&v).unwrap();
            t.push(b'\n');
            t
        } else {
            produced.to_vec()
        };
        std::fs::write(&file, text).unwrap();
    }
    let expected = std::fs::read(&file).unwrap_or_else(|_| panic!("{name} missing: bless it"));
    if json {
        let want: Value = serde_json::from_slice(&expected).unwrap();
        let got: Value = serde_json::from_slice(produced).unwrap();
        assert_eq!(got, want, "{name}");
    } else {
        assert_eq!(
            String::from_utf8_lossy(produced),
            String::from_utf8_lossy(&expected),
            "{name}"
        );
    }
}

/// Translate a recorded stream, fed through the framer in awkward pieces as the
/// network would deliver it.
pub(super) fn stream(client: Dialect, upstream: Dialect, input: &str) -> Vec<u8> {
    let bytes = read(input);
    let mut framer = SseFramer::default();
    let mut t = StreamTranslator::new(&exchange(client, upstream, true), 1_747_000_001);
    let mut out = Vec::new();
    for piece in bytes.chunks(7) {
        framer.push(piece);
        while let Some(event) = framer.next_event() {
            t.feed(&event, &mut out);
        }
    }
    assert_eq!(t.finish(&mut out), crate::usage::StreamEnd::Complete);
    out
}

#[test]
fn claude_code_request_to_chat() {
    let headers = ClientHeaders {
        anthropic_beta: Some(
            "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
        ),
        ..ClientHeaders::default()
    };
    let t = translate_request(
        Dialect::Messages,
        Dialect::Chat,
        &read("claude_code.request.json"),
        headers,
    )
    .unwrap();
    check("claude_code.request.chat.json", &t.body);
    assert_eq!(
        t.dropped_header().unwrap(),
        "anthropic-beta (Anthropic's beta flags mean nothing to the target); \
         cache_control (the target caches prompts by itself); \
         thinking (OpenAI Chat Completions takes no reasoning back); \
         metadata.user_id (longer than OpenAI's 64 characters)"
    );
}

#[test]
fn openai_sdk_tool_request_to_messages() {
    let t = translate_request(
        Dialect::Chat,
        Dialect::Messages,
        &read("openai_sdk_tools.request.json"),
        ClientHeaders::default(),
    )
    .unwrap();
    check("openai_sdk_tools.request.messages.json", &t.body);
    assert_eq!(
        t.dropped_header().unwrap(),
        "image_url.detail (the target picks image resolution itself)"
    );
}

#[test]
fn answers_both_ways() {
    let a = translate_answer(
        &exchange(Dialect::Chat, Dialect::Messages, false),
        200,
        &read("anthropic_answer.json"),
        1_747_000_001,
    );
    check("anthropic_answer.chat.json", &a.body);
    let a = translate_answer(
        &exchange(Dialect::Messages, Dialect::Chat, false),
        200,
        &read("openai_answer.json"),
        1_747_000_001,
    );
    check("openai_answer.messages.json", &a.body);
}

#[test]
fn streams_both_ways() {
    check(
        "anthropic_thinking_tools.stream.chat.sse",
        &stream(
            Dialect::Chat,
            Dialect::Messages,
            "anthropic_thinking_tools.stream.sse",
        ),
    );
    check(
        "openai_tools.stream.messages.sse",
        &stream(Dialect::Messages, Dialect::Chat, "openai_tools.stream.sse"),
    );
}

#[test]
fn codex_request_to_both_upstreams() {
    for (upstream, golden) in [
        (Dialect::Messages, "codex.request.messages.json"),
        (Dialect::Chat, "codex.request.chat.json"),
    ] {
        let t = translate_request(
            Dialect::Responses,
            upstream,
            &read("codex.request.json"),
            ClientHeaders::default(),
        )
        .unwrap();
        check(golden, &t.body);
        let header = t.dropped_header().unwrap();
        assert!(header.contains("prompt_cache_key"), "{header}");
    }
}

#[test]
fn responses_answers_and_streams() {
    let a = translate_answer(
        &exchange(Dialect::Responses, Dialect::Messages, false),
        200,
        &read("anthropic_answer.json"),
        1_747_000_001,
    );
    check("anthropic_answer.responses.json", &a.body);
    let a = translate_answer(
        &exchange(Dialect::Responses, Dialect::Chat, false),
        200,
        &read("openai_answer.json"),
        1_747_000_001,
    );
    check("openai_answer.responses.json", &a.body);
    check(
        "anthropic_thinking_tools.stream.responses.sse",
        &stream(
            Dialect::Responses,
            Dialect::Messages,
            "anthropic_thinking_tools.stream.sse",
        ),
    );
    check(
        "openai_tools.stream.responses.sse",
        &stream(Dialect::Responses, Dialect::Chat, "openai_tools.stream.sse"),
    );
}
