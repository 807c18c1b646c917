//! The REST API over HTTP: a bearer key, JSON both ways, refusals as typed errors.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::error::{CliError, Result};

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// An answer: its body (null when empty) and its entity tag, if it carries one.
pub struct Answer {
    pub body: Value,
    pub etag: Option<String>,
}

impl Client {
    pub fn new(base: &str, key: &str) -> Result<Client> {
        // reqwest is built without a default TLS provider: ring, as every service.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("switchyard-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same server with another key (acting as another account).
    pub fn with_key(&self, key: &str) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            key: key.to_owned(),
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        Ok(self.call(Method::GET, path, query, None, None).await?.body)
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        Ok(self
            .call(Method::POST, path, &[], Some(body), None)
            .await?
            .body)
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Value> {
        Ok(self
            .call(Method::PATCH, path, &[], Some(body), None)
            .await?
            .body)
    }

    pub async fn delete(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        Ok(self
            .call(Method::DELETE, path, query, None, None)
            .await?
            .body)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let target = if query.is_empty() {
            reqwest::Url::parse(&url)
        } else {
            reqwest::Url::parse_with_params(&url, query.iter().map(|(k, v)| (*k, v.as_str())))
        }
        .map_err(|e| CliError::Usage(format!("{url} is not a URL: {e}")))?;
        let mut request = self.http.request(method, target).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(tag) = if_match {
            request = request.header(reqwest::header::IF_MATCH, tag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let status = response.status();
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| CliError::Protocol(format!("{status} from {url} is not JSON ({e})")))?
        };
        if status.is_success() {
            return Ok(Answer { body, etag });
        }
        let error = &body["error"];
        Err(CliError::Refused {
            status: status.as_u16(),
            code: error["code"].as_str().unwrap_or("error").to_owned(),
            message: error["message"]
                .as_str()
                .map_or_else(|| status.to_string(), str::to_owned),
        })
    }

    /// Every page of a list that takes `offset` and `limit`.
    pub async fn all_pages(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<Value>> {
        const PAGE: usize = 1000;
        let mut out = Vec::new();
        loop {
            let mut q = query.to_vec();
            q.push(("offset", out.len().to_string()));
            q.push(("limit", PAGE.to_string()));
            let page = self.get(path, &q).await?;
            let Value::Array(items) = page else {
                return Err(CliError::Protocol(format!("{path} did not answer a list")));
            };
            let n = items.len();
            out.extend(items);
            if n < PAGE {
                return Ok(out);
            }
        }
    }
}

fn unreachable(base: &str, e: &reqwest::Error) -> CliError {
    // The error's chain says why (refused, DNS, TLS); the key is never part of it.
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    CliError::Unreachable {
        url: base.to_owned(),
        reason,
    }
}
