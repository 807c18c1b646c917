//! Requests, field by field, both ways.

use serde_json::json;

use super::super::Refusal;
use super::{Dialect, body, refused, request};

const C: Dialect = Dialect::Chat;
const M: Dialect = Dialect::Messages;

#[test]
fn chat_to_messages_basics() {
    let t = request(
        C,
        M,
        &json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hello"}
            ],
            "temperature": 1.5,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "user-42",
            "seed": 7
        }),
    );
    assert_eq!(t.path, "/messages");
    assert_eq!(t.set_headers, vec![("anthropic-version", "2023-06-01")]);
    assert!(t.strip_headers.contains(&"anthropic-beta"));
    assert!(t.exchange.stream && t.exchange.include_usage);
    assert_eq!(
        body(&t),
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 8192,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in French."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
            "temperature": 1.0,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "stream": true,
            "metadata": {"user_id": "user-42"}
        })
    );
    let header = t.dropped_header().unwrap();
    assert!(header.contains("temperature ("), "{header}");
    assert!(header.contains("seed ("), "{header}");
}

#[test]
fn chat_images_become_anthropic_sources() {
    let t = request(
        C,
        M,
        &json!({
            "model": "m",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
            ]}]
        }),
    );
    assert_eq!(
        body(&t)["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is in these?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "a.pdf"}
        ])
    );
    assert_eq!(body(&t)["max_tokens"], 100);
}

#[test]
fn chat_tools_and_choices() {
    let tools = json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": true
    }}, {"type": "function", "function": {"name": "now"}}]);
    let cases = [
        (json!("auto"), json!(null), json!({"type": "auto"})),
        (
            json!("required"),
            json!(false),
            json!({"type": "any", "disable_parallel_tool_use": true}),
        ),
        (json!("none"), json!(false), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "now"}}),
            json!(null),
            json!({"type": "tool", "name": "now"}),
        ),
        (
            json!(null),
            json!(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
    ];
    for (choice, parallel, expected) in cases {
        let t = request(
            C,
            M,
            &json!({
                "model": "m",
                "messages": [{"role": "user", "content": "weather in Paris?"}],
                "tools": tools, "tool_choice": choice, "parallel_tool_calls": parallel
            }),
        );
        let b = body(&t);
        assert_eq!(b["tool_choice"], expected, "{choice} {parallel}");
        assert_eq!(
            b["tools"],
            json!([
                {"name": "get_weather", "description": "Weather of a city",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                 "strict": true},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}}
            ])
        );
    }
}

#[test]
fn chat_parallel_tool_calls_and_results_make_anthropic_turns() {
    let t = request(
        C,
        M,
        &json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
                {"role": "user", "content": "Thanks, which is warmer?"}
            ]
        }),
    );
    assert_eq!(
        body(&t)["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18C sunny"}]},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
                {"type": "text", "text": "Thanks, which is warmer?"}
            ]}
        ])
    );
}

#[test]
fn chat_reasoning_effort_becomes_a_thinking_budget_within_the_limit() {
    let ask = |effort: &str, max: Option<u64>| {
        let mut req = json!({
            "model": "m", "reasoning_effort": effort, "temperature": 0.2,
            "messages": [{"role": "user", "content": "think"}]
        });
        if let Some(max) = max {
            req["max_completion_tokens"] = json!(max);
        }
        req
    };
    let cases = [
        ("high", Some(20000), 20000, Some(16384)),
        ("high", None, 16384 + 8192, Some(16384)),
        ("medium", Some(1500), 1500, Some(1499)),
        ("low", None, 1024 + 8192, Some(1024)),
        ("minimal", None, 8192, None),
    ];
    for (effort, max, max_tokens, budget) in cases {
        let t = request(C, M, &ask(effort, max));
        let b = body(&t);
        assert_eq!(b["max_tokens"], max_tokens, "{effort} {max:?}");
        match budget {
            Some(budget) => {
                assert_eq!(
                    b["thinking"],
                    json!({"type": "enabled", "budget_tokens": budget})
                );
                assert!(b.get("temperature").is_none());
                assert!(t.dropped_header().unwrap().contains("temperature"));
            }
            None => {
                assert!(b.get("thinking").is_none());
                assert_eq!(b["temperature"], 0.2);
            }
        }
    }
    let r = refused(C, M, &ask("high", Some(1000)));
    assert!(matches!(r, Refusal::Unsupported { .. }), "{r}");
    let mut none = ask("none", None);
    none["temperature"] = json!(null);
    assert_eq!(
        body(&request(C, M, &none))["thinking"],
        json!({"type": "disabled"})
    );
}

#[test]
fn chat_structured_outputs() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false});
    let t = request(
        C,
        M,
        &json!({
            "model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}}
        }),
    );
    assert_eq!(
        body(&t)["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
    let r = refused(
        C,
        M,
        &json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
    );
    assert!(r.to_string().contains("JSON mode"), "{r}");
    let plain = request(
        C,
        M,
        &json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "text"}}),
    );
    assert!(body(&plain).get("output_config").is_none());
}

