//! The caller's own quota on its answer, in the rate-limit headers its protocol's
//! clients already read (`core::quota` picks the tightest limits). Names are static;
//! only the values are made per call.

use http::{HeaderMap, HeaderName, HeaderValue};
use switchyard_core::endpoint::Protocol;
use switchyard_core::quota::{Bound, HeaderText, Quota, openai_reset, rfc3339};

/// The three headers of one limit.
struct Trio {
    limit: HeaderName,
    remaining: HeaderName,
    reset: HeaderName,
}

const fn trio(limit: &'static str, remaining: &'static str, reset: &'static str) -> Trio {
    Trio {
        limit: HeaderName::from_static(limit),
        remaining: HeaderName::from_static(remaining),
        reset: HeaderName::from_static(reset),
    }
}

const OPENAI_REQUESTS: Trio = trio(
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
);
const OPENAI_TOKENS: Trio = trio(
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
);
const ANTHROPIC_REQUESTS: Trio = trio(
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
);
const ANTHROPIC_TOKENS: Trio = trio(
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
);
const ANTHROPIC_INPUT_TOKENS: Trio = trio(
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
);
const ANTHROPIC_OUTPUT_TOKENS: Trio = trio(
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
);

/// Set the quota headers of `protocol` on an answer; a kind no limit bounds gets none.
pub(super) fn write(headers: &mut HeaderMap, protocol: Protocol, q: &Quota, now_ms: i64) {
    match protocol {
        Protocol::OpenAi => {
            // One growth of the map, not one per few headers.
            headers.reserve(6);
            // OpenAI's reset is the wait, as a duration.
            let wait = |b: &Bound| openai_reset(b.reset_at_ms - now_ms);
            put(headers, &OPENAI_REQUESTS, q.requests, wait);
            put(headers, &OPENAI_TOKENS, q.tokens, wait);
        }
        Protocol::Anthropic => {
            headers.reserve(12);
            // Anthropic's is the moment, as RFC 3339.
            let at = |b: &Bound| rfc3339(b.reset_at_ms);
            put(headers, &ANTHROPIC_REQUESTS, q.requests, at);
            put(headers, &ANTHROPIC_TOKENS, q.tokens, at);
            put(headers, &ANTHROPIC_INPUT_TOKENS, q.input_tokens, at);
            put(headers, &ANTHROPIC_OUTPUT_TOKENS, q.output_tokens, at);
        }
    }
}

fn put(
    headers: &mut HeaderMap,
    names: &Trio,
    bound: Option<Bound>,
    reset: impl Fn(&Bound) -> HeaderText,
) {
    let Some(b) = bound else { return };
    // Integers become header values through `itoa`, inside `http`.
    headers.insert(names.limit.clone(), HeaderValue::from(b.limit));
    headers.insert(names.remaining.clone(), HeaderValue::from(b.remaining));
    if let Ok(v) = HeaderValue::from_str(reset(&b).as_str()) {
        headers.insert(names.reset.clone(), v);
    }
}
