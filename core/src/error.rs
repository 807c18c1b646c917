//! One small error vocabulary for every service. Each service maps a code once to
//! HTTP (here) and once to gRPC (at its gRPC edge); client-facing bodies keep the
//! shape of the protocol the client speaks.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed or a field is invalid.
    InvalidRequest,
    /// No credential, or one that is not recognised.
    Unauthenticated,
    /// A recognised caller that may not do this.
    PermissionDenied,
    NotFound,
    /// The request conflicts with current state (a duplicate, a non-empty parent).
    Conflict,
    /// A well-formed request whose content breaks a rule (for example a bound).
    Unprocessable,
    PayloadTooLarge,
    /// The body's declared Content-Type is not what the endpoint reads.
    UnsupportedMediaType,
    RateLimited,
    /// Credit for the period is used up.
    QuotaExceeded,
    /// The upstream provider failed or answered garbage.
    UpstreamFailed,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// Nothing can serve this right now (no snapshot, no usable provider key).
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Unauthenticated => 401,
            Self::QuotaExceeded => 402,
            Self::PermissionDenied => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Unprocessable => 422,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::UpstreamFailed => 502,
            Self::Unavailable => 503,
            Self::UpstreamTimeout => 504,
        }
    }

    /// The `type` of an OpenAI error object.
    pub fn openai_type(self) -> &'static str {
        match self {
            Self::InvalidRequest
            | Self::NotFound
            | Self::Conflict
            | Self::Unprocessable
            | Self::PayloadTooLarge
            | Self::UnsupportedMediaType => "invalid_request_error",
            Self::Unauthenticated => "authentication_error",
            Self::PermissionDenied => "permission_error",
            Self::RateLimited => "rate_limit_error",
            Self::QuotaExceeded => "insufficient_quota",
            Self::UpstreamFailed | Self::UpstreamTimeout | Self::Unavailable | Self::Internal => {
                "api_error"
            }
        }
    }

    /// A stable machine-readable code, the same in REST bodies and gRPC details.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthenticated => "invalid_api_key",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Unprocessable => "unprocessable",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            // OpenAI clients look for it in both `type` and `code`.
            Self::QuotaExceeded => "insufficient_quota",
            Self::UpstreamFailed => "upstream_failed",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal_error",
        }
    }
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: &'static str,
}

/// The JSON body of an error in OpenAI's shape.
pub fn openai_error_body(code: ErrorCode, message: &str) -> Vec<u8> {
    openai_error_body_about(code, message, None)
}

/// The same, naming the request field the error is about in `param` (OpenAI's
/// place for it), `null` when it is about none.
pub fn openai_error_body_about(code: ErrorCode, message: &str, param: Option<&str>) -> Vec<u8> {
    let body = OpenAiErrorBody {
        error: OpenAiError {
            message,
            kind: code.openai_type(),
            param,
            code: code.as_str(),
        },
    };
    // Serialising a struct of strings cannot fail; fall back to a fixed body anyway.
    serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"error":{"message":"internal error","type":"api_error","param":null,"code":"internal_error"}}"#.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let body = openai_error_body(ErrorCode::Unauthenticated, "invalid API key");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "invalid API key");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert!(v["error"]["param"].is_null());
        let body = openai_error_body_about(ErrorCode::InvalidRequest, "bad", Some("policy.rpm"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["param"], "policy.rpm");
        assert_eq!(ErrorCode::Unauthenticated.http_status(), 401);
    }

    #[test]
    fn exhausted_credit_is_insufficient_quota_in_type_and_code() {
        let body = openai_error_body(ErrorCode::QuotaExceeded, "credit spent");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "insufficient_quota");
        assert_eq!(v["error"]["code"], "insufficient_quota");
    }
}
