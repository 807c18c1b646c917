//! What of a client's request travels upstream besides its body: which headers (a
//! fixed allow-list, plus names an owner's rules add), the query string (bounded and
//! checked), and the User-Agent (the client's, with Switchyard's product token); and
//! which headers of the upstream's answer come back (never the provider's quota).
//!
//! Header names here are lowercase, as HTTP/2 sends them and as `http::HeaderMap`
//! holds them; owner names are lowercased when the rules are read.

/// Switchyard's product token, appended to the client's User-Agent.
pub const PRODUCT: &str = concat!("switchyard/", env!("CARGO_PKG_VERSION"));

/// Longest client User-Agent carried upstream; longer ones are cut to it.
pub const MAX_CLIENT_USER_AGENT: usize = 512;

/// Longest query string forwarded (bytes after `?`).
pub const MAX_QUERY: usize = 2048;

/// Most header names one owner's rules may add.
pub const MAX_OWNER_HEADERS: usize = 32;

/// Longest header name an owner's rules may add.
pub const MAX_HEADER_NAME: usize = 64;

/// Client headers forwarded for every owner: what the protocols and their SDKs use to
/// negotiate (versions, betas) and to tie calls into sessions.
pub const ALLOWED: [&str; 11] = [
    "accept",
    "content-type",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-beta",
    "x-claude-code-session-id",
    "session-id",
    "session_id",
    "originator",
    "x-client-request-id",
];

/// Prefixes of client headers forwarded for every owner (the SDKs' platform headers).
pub const ALLOWED_PREFIXES: [&str; 1] = ["x-stainless-"];

/// Hop-by-hop headers (RFC 9110 §7.6.1), about one connection only.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The client's credentials for Switchyard (or for anything else): never a provider's.
/// A passthrough key carries its caller's own credential by a rule of its own
/// (`crate::passthrough::forwards_credential_header`), never through these lists.
const CREDENTIALS: [&str; 6] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    crate::passthrough::KEY_HEADER,
];

/// What Switchyard sets on the upstream request itself: the target, the body's
/// framing and encoding (the answer is read for its usage, so it must not come
/// compressed), the User-Agent and the trace context.
const SET_BY_SWITCHYARD: [&str; 8] = [
    "host",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "expect",
    "user-agent",
    "traceparent",
    "tracestate",
];

/// Whether a header never goes upstream, whatever an allow-list says: hop-by-hop
/// (`proxy-*` included), credentials, and what Switchyard sets itself.
pub fn never_forwarded(name: &str) -> bool {
    name.starts_with("proxy-")
        || HOP_BY_HOP.contains(&name)
        || CREDENTIALS.contains(&name)
        || SET_BY_SWITCHYARD.contains(&name)
}

/// Whether the client's header `name` (lowercase) goes upstream, given the names the
/// owner's rules add. Compares strings only; allocates nothing.
pub fn forwarded<S: AsRef<str>>(name: &str, owner_names: &[S]) -> bool {
    // Most client headers are on no list: those cost the list lookups only.
    (ALLOWED.contains(&name)
        || ALLOWED_PREFIXES.iter().any(|p| name.starts_with(p))
        || owner_names.iter().any(|n| n.as_ref() == name))
        && !never_forwarded(name)
}

/// A character HTTP allows in a header name (RFC 9110 `tchar`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Why an owner may not add header `name` to the forwarded ones, if it may not.
pub fn owner_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > MAX_HEADER_NAME {
        return Some("must be a header name of 1 to 64 characters");
    }
    if !name.bytes().all(is_tchar) {
        return Some("must be a header name (letters, digits and !#$%&'*+-.^_`|~ only)");
    }
    if never_forwarded(&name.to_ascii_lowercase()) {
        return Some(
            "is never forwarded: hop-by-hop headers, credentials and headers Switchyard sets stay behind",
        );
    }
    None
}

/// Why a query string may not be forwarded, if it may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query string is longer than {MAX_QUERY} bytes")]
    TooLong,
    #[error("the query string holds a control character or a byte outside printable ASCII")]
    Unprintable,
}

/// Check a query string (without its `?`) before it is forwarded: bounded, printable
/// ASCII only, and no control character hidden in a percent escape either.
pub fn check_query(query: &str) -> Result<(), QueryError> {
    if query.len() > MAX_QUERY {
        return Err(QueryError::TooLong);
    }
    let bytes = query.as_bytes();
    if !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(QueryError::Unprintable);
    }
    let escaped_control = bytes.windows(3).any(|w| {
        w[0] == b'%'
            && (matches!(w[1], b'0' | b'1') && w[2].is_ascii_hexdigit()
                || w[1] == b'7' && w[2].eq_ignore_ascii_case(&b'f'))
    });
    if escaped_control {
        return Err(QueryError::Unprintable);
    }
    Ok(())
}

/// The User-Agent sent upstream: the client's (trimmed, cut to
/// [`MAX_CLIENT_USER_AGENT`] bytes) followed by [`PRODUCT`], or [`PRODUCT`] alone.
pub fn user_agent(client: Option<&[u8]>) -> std::borrow::Cow<'static, [u8]> {
    let client = client.map(<[u8]>::trim_ascii).unwrap_or_default();
    if client.is_empty() {
        return std::borrow::Cow::Borrowed(PRODUCT.as_bytes());
    }
    let client = &client[..client.len().min(MAX_CLIENT_USER_AGENT)];
    let mut out = Vec::with_capacity(client.len() + 1 + PRODUCT.len());
    out.extend_from_slice(client.trim_ascii_end());
    out.push(b' ');
    out.extend_from_slice(PRODUCT.as_bytes());
    std::borrow::Cow::Owned(out)
}

