//! CPU time per event of stream translation, each direction: a typical answer (text
//! deltas, then a tool call streaming its arguments) translated many times over.
//! Run with `cargo run --release -p switchyard-core --example translate_bench`.

use std::io::Write;
use std::time::Instant;

use switchyard_core::translate::{Dialect, Exchange, StreamTranslator};

fn anthropic_events() -> Vec<Vec<u8>> {
    let mut out = vec![
        br#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":2048,"output_tokens":2}}}

"#.to_vec(),
        b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_vec(),
    ];
    for _ in 0..200 {
        out.push(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"The weather in \\\"Boston\\\" is \"}}\n\n".to_vec());
    }
    out.push(
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            .to_vec(),
    );
    out.push(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n".to_vec());
    for _ in 0..50 {
        out.push(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"Bos\"}}\n\n".to_vec());
    }
    out.push(
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
            .to_vec(),
    );
    out.push(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n".to_vec());
    out.push(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_vec());
    out
}

fn chat_events() -> Vec<Vec<u8>> {
    let head = r#"{"id":"chatcmpl-BWe0tZ9mZ5xQ","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4.1-2025-04-14","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":"#;
    let chunk = |delta: &str, finish: &str| {
        format!("data: {head}{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n")
            .into_bytes()
    };
    let mut out = vec![chunk(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    )];
    for _ in 0..200 {
        out.push(chunk(
            r#"{"content":"The weather in \"Boston\" is "}"#,
            "null",
        ));
    }
    out.push(chunk(
        r#"{"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}]}"#,
        "null",
    ));
    for _ in 0..50 {
        out.push(chunk(
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\": \"Bos"}}]}"#,
            "null",
        ));
    }
    out.push(chunk("{}", "\"tool_calls\""));
    out.push(
        br#"data: {"id":"chatcmpl-BWe0tZ9mZ5xQ","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4.1-2025-04-14","choices":[],"usage":{"prompt_tokens":82,"completion_tokens":52,"total_tokens":134}}

"#
        .to_vec(),
    );
    out.push(b"data: [DONE]\n\n".to_vec());
    out
}

fn gemini_events() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..200 {
        out.push(br#"data: {"candidates":[{"content":{"role":"model","parts":[{"text":"The weather in \"Boston\" is "}]},"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"gresp-1"}

"#.to_vec());
    }
    out.push(br#"data: {"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"location":"Boston"}}}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":82,"candidatesTokenCount":52,"totalTokenCount":134},"modelVersion":"gemini-2.5-flash","responseId":"gresp-1"}

"#.to_vec());
    out
}

fn measure(client: Dialect, upstream: Dialect, events: &[Vec<u8>]) -> (f64, usize) {
    let exchange = Exchange {
        client,
        upstream,
        stream: true,
        include_usage: true,
    };
    let rounds = 400;
    let mut out = Vec::with_capacity(1 << 16);
    let mut bytes = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut t = StreamTranslator::new(&exchange, 1_747_000_000);
        for e in events {
            t.feed(e, &mut out);
        }
        t.finish(&mut out);
        bytes = out.len();
        out.clear();
    }
    let elapsed = start.elapsed().as_nanos() as f64;
    (elapsed / (rounds * events.len()) as f64, bytes)
}

fn main() -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for (name, client, upstream, events) in [
        (
            "Anthropic events -> Chat chunks",
            Dialect::Chat,
            Dialect::Messages,
            anthropic_events(),
        ),
        (
            "Chat chunks -> Anthropic events",
            Dialect::Messages,
            Dialect::Chat,
            chat_events(),
        ),
        (
            "Anthropic events -> Responses events",
            Dialect::Responses,
            Dialect::Messages,
            anthropic_events(),
        ),
        (
            "Chat chunks -> Responses events",
            Dialect::Responses,
            Dialect::Chat,
            chat_events(),
        ),
        (
            "Gemini chunks -> Chat chunks",
            Dialect::Chat,
            Dialect::Gemini,
            gemini_events(),
        ),
        (
            "Anthropic events -> Gemini chunks",
            Dialect::Gemini,
            Dialect::Messages,
            anthropic_events(),
        ),
        (
            "Chat chunks -> Gemini chunks",
            Dialect::Gemini,
            Dialect::Chat,
            chat_events(),
        ),
    ] {
        let (ns, bytes) = measure(client, upstream, &events);
        writeln!(
            stdout,
            "{name}: {ns:.0} ns per event ({} events, {bytes} bytes out per stream)",
            events.len()
        )?;
    }
    Ok(())
}
