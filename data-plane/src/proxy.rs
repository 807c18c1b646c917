//! The request path: authenticate from the snapshot, read the routing facts, pick a
//! provider key, open its secret just in time, forward, stream back, meter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use switchyard_core::apikey;
use switchyard_core::crypto::Keyring;
use switchyard_core::error::{ErrorCode, openai_error_body};
use switchyard_core::ids::EventId;
use switchyard_core::request::{self, FactsError, RequestFacts};
use switchyard_core::rules::Price;
use switchyard_core::snapshot::{AuthError, Caller, ProviderKey, RouteError};
use switchyard_core::sse::{self, SseFramer};
use switchyard_core::usage::{self, StreamChunkUsage, TokenUsage, UsageEvent, UsageSource};
use switchyard_runtime::now_ms;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use zeroize::Zeroizing;

use crate::live::Live;
use crate::usage::UsageSink;

pub const REQUEST_ID: &str = "x-request-id";

/// Bounds of the request path.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_request_body: usize,
    pub max_response_body: usize,
    /// From sending the request to the upstream's response headers.
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of a streamed response.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_body: 32 * 1024 * 1024,
            max_response_body: 64 * 1024 * 1024,
            first_byte_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

pub struct App {
    pub live: Arc<Live>,
    pub keyring: Arc<Keyring>,
    pub client: reqwest::Client,
    pub usage: UsageSink,
    pub limits: Limits,
}

/// A refusal or failure, in the vocabulary every service shares.
#[derive(Debug)]
pub struct ProxyError {
    code: ErrorCode,
    message: String,
}

impl ProxyError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<AuthError> for ProxyError {
    fn from(e: AuthError) -> Self {
        let code = match e {
            AuthError::AccountDisabled(_) => ErrorCode::PermissionDenied,
            _ => ErrorCode::Unauthenticated,
        };
        Self::new(code, e.to_string())
    }
}

impl From<FactsError> for ProxyError {
    fn from(e: FactsError) -> Self {
        Self::new(ErrorCode::InvalidRequest, e.to_string())
    }
}

impl From<RouteError> for ProxyError {
    fn from(e: RouteError) -> Self {
        Self::new(ErrorCode::NotFound, e.to_string())
    }
}

