//! The loop over provider keys: same level first, then switch-over. Each attempt
//! sends the request to one key; a key's failure cools it down and the next is
//! tried, an answer that is not the key's fault is relayed to the client.

use std::time::Instant;

use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use metrics::SharedString;
use switchyard_core::endpoint::{Endpoint, is_protocol_error};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::AccountId;
use switchyard_core::route::{CoolDown, Failure, RouteError};
use switchyard_core::snapshot::{Compiled, ProviderKey};
use switchyard_runtime::now_ms;
use tracing::{Instrument, field};

use super::error::ProxyError;
use super::facts::UploadWatch;
use super::meter::Meter;
use super::relay::{self, Relay};
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
    } = call;
    let client = ClientParts {
        headers,
        query,
        owner_headers: snapshot.forward_headers(owner),
        user_agent: upstream::user_agent(headers),
    };
    let relay = Relay {
        endpoint,
        strip_usage_chunk,
        idle: app.limits.idle_timeout,
        drain: app.limits.drain_timeout,
    };
    let kind = endpoint.protocol().provider_kind();
    let mut attempts = snapshot
        .attempts(owner, served, kind, app.limits.tries_per_level)
        .with_own_credential(super::admit::own_credential(headers));
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
            model_label.push_str(snapshot.metric_model(served));
        }
        meter.attempting(key);
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
