//! The request path: authenticate from the snapshot, check the policy, read the
//! routing facts, map the model, try provider keys (same level, then switch-over),
//! relay the answer, meter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use metrics::SharedString;
use switchyard_core::apikey;
use switchyard_core::crypto::Keyring;
use switchyard_core::endpoint::{
    Endpoint, Protocol, RequestBody, error_body, error_status, is_protocol_error,
};
use switchyard_core::error::ErrorCode;
use switchyard_core::fields;
use switchyard_core::limits::{self, Charge, LimitSubject, Refusal};
use switchyard_core::request::{self, FactsError, FieldScan};
use switchyard_core::route::{CoolDown, Failure, RouteError};
use switchyard_core::rules::StoreDown;
use switchyard_core::snapshot::{AuthError, Caller, Compiled, ProviderKey};
use switchyard_runtime::now_ms;
use tracing::{Instrument, field};

use crate::limiter::{Limiter, LimiterError};
use crate::live::Live;
use crate::meter::Meter;
use crate::metric;
use crate::rebuild::Rebuilder;
use crate::relay::{self, Relay};
use crate::upstream::{self, AttemptFailure, Sent, Upstream, UpstreamBody};
use crate::usage::UsageSink;

pub const REQUEST_ID: &str = "x-request-id";

/// Bounds of the request path.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_request_body: usize,
    pub max_response_body: usize,
    /// From sending a request to the upstream's first event (streams) or headers.
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of an answer.
    pub idle_timeout: Duration,
    /// How long a stream whose client left keeps draining for its usage.
    pub drain_timeout: Duration,
    /// Keys tried on one level before switching over.
    pub tries_per_level: u32,
    /// Bytes of a multipart upload read while looking for its `model` field.
    pub multipart_prefix: usize,
    /// Output tokens reserved for a request that names no `max_tokens`.
    pub default_max_output_tokens: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_body: 32 * 1024 * 1024,
            max_response_body: 64 * 1024 * 1024,
            first_byte_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(300),
            tries_per_level: 3,
            multipart_prefix: 1024 * 1024,
            default_max_output_tokens: 4096,
        }
    }
}

pub struct App {
    pub live: Arc<Live>,
    pub keyring: Arc<Keyring>,
    pub(crate) upstream: Upstream,
    pub usage: UsageSink,
    pub limits: Limits,
    pub cool_down: CoolDown,
    /// Proxies whose `X-Forwarded-For` is believed (none by default).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where limit counters live (Redis, shared; or this process).
    pub limiter: Arc<Limiter>,
    /// Puts the period's spend back into counters that lost it.
    pub rebuilder: Rebuilder,
    /// Counters for owners who fail open while the shared limiter cannot be reached.
    pub local_share: LocalShare,
    /// The last limit check reached the counters: 1, did not: 0, none yet: 2.
    pub limit_store_up: AtomicU8,
    pub metrics: metric::CallMetrics,
}

/// This replica's own counters, used while the shared limiter is unreachable for the
/// owners whose rules say `fail_open`: every limit divided by the replica count.
pub struct LocalShare {
    /// The operator's replica count, which wins over the live one.
    pub hand_set: Option<u32>,
    /// Live data planes as the control plane last reported (0: none reported yet).
    pub live_data_planes: Arc<std::sync::atomic::AtomicU32>,
    pub counters: Arc<Limiter>,
}

