//! A refusal or failure on the request path, and its response in the shape of the
//! client's protocol.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use switchyard_core::endpoint::{Protocol, error_body, error_status};
use switchyard_core::error::ErrorCode;
use switchyard_core::quota::Quota;
use switchyard_core::request::FactsError;
use switchyard_core::snapshot::AuthError;

use crate::limits::Refused;

/// A refusal or failure, in the vocabulary every service shares.
#[derive(Debug)]
pub struct ProxyError {
    pub(super) code: ErrorCode,
    message: String,
    retry_after_secs: Option<u64>,
    /// A limit's refusal: the caller's quota, with nothing left of the limit hit
    /// (boxed: refusals are rare, and every other error stays small).
    pub(super) quota: Option<Box<Quota>>,
}

impl ProxyError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_secs: None,
            quota: None,
        }
    }

    pub(super) fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    /// With a `Retry-After` of `wait_ms`, in whole seconds, at least one.
    pub(super) fn retry_after_ms(mut self, wait_ms: u64) -> Self {
        self.retry_after_secs = Some(wait_ms.div_ceil(1000).max(1));
        self
    }

    pub(super) fn body_too_large(max: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {max} bytes"),
        )
    }

    pub(super) fn unreadable_body() -> Self {
        Self::new(ErrorCode::InvalidRequest, "could not read the request body")
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

impl From<Refused> for ProxyError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::StoreDown(e) => Self::new(
                ErrorCode::Unavailable,
                format!("limits cannot be checked right now ({e}); retry shortly"),
            ),
            Refused::Limit(refusal, quota) => {
                let code = if refusal.is_credit() {
                    ErrorCode::QuotaExceeded
                } else {
                    ErrorCode::RateLimited
                };
                let wait_ms = u64::try_from(refusal.retry_after_ms).unwrap_or(0);
                let mut e = Self::new(code, refusal.to_string()).retry_after_ms(wait_ms);
                e.quota = Some(Box::new(quota));
                e
            }
            Refused::Inconsistent => Self::new(ErrorCode::Internal, "limit check failed"),
        }
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

pub(super) fn proxy_error_response(protocol: Protocol, e: &ProxyError) -> Response {
    let mut response = error_response(protocol, e.code, &e.message);
    if let Some(secs) = e.retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}
