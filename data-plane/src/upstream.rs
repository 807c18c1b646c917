//! One attempt on one provider key: build the upstream request (the secret opened
//! just in time), send it, and classify the answer for the key's health.
//!
//! Every upstream connection goes only to addresses the operator allows
//! (`core::netguard`): a host name's resolved addresses are filtered before any is
//! tried, and an IP literal is checked as it is, so neither a base URL nor a name
//! that resolves differently later (DNS rebinding) reaches a private network. The
//! check runs once per new connection; pooled connections cost nothing more.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use switchyard_core::crypto::Keyring;
use switchyard_core::endpoint::Endpoint;
use switchyard_core::forward;
use switchyard_core::ids::ProviderKeyId;
use switchyard_core::netguard::{Forbidden, Resolve, Resolving, UpstreamNetworks};
use switchyard_core::passthrough;
use switchyard_core::route::{Failure, retry_after_ms};
use switchyard_core::snapshot::ProviderKey;
use switchyard_core::types::ProviderKind;
use zeroize::Zeroizing;

use crate::swap_table::SwapTable;
use crate::trace::TRACE_HEADERS;

pub mod target;

/// What every attempt goes through: hyper's pooled client, without the layers a
/// general HTTP client adds per request (URL parsing, redirects, retries), and each
/// key's URIs, parsed once.
pub struct Upstream {
    /// One pool per serving thread: a connection's task runs on the thread that
    /// opened it, so each thread calls only through its own.
    clients: Box<[HttpClient]>,
    urls: UpstreamUrls,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<GuardedConnector>, Body>;

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
    /// Connections go only to addresses `networks` allows, names resolved by the system.
    pub fn new(
        connect_timeout: Duration,
        threads: usize,
        networks: UpstreamNetworks,
    ) -> Result<Self, rustls::Error> {
        Self::with_resolver(connect_timeout, threads, networks, Arc::new(SystemResolver))
    }

    /// [`Upstream::new`] resolving host names through `resolver`.
    pub fn with_resolver(
        connect_timeout: Duration,
        threads: usize,
        networks: UpstreamNetworks,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, rustls::Error> {
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
        let networks = Arc::new(networks);
        let mut tcp = HttpConnector::new_with_resolver(GuardedResolver {
            resolver,
            networks: networks.clone(),
        });
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_nodelay(true);
        // The TLS layer takes `https` URLs; plain `http` ones pass through it.
        tcp.enforce_http(false);
        let tcp = GuardedConnector {
            inner: tcp,
            networks,
        };
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

/// Host names resolved by the system (`getaddrinfo`, on the blocking pool).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str) -> Resolving {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|addr| addr.ip())
                .collect())
        })
    }
}

/// Why no connection to an upstream was opened.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "the upstream address is not allowed: {0}; the operator has not allowed this network for upstreams"
    )]
    Refused(Forbidden),
    #[error("the upstream host name did not resolve: {0}")]
    Resolve(std::io::Error),
    #[error("the upstream host name resolved to no address")]
    NoAddress,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Boxed<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// The connector's resolver: the addresses a name resolves to, less those the
/// operator does not allow (a name resolving to public and private addresses is
/// connected to the public ones only; to none allowed, not at all).
#[derive(Clone)]
struct GuardedResolver {
    resolver: Arc<dyn Resolve>,
    networks: Arc<UpstreamNetworks>,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = GuardError;
    type Future = Boxed<Self::Response, GuardError>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GuardError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.resolver.resolve(name.as_str());
        let networks = self.networks.clone();
        Box::pin(async move {
            let resolved = resolving.await.map_err(GuardError::Resolve)?;
            match networks.permitted(&resolved) {
                // The connector puts the URL's port on each.
                Ok(allowed) => Ok(allowed
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter()),
                Err(Some(refusal)) => Err(GuardError::Refused(refusal)),
                Err(None) => Err(GuardError::NoAddress),
            }
        })
    }
}

/// The TCP connector with IP-literal hosts checked too: hyper's connector connects
/// to those without asking its resolver.
#[derive(Clone)]
struct GuardedConnector {
    inner: HttpConnector<GuardedResolver>,
    networks: Arc<UpstreamNetworks>,
}

