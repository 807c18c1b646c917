//! Answers back to the client: read whole (for usage), passed through as it comes
//! (binary audio), or relayed event by event (SSE).

use std::pin::Pin;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use http::{HeaderValue, StatusCode, header};
use switchyard_core::endpoint::{Endpoint, UsageShape, stream_error_event};
use switchyard_core::error::ErrorCode;
use switchyard_core::forward;
use switchyard_core::route::Failure;
use switchyard_core::sse::{self, SseFramer};
use switchyard_core::translate::{Exchange, StreamTranslator, translate_answer};
use switchyard_core::usage::{
    EventVerdict, StreamEnd, StreamMeter, estimate_tokens, usage_from_json,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::meter::Meter;
use super::translation;
use crate::upstream::{AttemptFailure, UpstreamResponse};

/// The most a burst of events gathers before it goes to the client.
const BURST_MAX: usize = 64 * 1024;

/// One turn at the back of the runtime's queue. Unlike `tokio::task::yield_now`,
/// which waits for the next poll of the I/O driver (a syscall each time), the tasks
/// already woken run and then this one does.
#[derive(Default)]
struct Turn(bool);

impl std::future::Future for Turn {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, hyper::Error>> + Send>>;

/// An answer's body as the chunks of data it brings.
fn chunks(upstream: UpstreamResponse) -> http_body_util::BodyDataStream<hyper::body::Incoming> {
    http_body_util::BodyDataStream::new(upstream.into_body())
}

/// The upstream answer's header `name`, if it reaches the client
/// (`core::forward::answer_header_passes`: never the provider's quota headers).
fn relayed(upstream: &UpstreamResponse, name: http::HeaderName) -> Option<HeaderValue> {
    forward::answer_header_passes(name.as_str())
        .then(|| upstream.headers().get(name).cloned())
        .flatten()
}

/// A whole upstream answer.
pub struct Whole {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// Read an answer whole, bounded in size and by `idle` between chunks. A cut before
/// the end is the key's failure: nothing reached the client yet, so the call can be
/// tried again.
pub async fn read_whole(
    upstream: UpstreamResponse,
    max: usize,
    idle: Duration,
) -> Result<Whole, AttemptFailure> {
    let status = upstream.status();
    let content_type = relayed(&upstream, header::CONTENT_TYPE);
    let mut body = Vec::new();
    let mut chunks = chunks(upstream);
    loop {
        match tokio::time::timeout(idle, chunks.next()).await {
            Ok(Some(Ok(chunk))) => {
                if body.len() + chunk.len() > max {
                    return Err(AttemptFailure::new(
                        Failure::ServerError,
                        "the upstream answer is too large",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(AttemptFailure::new(
                    Failure::Unreachable,
                    "the upstream answer was cut off",
                ));
            }
            Err(_) => {
                return Err(AttemptFailure::new(
                    Failure::Timeout,
                    "the upstream answer stalled",
                ));
            }
        }
    }
    Ok(Whole {
        status,
        content_type,
        body: Bytes::from(body),
    })
}

/// Send a whole answer and meter it: its usage read as the upstream reported it
/// (`shape`), the answer translated for the client first when `exchange` says so.
pub fn whole_back(
    shape: UsageShape,
    whole: Whole,
    meter: Meter,
    exchange: Option<&Exchange>,
) -> Response {
    let tokens = if whole.status.is_success() {
        usage_from_json(shape, &whole.body)
    } else {
        None
    };
    if whole.status.is_success() && tokens.is_none() {
        tracing::warn!(
            provider_key = meter.provider().map(tracing::field::display),
            "upstream answer carried no usage; estimated"
        );
        meter.finish_estimated(whole.status.as_u16(), estimate_tokens(&whole.body));
    } else {
        meter.finish(whole.status.as_u16(), tokens);
    }
    if let Some(exchange) = exchange {
        let answer = translate_answer(
            exchange,
            whole.status.as_u16(),
            &whole.body,
            translation::now_unix(),
        );
        let mut response = Response::new(Body::from(answer.body));
        *response.status_mut() =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return response;
    }
    let mut response = Response::new(Body::from(whole.body));
    *response.status_mut() = whole.status;
    if let Some(ct) = whole.content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
}

/// Pass a (binary) answer through as it arrives; meter when it ends.
pub fn pass_through(upstream: UpstreamResponse, meter: Meter, idle: Duration) -> Response {
    let status = upstream.status();
    let content_type = relayed(&upstream, header::CONTENT_TYPE);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let mut chunks = chunks(upstream);
    tokio::spawn(async move {
        let mut failed = false;
        loop {
            match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(Ok(chunk))) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        // The client left; the upstream call is dropped with `chunks`.
                        return;
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(_))) | Err(_) => {
                    failed = true;
                    // An aborted body tells the client the answer is incomplete.
                    let _ = tx
                        .send(Err(std::io::Error::other("upstream interrupted")))
                        .await;
                    break;
                }
            }
        }
        meter.finish(if failed { 502 } else { status.as_u16() }, None);
    });
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
}

/// A stream whose first event has arrived: from here on it is committed.
pub struct Started {
    status: StatusCode,
    chunks: Chunks,
    framer: SseFramer,
    first: Vec<u8>,
}

/// Wait for the first complete SSE event, until `deadline`. A failure before it is the
/// key's failure and the call can still move to another key.
pub async fn first_event(
    upstream: UpstreamResponse,
    deadline: Instant,
) -> Result<Started, AttemptFailure> {
    let status = upstream.status();
    let mut chunks: Chunks = Box::pin(chunks(upstream));
    let mut framer = SseFramer::default();
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, chunks.next()).await {
            Ok(Some(Ok(chunk))) => {
                framer.push(&chunk);
                if let Some(first) = framer.next_event() {
                    return Ok(Started {
                        status,
                        chunks,
                        framer,
                        first,
                    });
                }
            }
            Ok(None) | Ok(Some(Err(_))) => {
                return Err(AttemptFailure::new(
                    Failure::Unreachable,
                    "the upstream stream ended before its first event",
                ));
            }
            Err(_) => {
                return Err(AttemptFailure::new(
                    Failure::Timeout,
                    "the upstream stream sent nothing in time",
                ));
            }
        }
    }
}