/// A refusal or failure, in the vocabulary every service shares.
#[derive(Debug)]
pub struct ProxyError {
    code: ErrorCode,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ProxyError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
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

/// An error response in the shape of the client's protocol.
pub fn error_response(protocol: Protocol, code: ErrorCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(error_body(protocol, code, message)));
    *response.status_mut() = StatusCode::from_u16(error_status(protocol, code))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn proxy_error_response(protocol: Protocol, e: &ProxyError) -> Response {
    let mut response = error_response(protocol, e.code, &e.message);
    if let Some(secs) = e.retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
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

fn with_request_id(mut response: Response, request_id: uuid::Uuid) -> Response {
    let mut text = uuid::Uuid::encode_buffer();
    if let Ok(v) = HeaderValue::from_str(request_id.hyphenated().encode_lower(&mut text)) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

/// Every proxied endpoint lands here; the path names the endpoint.
pub async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::now_v7();
    let Some(endpoint) = Endpoint::from_path(request.uri().path()) else {
        return with_request_id(
            error_response(Protocol::OpenAi, ErrorCode::NotFound, "no such endpoint"),
            request_id,
        );
    };
    let protocol = endpoint.protocol();
    // Two spans per call. `request`, for logs only, puts the request id on every line
    // the call writes; it is small, because the log layer formats a span's fields
    // as they are recorded. `call` is exported when tracing is on (otherwise
    // disabled, and every record on it free); a streamed answer's meter holds it
    // open until the stream's usage is known.
    let logged = tracing::info_span!(
        "request",
        request_id = %request_id.hyphenated(),
        route = endpoint.path(),
    );
    let span = tracing::info_span!(
        "call",
        request_id = %request_id.hyphenated(),
        otel.name = endpoint.path(),
        otel.kind = "server",
        otel.status_code = field::Empty,
        http.request.method = "POST",
        http.route = endpoint.path(),
        http.response.status_code = field::Empty,
        gen_ai.operation.name = endpoint.gen_ai_operation(),
        gen_ai.provider.name = protocol.gen_ai_provider(),
        gen_ai.request.model = field::Empty,
        gen_ai.response.model = field::Empty,
        gen_ai.usage.input_tokens = field::Empty,
        gen_ai.usage.output_tokens = field::Empty,
        switchyard.account = field::Empty,
        switchyard.usage_source = field::Empty,
    );
    crate::trace::continue_from(&span, request.headers());
    let mut model = String::new();
    let response = match forward(&app, endpoint, peer, request, started, &mut model)
        .instrument(span.clone())
        .instrument(logged)
        .await
    {
        Ok(r) => r,
        Err(e) => proxy_error_response(protocol, &e),
    };
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    app.metrics.count_request(endpoint, status, model);
    app.metrics
        .timers(endpoint)
        .duration
        .record(started.elapsed());
    with_request_id(response, request_id)
}

/// Who calls, checked against the snapshot and the caller's effective policy in the
/// order the design gives: key, resource, client address.
fn admit(
    app: &App,
    snapshot: &Compiled,
    path: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(Caller, std::net::IpAddr), ProxyError> {
    let presented = presented_key(headers).ok_or_else(|| {
        ProxyError::new(
            ErrorCode::Unauthenticated,
            "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
        )
    })?;
    let caller = snapshot.authenticate(presented, now_ms())?;
    if !caller.policy.allows_resource(path) {
        return Err(ProxyError::denied(format!(
            "{path} is not among this account's allowed resources"
        )));
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let client = request::client_ip(peer.ip(), forwarded, &app.trusted_proxies);
    if !caller.policy.allows_ip(client) {
        return Err(ProxyError::denied(format!(
            "client address {client} is not among this account's allowed networks"
        )));
    }
    Ok((caller, client))
}

fn loaded(app: &App) -> Result<Arc<Compiled>, ProxyError> {
    app.live.load().ok_or_else(|| {
        ProxyError::new(
            ErrorCode::Unavailable,
            "the router has not received its configuration yet",
        )
    })
}

/// What the request body gave routing.
struct Prepared {
    /// The model the client named (what its policy is checked against).
    requested: String,
    /// The model after the ModelMapper (what is routed, priced and sent).
    served: String,
    stream: bool,
    body: UpstreamBody,
    strip_usage_chunk: bool,
    /// What the request may cost at most: its prompt's bytes and output tokens.
    prompt_bytes: usize,
    max_output: u64,
}

/// `model_label` gets the model once a provider key is tried for it, as a name the
/// configuration holds or `other` (`Compiled::metric_model`), never a client's string.
async fn forward(
    app: &App,
    endpoint: Endpoint,
    peer: SocketAddr,
    request: Request,
    started: Instant,
    model_label: &mut String,
) -> Result<Response, ProxyError> {
    let snapshot = loaded(app)?;
    let (parts, body) = request.into_parts();
    let (caller, client) = tracing::info_span!("auth")
        .in_scope(|| admit(app, &snapshot, parts.uri.path(), peer, &parts.headers))?;
    let owner = caller.main_account();
    // The call's span (see `handle`); its meter holds it once there is one.
    let call_span = tracing::Span::current();
    call_span.record("switchyard.account", field::display(&caller.account()));
    let too_large = Arc::new(AtomicBool::new(false));
    let body_failed = Arc::new(AtomicBool::new(false));

    // Read only what routing needs; the model allowlist applies to the requested name,
    // the ModelMapper then names the model that is served.
    let Prepared {
        requested,
        served,
        stream,
        mut body,
        strip_usage_chunk,
        prompt_bytes,
        max_output,
    } = match endpoint.request_body() {
        RequestBody::Json => {
            let body = read_body(body, &parts.headers, app.limits.max_request_body).await?;
            let facts = request::parse_facts_for(endpoint, &body)?;
            check_model(&caller, &facts.model)?;
            let served = snapshot.map_model(owner, &facts.model).to_owned();
            let mut body = if served != facts.model {
                Bytes::from(request::with_model(&body, &facts, &served))
            } else {
                body
            };
            // The splice reads only the stream fields, which the model rewrite left alone.
            let with_usage = if endpoint == Endpoint::ChatCompletions {
                request::with_stream_usage(&body, &facts)?
            } else {
                None
            };
            let strip_usage_chunk = with_usage.is_some();
            if let Some(rewritten) = with_usage {
                body = Bytes::from(rewritten);
            }
            Prepared {
                requested: facts.model,
                served,
                stream: facts.stream,
                prompt_bytes: body.len(),
                body: UpstreamBody::Whole(body),
                strip_usage_chunk,
                max_output: facts.max_tokens.unwrap_or_else(|| {
                    snapshot
                        .limit_settings(owner)
                        .default_max_output_tokens
                        .map_or(app.limits.default_max_output_tokens, u64::from)
                }),
            }
        }
        RequestBody::Multipart => {
            let (model, body) = read_multipart(
                app,
                body,
                &parts.headers,
                [too_large.clone(), body_failed.clone()],
            )
            .await?;
            check_model(&caller, &model)?;
            if snapshot.map_model(owner, &model) != model {
                // Rewriting a field of a streamed upload is not supported; say so.
                return Err(ProxyError::new(
                    ErrorCode::InvalidRequest,
                    format!("model {model:?} is an alias; uploads must name the model served"),
                ));
            }
            Prepared {
                served: model.clone(),
                requested: model,
                stream: false,
                body,
                strip_usage_chunk: false,
                // Audio is priced per request or second, not by its bytes.
                prompt_bytes: 0,
                max_output: 0,
            }
        }
    };

    let price = snapshot.price(owner, &served);
    let reservation = limits::reservation(prompt_bytes, max_output, price.as_ref());
    call_span.record("gen_ai.request.model", requested.as_str());
    call_span.record("gen_ai.response.model", served.as_str());
    let admitted = admit_limits(app, &snapshot, &caller, &served, reservation)
        .instrument(tracing::info_span!("limits"))
        .await?;
    let mut meter = Meter::new(
        app.usage.clone(),
        started,
        caller,
        requested,
        served.clone(),
        endpoint.path(),
        app.metrics.timers(endpoint).first_byte.clone(),
        client.to_string(),
        stream,
        price,
        admitted,
    );
    meter.price_version = snapshot.version();
    meter.span = call_span;
    if let (RequestBody::Json, UpstreamBody::Whole(b)) = (endpoint.request_body(), &body) {
        meter.prompt = Some(b.clone());
    }
    let relay = Relay {
        endpoint,
        strip_usage_chunk,
        idle: app.limits.idle_timeout,
        drain: app.limits.drain_timeout,
    };
    let kind = endpoint.protocol().provider_kind();
    let mut attempts = snapshot.attempts(owner, &served, kind, app.limits.tries_per_level);
    let mut last: Option<AttemptFailure> = None;
    loop {
        let choice = match attempts.next(now_ms()) {
            Ok(c) => c,
            Err(e) => {
                let error = exhausted(e, last.as_ref(), &app.cool_down);
                if attempts.tried() == 0 {
                    meter.discard();
                } else {
                    meter.finish(error.code.http_status(), None);
                }
                return Err(error);
            }
        };
        let key = choice.key;
        if attempts.tried() == 1 {
            model_label.push_str(snapshot.metric_model(&served));
        }
        meter.provider = Some(key.id);
        meter.level = key.level;
        let deadline = Instant::now() + app.limits.first_byte_timeout;
        // One routing try per key, and inside it the HTTP exchange with the upstream.
        let attempt = tracing::info_span!(
            "route.try",
            otel.status_code = field::Empty,
            switchyard.provider_key = %key.id,
            switchyard.level = key.level,
            switchyard.attempt = attempts.tried(),
            error.type = field::Empty,
        );
        let exchange = tracing::info_span!(
            parent: &attempt,
            "upstream",
            otel.kind = "client",
            http.request.method = "POST",
            http.response.status_code = field::Empty,
            gen_ai.provider.name = endpoint.protocol().gen_ai_provider(),
        );
        let sent = upstream::send(
            &app.upstream,
            &app.keyring,
            key,
            endpoint,
            &mut body,
            &parts.headers,
            deadline,
        )
        .instrument(exchange)
        .await;
        let failure = match sent {
            Sent::Answer(answer) => {
                match answered(app, relay, stream, answer, deadline, meter, key)
                    .instrument(attempt.clone())
                    .await
                {
                    Ok(response) => {
                        choice.health.record_success();
                        return Ok(response);
                    }
                    Err((failure, m)) => {
                        meter = m;
                        failure
                    }
                }
            }
            Sent::KeyFailed(failure) => failure,
            Sent::NotReplayable => {
                let error = ProxyError::new(
                    ErrorCode::UpstreamFailed,
                    format!(
                        "the upload could not be retried on another provider key after: {}",
                        last.as_ref().map_or("a failure", |f| f.detail.as_str())
                    ),
                );
                meter.finish(error.code.http_status(), None);
                return Err(error);
            }
            Sent::Unusable(reason) => AttemptFailure::new(Failure::Rejected, reason),
        };
        if too_large.load(Ordering::Relaxed) {
            let error = body_too_large(app.limits.max_request_body);
            meter.finish(error.code.http_status(), None);
            return Err(error);
        }
        // The client's upload failed (cut, or too slow), not the key.
        if body_failed.load(Ordering::Relaxed) {
            let error =
                ProxyError::new(ErrorCode::InvalidRequest, "could not read the request body");
            meter.finish(error.code.http_status(), None);
            return Err(error);
        }
        let slept = choice
            .health
            .record_failure(&app.cool_down, failure.failure, now_ms());
        attempt.record("otel.status_code", "ERROR");
        attempt.record("error.type", failure.failure.as_str());
        let key_label = SharedString::from(key.id.to_string());
        metrics::counter!(
            metric::UPSTREAM_ERRORS,
            "provider_key" => key_label.clone(),
            "reason" => failure.failure.as_str(),
        )
        .increment(1);
        if slept > 0 {
            metrics::counter!(
                metric::COOL_DOWNS,
                "provider_key" => key_label,
                "reason" => failure.failure.as_str(),
            )
            .increment(1);
        }
        tracing::warn!(
            provider_key = %key.id,
            level = key.level,
            failure = ?failure.failure,
            detail = %failure.detail,
            cool_down_ms = slept,
            "provider key failed; trying the next"
        );
        if failure.failure == Failure::Rejected {
            tracing::error!(provider_key = %key.id, "provider refused the key's credential; it is unhealthy until it works again");
        }
        last = Some(failure);
    }
}

/// The upstream answered with a status that is not the key's fault: relay it, unless
/// it breaks before anything reached the client (then it is the key's failure).
async fn answered(
    app: &App,
    relay: Relay,
    stream: bool,
    answer: upstream::UpstreamResponse,
    deadline: Instant,
    mut meter: Meter,
    key: &ProviderKey,
) -> Result<Response, (AttemptFailure, Meter)> {
    let status = answer.status();
    let is_sse = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if stream && status.is_success() && is_sse {
        let started_stream = match relay::first_event(answer, deadline).await {
            Ok(s) => s,
            Err(f) => return Err((f, meter)),
        };
        meter.mark_first_byte();
        return Ok(relay::stream_back(started_stream, relay, meter));
    }
    meter.mark_first_byte();
    if relay.endpoint.passes_body_through() && status.is_success() {
        return Ok(relay::pass_through(answer, meter, relay.idle));
    }
    match relay::read_whole(answer, app.limits.max_response_body, relay.idle).await {
        Ok(whole)
            if whole.status == StatusCode::NOT_FOUND
                && !is_protocol_error(relay.endpoint.protocol(), &whole.body) =>
        {
            // Not the endpoint's own answer: the key's base URL is wrong. Say which
            // key and where, and try the next key.
            let failure = AttemptFailure::new(
                Failure::NotFound,
                format!(
                    "provider key {} answered 404 at {}{} without a {} error: check the key's base_url",
                    key.id,
                    key.base_url,
                    relay.endpoint.upstream_suffix(),
                    relay.endpoint.protocol().gen_ai_provider(),
                ),
            );
            Err((failure, meter))
        }
        Ok(whole) => Ok(relay::whole_back(relay.endpoint, whole, meter)),
        Err(f) => Err((f, meter)),
    }
}

/// Counters charged for an admitted request, and where they live.
pub struct Admitted {
    pub limiter: Arc<Limiter>,
    pub charges: Vec<Charge>,
}

/// Reserve the request's cost on every counter of its key and account chain, or
/// refuse it naming the limit. `None`: no limit applies.
async fn admit_limits(
    app: &App,
    snapshot: &Compiled,
    caller: &Caller,
    model: &str,
    reservation: limits::Reservation,
) -> Result<Option<Admitted>, ProxyError> {
    let now = now_ms();
    let subject = LimitSubject {
        key: caller.key,
        key_rpm: caller.policy.key_rpm,
        chain: &caller.limits,
    };
    let charges = limits::plan(&subject, model, reservation, now);
    if charges.is_empty() {
        return Ok(None);
    }
    let mut outcome = app.limiter.admit(&charges, now).await;
    if matches!(outcome, Err(LimiterError::Unprimed)) {
        outcome = match app
            .rebuilder
            .ensure_primed(&app.limiter, snapshot, now)
            .await
        {
            Ok(()) => app.limiter.admit(&charges, now).await,
            Err(e) => Err(e),
        };
    }
    // The gauge is set when the state flips, not on every call.
    let up = u8::from(outcome.is_ok());
    if app.limit_store_up.swap(up, Ordering::Relaxed) != up {
        metrics::gauge!(metric::LIMIT_STORE_UP).set(f64::from(up));
    }
    let (limiter, charges, verdict) = match outcome {
        Ok(verdict) => (app.limiter.clone(), charges, verdict),
        Err(e) => {
            let policy = snapshot
                .limit_settings(caller.main_account())
                .when_store_down;
            metrics::counter!(metric::LIMIT_STORE_DOWN_DECISIONS, "policy" => policy.as_str())
                .increment(1);
            match policy {
                StoreDown::FailClosed => {
                    tracing::error!(reason = %e, "limits cannot be checked; refusing (fail closed)");
                    return Err(ProxyError::new(
                        ErrorCode::Unavailable,
                        format!("limits cannot be checked right now ({e}); retry shortly"),
                    ));
                }
                StoreDown::FailOpen => {
                    tracing::warn!(reason = %e, "limits cannot be checked; admitting on this replica's share of each limit (fail open)");
                    let share = app.local_share.charges(charges, &app.limiter);
                    let verdict = app
                        .local_share
                        .counters
                        .admit(&share, now)
                        .await
                        .unwrap_or(Ok(()));
                    (app.local_share.counters.clone(), share, verdict)
                }
            }
        }
    };
    match verdict {
        Ok(()) => Ok(Some(Admitted { limiter, charges })),
        Err(i) => {
            let refusal = charges.get(i).map(|c| Refusal::of(c, now));
            let Some(refusal) = refusal else {
                return Err(ProxyError::new(ErrorCode::Internal, "limit check failed"));
            };
            metrics::counter!(metric::LIMIT_REFUSALS, "limit" => refusal.kind.as_str())
                .increment(1);
            let code = if refusal.is_credit() {
                ErrorCode::QuotaExceeded
            } else {
                ErrorCode::RateLimited
            };
            let mut error = ProxyError::new(code, refusal.to_string());
            let wait_ms = u64::try_from(refusal.retry_after_ms).unwrap_or(0);
            error.retry_after_secs = Some(wait_ms.div_ceil(1000).max(1));
            Err(error)
        }
    }
}

impl LocalShare {
    /// The charges with every limit cut to this replica's share, less what it
    /// admitted in the same window through `shared` before it went away.
    fn charges(&self, charges: Vec<Charge>, shared: &Limiter) -> Vec<Charge> {
        let known = self.live_data_planes.load(Ordering::Relaxed);
        let replicas = limits::share_replicas(self.hand_set, (known > 0).then_some(known));
        charges
            .into_iter()
            .map(|mut c| {
                c.limit =
                    limits::local_share_limit(c.limit, replicas, shared.admitted_here(&c.counter));
                c
            })
            .collect()
    }
}

fn check_model(caller: &Caller, model: &str) -> Result<(), ProxyError> {
    // A name the usage store cannot hold would leave the call unbilled: refuse it
    // before anything reaches an upstream.
    fields::MODEL_REQUESTED
        .check(model)
        .map_err(|e| ProxyError::new(ErrorCode::InvalidRequest, e.to_string()))?;
    if caller.policy.allows_model(model) {
        Ok(())
    } else {
        Err(ProxyError::denied(format!(
            "model {model:?} is not among this account's allowed models"
        )))
    }
}

/// The error once no key is left, naming why.
fn exhausted(e: RouteError, last: Option<&AttemptFailure>, cool_down: &CoolDown) -> ProxyError {
    match e {
        RouteError::NoProviderForModel(_) => ProxyError::new(ErrorCode::NotFound, e.to_string()),
        RouteError::WrongProtocol { .. } => {
            ProxyError::new(ErrorCode::InvalidRequest, e.to_string())
        }
        RouteError::AllCoolingDown { wake_in_ms, .. } => {
            let mut error = ProxyError::new(ErrorCode::Unavailable, e.to_string());
            error.retry_after_secs = Some(wake_in_ms.div_ceil(1000).max(1));
            error
        }
        RouteError::AllFailed { .. } => {
            let detail = last.map_or("no detail", |f| f.detail.as_str());
            let message = format!("{e}; the last: {detail}");
            match last.map(|f| f.failure) {
                Some(Failure::RateLimited { retry_after_ms }) => {
                    let mut error = ProxyError::new(ErrorCode::RateLimited, message);
                    let ms = retry_after_ms.unwrap_or(cool_down.base_ms);
                    error.retry_after_secs = Some(ms.div_ceil(1000).max(1));
                    error
                }
                Some(Failure::Timeout) => ProxyError::new(ErrorCode::UpstreamTimeout, message),
                _ => ProxyError::new(ErrorCode::UpstreamFailed, message),
            }
        }
    }
}

fn body_too_large(max: usize) -> ProxyError {
    ProxyError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body is larger than {max} bytes"),
    )
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Bytes, ProxyError> {
    if declared_length(headers).is_some_and(|len| len > max as u64) {
        return Err(body_too_large(max));
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let limit = std::error::Error::source(&e).is_some_and(|s| {
            s.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
        });
        if limit {
            body_too_large(max)
        } else {
            ProxyError::new(ErrorCode::InvalidRequest, "could not read the request body")
        }
    })
}

/// Read a multipart upload until its `model` field is known. A body that arrived
/// whole stays replayable; a larger one is streamed on, counted against the limit.
async fn read_multipart(
    app: &App,
    body: Body,
    headers: &HeaderMap,
    [too_large, body_failed]: [Arc<AtomicBool>; 2],
) -> Result<(String, UpstreamBody), ProxyError> {
    let max = app.limits.max_request_body;
    let declared = declared_length(headers);
    if declared.is_some_and(|len| len > max as u64) {
        return Err(body_too_large(max));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = request::multipart_boundary(content_type)
        .ok_or_else(|| {
            ProxyError::new(
                ErrorCode::InvalidRequest,
                "this endpoint takes `multipart/form-data` with a boundary",
            )
        })?
        .to_owned();
    let mut stream = body.into_data_stream();
    let mut prefix: Vec<u8> = Vec::new();
    let missing = || {
        ProxyError::new(
            ErrorCode::InvalidRequest,
            FactsError::MissingModel.to_string(),
        )
    };
    let model = loop {
        match request::multipart_text_field(&prefix, &boundary, "model") {
            FieldScan::Found(model) => break model,
            FieldScan::Absent => return Err(missing()),
            FieldScan::NeedMore => {}
        }
        if prefix.len() > app.limits.multipart_prefix.min(max) {
            return Err(ProxyError::new(
                ErrorCode::InvalidRequest,
                "put the `model` field before the file: it was not found in the first part of the upload",
            ));
        }
        match stream.next().await {
            Some(Ok(chunk)) => prefix.extend_from_slice(&chunk),
            Some(Err(_)) => {
                return Err(ProxyError::new(
                    ErrorCode::InvalidRequest,
                    "could not read the request body",
                ));
            }
            None => return Err(missing()),
        }
    };
    let received = prefix.len();
    if received > max {
        return Err(body_too_large(max));
    }
    // Did the whole body arrive already? Then it can be replayed on another key.
    let complete = declared == Some(received as u64);
    if complete {
        return Ok((model, UpstreamBody::Whole(Bytes::from(prefix))));
    }
    let mut seen = received;
    let rest = stream.map(move |chunk| {
        let chunk = chunk.map_err(|e| {
            body_failed.store(true, Ordering::Relaxed);
            std::io::Error::other(e)
        })?;
        seen += chunk.len();
        if seen > max {
            too_large.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("request body too large"));
        }
        Ok::<_, std::io::Error>(chunk)
    });
    let whole = futures_util::stream::once(async move { Ok(Bytes::from(prefix)) }).chain(rest);
    Ok((
        model,
        UpstreamBody::Streamed(Some(Body::from_stream(whole))),
    ))
}

/// `GET /v1/models`: exactly what the caller may name and some key serves, in the
/// shape of the client's protocol (Anthropic's when it sends `anthropic-version`).
pub async fn models(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let protocol = if headers.contains_key("anthropic-version") {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    };
    let listed = loaded(&app).and_then(|snapshot| {
        let (caller, _) = admit(&app, &snapshot, "/v1/models", peer, &headers)?;
        Ok(snapshot.callable_models(&caller, protocol.provider_kind()))
    });
    let response = match listed {
        Err(e) => proxy_error_response(protocol, &e),
        Ok(names) => {
            let body = match protocol {
                Protocol::OpenAi => serde_json::json!({
                    "object": "list",
                    "data": names.iter().map(|id| serde_json::json!({
                        "id": id, "object": "model", "created": 0, "owned_by": "switchyard"
                    })).collect::<Vec<_>>(),
                }),
                Protocol::Anthropic => serde_json::json!({
                    "data": names.iter().map(|id| serde_json::json!({
                        "type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"
                    })).collect::<Vec<_>>(),
                    "has_more": false,
                    "first_id": names.first(),
                    "last_id": names.last(),
                }),
            };
            let mut response = Response::new(Body::from(body.to_string()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
    };
    with_request_id(response, uuid::Uuid::now_v7())
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
