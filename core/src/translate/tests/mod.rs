//! Table tests of the translations, golden files of real clients' shapes, hostile
//! inputs and the stream-equals-whole property.

mod answers;
mod gemini;
mod gemini_client;
mod gemini_client_hostile;
mod gemini_client_out;
mod golden;
mod hostile;
mod property;
mod requests;
mod responses;
mod streams;

use serde_json::Value;

use super::{
    ClientHeaders, Dialect, Exchange, StreamTranslator, TranslatedRequest, translate_request,
};

pub(super) fn request(client: Dialect, upstream: Dialect, body: &Value) -> TranslatedRequest {
    let bytes = serde_json::to_vec(body).unwrap();
    translate_request(client, upstream, &bytes, ClientHeaders::default()).unwrap()
}

pub(super) fn body(t: &TranslatedRequest) -> Value {
    serde_json::from_slice(&t.body).unwrap()
}

pub(super) fn refused(client: Dialect, upstream: Dialect, body: &Value) -> super::Refusal {
    let bytes = serde_json::to_vec(body).unwrap();
    translate_request(client, upstream, &bytes, ClientHeaders::default()).unwrap_err()
}

pub(super) fn exchange(client: Dialect, upstream: Dialect, include_usage: bool) -> Exchange {
    Exchange {
        client,
        upstream,
        stream: true,
        include_usage,
    }
}

/// Feed `events` (whole SSE events) and end the stream; the client's bytes.
pub(super) fn run_stream(
    exchange: &Exchange,
    events: &[Vec<u8>],
) -> (String, crate::usage::StreamEnd) {
    let mut t = StreamTranslator::new(exchange, 1_700_000_000);
    let mut out = Vec::new();
    for e in events {
        t.feed(e, &mut out);
    }
    let end = t.finish(&mut out);
    (String::from_utf8(out).unwrap(), end)
}

/// An SSE event, named as Anthropic names them when `name` is given.
pub(super) fn sse(name: Option<&str>, data: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(n) = name {
        out.extend_from_slice(format!("event: {n}\n").as_bytes());
    }
    out.extend_from_slice(format!("data: {data}\n\n").as_bytes());
    out
}

/// The `data` of each event of a client stream, parsed (`[DONE]` as a string).
pub(super) fn datas(stream: &str) -> Vec<Value> {
    stream
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned()))
        })
        .collect()
}
