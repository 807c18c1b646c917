//! A translated stream through the relay: the client's protocol out, the upstream's
//! usage read, and a stream that closes early ends with the client's error event.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use switchyard_core::endpoint::UsageShape;
use switchyard_core::sse::SseFramer;
use switchyard_core::translate::{Dialect, Exchange, StreamTranslator};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::tests::{meter, relay};
use super::{Relay, Started, stream_back};

fn event(kind: &str, data: &str) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

/// The client's body for an Anthropic stream of `events` (after `message_start`)
/// translated for a Chat client that asked for usage.
async fn translated(events: &[String]) -> String {
    let (upstream, rx) = mpsc::channel::<Result<Bytes, hyper::Error>>(16);
    let started = Started {
        status: StatusCode::OK,
        chunks: Box::pin(ReceiverStream::new(rx)),
        framer: SseFramer::default(),
        first: event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":7,"output_tokens":1}}}"#,
        )
        .into_bytes(),
    };
    for e in events {
        upstream.send(Ok(Bytes::from(e.clone()))).await.unwrap();
    }
    drop(upstream);
    let exchange = Exchange {
        client: Dialect::Chat,
        upstream: Dialect::Messages,
        stream: true,
        include_usage: true,
    };
    let relay = Relay {
        usage: UsageShape::Anthropic,
        ..relay()
    };
    let translator = Box::new(StreamTranslator::new(&exchange, 0));
    let body = stream_back(started, relay, meter(), Some(translator)).into_body();
    let bytes = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn text_events() -> Vec<String> {
    vec![
        event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        ),
    ]
}

#[tokio::test(flavor = "current_thread")]
async fn a_whole_translated_stream_ends_as_the_clients_protocol_ends() {
    let mut events = text_events();
    events.push(event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ));
    events.push(event(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#,
    ));
    events.push(event("message_stop", r#"{"type":"message_stop"}"#));
    let body = translated(&events).await;
    assert!(body.contains("chat.completion.chunk"), "{body}");
    assert!(body.contains(r#""content":"Hi""#), "{body}");
    assert!(body.contains(r#""completion_tokens":3"#), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    assert!(
        !body.contains("event: "),
        "Anthropic's framing leaked: {body}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_translated_stream_closed_early_ends_with_the_clients_error_event() {
    let body = translated(&text_events()).await;
    assert!(body.contains(r#""content":"Hi""#), "{body}");
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("data: {\"error\":"), "{body}");
    assert!(!body.contains("[DONE]"), "{body}");
}
