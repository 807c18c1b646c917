//! The provider's own rate-limit headers on every answer, as OpenAI and Anthropic send
//! them: the limits of the provider key, which a router in front must not pass on as
//! its caller's. The numbers are fixed and unlike any Switchyard limit a test sets.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The limit every provider header names.
pub const PROVIDER_LIMIT: &str = "987654";

const OPENAI: [(&str, &str); 6] = [
    ("x-ratelimit-limit-requests", PROVIDER_LIMIT),
    ("x-ratelimit-remaining-requests", "987653"),
    ("x-ratelimit-reset-requests", "6ms"),
    ("x-ratelimit-limit-tokens", PROVIDER_LIMIT),
    ("x-ratelimit-remaining-tokens", "987000"),
    ("x-ratelimit-reset-tokens", "41ms"),
];

const ANTHROPIC: [(&str, &str); 12] = [
    ("anthropic-ratelimit-requests-limit", PROVIDER_LIMIT),
    ("anthropic-ratelimit-requests-remaining", "987653"),
    ("anthropic-ratelimit-requests-reset", "2020-01-01T00:00:00Z"),
    ("anthropic-ratelimit-tokens-limit", PROVIDER_LIMIT),
    ("anthropic-ratelimit-tokens-remaining", "987000"),
    ("anthropic-ratelimit-tokens-reset", "2020-01-01T00:00:00Z"),
    ("anthropic-ratelimit-input-tokens-limit", PROVIDER_LIMIT),
    ("anthropic-ratelimit-input-tokens-remaining", "987000"),
    (
        "anthropic-ratelimit-input-tokens-reset",
        "2020-01-01T00:00:00Z",
    ),
    ("anthropic-ratelimit-output-tokens-limit", PROVIDER_LIMIT),
    ("anthropic-ratelimit-output-tokens-remaining", "987000"),
    (
        "anthropic-ratelimit-output-tokens-reset",
        "2020-01-01T00:00:00Z",
    ),
];

/// Add the protocol's provider rate-limit headers to the answer.
pub async fn add(request: Request, next: Next) -> Response {
    let anthropic = request.uri().path().starts_with("/v1/messages");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let family: &[(&str, &str)] = if anthropic { &ANTHROPIC } else { &OPENAI };
    for (name, value) in family {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}
