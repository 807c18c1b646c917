//! Sending one webhook: the alert's JSON body, signed (`core::alerts::sign`) at the
//! moment of sending, named by its delivery id (the same on every retry), through
//! the same network guard as upstreams: the URL is checked again when sent (the
//! operator's networks may have changed since the rule was written) and every
//! address its name resolves to before connecting; no redirect is followed.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::alerts::{DELIVERY_HEADER, SIGNATURE_HEADER, sign};
use switchyard_core::netguard::{Resolve, UpstreamNetworks};

use crate::model_discovery::{bounded, guarded_client};

/// Longest time one attempt may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why it did not succeed.
    pub error: Option<String>,
}

impl Attempt {
    /// A 2xx answer: delivered.
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }

    fn failed(why: impl Into<String>) -> Self {
        Self {
            status_code: None,
            error: Some(bounded(why.into())),
        }
    }
}

/// Sends webhooks; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    client: Result<reqwest::Client, String>,
    networks: Arc<UpstreamNetworks>,
}

impl Webhooks {
    pub fn new(networks: UpstreamNetworks, resolver: Option<Arc<dyn Resolve>>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let networks = Arc::new(networks);
        let client = guarded_client(networks.clone(), resolver, WEBHOOK_TIMEOUT).map_err(|e| {
            tracing::error!(error = %e, "no HTTP client for webhooks");
            format!("webhooks are unavailable ({e})")
        });
        Self { client, networks }
    }

    /// POST `body` to `url`, signed with `secret` at `now_ms`.
    pub async fn send(
        &self,
        url: &str,
        secret: &[u8],
        delivery_id: &str,
        body: &str,
        now_ms: i64,
    ) -> Attempt {
        let client = match &self.client {
            Ok(c) => c,
            Err(why) => return Attempt::failed(why.clone()),
        };
        if let Err(e) = crate::upstream_url::check_webhook(url, &self.networks) {
            return Attempt::failed(e.0);
        }
        let signature = sign(secret, now_ms.div_euclid(1000), body.as_bytes());
        let sent = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, "switchyard-alerts")
            .header(SIGNATURE_HEADER, signature)
            .header(DELIVERY_HEADER, delivery_id)
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(answer) => {
                let code = answer.status().as_u16();
                Attempt {
                    status_code: Some(code),
                    error: (!answer.status().is_success())
                        .then(|| format!("the receiver answered {code}")),
                }
            }
            Err(e) => Attempt::failed(describe(e)),
        }
    }
}

/// A transport error with its causes (reqwest's own message names only the URL).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