/// How an answer is relayed.
#[derive(Clone, Copy)]
pub struct Relay {
    pub endpoint: Endpoint,
    /// How the upstream's answer reports usage (its own protocol's shape, which is
    /// not the endpoint's when the call is translated).
    pub usage: UsageShape,
    /// Hold back the usage-only chunk the router asked for on the client's behalf.
    pub strip_usage_chunk: bool,
    pub idle: Duration,
    /// How long a stream whose client left keeps draining for its usage.
    pub drain: Duration,
}

/// Whether an event goes to the client, having read its usage.
fn forwarded(usage: &mut StreamMeter, relay: Relay, event: &[u8]) -> bool {
    let usage_only =
        sse::event_data(event).is_some_and(|data| usage.observe(&data) == EventVerdict::UsageOnly);
    !(usage_only && relay.strip_usage_chunk)
}

/// What the relay does with each upstream event, its usage read on the way: passes it
/// on as it is, or translates it for the client.
struct Pipe {
    usage: StreamMeter,
    translator: Option<Box<StreamTranslator>>,
}

impl Pipe {
    /// One whole upstream event: what the client gets of it appended to `out`.
    fn event(&mut self, relay: Relay, event: &[u8], out: &mut Vec<u8>) {
        match &mut self.translator {
            None => {
                if forwarded(&mut self.usage, relay, event) {
                    out.extend_from_slice(event);
                }
            }
            Some(translator) => {
                if let Some(data) = sse::event_data(event) {
                    self.usage.observe(&data);
                }
                translator.feed(event, out);
            }
        }
    }
}

/// How the upstream stream ended while a burst gathered.
enum BurstEnd {
    Ended,
    Failed,
}

/// The events ready now, to leave in one write: what the framer holds, and what the
/// connection task decodes in one more turn of the runtime's queue from what it has
/// already read (one write per event cost more than the events). Never waits for the
/// upstream.
async fn burst(
    framer: &mut SseFramer,
    chunks: &mut Chunks,
    pipe: &mut Pipe,
    relay: Relay,
) -> (Vec<u8>, Option<BurstEnd>) {
    let mut burst = Vec::new();
    loop {
        while let Some(event) = framer.next_event() {
            pipe.event(relay, &event, &mut burst);
        }
        if burst.is_empty() || burst.len() >= BURST_MAX {
            return (burst, None);
        }
        Turn::default().await;
        match chunks.next().now_or_never() {
            Some(Some(Ok(chunk))) => framer.push(&chunk),
            Some(None) => return (burst, Some(BurstEnd::Ended)),
            Some(Some(Err(_))) => return (burst, Some(BurstEnd::Failed)),
            None => return (burst, None),
        }
    }
}

