//! The loop over provider keys: same level first, then switch-over. Each attempt
//! sends the request to one key; a key's failure cools it down and the next is
//! tried, an answer that is not the key's fault is relayed to the client.

use std::time::Instant;

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use metrics::SharedString;
use switchyard_core::endpoint::{Endpoint, is_protocol_error};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::AccountId;
use switchyard_core::model_list::refuses_credential;
use switchyard_core::route::{CoolDown, Failure, RouteError};
use switchyard_core::snapshot::{Compiled, ProviderKey};
use switchyard_core::translate::{Dialect, estimate_input_tokens};
use switchyard_runtime::now_ms;
use tracing::{Instrument, field};

use super::error::ProxyError;
use super::facts::UploadWatch;
use super::meter::Meter;
use super::relay::{self, Relay};
use super::translation::Outbound;
use crate::app::App;
use crate::metric;
use crate::upstream::{self, AttemptFailure, ClientParts, Sent, UpstreamBody};

/// The admitted call, as the attempts send it.
pub(super) struct Outgoing<'a> {
    pub snapshot: &'a Compiled,
    pub owner: AccountId,
    pub endpoint: Endpoint,
    pub headers: &'a HeaderMap,
    /// The client's query string, checked (`facts::forwarded_query`).
    pub query: Option<&'a str>,
    /// The model after the ModelMapper.
    pub served: &'a str,
    pub stream: bool,
    pub body: UpstreamBody,
    pub strip_usage_chunk: bool,
    pub upload: &'a UploadWatch,
    /// The caller may reach provider keys of another protocol, translated
    /// (`Compiled::translates`).
    pub may_translate: bool,
}

