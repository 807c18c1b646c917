//! A provider key learns its upstream's own model list: asked at the upstream's model
//! endpoint when the key is added (before it is stored, so it arrives with its list)
//! or re-pointed, on demand (`POST
//! /x-keys/{id}/discover`), and by the replica leading `model-discovery` every so
//! often ([`discover_when_leading`]). What is kept and how answers are read:
//! `core::model_list`; where it is stored: `Store::record_discovery`.
//!
//! The upstream is asked as the data plane would call it, and guarded the same way:
//! the base URL is checked again against the operator's networks (they may have
//! changed since the key was written), every address a name resolves to is checked
//! before connecting, redirects and proxy variables are not followed; the whole
//! asking is bounded in time and each answer in size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use switchyard_core::crypto::Keyring;
use switchyard_core::model_list::{self, MAX_PAGE_BYTES, MAX_PAGES};
use switchyard_core::netguard::{Resolve, UpstreamNetworks};
use switchyard_core::snapshot::{ProviderKey, ProviderKind, Status};
use switchyard_runtime::Shutdown;
use tokio::sync::watch;

use crate::publisher::Publisher;
use crate::store::{Discovery, DiscoveryRecorded, Store, StoreError};

/// Longest time one key's discovery may take, every page included.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The `anthropic-version` sent with Anthropic's list.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Longest failure reason stored.
const MAX_ERROR_CHARS: usize = 300;
/// Keys asked at once by the leader's round.
const ROUND_CONCURRENCY: usize = 4;

/// Asks upstreams for their model lists, through the operator's network guard.
#[derive(Clone)]
pub struct ModelLister {
    client: Result<reqwest::Client, String>,
    networks: Arc<UpstreamNetworks>,
}

/// Resolves through the injected resolver (or the system), keeping only addresses the
/// operator allows upstreams to have.
struct GuardedNames {
    resolver: Option<Arc<dyn Resolve>>,
    networks: Arc<UpstreamNetworks>,
}