/// Relay a started stream event by event. The first event goes out with the response
/// itself; a task pumps the rest upstream → client through a small channel
/// (backpressure both ways), reads usage on the way, ends a broken stream (cut, or
/// closed before the protocol's last event) with the protocol's error event, keeps
/// draining (bounded) when the client leaves so the usage still arrives, and meters
/// once at the end. With a `translator`, each upstream event is translated for the
/// client as it comes (its usage read as the upstream sent it), and a break ends the
/// client's stream with its own protocol's error event.
pub fn stream_back(
    started: Started,
    relay: Relay,
    meter: Meter,
    translator: Option<Box<StreamTranslator>>,
) -> Response {
    let Started {
        status,
        mut chunks,
        mut framer,
        first,
    } = started;
    let mut pipe = Pipe {
        usage: StreamMeter::new(relay.usage),
        translator,
    };
    let first = match pipe.translator {
        None => forwarded(&mut pipe.usage, relay, &first).then(|| Ok(Bytes::from(first))),
        Some(_) => {
            let mut out = Vec::new();
            pipe.event(relay, &first, &mut out);
            (!out.is_empty()).then(|| Ok(Bytes::from(out)))
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut client_gone = false;
        let mut drain_deadline: Option<Instant> = None;
        let mut failed = false;
        loop {
            let (burst, end) = burst(&mut framer, &mut chunks, &mut pipe, relay).await;
            if !burst.is_empty() && !client_gone && tx.send(Ok(Bytes::from(burst))).await.is_err() {
                client_gone = true;
                drain_deadline = Some(Instant::now() + relay.drain);
            }
            match end {
                Some(BurstEnd::Ended) => break,
                Some(BurstEnd::Failed) => {
                    failed = true;
                    break;
                }
                None => {}
            }
            let wait = match drain_deadline {
                Some(d) => relay.idle.min(d.saturating_duration_since(Instant::now())),
                None => relay.idle,
            };
            match tokio::time::timeout(wait, chunks.next()).await {
                Ok(Some(Ok(chunk))) => framer.push(&chunk),
                Ok(None) => break,
                Ok(Some(Err(_))) | Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let rest = framer.take_rest();
        let (end, last) = match &mut pipe.translator {
            None => untranslated_end(&mut pipe.usage, rest, failed, relay),
            Some(translator) => {
                // An event the upstream closed without its blank line still counts.
                if let Some(data) = sse::event_data(&rest) {
                    pipe.usage.observe(&data);
                }
                let mut out = Vec::new();
                translator.feed(&rest, &mut out);
                let end = if failed {
                    translator.broken("the upstream stream was interrupted", &mut out);
                    StreamEnd::Truncated
                } else {
                    translator.finish(&mut out)
                };
                (end, out)
            }
        };
        if !client_gone && !last.is_empty() {
            let _ = tx.send(Ok(Bytes::from(last))).await;
        }
        finish_stream(meter, status, end, &pipe.usage);
    });
    let body = futures_util::stream::iter(first).chain(ReceiverStream::new(rx));
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// How an untranslated stream ended, and its last bytes for the client: what the
/// upstream closed without its blank line, then the protocol's error event if the
/// stream broke or closed before its last event (never a clean close that looks like
/// success).
fn untranslated_end(
    usage: &mut StreamMeter,
    rest: Vec<u8>,
    failed: bool,
    relay: Relay,
) -> (StreamEnd, Vec<u8>) {
    if let Some(data) = sse::event_data(&rest) {
        // An event the upstream closed without its blank line still counts.
        usage.observe(&data);
    }
    let end = if failed {
        StreamEnd::Truncated
    } else {
        usage.end()
    };
    let mut last = rest;
    if end == StreamEnd::Truncated {
        let message = if failed {
            "the upstream stream was interrupted"
        } else {
            "the upstream stream ended before its last event"
        };
        last.extend_from_slice(&stream_error_event(
            relay.endpoint,
            ErrorCode::UpstreamFailed,
            message,
        ));
    }
    (end, last)
}

/// Meter a stream that has stopped. One that did not end complete is recorded as a
/// break (502), incomplete, with the tokens it is likely to be charged for.
fn finish_stream(meter: Meter, status: StatusCode, end: StreamEnd, usage: &StreamMeter) {
    match (end, usage.usage()) {
        (StreamEnd::Truncated | StreamEnd::Failed, _) => {
            meter.finish_cut(StatusCode::BAD_GATEWAY.as_u16(), usage);
        }
        // A stream that ended well without usage (a provider that ignores the request
        // for it): estimated from the text it streamed.
        (StreamEnd::Complete, None) if status.is_success() => {
            tracing::warn!(
                provider_key = meter.provider().map(tracing::field::display),
                "upstream stream carried no usage; estimated"
            );
            meter.finish_estimated(status.as_u16(), usage.estimated_output());
        }
        (StreamEnd::Complete, tokens) => meter.finish(status.as_u16(), tokens),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use switchyard_core::ids::{AccountId, IssuedKeyId};
    use switchyard_core::snapshot::Caller;

    use super::*;
    use crate::proxy::meter::Metered;
    use crate::usage::UsageSink;

    pub(super) fn meter() -> Meter {
        let caller = Caller {
            key: IssuedKeyId::new(),
            chain: Arc::from([AccountId::new()]),
            policy: Arc::default(),
            billing: Arc::default(),
            limits: Arc::from([]),
        };
        Meter::new(Metered {
            sink: UsageSink::off(),
            started: Instant::now(),
            request_id: uuid::Uuid::now_v7(),
            access_log: crate::access::AccessLog::OFF,
            caller,
            model_requested: "m".into(),
            model_served: "m".into(),
            path: "/v1/chat/completions",
            first_byte: metrics::Histogram::noop(),
            client_addr: "127.0.0.1".into(),
            streamed: true,
            spends: true,
            session: None,
            end_user: None,
            tag: None,
            price: None,
            price_version: 0,
            admitted: None,
            prompt: None,
            span: tracing::Span::none(),
            client_protocol: "openai-chat",
        })
    }

    pub(super) fn relay() -> Relay {
        Relay {
            endpoint: Endpoint::ChatCompletions,
            usage: UsageShape::OpenAiChat,
            strip_usage_chunk: false,
            idle: Duration::from_secs(5),
            drain: Duration::from_secs(5),
        }
    }

    fn event(n: u32) -> Bytes {
        Bytes::from(format!("data: {{\"n\":{n}}}\n\n"))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_burst_leaves_together_and_a_lone_event_does_not_wait() {
        let (upstream, rx) = mpsc::channel::<Result<Bytes, hyper::Error>>(8);
        let started = Started {
            status: StatusCode::OK,
            chunks: Box::pin(ReceiverStream::new(rx)),
            framer: SseFramer::default(),
            first: event(1).to_vec(),
        };
        // Two events wait upstream before the relay starts: one burst.
        upstream.send(Ok(event(2))).await.unwrap();
        upstream.send(Ok(event(3))).await.unwrap();
        let mut body = stream_back(started, relay(), meter(), None).into_body();
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .unwrap()
                .map(|f| f.unwrap().into_data().unwrap())
        };
        assert_eq!(next().await.unwrap(), event(1));
        assert_eq!(next().await.unwrap(), [event(2), event(3)].concat());
        // An event while the upstream says nothing more goes out on its own, at once.
        upstream.send(Ok(event(4))).await.unwrap();
        assert_eq!(next().await.unwrap(), event(4));
        // Half an event is held until its end arrives.
        upstream
            .send(Ok(Bytes::from_static(b"data: {\"n\"")))
            .await
            .unwrap();
        upstream
            .send(Ok(Bytes::from_static(b":5}\n\n")))
            .await
            .unwrap();
        assert_eq!(next().await.unwrap(), event(5));
        drop(upstream);
        // Closed without the protocol's last event: a broken stream, told so.
        let end = next().await.unwrap();
        assert!(end.starts_with(b"data: {\"error\":"), "{end:?}");
        assert!(next().await.is_none());
    }

    /// The relay's own body, read to its end.
    async fn relayed(events: &[&str]) -> String {
        let (upstream, rx) = mpsc::channel::<Result<Bytes, hyper::Error>>(8);
        let started = Started {
            status: StatusCode::OK,
            chunks: Box::pin(ReceiverStream::new(rx)),
            framer: SseFramer::default(),
            first: b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n".to_vec(),
        };
        for e in events {
            upstream.send(Ok(Bytes::from(e.to_string()))).await.unwrap();
        }
        drop(upstream);
        let body = stream_back(started, relay(), meter(), None).into_body();
        let bytes = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn only_a_stream_that_reaches_its_last_event_ends_clean() {
        let finish = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        let complete = relayed(&[finish, "data: [DONE]\n\n"]).await;
        assert!(complete.ends_with("data: [DONE]\n\n"), "{complete}");
        assert!(!complete.contains("error"), "{complete}");
        // `[DONE]` without its blank line still ends the stream.
        let unterminated = relayed(&[finish, "data: [DONE]\n"]).await;
        assert!(!unterminated.contains("error"), "{unterminated}");
        // A clean close before the finish chunk and `[DONE]`: an error event ends it.
        let early = relayed(&[]).await;
        let last = early.trim_end().rsplit("\n\n").next().unwrap();
        assert!(last.starts_with("data: {\"error\":"), "{early}");
        assert!(last.contains("ended before its last event"), "{early}");
        // The provider's own error ends it: the client is not told twice.
        let failed = relayed(&["data: {\"error\":{\"message\":\"overloaded\"}}\n\n"]).await;
        assert_eq!(failed.matches("\"error\"").count(), 1, "{failed}");
        assert!(failed.contains("overloaded"), "{failed}");
    }
}

#[cfg(test)]
mod translated_tests;