/// Try provider keys until one answers or none is left. `model_label` gets the model
/// once a provider key is tried for it, as a name the configuration holds or `other`
/// (`Compiled::metric_model`), never a client's string.
pub(super) async fn run(
    app: &App,
    call: Outgoing<'_>,
    mut meter: Meter,
    model_label: &mut String,
) -> Result<Response, ProxyError> {
    let Outgoing {
        snapshot,
        owner,
        endpoint,
        headers,
        query,
        served,
        stream,
        mut body,
        strip_usage_chunk,
        upload,
        may_translate,
    } = call;
    let client = ClientParts {
        headers,
        query,
        owner_headers: snapshot.forward_headers(owner),
        user_agent: upstream::user_agent(headers),
    };
    let relay = Relay {
        endpoint,
        usage: endpoint.usage_shape(),
        strip_usage_chunk,
        idle: app.limits.idle_timeout,
        drain: app.limits.drain_timeout,
    };
    let kind = endpoint.protocol().provider_kind();
    // Only the dialects translation reads reach keys of another protocol.
    let dialect = Dialect::of_endpoint(endpoint).filter(|_| may_translate);
    let mut attempts = snapshot
        .attempts(
            owner,
            served,
            kind,
            dialect.is_some(),
            app.limits.tries_per_level,
        )
        .with_own_credential(super::admit::own_credential(headers));
    // The request translated for the last upstream dialect tried, kept for the next
    // key of the same dialect.
    let mut outbound: Option<Outbound> = None;
    let mut last: Option<AttemptFailure> = None;
    loop {
        let choice = match attempts.next(now_ms()) {
            Ok(c) => c,
            Err(RouteError::WrongProtocol { .. })
                if endpoint == Endpoint::CountTokens && may_translate =>
            {
                // Counted by no upstream of the client's protocol: estimated here.
                return estimated_count(&body, meter);
            }
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
            model_label.push_str(snapshot.metric_model(served));
        }
        let translated = match dialect {
            Some(client) if key.kind != kind => {
                let current = outbound
                    .as_ref()
                    .is_some_and(|o| o.upstream() == Dialect::of_kind(key.kind));
                if !current {
                    match translate_for(client, key, &body, headers, strip_usage_chunk) {
                        Ok(o) => outbound = Some(o),
                        Err(refused) => {
                            // The request, not the key: no other key of this dialect
                            // could carry it either.
                            meter.finish(refused.code.http_status(), None);
                            return Err(refused);
                        }
                    }
                }
                outbound.as_ref()
            }
            _ => None,
        };
        meter.attempting(key, upstream_protocol(endpoint, translated));
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
            &client,
            translated.map(Outbound::rewritten),
            deadline,
        )
        .instrument(exchange)
        .await;
        let failure = match sent {
            Sent::Answer(answer) => {
                match answered(app, relay, stream, answer, deadline, meter, key, translated)
                    .instrument(attempt.clone())
                    .await
                {
                    Ok(mut response) => {
                        choice.health.record_success();
                        if let Some(t) = translated {
                            t.mark(&mut response);
                        }
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
        // The client's upload failed (too large, cut, or too slow), not the key.
        if let Some(error) = upload.failed(app.limits.max_request_body) {
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

/// The protocol the upstream speaks: the translated one, else the client's own.
fn upstream_protocol(endpoint: Endpoint, translated: Option<&Outbound>) -> &'static str {
    translated.map_or(Dialect::protocol_of(endpoint), |t| t.upstream().wire_name())
}

/// The client's request for a key of another protocol, or the refusal to send in the
/// client's shape.
fn translate_for(
    client: Dialect,
    key: &ProviderKey,
    body: &UpstreamBody,
    headers: &HeaderMap,
    usage_asked: bool,
) -> Result<Outbound, ProxyError> {
    match body {
        UpstreamBody::Whole(bytes) => Outbound::new(client, key.kind, bytes, headers, usage_asked),
        // The dialects translation reads are JSON, always read whole.
        UpstreamBody::Streamed(_) => Err(ProxyError::new(
            ErrorCode::InvalidRequest,
            "a streamed upload cannot be translated",
        )),
    }
}

/// Token counting for a model only keys of another protocol serve: an estimate from
/// the request (`core::translate::estimate_input_tokens`), never sent upstream.
fn estimated_count(body: &UpstreamBody, meter: Meter) -> Result<Response, ProxyError> {
    let counted = match body {
        UpstreamBody::Whole(bytes) => estimate_input_tokens(bytes)
            .map_err(|refusal| ProxyError::new(ErrorCode::InvalidRequest, refusal.to_string())),
        UpstreamBody::Streamed(_) => Err(ProxyError::new(
            ErrorCode::InvalidRequest,
            "token counting takes a JSON body",
        )),
    };
    let tokens = match counted {
        Ok(tokens) => tokens,
        Err(e) => {
            meter.finish(e.code.http_status(), None);
            return Err(e);
        }
    };
    meter.finish(StatusCode::OK.as_u16(), None);
    let body = serde_json::json!({ "input_tokens": tokens }).to_string();
    let mut response = Response::new(axum::body::Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(ESTIMATED_HEADER, HeaderValue::from_static("true"));
    Ok(response)
}

/// Marks an answer Switchyard estimated rather than had from an upstream.
pub const ESTIMATED_HEADER: &str = "x-switchyard-estimated";

/// The upstream answered with a status that is not the key's fault: relay it, unless
/// it breaks before anything reached the client (then it is the key's failure).
#[expect(clippy::too_many_arguments, reason = "one attempt's whole context")]
async fn answered(
    app: &App,
    mut relay: Relay,
    stream: bool,
    answer: upstream::UpstreamResponse,
    deadline: Instant,
    mut meter: Meter,
    key: &ProviderKey,
    translated: Option<&Outbound>,
) -> Result<Response, (AttemptFailure, Meter)> {
    if let Some(t) = translated {
        relay.usage = t.usage_shape();
    }
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
        let translator = translated.map(Outbound::stream_translator);
        return Ok(relay::stream_back(started_stream, relay, meter, translator));
    }
    meter.mark_first_byte();
    if relay.endpoint.passes_body_through() && status.is_success() {
        return Ok(relay::pass_through(answer, meter, relay.idle));
    }
    // The upstream's own protocol: a translated call's is not the endpoint's.
    let upstream_endpoint = translated.map_or(relay.endpoint, |t| t.upstream().endpoint());
    match relay::read_whole(answer, app.limits.max_response_body, relay.idle).await {
        Ok(whole)
            if whole.status == StatusCode::NOT_FOUND
                && !is_protocol_error(upstream_endpoint.protocol(), &whole.body) =>
        {
            // Not the endpoint's own answer: the key's base URL is wrong. Say which
            // key and where, and try the next key.
            let failure = AttemptFailure::new(
                Failure::NotFound,
                format!(
                    "provider key {} answered 404 at {}{} without a {} error: check the key's base_url",
                    key.id,
                    key.base_url,
                    translated.map_or(relay.endpoint.upstream_suffix(), |t| &t.path),
                    upstream_endpoint.protocol().gen_ai_provider(),
                ),
            );
            Err((failure, meter))
        }
        Ok(whole)
            if !key.passthrough
                && whole.status == StatusCode::BAD_REQUEST
                && refuses_credential(key.kind, whole.status.as_u16(), &whole.body) =>
        {
            // Gemini refuses an invalid key with a 400 (`API_KEY_INVALID`): the key's
            // failure, as a 401 is elsewhere, not the client's error.
            let failure = AttemptFailure::new(
                Failure::Rejected,
                format!(
                    "provider key {} was refused by the upstream (400 API_KEY_INVALID)",
                    key.id
                ),
            );
            Err((failure, meter))
        }
        Ok(whole) => Ok(relay::whole_back(
            relay.usage,
            whole,
            meter,
            translated.map(|t| &t.exchange),
        )),
        Err(f) => Err((f, meter)),
    }
}

/// The error once no key is left, naming why.
fn exhausted(e: RouteError, last: Option<&AttemptFailure>, cool_down: &CoolDown) -> ProxyError {
    match e {
        RouteError::NoProviderForModel(_) => ProxyError::new(ErrorCode::NotFound, e.to_string()),
        RouteError::WrongProtocol { .. } | RouteError::NeedsOwnCredential { .. } => {
            ProxyError::new(ErrorCode::InvalidRequest, e.to_string())
        }
        RouteError::AllCoolingDown { wake_in_ms, .. } => {
            ProxyError::new(ErrorCode::Unavailable, e.to_string()).retry_after_ms(wake_in_ms)
        }
        RouteError::AllFailed { .. } => {
            let detail = last.map_or("no detail", |f| f.detail.as_str());
            let message = format!("{e}; the last: {detail}");
            match last.map(|f| f.failure) {
                Some(Failure::RateLimited { retry_after_ms }) => {
                    let ms = retry_after_ms.unwrap_or(cool_down.base_ms);
                    ProxyError::new(ErrorCode::RateLimited, message).retry_after_ms(ms)
                }
                Some(Failure::Timeout) => ProxyError::new(ErrorCode::UpstreamTimeout, message),
                _ => ProxyError::new(ErrorCode::UpstreamFailed, message),
            }
        }
    }
}
