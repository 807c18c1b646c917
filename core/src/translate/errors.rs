//! An upstream's error, in one dialect, told to a client of another: the kind of
//! error is kept (by its type and status), the upstream's message is passed on.

use std::borrow::Cow;

use serde::Deserialize;

use super::dialect::Dialect;
use crate::endpoint::{Protocol, error_body, error_status};
use crate::error::ErrorCode;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    error: Option<Inner<'a>>,
}

#[derive(Deserialize)]
struct Inner<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<&'a serde_json::value::RawValue>,
}

/// The code of an error an upstream answered with `status`, by its body's `type`
/// where it says one, else by the status.
pub(crate) fn code_of(status: u16, kind: Option<&str>) -> ErrorCode {
    match kind {
        Some("insufficient_quota" | "billing_error") => return ErrorCode::QuotaExceeded,
        Some("overloaded_error") => return ErrorCode::Unavailable,
        Some("rate_limit_error") => return ErrorCode::RateLimited,
        Some("authentication_error") => return ErrorCode::Unauthenticated,
        Some("permission_error") => return ErrorCode::PermissionDenied,
        Some("not_found_error") => return ErrorCode::NotFound,
        Some("request_too_large") => return ErrorCode::PayloadTooLarge,
        _ => {}
    }
    match status {
        400 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthenticated,
        402 => ErrorCode::QuotaExceeded,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::Unprocessable,
        429 => ErrorCode::RateLimited,
        503 | 529 => ErrorCode::Unavailable,
        504 => ErrorCode::UpstreamTimeout,
        s if (400..500).contains(&s) => ErrorCode::InvalidRequest,
        _ => ErrorCode::UpstreamFailed,
    }
}

/// The code and message of an upstream error body (either dialect's shape: both
/// nest `type` and `message` under `error`).
pub(crate) fn read_error(status: u16, body: &[u8]) -> (ErrorCode, Cow<'_, str>) {
    let parsed = serde_json::from_slice::<Envelope<'_>>(body)
        .ok()
        .and_then(|e| e.error);
    match parsed {
        Some(inner) => {
            // OpenAI puts `insufficient_quota` in `code` as well as `type`.
            let kind = match (&inner.kind, inner.code) {
                (_, Some(code)) if code.get() == "\"insufficient_quota\"" => {
                    Some("insufficient_quota")
                }
                (Some(k), _) => Some(k.as_ref()),
                _ => None,
            };
            let code = code_of(status, kind);
            let message = inner
                .message
                .unwrap_or(Cow::Borrowed("the upstream answered with an error"));
            (code, message)
        }
        None => (
            code_of(status, None),
            Cow::Owned(format!(
                "the upstream answered {status} with a body that is not an error of its protocol"
            )),
        ),
    }
}

pub(crate) fn protocol(dialect: Dialect) -> Protocol {
    match dialect {
        Dialect::Chat | Dialect::Responses | Dialect::Gemini => Protocol::OpenAi,
        Dialect::Messages => Protocol::Anthropic,
    }
}

/// The status and body of an error for a client of `client`.
pub(crate) fn client_error(client: Dialect, code: ErrorCode, message: &str) -> (u16, Vec<u8>) {
    if client == Dialect::Gemini {
        let status = gemini_status(code);
        return (status, gemini_error_body(status, code, message));
    }
    let protocol = protocol(client);
    (
        error_status(protocol, code),
        error_body(protocol, code, message),
    )
}

/// The HTTP status of an error for a Gemini client: Google has no 402, exhausted
/// credit is a 429 `RESOURCE_EXHAUSTED` there.
pub(crate) fn gemini_status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::QuotaExceeded => 429,
        _ => code.http_status(),
    }
}

/// Google's canonical status name for an error.
fn google_status(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidRequest
        | ErrorCode::Unprocessable
        | ErrorCode::PayloadTooLarge
        | ErrorCode::UnsupportedMediaType => "INVALID_ARGUMENT",
        ErrorCode::Unauthenticated => "UNAUTHENTICATED",
        ErrorCode::PermissionDenied => "PERMISSION_DENIED",
        ErrorCode::NotFound => "NOT_FOUND",
        ErrorCode::Conflict => "ABORTED",
        ErrorCode::RateLimited | ErrorCode::QuotaExceeded => "RESOURCE_EXHAUSTED",
        ErrorCode::Unavailable => "UNAVAILABLE",
        ErrorCode::UpstreamTimeout => "DEADLINE_EXCEEDED",
        ErrorCode::UpstreamFailed | ErrorCode::Internal => "INTERNAL",
    }
}

#[derive(serde::Serialize)]
struct GeminiErrorBody<'a> {
    error: GeminiError<'a>,
}

#[derive(serde::Serialize)]
struct GeminiError<'a> {
    code: u16,
    message: &'a str,
    status: &'static str,
}

/// `{"error": {"code", "message", "status"}}`, Gemini's error (also the data of the
/// event that ends a broken stream).
pub(crate) fn gemini_error_body(status: u16, code: ErrorCode, message: &str) -> Vec<u8> {
    let body = GeminiErrorBody {
        error: GeminiError {
            code: status,
            message,
            status: google_status(code),
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}