/// An error response in OpenAI's shape.
pub fn error_response(code: ErrorCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(openai_error_body(code, message)));
    *response.status_mut() =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The bearer of `Authorization: Bearer …`, or of `x-api-key` (Anthropic clients).
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return apikey::bearer_token(v);
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub async fn chat_completions(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::now_v7();
    let mut response = match forward(&app, peer, request, started).await {
        Ok(r) => r,
        Err(e) => error_response(e.code, &e.message),
    };
    let mut text = uuid::Uuid::encode_buffer();
    if let Ok(v) = HeaderValue::from_str(request_id.hyphenated().encode_lower(&mut text)) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

/// Everything one metered call records, filled in as the call goes.
struct Meter {
    sink: UsageSink,
    started: Instant,
    caller: Caller,
    provider: switchyard_core::ids::ProviderKeyId,
    level: u32,
    model: String,
    path: &'static str,
    client_addr: String,
    streamed: bool,
    /// The owner's price for the model at request time.
    price: Option<Price>,
}

impl Meter {
    fn finish(self, status: u16, tokens: Option<TokenUsage>, ttfb: Option<Duration>) {
        let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        // A successful call without reported usage still costs its per-request price.
        let charged = match (tokens, status < 400) {
            (Some(t), _) => Some(t),
            (None, true) => Some(TokenUsage::default()),
            (None, false) => None,
        };
        let cost_nanos = match (self.price, charged) {
            (Some(price), Some(t)) => price.cost_nanos(&t),
            _ => 0,
        };
        let billed_nanos = match charged {
            Some(t) => self
                .caller
                .billing
                .billed_nanos(&self.model, &t, cost_nanos),
            None => 0,
        };
        self.sink.emit(UsageEvent {
            id: EventId::new(),
            at_unix_ms: now_ms(),
            account_chain: self.caller.chain.to_vec(),
            issued_key: self.caller.key,
            provider_key: Some(self.provider),
            model_requested: self.model.clone(),
            model_served: self.model,
            level: self.level,
            status,
            latency_ms: millis(self.started.elapsed()),
            ttfb_ms: ttfb.map(millis),
            cost_nanos,
            billed_nanos,
            tokens: tokens.unwrap_or_default(),
            source: if tokens.is_some() {
                UsageSource::Reported
            } else {
                UsageSource::Missing
            },
            path: self.path.to_owned(),
            client_addr: self.client_addr,
            streamed: self.streamed,
        });
    }
}

async fn forward(
    app: &App,
    peer: SocketAddr,
    request: Request,
    started: Instant,
) -> Result<Response, ProxyError> {
    let snapshot = app.live.load().ok_or_else(|| {
        ProxyError::new(
            ErrorCode::Unavailable,
            "the router has not received its configuration yet",
        )
    })?;
    let (parts, body) = request.into_parts();
    let presented = presented_key(&parts.headers).ok_or_else(|| {
        ProxyError::new(
            ErrorCode::Unauthenticated,
            "missing API key: send `Authorization: Bearer <key>`",
        )
    })?;
    let caller = snapshot.authenticate(presented, now_ms())?;
    let path = parts.uri.path();
    if !caller.policy.allows_resource(path) {
        return Err(ProxyError::new(
            ErrorCode::PermissionDenied,
            format!("{path} is not among this account's allowed resources"),
        ));
    }
    if !caller.policy.allows_ip(peer.ip()) {
        return Err(ProxyError::new(
            ErrorCode::PermissionDenied,
            format!(
                "client address {} is not among this account's allowed networks",
                peer.ip()
            ),
        ));
    }

    let body = read_body(body, &parts.headers, app.limits.max_request_body).await?;
    let facts = request::parse_facts(&body)?;
    if !caller.policy.allows_model(&facts.model) {
        return Err(ProxyError::new(
            ErrorCode::PermissionDenied,
            format!(
                "model {:?} is not among this account's allowed models",
                facts.model
            ),
        ));
    }
    let provider = snapshot.route(caller.main_account(), &facts.model)?;
    // When the router asked the upstream for usage, it keeps that chunk from the client.
    let (upstream_body, strip_usage_chunk) = match request::with_stream_usage(&body, &facts)? {
        Some(rewritten) => (Bytes::from(rewritten), true),
        None => (body, false),
    };

    let price = snapshot.price(caller.main_account(), &facts.model);
    let meter = Meter {
        sink: app.usage.clone(),
        started,
        caller,
        provider: provider.id,
        level: provider.level,
        model: facts.model.clone(),
        path: "/v1/chat/completions",
        client_addr: peer.ip().to_string(),
        streamed: facts.stream,
        price,
    };
    let upstream = match send_upstream(app, provider, upstream_body, &parts.headers).await {
        Ok(r) => r,
        Err(e) => {
            meter.finish(e.code.http_status(), None, None);
            return Err(e);
        }
    };
    let ttfb = started.elapsed();
    let status = upstream.status();
    let is_sse = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if facts.stream && status.is_success() && is_sse {
        return Ok(stream_back(app, upstream, meter, strip_usage_chunk, ttfb));
    }
    buffer_back(app, upstream, meter, &facts, ttfb).await
}

async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Bytes, ProxyError> {
    let too_large = || {
        ProxyError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let limit = std::error::Error::source(&e).is_some_and(|s| {
            s.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
        });
        if limit {
            too_large()
        } else {
            ProxyError::new(ErrorCode::InvalidRequest, "could not read the request body")
        }
    })
}

async fn send_upstream(
    app: &App,
    provider: &ProviderKey,
    body: Bytes,
    client_headers: &HeaderMap,
) -> Result<reqwest::Response, ProxyError> {
    // Opened just in time; wiped when this function returns. The header value built
    // from it is marked sensitive so no layer logs it.
    let secret: Zeroizing<Vec<u8>> = app.keyring.open(&provider.secret, provider.id.0.as_bytes()).map_err(|e| {
        tracing::error!(provider_key = %provider.id, error = %e, "cannot open a provider secret");
        ProxyError::new(ErrorCode::Unavailable, "the provider key for this model cannot be used; its owner must re-add it")
    })?;
    let mut auth = Zeroizing::new(Vec::with_capacity(secret.len() + 7));
    auth.extend_from_slice(b"Bearer ");
    auth.extend_from_slice(&secret);
    let mut auth = HeaderValue::from_bytes(&auth).map_err(|_| {
        ProxyError::new(
            ErrorCode::Unavailable,
            "the provider key holds characters a header cannot carry",
        )
    })?;
    auth.set_sensitive(true);

    let url = format!("{}/chat/completions", provider.base_url);
    let mut builder = app
        .client
        .post(url)
        .header(header::AUTHORIZATION, auth)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(accept) = client_headers.get(header::ACCEPT) {
        builder = builder.header(header::ACCEPT, accept.clone());
    }
    match tokio::time::timeout(app.limits.first_byte_timeout, builder.send()).await {
        Err(_) => Err(ProxyError::new(
            ErrorCode::UpstreamTimeout,
            "the upstream provider did not answer in time",
        )),
        Ok(Err(e)) => {
            tracing::warn!(provider_key = %provider.id, error = %e, "upstream request failed");
            Err(ProxyError::new(
                ErrorCode::UpstreamFailed,
                "the upstream provider could not be reached",
            ))
        }
        Ok(Ok(r)) => Ok(r),
    }
}

