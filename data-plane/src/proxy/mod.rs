//! The request path, in the order a call lives: admitted (`admit`), its routing
//! facts read (`facts`), its cost reserved (`reserve`), sent to provider keys in turn
//! (`attempts`), answered (`relay`) and metered (`meter`).

mod admit;
mod attempts;
mod error;
mod facts;
mod meter;
mod quota;
mod relay;
mod reserve;
mod translation;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};
use switchyard_core::endpoint::{Endpoint, Protocol};
use switchyard_core::error::ErrorCode;
use switchyard_core::fields;
use switchyard_core::ids::AccountId;
use switchyard_core::quota::Quota;
use switchyard_core::snapshot::Compiled;
use switchyard_core::translate::Dialect;
use tracing::{Instrument, field};

pub use crate::access::AccessLog;
pub use crate::app::{App, Limits};
pub use crate::limits::LocalShare;
pub use error::{ProxyError, error_response};
pub use translation::{Outbound, TRANSLATED_HEADER};

use error::proxy_error_response;
use facts::{Prepared, UploadWatch};
use meter::{Meter, Metered};

pub const REQUEST_ID: &str = "x-request-id";

/// Every proxied endpoint lands here; the path names the endpoint.
pub async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::now_v7();
    let Some(endpoint) = Endpoint::from_path(request.uri().path()) else {
        crate::access::refused(
            app.access_log,
            request_id,
            "unmatched",
            None,
            404,
            ErrorCode::NotFound,
            started.elapsed(),
        );
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
    let mut seen = Seen::default();
    let mut response = match forward(
        &app, endpoint, peer, request, started, request_id, &mut seen,
    )
    .instrument(span.clone())
    .instrument(logged)
    .await
    {
        Ok(r) => r,
        Err(e) => {
            // A limit's refusal says what is left of the limit it hit.
            seen.quota = e.quota.as_deref().copied().or(seen.quota);
            let response = proxy_error_response(protocol, &e);
            if !seen.metered {
                // A call refused before its meter existed: its only access line.
                crate::access::refused(
                    app.access_log,
                    request_id,
                    endpoint.path(),
                    seen.account,
                    response.status().as_u16(),
                    e.code,
                    started.elapsed(),
                );
            }
            response
        }
    };
    if let Some(q) = seen.quota.filter(|_| seen.quota_headers) {
        quota::write(
            response.headers_mut(),
            protocol,
            &q,
            switchyard_runtime::now_ms(),
        );
    }
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    app.metrics
        .count_request(endpoint, status, seen.model_label);
    app.metrics
        .timers(endpoint)
        .duration
        .record(started.elapsed());
    with_request_id(response, request_id)
}

/// What `handle` learns of a call as `forward` takes it through its phases.
#[derive(Default)]
struct Seen {
    /// The model's metric label, once a provider key is tried for it (see
    /// `attempts::run`).
    model_label: String,
    /// The calling account, once admitted.
    account: Option<AccountId>,
    /// Whether the call has a meter, which writes its access line.
    metered: bool,
    /// The caller's own quota, once its limits were checked.
    quota: Option<Quota>,
    /// Whether the owner's rules let answers carry the quota headers.
    quota_headers: bool,
}

/// One call through its phases.
async fn forward(
    app: &App,
    endpoint: Endpoint,
    peer: SocketAddr,
    request: Request,
    started: Instant,
    request_id: uuid::Uuid,
    seen: &mut Seen,
) -> Result<Response, ProxyError> {
    let snapshot = loaded(app)?;
    let (parts, body) = request.into_parts();
    let (caller, client) = tracing::info_span!("auth")
        .in_scope(|| admit::admit(app, &snapshot, parts.uri.path(), peer, &parts.headers))?;
    let owner = caller.main_account();
    seen.account = Some(caller.account());
    seen.quota_headers = snapshot.limit_settings(owner).quota_headers;
    let query = facts::forwarded_query(parts.uri.query())?;
    // The call's span (see `handle`); its meter holds it once there is one.
    let call_span = tracing::Span::current();
    call_span.record("switchyard.account", field::display(&caller.account()));
    let upload = UploadWatch::default();
    let prepared = facts::read(
        app,
        &snapshot,
        &caller,
        endpoint,
        &parts.headers,
        body,
        &upload,
    )
    .await?;
    call_span.record("gen_ai.request.model", prepared.requested.as_str());
    call_span.record("gen_ai.response.model", prepared.served.as_str());
    let (price, admitted) = reserve::reserve(
        app,
        &snapshot,
        &caller,
        &prepared.served,
        (prepared.prompt_bytes, prepared.max_output),
        endpoint.spends(),
    )
    .await?;
    seen.quota = admitted.as_ref().map(|a| a.quota);
    let prompt = prepared.prompt(endpoint);
    let Prepared {
        requested,
        served,
        stream,
        body,
        strip_usage_chunk,
        end_user,
        ..
    } = prepared;
    let may_translate = snapshot.translates(&caller);
    let meter = Meter::new(Metered {
        sink: app.usage.clone(),
        started,
        request_id,
        access_log: app.access_log,
        caller,
        model_requested: requested,
        model_served: served.clone(),
        path: endpoint.path(),
        first_byte: app.metrics.timers(endpoint).first_byte.clone(),
        client_addr: client.to_string(),
        streamed: stream,
        spends: endpoint.spends(),
        session: fields::session_from_headers(|name| parts.headers.get(name).map(|v| v.as_bytes())),
        end_user,
        tag: fields::tag_from_header(
            parts
                .headers
                .get(fields::TAG_HEADER)
                .map(HeaderValue::as_bytes),
        ),
        price,
        price_version: snapshot.version(),
        admitted,
        prompt,
        span: call_span,
        client_protocol: Dialect::protocol_of(endpoint),
    });
    let outgoing = attempts::Outgoing {
        snapshot: &snapshot,
        owner,
        endpoint,
        headers: &parts.headers,
        query,
        served: &served,
        stream,
        body,
        strip_usage_chunk,
        upload: &upload,
        may_translate,
    };
    seen.metered = true;
    attempts::run(app, outgoing, meter, &mut seen.model_label).await
}

fn loaded(app: &App) -> Result<Arc<Compiled>, ProxyError> {
    app.live.load().ok_or_else(|| {
        ProxyError::new(
            ErrorCode::Unavailable,
            "the router has not received its configuration yet",
        )
    })
}

fn with_request_id(mut response: Response, request_id: uuid::Uuid) -> Response {
    let mut text = uuid::Uuid::encode_buffer();
    if let Ok(v) = HeaderValue::from_str(request_id.hyphenated().encode_lower(&mut text)) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
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
        let (caller, _) = admit::admit(&app, &snapshot, "/v1/models", peer, &headers)?;
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