#[test]
fn chat_thinking_blocks_go_back_signed() {
    let t = request(
        C,
        M,
        &json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": null, "reasoning_content": "hmm",
                 "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig=="},
                                     {"type": "redacted_thinking", "data": "enc"}],
                 "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "ok"}
            ]
        }),
    );
    assert_eq!(
        body(&t)["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
            {"type": "redacted_thinking", "data": "enc"},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
        ])
    );
    assert!(t.dropped.is_empty());
    let unsigned = request(
        C,
        M,
        &json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": "hmm"},
            {"role": "user", "content": "q2"}
        ]}),
    );
    assert_eq!(
        body(&unsigned)["messages"][1]["content"],
        json!([{"type": "text", "text": "a"}])
    );
    assert!(
        unsigned
            .dropped_header()
            .unwrap()
            .contains("reasoning_content")
    );
}

#[test]
fn chat_refusals_name_what_cannot_go() {
    let user = json!({"role": "user", "content": "x"});
    let cases = [
        (
            json!({"model": "m", "messages": [user], "n": 2}),
            "n other than 1",
        ),
        (
            json!({"model": "m", "messages": [user], "logprobs": true}),
            "logprobs",
        ),
        (
            json!({"model": "m", "messages": [user], "logit_bias": {"50256": -100}}),
            "logit_bias",
        ),
        (
            json!({"model": "m", "messages": [user], "modalities": ["text", "audio"]}),
            "audio output",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]}),
            "audio input",
        ),
        (
            json!({"model": "m", "messages": [user, {"role": "system", "content": "late"}]}),
            "system message after",
        ),
        (
            json!({"model": "m", "messages": [user], "tools": [{"type": "custom", "custom": {"name": "x"}}]}),
            "tools of type `custom`",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]}),
            "file_id",
        ),
        (
            json!({"model": "m", "messages": [user], "web_search_options": {}}),
            "web_search_options",
        ),
    ];
    for (req, what) in cases {
        let r = refused(C, M, &req);
        assert!(matches!(r, Refusal::Unsupported { .. }), "{req}: {r}");
        assert!(r.to_string().contains(what), "{r} should name {what}");
        assert!(r.to_string().contains("Anthropic Messages"), "{r}");
    }
    let unknown = refused(
        C,
        M,
        &json!({"model": "m", "messages": [user], "frobnicate": 1}),
    );
    assert!(matches!(unknown, Refusal::Malformed { .. }));
    assert!(unknown.to_string().contains("frobnicate"), "{unknown}");
    let nested = refused(
        C,
        M,
        &json!({"model": "m", "messages": [{"role": "user", "content": "x", "colour": "red"}]}),
    );
    assert!(
        nested.to_string().contains("messages[0]") && nested.to_string().contains("colour"),
        "{nested}"
    );
}

#[test]
fn messages_to_chat_basics() {
    let t = request(
        M,
        C,
        &json!({
            "model": "gpt-4.1",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "Hi"}],
            "stop_sequences": ["###"],
            "temperature": 0.3,
            "top_k": 40,
            "stream": true,
            "metadata": {"user_id": "u-1"}
        }),
    );
    assert_eq!(t.path, "/chat/completions");
    assert!(t.set_headers.is_empty());
    assert_eq!(t.strip_headers, ["anthropic-version", "anthropic-beta"]);
    assert_eq!(
        body(&t),
        json!({
            "model": "gpt-4.1",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi"}
            ],
            "max_completion_tokens": 1024,
            "temperature": 0.3,
            "stop": ["###"],
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "u-1"
        })
    );
    let header = t.dropped_header().unwrap();
    assert!(
        header.contains("cache_control") && header.contains("top_k"),
        "{header}"
    );
}

#[test]
fn messages_content_and_tools_become_chat() {
    let t = request(
        M,
        C,
        &json!({
            "model": "gpt-4.1",
            "max_tokens": 500,
            "tools": [{"name": "read", "description": "Read a file",
                       "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "thinking": {"type": "enabled", "budget_tokens": 10000},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}, "title": "spec"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "need file", "signature": "s"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.txt"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "contents", "is_error": true},
                    {"type": "text", "text": "go on"}
                ]}
            ]
        }),
    );
    let b = body(&t);
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "spec"}}
            ]},
            {"role": "assistant", "content": "Reading.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"a.txt\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "contents"},
            {"role": "user", "content": "go on"}
        ])
    );
    assert_eq!(
        b["tools"],
        json!([{"type": "function", "function": {"name": "read", "description": "Read a file",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}])
    );
    assert_eq!(b["tool_choice"], "required");
    assert_eq!(b["parallel_tool_calls"], false);
    assert_eq!(b["reasoning_effort"], "medium");
    let header = t.dropped_header().unwrap();
    assert!(
        header.contains("is_error") && header.contains("thinking"),
        "{header}"
    );
}

