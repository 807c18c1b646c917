//! One attempt on one provider key: build the upstream request (the secret opened
//! just in time), send it, and classify the answer for the key's health.

use std::collections::HashMap;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use switchyard_core::crypto::Keyring;
use switchyard_core::endpoint::{Endpoint, Protocol};
use switchyard_core::ids::ProviderKeyId;
use switchyard_core::route::{Failure, retry_after_ms};
use switchyard_core::snapshot::ProviderKey;
use zeroize::Zeroizing;

use crate::trace::TRACE_HEADERS;

/// The body sent upstream: whole (replayable on the next key) or streamed once.
pub enum UpstreamBody {
    Whole(Bytes),
    /// A large upload: already read bytes, then the rest as it arrives. Single use.
    Streamed(Option<reqwest::Body>),
}

impl UpstreamBody {
    /// The body for the next attempt; `None` once a streamed body has been used.
    fn take(&mut self) -> Option<reqwest::Body> {
        match self {
            Self::Whole(b) => Some(reqwest::Body::from(b.clone())),
            Self::Streamed(b) => b.take(),
        }
    }
}

/// Upstream URLs parsed once per provider key and endpoint, not on every call:
/// parsing one (its host through IDNA) cost more than the rest of building the
/// request. Read without a lock; a miss copies the table, which happens once per key
/// and endpoint.
#[derive(Default)]
pub struct UpstreamUrls(ArcSwap<HashMap<(ProviderKeyId, Endpoint), ParsedUrl>>);

#[derive(Clone)]
struct ParsedUrl {
    /// The base URL this was parsed from: a key whose base URL changed parses again.
    base: Box<str>,
    url: reqwest::Url,
}

/// Entries kept at most; beyond, the table starts over (removed keys leave theirs).
const MOST_URLS: usize = 16_384;

impl UpstreamUrls {
    /// The URL of `endpoint` on `key`'s upstream; `None` when its base URL is not one.
    pub fn get(&self, key: &ProviderKey, endpoint: Endpoint) -> Option<reqwest::Url> {
        if let Some(parsed) = self.0.load().get(&(key.id, endpoint))
            && *parsed.base == *key.base_url
        {
            return Some(parsed.url.clone());
        }
        let url =
            reqwest::Url::parse(&format!("{}{}", key.base_url, endpoint.upstream_suffix())).ok()?;
        self.0.rcu(|table| {
            let mut next = if table.len() >= MOST_URLS {
                HashMap::new()
            } else {
                HashMap::clone(table)
            };
            next.insert(
                (key.id, endpoint),
                ParsedUrl {
                    base: key.base_url.as_str().into(),
                    url: url.clone(),
                },
            );
            next
        });
        Some(url)
    }
}

/// Client headers forwarded upstream, per protocol. Everything else (cookies, the
/// client's own credentials, hop-by-hop headers) stays behind.
const OPENAI_FORWARD: [&str; 3] = ["accept", "content-type", "openai-beta"];
const ANTHROPIC_FORWARD: [&str; 5] = [
    "accept",
    "content-type",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
];
/// The client's headers sent upstream as they are: the protocol's list, and the W3C
/// trace headers unless this process exports traces (then the attempt's own trace
/// context goes instead).
fn forwarded<'a>(
    protocol: Protocol,
    client: &'a HeaderMap,
    exporting: bool,
) -> impl Iterator<Item = (&'static str, &'a HeaderValue)> + 'a {
    let names: &'static [&'static str] = match protocol {
        Protocol::OpenAi => &OPENAI_FORWARD,
        Protocol::Anthropic => &ANTHROPIC_FORWARD,
    };
    let trace: &'static [&'static str] = if exporting { &[] } else { &TRACE_HEADERS };
    names
        .iter()
        .chain(trace)
        .flat_map(move |name| client.get_all(*name).iter().map(move |v| (*name, v)))
}

/// Sent when an Anthropic client did not say which version it speaks.
const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Why an attempt failed, for the key's health and for the client's error.
#[derive(Debug)]
pub struct AttemptFailure {
    pub failure: Failure,
    pub detail: String,
}

impl AttemptFailure {
    pub fn new(failure: Failure, detail: impl Into<String>) -> Self {
        Self {
            failure,
            detail: detail.into(),
        }
    }
}