/// The IP address a URI's host is written as, if it is one.
fn literal_ip(uri: &Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Boxed<Self::Response, BoxError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if let Some(ip) = literal_ip(&uri)
            && let Err(refusal) = self.networks.check(ip)
        {
            return Box::pin(std::future::ready(Err(GuardError::Refused(refusal).into())));
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
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
        let uri = target::uri(&key.base_url, endpoint.upstream_suffix())?;
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

/// What of the client's request goes upstream with its body.
pub struct ClientParts<'a> {
    pub headers: &'a HeaderMap,
    /// The query string, checked (`core::forward::check_query`), without its `?`.
    pub query: Option<&'a str>,
    /// Header names the owner's rules add to the built-in allow-list (lowercase).
    pub owner_headers: &'a [String],
    /// The User-Agent sent upstream, built once per call ([`user_agent`]).
    pub user_agent: HeaderValue,
}

/// The User-Agent for the upstream: the client's, then Switchyard's product token.
pub fn user_agent(client: &HeaderMap) -> HeaderValue {
    match forward::user_agent(client.get(header::USER_AGENT).map(HeaderValue::as_bytes)) {
        Cow::Borrowed(_) => HeaderValue::from_static(forward::PRODUCT),
        Cow::Owned(bytes) => HeaderValue::from_maybe_shared(Bytes::from(bytes))
            .unwrap_or_else(|_| HeaderValue::from_static(forward::PRODUCT)),
    }
}

/// The client's headers sent upstream as they are: those `core::forward` allows
/// (built-in and the owner's), and the W3C trace headers unless this process exports
/// traces (then the attempt's own trace context goes instead). Walks the client's
/// headers once, comparing names; nothing is allocated.
fn forwarded<'a>(
    client: &'a ClientParts<'a>,
    exporting: bool,
) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> + 'a {
    client.headers.iter().filter(move |(name, _)| {
        let name = name.as_str();
        forward::forwarded(name, client.owner_headers)
            || (!exporting && TRACE_HEADERS.contains(&name))
    })
}

/// `uri` with the client's query string, joined to any query the base URL holds.
fn with_query(uri: Uri, query: Option<&str>) -> Uri {
    let Some(query) = query else {
        return uri;
    };
    let mut parts = uri.clone().into_parts();
    let (path, own) = parts
        .path_and_query
        .as_ref()
        .map_or(("/", None), |pq| (pq.path(), pq.query()));
    let joined = match own {
        Some(own) => format!("{path}?{own}&{query}"),
        None => format!("{path}?{query}"),
    };
    // The query came from a URI hyper parsed and the path from one parsed here, so
    // the two join into a valid one; should they not, the base URI goes as it is.
    match PathAndQuery::from_maybe_shared(Bytes::from(joined)) {
        Ok(pq) => {
            parts.path_and_query = Some(pq);
            Uri::from_parts(parts).unwrap_or(uri)
        }
        Err(_) => uri,
    }
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

/// A request rewritten for an upstream of another protocol (the proxy's translation
/// makes it): what [`send`] takes of it.
#[derive(Clone, Copy)]
pub struct Rewritten<'a> {
    pub body: &'a Bytes,
    /// The path after the key's base URL.
    pub path: &'a str,
    /// The endpoint that path is, when it is one (its URL is then kept per key).
    pub endpoint: Option<Endpoint>,
    /// Headers set on the request, replacing any the client sent.
    pub set_headers: &'a [(&'static str, &'static str)],
    /// Client headers of the client's protocol, never forwarded.
    pub strip_headers: &'static [&'static str],
}