#[test]
fn messages_structured_output_and_effort() {
    let schema = json!({"type": "object", "properties": {}, "additionalProperties": false});
    let t = request(
        M,
        C,
        &json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
                "output_config": {"format": {"type": "json_schema", "schema": schema}, "effort": "low"}}),
    );
    let b = body(&t);
    assert_eq!(
        b["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}})
    );
    assert_eq!(b["reasoning_effort"], "low");
}

#[test]
fn messages_refusals() {
    let user = json!({"role": "user", "content": "x"});
    let cases = [
        (
            json!({"model": "m", "max_tokens": 1, "messages": [user], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "web_search_20250305",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [user], "stop_sequences": ["a", "b", "c", "d", "e"]}),
            "more than 4 stop sequences",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}
            ]}]}),
            "images and documents in tool results",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [user], "mcp_servers": []}),
            "mcp_servers",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}]}),
            "search_result",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}]}),
            "documents by URL",
        ),
    ];
    for (req, what) in cases {
        let r = refused(M, C, &req);
        assert!(matches!(r, Refusal::Unsupported { .. }), "{req}: {r}");
        assert!(r.to_string().contains(what), "{r} should name {what}");
    }
    let missing = refused(M, C, &json!({"model": "m", "messages": [user]}));
    assert!(missing.to_string().contains("max_tokens"), "{missing}");
}

#[test]
fn claude_codes_settings_that_do_not_change_the_answer_are_dropped_and_named() {
    let t = request(
        M,
        C,
        &json!({
            "model": "gpt-4.1",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hi"}],
            "metadata": {"user_id": "u-1", "session": "s"},
            "service_tier": "auto",
            "context_management": {"edits": [{"type": "clear_thinking_20251015"}]}
        }),
    );
    assert_eq!(body(&t)["user"], "u-1");
    let header = t.dropped_header().unwrap();
    assert!(
        header.contains("context_management") && header.contains("service_tier"),
        "{header}"
    );
}

/// The OpenAI Python SDK accumulates a streamed tool call and sends it back with the
/// delta's `index` still on it; the call reads as any other.
#[test]
fn a_tool_call_sent_back_with_its_stream_index_is_read() {
    let t = request(
        C,
        M,
        &json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny in Oslo"}
            ]
        }),
    );
    let sent = body(&t);
    assert_eq!(
        sent["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}})
    );
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "call_1");
}

/// Claude Code's requests as it sends them: thinking with how to show it
/// (`display`), and most tools marked for loading on demand (`defer_loading`).
#[test]
fn claude_codes_thinking_display_and_deferred_tools_are_read() {
    let claude_code = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "thinking": {"type": "enabled", "budget_tokens": 4096, "display": "omitted"},
        "tools": [
            {"name": "Read", "description": "Read a file.", "input_schema": {"type": "object"}},
            {"name": "CronCreate", "description": "Schedule.", "input_schema": {"type": "object"},
             "defer_loading": true}
        ],
        "messages": [{"role": "user", "content": "hi"}]
    });
    for upstream in [Dialect::Chat, Dialect::Gemini] {
        let t = request(M, upstream, &claude_code);
        let sent = body(&t).to_string();
        assert!(sent.contains("CronCreate"), "{sent}");
        assert!(
            !sent.contains("defer_loading") && !sent.contains("omitted"),
            "{sent}"
        );
        let dropped = t.dropped_header().unwrap();
        assert!(dropped.contains("defer_loading ("), "{dropped}");
    }
    let t = request(M, C, &claude_code);
    assert_eq!(body(&t)["reasoning_effort"], "medium");
}

/// Codex CLI's Responses requests as it sends them: its `client_metadata`, OpenAI's
/// web search and a namespace of sub-agent tools offered beside its functions. The
/// functions go; the rest is left out and said so.
#[test]
fn codexs_client_metadata_web_search_and_namespaces_are_left_out() {
    let codex = json!({
        "model": "gpt-5-codex",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "tools": [
            {"type": "function", "name": "exec_command", "description": "Run.", "strict": false,
             "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
            {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.",
             "tools": [{"type": "function", "name": "close_agent", "parameters": {"type": "object"}}]},
            {"type": "web_search", "external_web_access": true}
        ],
        "client_metadata": {"session_id": "s-1", "turn_id": "t-1"},
        "stream": true
    });
    for upstream in [M, C, Dialect::Gemini] {
        let t = request(Dialect::Responses, upstream, &codex);
        let sent = body(&t).to_string();
        assert!(sent.contains("exec_command"), "{sent}");
        for gone in ["close_agent", "web_search", "s-1"] {
            assert!(!sent.contains(gone), "{gone}: {sent}");
        }
        let dropped = t.dropped_header().unwrap();
        for named in ["client_metadata (", "namespace (", "web_search ("] {
            assert!(dropped.contains(named), "{dropped}");
        }
    }
    // Other built-in tools are still refused.
    let mut file_search = codex.clone();
    file_search["tools"] = json!([{"type": "file_search", "vector_store_ids": ["vs_1"]}]);
    let refusal = refused(Dialect::Responses, M, &file_search);
    assert!(refusal.to_string().contains("file_search"), "{refusal}");
}