impl reqwest::dns::Resolve for GuardedNames {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let resolver = self.resolver.clone();
        let networks = self.networks.clone();
        Box::pin(async move {
            let resolved = match resolver {
                Some(r) => r.resolve(&host).await?,
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .map(|a| a.ip())
                    .collect(),
            };
            let kept = networks.permitted(&resolved).map_err(|refusal| {
                let why = refusal.map_or_else(
                    || "it resolves to no address".to_owned(),
                    |r| format!("it resolves to an address upstreams may not have ({r})"),
                );
                Box::new(std::io::Error::other(format!("{host}: {why}")))
                    as Box<dyn std::error::Error + Send + Sync>
            })?;
            let addrs: reqwest::dns::Addrs =
                Box::new(kept.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// An HTTP client that reaches only addresses the operator allows upstreams to have
/// (every address a name resolves to is checked), follows no redirect and no proxy
/// variable, and gives up after `timeout`: for upstreams and webhooks alike.
pub(crate) fn guarded_client(
    networks: Arc<UpstreamNetworks>,
    resolver: Option<Arc<dyn Resolve>>,
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedNames { resolver, networks }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .build()
}

impl ModelLister {
    pub fn new(networks: UpstreamNetworks, resolver: Option<Arc<dyn Resolve>>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let networks = Arc::new(networks);
        let client = guarded_client(networks.clone(), resolver, DISCOVERY_TIMEOUT).map_err(|e| {
            tracing::error!(error = %e, "no HTTP client for model discovery");
            format!("model discovery is unavailable ({e})")
        });
        Self { client, networks }
    }

    /// Ask `key`'s upstream for its models, bounded by [`DISCOVERY_TIMEOUT`].
    pub async fn list(&self, keyring: &Keyring, key: &ProviderKey) -> Discovery {
        match tokio::time::timeout(DISCOVERY_TIMEOUT, self.pages(keyring, key)).await {
            Ok(outcome) => outcome,
            Err(_) => Discovery::Failed(format!(
                "the upstream did not list its models within {} s",
                DISCOVERY_TIMEOUT.as_secs()
            )),
        }
    }

    async fn pages(&self, keyring: &Keyring, key: &ProviderKey) -> Discovery {
        let client = match &self.client {
            Ok(c) => c,
            Err(why) => return Discovery::Failed(why.clone()),
        };
        if key.passthrough {
            // No credential to ask with: each call brings its caller's own. Its
            // models are the names it is given.
            return Discovery::NoList;
        }
        // The operator's networks now, not when the key was written.
        if let Err(e) = crate::upstream_url::check(&key.base_url, &self.networks) {
            return Discovery::Failed(bounded(e.0));
        }
        let plain = match keyring.open(&key.secret, key.id.0.as_bytes()) {
            Ok(plain) => plain,
            Err(e) => return Discovery::Failed(format!("the secret cannot be opened ({e})")),
        };
        let Ok(secret) = std::str::from_utf8(&plain) else {
            return Discovery::Failed("the secret is not text".to_owned());
        };
        let mut ids = Vec::new();
        let mut url = model_list::first_page_url(key.kind, &key.base_url);
        for page in 0..MAX_PAGES {
            let request = match key.kind {
                ProviderKind::OpenAi => client.get(&url).bearer_auth(secret),
                ProviderKind::Anthropic => client
                    .get(&url)
                    .header("x-api-key", secret)
                    .header("anthropic-version", ANTHROPIC_VERSION),
                // Gemini takes its key in a header of its own (or `?key=`, which would
                // put it in logs of the URL).
                ProviderKind::Gemini => client.get(&url).header("x-goog-api-key", secret),
            };
            let response = match request.header("accept", "application/json").send().await {
                Ok(r) => r,
                Err(e) => return Discovery::Failed(bounded(failure_of(&e))),
            };
            let status = response.status();
            if status == reqwest::StatusCode::NOT_FOUND && page == 0 {
                return Discovery::NoList;
            }
            let body = match bounded_body(response).await {
                Ok(b) => b,
                Err(why) => return Discovery::Failed(why),
            };
            if model_list::refuses_credential(key.kind, status.as_u16(), &body) {
                return Discovery::Failed(format!(
                    "the upstream refused the credential ({})",
                    status.as_u16()
                ));
            }
            if !status.is_success() {
                return Discovery::Failed(format!(
                    "the upstream answered {} to the model list",
                    status.as_u16()
                ));
            }
            let parsed = match model_list::parse_page(key.kind, &body) {
                Ok(p) => p,
                Err(e) => return Discovery::Failed(bounded(e.to_string())),
            };
            ids.extend(parsed.ids);
            match parsed.next_after {
                Some(after) if ids.len() < model_list::MAX_MODELS * 2 => {
                    url = model_list::next_page_url(key.kind, &key.base_url, &after);
                }
                _ => break,
            }
        }
        Discovery::Listed(model_list::kept(ids))
    }
}

/// The answer's body, refused past [`MAX_PAGE_BYTES`].
async fn bounded_body(response: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_big = || format!("the model list is larger than {MAX_PAGE_BYTES} bytes");
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PAGE_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bounded(failure_of(&e)))?;
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport failure in words, with its causes (the guard's refusal is one).
fn failure_of(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!(
            "the upstream did not list its models within {} s",
            DISCOVERY_TIMEOUT.as_secs()
        );
    }
    let mut text = String::from("the upstream could not be reached");
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(last) = last {
        text.push_str(&format!(": {last}"));
    }
    text
}

/// `text` cut to the length a stored failure reason may have (discovery's, a webhook's).
pub(crate) fn bounded(text: String) -> String {
    if text.chars().count() <= MAX_ERROR_CHARS {
        return text;
    }
    text.chars().take(MAX_ERROR_CHARS).collect()
}

/// What discovery needs, cheap to clone into a task.
#[derive(Clone)]
pub struct Discoverer {
    pub(crate) store: Store,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) publisher: Publisher,
    pub(crate) lister: ModelLister,
}

impl Discoverer {
    /// Ask `key`'s upstream and record what it said; a changed list is published.
    pub async fn discover(&self, key: &ProviderKey) -> Result<Discovery, StoreError> {
        let outcome = self.ask(key).await;
        let recorded = self
            .store
            .record_discovery(key, &outcome, switchyard_runtime::now_ms())
            .await?;
        if let DiscoveryRecorded::Changed(revision) = recorded {
            self.publisher.changed(revision);
        }
        Ok(outcome)
    }

    /// Ask `key`'s upstream without recording: for a key about to be stored.
    pub async fn ask(&self, key: &ProviderKey) -> Discovery {
        let outcome = self.lister.list(&self.keyring, key).await;
        log(key, &outcome);
        outcome
    }

    /// Every active key's list asked again, a few at a time.
    pub async fn discover_all(&self) -> Result<usize, StoreError> {
        let keys: Vec<ProviderKey> = self
            .store
            .all_provider_keys()
            .await?
            .into_iter()
            .filter(|k| k.status == Status::Active)
            .collect();
        let count = keys.len();
        let results: Vec<Result<Discovery, StoreError>> = futures_util::stream::iter(keys)
            .map(|k| async move { self.discover(&k).await })
            .buffer_unordered(ROUND_CONCURRENCY)
            .collect()
            .await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(e);
        }
        Ok(count)
    }
}

fn log(key: &ProviderKey, outcome: &Discovery) {
    match outcome {
        Discovery::Listed(models) => {
            tracing::debug!(provider_key = %key.id, models = models.len(), "model list learnt");
        }
        Discovery::NoList => {
            tracing::debug!(provider_key = %key.id, "the upstream has no model list");
        }
        Discovery::Failed(why) => {
            tracing::info!(provider_key = %key.id, error = %why, "model discovery failed");
        }
    }
}

/// While this replica leads `model-discovery`, ask every active key's upstream for
/// its models on taking the lead and then every `every`.
pub async fn discover_when_leading(
    discoverer: Discoverer,
    mut leader: watch::Receiver<bool>,
    every: Duration,
    shutdown: Shutdown,
) {
    loop {
        if *leader.borrow_and_update() {
            match discoverer.discover_all().await {
                Ok(keys) => tracing::info!(keys, "model lists asked again"),
                Err(e) => tracing::error!(error = %e, "model discovery round failed; will retry"),
            }
        }
        tokio::select! {
            () = shutdown.clone().wait() => return,
            () = switchyard_coord::leadership_changed(&mut leader) => {}
            () = tokio::time::sleep(every) => {}
        }
    }
}
