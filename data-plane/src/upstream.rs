//! One attempt on one provider key: build the upstream request (the secret opened
//! just in time), send it, and classify the answer for the key's health.

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use switchyard_core::crypto::Keyring;
use switchyard_core::endpoint::{Endpoint, Protocol};
use switchyard_core::ids::ProviderKeyId;
use switchyard_core::route::{Failure, retry_after_ms};
use switchyard_core::snapshot::ProviderKey;
use zeroize::Zeroizing;

use crate::swap_table::SwapTable;
use crate::trace::TRACE_HEADERS;

/// What every attempt goes through: hyper's pooled client, without the layers a
/// general HTTP client adds per request (URL parsing, redirects, retries), and each
/// key's URIs, parsed once.
pub struct Upstream {
    /// One pool per serving thread: a connection's task runs on the thread that
    /// opened it, so each thread calls only through its own.
    clients: Box<[HttpClient]>,
    urls: UpstreamUrls,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// An upstream's answer, its body still arriving.
pub type UpstreamResponse = http::Response<hyper::body::Incoming>;

/// Variables a general HTTP client would route calls through a proxy by.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl Upstream {
    /// Pooled keep-alive connections per upstream; HTTP/2 where TLS negotiates it;
    /// the system's roots verify TLS. One pool for each of `threads` serving threads.
    pub fn new(connect_timeout: Duration, threads: usize) -> Result<Self, rustls::Error> {
        use rustls_platform_verifier::BuilderVerifierExt as _;
        crate::install_tls_provider();
        let tls = rustls::ClientConfig::builder()
            .with_platform_verifier()?
            .with_no_client_auth();
        if let Some(name) = PROXY_VARIABLES
            .into_iter()
            .find(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
        {
            tracing::warn!(
                variable = name,
                "egress proxy variables are not followed: the data plane connects to each provider key's base URL directly"
            );
        }
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_nodelay(true);
        // The TLS layer takes `https` URLs; plain `http` ones pass through it.
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let clients = (0..threads.max(1))
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(256)
                    .build(connector.clone())
            })
            .collect();
        Ok(Self {
            clients,
            urls: UpstreamUrls::default(),
        })
    }

    /// The calling serving thread's pool.
    fn client(&self) -> &HttpClient {
        let i = crate::serve::thread_index();
        &self.clients[i % self.clients.len()]
    }
}

/// The body sent upstream: whole (replayable on the next key) or streamed once.
pub enum UpstreamBody {
    Whole(Bytes),
    /// A large upload: already read bytes, then the rest as it arrives. Single use.
    Streamed(Option<Body>),
}

impl UpstreamBody {
    /// The body for the next attempt; `None` once a streamed body has been used.
    fn take(&mut self) -> Option<Body> {
        match self {
            Self::Whole(b) => Some(Body::from(b.clone())),
            Self::Streamed(b) => b.take(),
        }
    }
}

/// Upstream URIs parsed once per provider key and endpoint, not on every call.
struct UpstreamUrls(SwapTable<(ProviderKeyId, Endpoint), ParsedUrl>);

impl Default for UpstreamUrls {
    fn default() -> Self {
        Self(SwapTable::new(MOST_URLS))
    }
}

#[derive(Clone)]
struct ParsedUrl {
    /// The base URL this was parsed from: a key whose base URL changed parses again.
    base: Box<str>,
    uri: Uri,
}

/// Entries kept at most; beyond, the table starts over (removed keys leave theirs).
const MOST_URLS: usize = 16_384;

impl UpstreamUrls {
    /// The URI of `endpoint` on `key`'s upstream; `None` when its base URL is not an
    /// `http` or `https` URL.
    fn get(&self, key: &ProviderKey, endpoint: Endpoint) -> Option<Uri> {
        if let Some(parsed) = self.0.load().get(&(key.id, endpoint))
            && *parsed.base == *key.base_url
        {
            return Some(parsed.uri.clone());
        }
        let text = format!("{}{}", key.base_url, endpoint.upstream_suffix());
        // A URL parser first: it puts a host in IDNA form and escapes what a URI may
        // not hold, as a general HTTP client would.
        let uri: Uri = reqwest::Url::parse(&text).ok()?.as_str().parse().ok()?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return None;
        }
        self.0.insert(
            (key.id, endpoint),
            ParsedUrl {
                base: key.base_url.as_str().into(),
                uri: uri.clone(),
            },
        );
        Some(uri)
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
    Answer(UpstreamResponse),
    KeyFailed(AttemptFailure),
    /// A streamed body was already used by an earlier attempt.
    NotReplayable,
    /// The key cannot be used at all (its secret does not open).
    Unusable(&'static str),
}

pub async fn send(
    upstream: &Upstream,
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
    let Some(uri) = upstream.urls.get(key, endpoint) else {
        return Sent::Unusable(
            "the provider key's base URL is not a valid http(s) URL; its owner must fix it",
        );
    };
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(auth_name, auth_value);
    let exporting = switchyard_runtime::tracing_on();
    for (name, value) in forwarded(protocol, client_headers, exporting) {
        headers.append(name, value.clone());
    }
    if exporting {
        for (name, value) in crate::trace::injected().0 {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    if !client_headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if protocol == Protocol::Anthropic && !client_headers.contains_key("anthropic-version") {
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
        );
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    let response = match tokio::time::timeout(wait, upstream.client().request(request)).await {
        Err(_) => {
            return Sent::KeyFailed(AttemptFailure::new(
                Failure::Timeout,
                format!("no answer within {} ms", wait.as_millis()),
            ));
        }
        Ok(Err(e)) => {
            let failure = if timed_out(&e) {
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

/// Whether a failed exchange ran out of time somewhere (connecting, most often).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = c.source();
    }
    false
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
        assert_eq!(chat, "https://api.example.com/v1/chat/completions");
        let messages = urls.get(&k, Endpoint::Messages).unwrap();
        assert_eq!(messages, "https://api.example.com/v1/messages");
        assert_eq!(urls.0.load().len(), 2);
        assert_eq!(urls.get(&k, Endpoint::ChatCompletions), Some(chat));
        assert_eq!(urls.0.load().len(), 2, "a hit adds nothing");

        k.base_url = "http://127.0.0.1:9000/openai/v1".into();
        let moved = urls.get(&k, Endpoint::ChatCompletions).unwrap();
        assert_eq!(moved, "http://127.0.0.1:9000/openai/v1/chat/completions");

        k.base_url = "https://bücher.example/v1".into();
        let idna = urls.get(&k, Endpoint::Embeddings).unwrap();
        assert_eq!(idna, "https://xn--bcher-kva.example/v1/embeddings");

        for bad in [
            "not a url",
            "ftp://files.example.com/v1",
            "/v1",
            "http://exa mple.com/v1",
        ] {
            k.base_url = bad.into();
            assert_eq!(urls.get(&k, Endpoint::ChatCompletions), None, "{bad}");
        }
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