/// Headers of an upstream's answer relayed to the client: the body's media type.
/// Every other one stays behind; Switchyard sets its own (the request id, framing,
/// and the caller's own quota in its protocol's rate-limit headers).
const ANSWER_HEADERS: [&str; 1] = ["content-type"];

/// Prefixes of a provider's quota headers (OpenAI's and most others' `x-ratelimit-*`,
/// Anthropic's `anthropic-ratelimit-*`, the IETF `ratelimit*`, Azure's
/// `x-ms-ratelimit-*`): they describe the provider key's limits, shared by every
/// caller, never the caller's own.
const PROVIDER_QUOTA_PREFIXES: [&str; 5] = [
    "x-ratelimit-",
    "anthropic-ratelimit-",
    "ratelimit",
    "x-rate-limit-",
    "x-ms-ratelimit-",
];

/// A provider's waits: only Switchyard's own refusals carry a `retry-after`.
const PROVIDER_WAITS: [&str; 2] = ["retry-after", "retry-after-ms"];

/// Whether `name` (lowercase) is a provider's quota or wait header.
pub fn is_provider_quota(name: &str) -> bool {
    PROVIDER_WAITS.contains(&name) || PROVIDER_QUOTA_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether the upstream answer's header `name` (lowercase) reaches the client.
pub fn answer_header_passes(name: &str) -> bool {
    ANSWER_HEADERS.contains(&name) && !is_provider_quota(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: [&str; 0] = [];

    #[test]
    fn the_allow_list_and_its_prefixes_go_upstream() {
        for name in [
            "anthropic-beta",
            "anthropic-version",
            "x-claude-code-session-id",
            "session-id",
            "session_id",
            "originator",
            "x-client-request-id",
            "openai-beta",
            "x-stainless-os",
            "x-stainless-retry-count",
            "content-type",
        ] {
            assert!(forwarded(name, &NONE), "{name}");
        }
        for name in ["x-my-header", "x-stainless", "referer", "x-forwarded-for"] {
            assert!(!forwarded(name, &NONE), "{name}");
        }
    }

    #[test]
    fn owner_names_add_to_the_list_but_never_reopen_what_stays_behind() {
        let owner = ["x-my-header", "cookie", "transfer-encoding"];
        assert!(forwarded("x-my-header", &owner));
        for name in [
            "cookie",
            "transfer-encoding",
            "authorization",
            "x-api-key",
            "api-key",
            "x-goog-api-key",
            "x-switchyard-key",
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "upgrade",
            "proxy-authorization",
            "proxy-connection",
            "host",
            "content-length",
            "user-agent",
            "traceparent",
        ] {
            assert!(never_forwarded(name), "{name}");
            assert!(!forwarded(name, &[name]), "{name}");
        }
    }

    #[test]
    fn owner_names_are_tokens_of_bounded_length_and_not_refused_ones() {
        assert_eq!(owner_name_problem("x-my-header"), None);
        assert_eq!(owner_name_problem("X-Trace_ID.v2"), None);
        for bad in ["", "x y", "x:y", "x\ny", "é", &"x".repeat(65)] {
            assert!(owner_name_problem(bad).is_some(), "{bad:?}");
        }
        for refused in ["Authorization", "COOKIE", "Proxy-Foo", "Connection", "Host"] {
            assert!(
                owner_name_problem(refused).is_some_and(|p| p.starts_with("is never forwarded")),
                "{refused}"
            );
        }
    }

    #[test]
    fn queries_are_bounded_and_printable() {
        assert_eq!(check_query("beta=true"), Ok(()));
        assert_eq!(check_query("a=%20b&c=%E2%82%AC"), Ok(()));
        assert_eq!(check_query(&"a".repeat(MAX_QUERY)), Ok(()));
        assert_eq!(
            check_query(&"a".repeat(MAX_QUERY + 1)),
            Err(QueryError::TooLong)
        );
        for bad in [
            "a=\u{1}",
            "a b",
            "a=%00",
            "a=%0d%0aX-Injected:1",
            "a=%7F",
            "a=é",
        ] {
            assert_eq!(check_query(bad), Err(QueryError::Unprintable), "{bad:?}");
        }
    }

    #[test]
    fn provider_quota_headers_never_reach_the_client() {
        assert!(answer_header_passes("content-type"));
        for name in [
            "x-ratelimit-remaining-requests",
            "x-ratelimit-limit-tokens",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-output-tokens-reset",
            "ratelimit-policy",
            "x-ms-ratelimit-remaining-tokens",
            "retry-after",
            "retry-after-ms",
            "openai-organization",
            "set-cookie",
        ] {
            assert!(!answer_header_passes(name), "{name}");
        }
        assert!(is_provider_quota("anthropic-ratelimit-tokens-limit"));
        assert!(!is_provider_quota("content-type"));
    }

    #[test]
    fn the_user_agent_carries_the_clients_and_ours() {
        assert_eq!(&*user_agent(None), PRODUCT.as_bytes());
        assert_eq!(&*user_agent(Some(b"  ")), PRODUCT.as_bytes());
        assert_eq!(
            &*user_agent(Some(b"claude-cli/2.1.0 (external, cli)")),
            format!("claude-cli/2.1.0 (external, cli) {PRODUCT}").as_bytes()
        );
        let long = vec![b'a'; 4 * MAX_CLIENT_USER_AGENT];
        let sent = user_agent(Some(&long));
        assert_eq!(sent.len(), MAX_CLIENT_USER_AGENT + 1 + PRODUCT.len());
        assert!(sent.ends_with(PRODUCT.as_bytes()));
    }
}