async fn buffer_back(
    app: &App,
    upstream: reqwest::Response,
    meter: Meter,
    facts: &RequestFacts,
    ttfb: Duration,
) -> Result<Response, ProxyError> {
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let mut body = Vec::new();
    let mut chunks = upstream.bytes_stream();
    loop {
        let next = tokio::time::timeout(app.limits.idle_timeout, chunks.next()).await;
        match next {
            Ok(Some(Ok(chunk))) => {
                if body.len() + chunk.len() > app.limits.max_response_body {
                    meter.finish(502, None, Some(ttfb));
                    return Err(ProxyError::new(
                        ErrorCode::UpstreamFailed,
                        "the upstream response is too large",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Ok(Some(Err(_))) | Err(_) => {
                meter.finish(502, None, Some(ttfb));
                return Err(ProxyError::new(
                    ErrorCode::UpstreamFailed,
                    "the upstream response was cut off",
                ));
            }
        }
    }
    let tokens = if status.is_success() {
        usage::openai_usage_from_json(&body)
    } else {
        None
    };
    if status.is_success() && tokens.is_none() && !facts.stream {
        tracing::warn!(provider_key = %meter.provider, "upstream response carried no usage");
    }
    meter.finish(status.as_u16(), tokens, Some(ttfb));
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(response)
}

/// Pass the stream through event by event. A task pumps upstream → client through a
/// small channel (backpressure both ways); it reads the usage chunk on the way, holds
/// it back when the router added the request for it, and meters once at the end
/// whether the client stayed or went.
fn stream_back(
    app: &App,
    upstream: reqwest::Response,
    meter: Meter,
    strip_usage_chunk: bool,
    ttfb: Duration,
) -> Response {
    let status = upstream.status();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let idle = app.limits.idle_timeout;
    tokio::spawn(async move {
        let mut framer = SseFramer::default();
        let mut chunks = upstream.bytes_stream();
        let mut tokens = None;
        let mut client_gone = false;
        let mut failed = false;
        loop {
            match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(Ok(chunk))) => {
                    framer.push(&chunk);
                    while let Some(event) = framer.next_event() {
                        if let Some(data) = sse::event_data(&event) {
                            match usage::openai_usage_from_sse_data(&data) {
                                StreamChunkUsage::UsageOnly(u) => {
                                    tokens = Some(u);
                                    if strip_usage_chunk {
                                        continue;
                                    }
                                }
                                StreamChunkUsage::WithContent(u) => tokens = Some(u),
                                StreamChunkUsage::None => {}
                            }
                        }
                        if !client_gone && tx.send(Ok(Bytes::from(event))).await.is_err() {
                            // Keep reading so the usage still arrives and is metered.
                            client_gone = true;
                        }
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(_))) | Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let rest = framer.take_rest();
        if !client_gone && !rest.is_empty() {
            let _ = tx.send(Ok(Bytes::from(rest))).await;
        }
        if failed && !client_gone {
            // End with an error event, never a clean close that looks like success.
            let body = openai_error_body(
                ErrorCode::UpstreamFailed,
                "the upstream stream was interrupted",
            );
            let mut event = b"data: ".to_vec();
            event.extend_from_slice(&body);
            event.extend_from_slice(b"\n\n");
            let _ = tx.send(Ok(Bytes::from(event))).await;
        }
        let final_status = if failed { 502 } else { status.as_u16() };
        meter.finish(final_status, tokens, Some(ttfb));
    });
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        assert_eq!(presented_key(&h), Some("k1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k2"));
        assert_eq!(presented_key(&h), Some("k2"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  k3 "),
        );
        assert_eq!(presented_key(&h), Some("k3"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&h), None);
    }
}
