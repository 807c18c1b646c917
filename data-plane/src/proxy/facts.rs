//! What routing needs from the request body: the model (checked against the policy,
//! then mapped), whether it streams, and what it may cost at most. JSON bodies are
//! read whole; a multipart upload only until its `model` field.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, header};
use switchyard_core::endpoint::{Endpoint, RequestBody};
use switchyard_core::error::ErrorCode;
use switchyard_core::fields;
use switchyard_core::forward;
use switchyard_core::request::{self, FactsError, FieldScan};
use switchyard_core::snapshot::{Caller, Compiled};

use super::error::ProxyError;
use crate::app::App;
use crate::upstream::UpstreamBody;

/// What the request body gave routing.
pub(super) struct Prepared {
    /// The model the client named (what its policy is checked against).
    pub requested: String,
    /// The model after the ModelMapper (what is routed, priced and sent).
    pub served: String,
    pub stream: bool,
    pub body: UpstreamBody,
    pub strip_usage_chunk: bool,
    /// What the request may cost at most: its prompt's bytes and output tokens.
    pub prompt_bytes: usize,
    pub max_output: u64,
    /// The end user the body named (JSON bodies only).
    pub end_user: Option<String>,
}

impl Prepared {
    /// The JSON request, shared rather than copied, to estimate its tokens should
    /// the answer report none.
    pub fn prompt(&self, endpoint: Endpoint) -> Option<Bytes> {
        match (endpoint.request_body(), &self.body) {
            (RequestBody::Json, UpstreamBody::Whole(b)) => Some(b.clone()),
            _ => None,
        }
    }
}

/// How an upload streamed on to the upstream ended, if it failed on the client's
/// side (too large, cut or too slow): then the call fails, not the key.
#[derive(Default)]
pub(super) struct UploadWatch {
    too_large: Arc<AtomicBool>,
    body_failed: Arc<AtomicBool>,
}

impl UploadWatch {
    /// The client's upload failed while it was being sent.
    pub fn failed(&self, max: usize) -> Option<ProxyError> {
        if self.too_large.load(Ordering::Relaxed) {
            return Some(ProxyError::body_too_large(max));
        }
        if self.body_failed.load(Ordering::Relaxed) {
            return Some(ProxyError::unreadable_body());
        }
        None
    }
}

/// Read only what routing needs; the model allowlist applies to the requested name,
/// the ModelMapper then names the model that is served.
pub(super) async fn read(
    app: &App,
    snapshot: &Compiled,
    caller: &Caller,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
    upload: &UploadWatch,
) -> Result<Prepared, ProxyError> {
    let owner = caller.main_account();
    let kind = endpoint.request_body();
    if !kind.accepts(headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes)) {
        return Err(ProxyError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "{} takes `Content-Type: {}` bodies (parameters such as charset allowed)",
                endpoint.path(),
                kind.media_type()
            ),
        ));
    }
    match kind {
        RequestBody::Json => {
            let body = read_body(body, headers, app.limits.max_request_body).await?;
            let facts = request::parse_facts_for(endpoint, &body)?;
            check_model(caller, &facts.model)?;
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
            Ok(Prepared {
                end_user: facts.end_user,
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
            })
        }
        RequestBody::Multipart => {
            let (model, body) = read_multipart(
                app,
                body,
                headers,
                [upload.too_large.clone(), upload.body_failed.clone()],
            )
            .await?;
            check_model(caller, &model)?;
            if snapshot.map_model(owner, &model) != model {
                // Rewriting a field of a streamed upload is not supported; say so.
                return Err(ProxyError::new(
                    ErrorCode::InvalidRequest,
                    format!("model {model:?} is an alias; uploads must name the model served"),
                ));
            }
            Ok(Prepared {
                served: model.clone(),
                requested: model,
                stream: false,
                body,
                strip_usage_chunk: false,
                // Audio is priced per request or second, not by its bytes.
                prompt_bytes: 0,
                max_output: 0,
                end_user: None,
            })
        }
    }
}

/// The client's query string, to be forwarded, if it may be: bounded, printable
/// ASCII, no escaped control characters (`core::forward::check_query`).
pub(super) fn forwarded_query(query: Option<&str>) -> Result<Option<&str>, ProxyError> {
    match query.filter(|q| !q.is_empty()) {
        None => Ok(None),
        Some(q) => forward::check_query(q)
            .map(|()| Some(q))
            .map_err(|e| ProxyError::new(ErrorCode::InvalidRequest, e.to_string())),
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

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Bytes, ProxyError> {
    if declared_length(headers).is_some_and(|len| len > max as u64) {
        return Err(ProxyError::body_too_large(max));
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let limit = std::error::Error::source(&e).is_some_and(|s| {
            s.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
        });
        if limit {
            ProxyError::body_too_large(max)
        } else {
            ProxyError::unreadable_body()
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
        return Err(ProxyError::body_too_large(max));
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
            Some(Err(_)) => return Err(ProxyError::unreadable_body()),
            None => return Err(missing()),
        }
    };
    let received = prefix.len();
    if received > max {
        return Err(ProxyError::body_too_large(max));
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