#[expect(clippy::too_many_arguments, reason = "one attempt's whole context")]
pub async fn send(
    upstream: &Upstream,
    keyring: &Keyring,
    key: &ProviderKey,
    endpoint: Endpoint,
    body: &mut UpstreamBody,
    client: &ClientParts<'_>,
    translated: Option<Rewritten<'_>>,
    deadline: Instant,
) -> Sent {
    let (auth_name, auth_value) = if key.passthrough {
        // The caller's own credential, as it came (routing chose this key only
        // because the caller sent one).
        let Some(value) = client.headers.get(header::AUTHORIZATION) else {
            return Sent::Unusable("a passthrough provider key needs the caller's own credential");
        };
        let mut value = value.clone();
        value.set_sensitive(true);
        (header::AUTHORIZATION, value)
    } else {
        match owner_credential(keyring, key) {
            Ok(credential) => credential,
            Err(why) => return Sent::Unusable(why),
        }
    };

    let body = match translated {
        Some(t) => Body::from(t.body.clone()),
        None => match body.take() {
            Some(body) => body,
            None => return Sent::NotReplayable,
        },
    };
    let uri = match translated {
        None => upstream.urls.get(key, endpoint),
        Some(t) => match t.endpoint {
            Some(upstream_endpoint) => upstream.urls.get(key, upstream_endpoint),
            None => target::uri(&key.base_url, t.path),
        },
    };
    let Some(uri) = uri else {
        return Sent::Unusable(
            "the provider key's base URL is not a valid http(s) URL; its owner must fix it",
        );
    };
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    // A query string belongs to the client's protocol: a translated call goes without.
    *request.uri_mut() = match translated {
        None => with_query(uri, client.query),
        Some(_) => uri,
    };
    let headers = request.headers_mut();
    headers.insert(auth_name, auth_value);
    headers.insert(header::USER_AGENT, client.user_agent.clone());
    let exporting = switchyard_runtime::tracing_on();
    let stripped = translated.map_or(&[][..], |t| t.strip_headers);
    for (name, value) in forwarded(client, exporting) {
        if !stripped.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    for (name, value) in translated.map_or(&[][..], |t| t.set_headers) {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    if key.passthrough {
        // What else the caller's login needs beside its bearer (Codex's account).
        for (name, value) in client.headers.iter().filter(|(name, _)| {
            *name != header::AUTHORIZATION
                && passthrough::forwards_credential_header(name.as_str(), key.kind)
        }) {
            let mut value = value.clone();
            value.set_sensitive(true);
            headers.append(name.clone(), value);
        }
    }
    if exporting {
        for (name, value) in crate::trace::injected().0 {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    let client_headers = client.headers;
    if !client_headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if key.kind == ProviderKind::Anthropic && !headers.contains_key("anthropic-version") {
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
            if let Some(refusal) = refused(&e) {
                return Sent::KeyFailed(AttemptFailure::new(
                    Failure::Unreachable,
                    GuardError::Refused(refusal).to_string(),
                ));
            }
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
    // A passthrough caller's refused or limited credential is its own: its answer.
    if key.passthrough && passthrough::callers_own(status.as_u16()) {
        return Sent::Answer(response);
    }
    match Failure::from_status(status.as_u16(), retry_after) {
        Some(failure) => Sent::KeyFailed(AttemptFailure::new(
            failure,
            format!("the upstream answered {}", status.as_u16()),
        )),
        None => Sent::Answer(response),
    }
}

/// The owner's credential for `key`, in the header its kind reads it from, or why
/// the key cannot be used.
fn owner_credential(
    keyring: &Keyring,
    key: &ProviderKey,
) -> Result<(HeaderName, HeaderValue), &'static str> {
    // Opened just in time; wiped when this function returns. The header built from it
    // is marked sensitive so no layer logs it.
    let secret: Zeroizing<Vec<u8>> = match keyring.open(&key.secret, key.id.0.as_bytes()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(provider_key = %key.id, error = %e, "cannot open a provider secret");
            return Err("the provider key for this model cannot be used; its owner must re-add it");
        }
    };
    // The key's kind says how it authenticates (a translated call goes to a key of
    // another protocol than the endpoint's, with that key's own credential).
    target::credential(key.kind, &secret)
        .ok_or("the provider key holds characters a header cannot carry")
}

/// The refusal behind a failed exchange, when no connection was allowed.
fn refused(e: &(dyn std::error::Error + 'static)) -> Option<Forbidden> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(GuardError::Refused(refusal)) = c.downcast_ref::<GuardError>() {
            return Some(*refusal);
        }
        cause = c.source();
    }
    None
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
mod tests;