pub enum Sent {
    /// The upstream answered with a status that is not the key's fault (2xx, or a
    /// 4xx about the request itself).
    Answer(reqwest::Response),
    KeyFailed(AttemptFailure),
    /// A streamed body was already used by an earlier attempt.
    NotReplayable,
    /// The key cannot be used at all (its secret does not open).
    Unusable(&'static str),
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; each argument is a different part of the attempt"
)]
pub async fn send(
    client: &reqwest::Client,
    urls: &UpstreamUrls,
    keyring: &Keyring,
    key: &ProviderKey,
    endpoint: Endpoint,
    body: &mut UpstreamBody,
    client_headers: &HeaderMap,
    deadline: Instant,
) -> Sent {
    // Opened just in time; wiped when this function returns. The header built from it
    // is marked sensitive so no layer logs it.
    let secret: Zeroizing<Vec<u8>> = match keyring.open(&key.secret, key.id.0.as_bytes()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(provider_key = %key.id, error = %e, "cannot open a provider secret");
            return Sent::Unusable(
                "the provider key for this model cannot be used; its owner must re-add it",
            );
        }
    };
    let protocol = endpoint.protocol();
    let (auth_name, auth) = match protocol {
        Protocol::OpenAi => {
            let mut v = Zeroizing::new(Vec::with_capacity(secret.len() + 7));
            v.extend_from_slice(b"Bearer ");
            v.extend_from_slice(&secret);
            (header::AUTHORIZATION, v)
        }
        Protocol::Anthropic => (
            HeaderName::from_static("x-api-key"),
            Zeroizing::new(secret.to_vec()),
        ),
    };
    let Ok(mut auth_value) = HeaderValue::from_bytes(&auth) else {
        return Sent::Unusable("the provider key holds characters a header cannot carry");
    };
    auth_value.set_sensitive(true);

    let Some(body) = body.take() else {
        return Sent::NotReplayable;
    };
    let Some(url) = urls.get(key, endpoint) else {
        return Sent::Unusable(
            "the provider key's base URL is not a valid URL; its owner must fix it",
        );
    };
    let mut builder = client.post(url).header(auth_name, auth_value).body(body);
    let exporting = switchyard_runtime::tracing_on();
    for (name, value) in forwarded(protocol, client_headers, exporting) {
        builder = builder.header(name, value.clone());
    }
    if exporting {
        for (name, value) in crate::trace::injected().0 {
            builder = builder.header(name, value);
        }
    }
    if !client_headers.contains_key(header::CONTENT_TYPE) {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    if protocol == Protocol::Anthropic && !client_headers.contains_key("anthropic-version") {
        builder = builder.header("anthropic-version", DEFAULT_ANTHROPIC_VERSION);
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    let response = match tokio::time::timeout(wait, builder.send()).await {
        Err(_) => {
            return Sent::KeyFailed(AttemptFailure::new(
                Failure::Timeout,
                format!("no answer within {} ms", wait.as_millis()),
            ));
        }
        Ok(Err(e)) => {
            let failure = if e.is_timeout() {
                Failure::Timeout
            } else {
                Failure::Unreachable
            };
            return Sent::KeyFailed(AttemptFailure::new(
                failure,
                "the upstream could not be reached",
            ));
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    tracing::Span::current().record("http.response.status_code", status.as_u16());
    let header_text = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    let retry_after = retry_after_ms(header_text("retry-after-ms"), header_text("retry-after"));
    match Failure::from_status(status.as_u16(), retry_after) {
        Some(failure) => Sent::KeyFailed(AttemptFailure::new(
            failure,
            format!("the upstream answered {}", status.as_u16()),
        )),
        None => Sent::Answer(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::crypto::Sealed;
    use switchyard_core::ids::AccountId;
    use switchyard_core::snapshot::{ProviderKind, Status};

    fn key(base_url: &str) -> ProviderKey {
        ProviderKey {
            id: ProviderKeyId::new(),
            owner: AccountId::new(),
            kind: ProviderKind::OpenAi,
            base_url: base_url.into(),
            secret: Sealed {
                key_id: "k".into(),
                blob: Vec::new(),
            },
            level: 0,
            models: Vec::new(),
            weight: 1,
            status: Status::Active,
        }
    }

    #[test]
    fn urls_are_parsed_once_per_key_and_again_when_the_base_changes() {
        let urls = UpstreamUrls::default();
        let mut k = key("https://api.example.com/v1");
        let chat = urls.get(&k, Endpoint::ChatCompletions).unwrap();
        assert_eq!(chat.as_str(), "https://api.example.com/v1/chat/completions");
        let messages = urls.get(&k, Endpoint::Messages).unwrap();
        assert_eq!(messages.as_str(), "https://api.example.com/v1/messages");
        assert_eq!(urls.0.load().len(), 2);
        assert_eq!(urls.get(&k, Endpoint::ChatCompletions), Some(chat));
        assert_eq!(urls.0.load().len(), 2, "a hit adds nothing");

        k.base_url = "http://127.0.0.1:9000/openai/v1".into();
        let moved = urls.get(&k, Endpoint::ChatCompletions).unwrap();
        assert_eq!(
            moved.as_str(),
            "http://127.0.0.1:9000/openai/v1/chat/completions"
        );

        k.base_url = "not a url".into();
        assert_eq!(urls.get(&k, Endpoint::ChatCompletions), None);
    }

    #[test]
    fn without_export_the_clients_context_goes_upstream_unchanged() {
        let mut client = HeaderMap::new();
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        client.insert("traceparent", HeaderValue::from_static(parent));
        client.insert("tracestate", HeaderValue::from_static("vendor=1"));
        client.insert("cookie", HeaderValue::from_static("a=b"));
        let out: Vec<(&str, &str)> = forwarded(Protocol::OpenAi, &client, false)
            .filter_map(|(n, v)| Some((n, v.to_str().ok()?)))
            .collect();
        assert_eq!(
            out,
            vec![("traceparent", parent), ("tracestate", "vendor=1")]
        );
        assert_eq!(
            forwarded(Protocol::OpenAi, &HeaderMap::new(), false).count(),
            0
        );
        // Exporting, the attempt's own context replaces the client's.
        assert_eq!(forwarded(Protocol::Anthropic, &client, true).count(), 0);
    }
}
