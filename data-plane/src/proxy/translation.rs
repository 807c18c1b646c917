//! A call served by a provider key of another protocol: its request translated once
//! per upstream dialect (`core::translate`), and what its answer says about it.

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use switchyard_core::endpoint::{Endpoint, UsageShape};
use switchyard_core::error::ErrorCode;
use switchyard_core::translate::{
    self, ClientHeaders, DROPPED_HEADER, Dialect, Exchange, StreamTranslator, TranslatedRequest,
};
use switchyard_core::types::ProviderKind;

use super::error::ProxyError;
use crate::upstream;

/// The response header naming the dialects of a translated call, client first:
/// `openai-chat->anthropic-messages`.
pub const TRANSLATED_HEADER: &str = "x-switchyard-translated";

/// The request as an upstream of another dialect takes it.
pub struct Outbound {
    pub body: Bytes,
    pub exchange: Exchange,
    /// The upstream endpoint's path after the key's base URL.
    pub path: std::borrow::Cow<'static, str>,
    pub set_headers: Vec<(&'static str, &'static str)>,
    pub strip_headers: &'static [&'static str],
    translated: HeaderValue,
    dropped: Option<HeaderValue>,
}

impl Outbound {
    /// Translate the client's `body` for a key of `kind`. The router asked a Chat
    /// stream for its usage chunk on the client's behalf when `usage_asked` (see
    /// `facts`): the translated stream then writes that chunk only if the client
    /// asked itself.
    pub fn new(
        client: Dialect,
        kind: ProviderKind,
        body: &[u8],
        headers: &HeaderMap,
        usage_asked: bool,
    ) -> Result<Self, ProxyError> {
        let upstream = Dialect::of_kind(kind);
        let anthropic_beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
        let request = translate::translate_request(
            client,
            upstream,
            body,
            ClientHeaders {
                anthropic_beta,
                ..ClientHeaders::default()
            },
        )
        .map_err(|refusal| ProxyError::new(ErrorCode::InvalidRequest, refusal.to_string()))?;
        let dropped = request
            .dropped_header()
            .and_then(|text| HeaderValue::from_str(&text).ok());
        let TranslatedRequest {
            body,
            path,
            set_headers,
            strip_headers,
            mut exchange,
            ..
        } = request;
        exchange.include_usage &= !usage_asked;
        let names = format!("{}->{}", client.wire_name(), upstream.wire_name());
        let translated = HeaderValue::from_str(&names)
            .unwrap_or_else(|_| HeaderValue::from_static("translated"));
        Ok(Self {
            body: Bytes::from(body),
            exchange,
            path,
            set_headers,
            strip_headers,
            translated,
            dropped,
        })
    }

    /// The upstream's dialect.
    pub fn upstream(&self) -> Dialect {
        self.exchange.upstream
    }

    /// The upstream endpoint whose URL the key's base URL makes, when the path is
    /// one of them (Gemini's names the model, so it is not).
    pub fn upstream_endpoint(&self) -> Option<Endpoint> {
        let endpoint = self.exchange.upstream.endpoint();
        (self.path == endpoint.upstream_suffix()).then_some(endpoint)
    }

    /// What the upstream call takes of this request.
    pub fn rewritten(&self) -> upstream::Rewritten<'_> {
        upstream::Rewritten {
            body: &self.body,
            path: &self.path,
            endpoint: self.upstream_endpoint(),
            set_headers: &self.set_headers,
            strip_headers: self.strip_headers,
        }
    }

    /// How the upstream's answer reports usage.
    pub fn usage_shape(&self) -> UsageShape {
        self.exchange.upstream.usage_shape()
    }

    /// A translator for the upstream's stream.
    pub fn stream_translator(&self) -> Box<StreamTranslator> {
        Box::new(StreamTranslator::new(&self.exchange, now_unix()))
    }

    /// Say on the answer that it was translated, and what the upstream did not see.
    pub fn mark(&self, response: &mut Response) {
        let headers = response.headers_mut();
        headers.insert(
            HeaderName::from_static(TRANSLATED_HEADER),
            self.translated.clone(),
        );
        if let Some(dropped) = &self.dropped {
            headers.insert(HeaderName::from_static(DROPPED_HEADER), dropped.clone());
        }
    }
}

/// Seconds since the epoch, the `created` time OpenAI answers carry.
pub fn now_unix() -> u64 {
    u64::try_from(switchyard_runtime::now_ms() / 1000).unwrap_or(0)
}
