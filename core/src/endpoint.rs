//! The endpoints the data plane serves, the protocol each speaks, and what the proxy
//! does with their bodies. One table, so adding an endpoint is one line here.

use serde::Serialize;

use crate::error::ErrorCode;
use crate::types::ProviderKind;

/// A client-facing wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    OpenAi,
    Anthropic,
}

impl Protocol {
    /// The provider kind that speaks this protocol natively. Switchyard does not
    /// translate between protocols, so a request goes only to keys of this kind.
    pub fn provider_kind(self) -> ProviderKind {
        match self {
            Self::OpenAi => ProviderKind::OpenAi,
            Self::Anthropic => ProviderKind::Anthropic,
        }
    }

    /// The OpenTelemetry GenAI `gen_ai.provider.name` of the providers speaking it.
    pub fn gen_ai_provider(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }
}

/// How a request body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestBody {
    /// A JSON object carrying `model` (read whole, bounded, so it can be retried).
    Json,
    /// `multipart/form-data` with a `model` field (audio uploads: read until the model
    /// is known, then streamed).
    Multipart,
}

impl RequestBody {
    /// The media type a body of this kind is declared as.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Multipart => "multipart/form-data",
        }
    }

    /// Whether a request's declared Content-Type is this kind's media type (any case,
    /// parameters such as `charset` or `boundary` aside). A JSON body without one is
    /// read as JSON: SDKs and curl variants differ in sending it, and the body is
    /// parsed as JSON whatever it says. A multipart body needs its boundary, so its
    /// type must be declared.
    pub fn accepts(self, content_type: Option<&[u8]>) -> bool {
        let Some(declared) = content_type else {
            return self == Self::Json;
        };
        let essence = declared
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        essence.eq_ignore_ascii_case(self.media_type().as_bytes())
    }
}

/// How the usage of a response is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageShape {
    /// `usage.prompt_tokens` / `completion_tokens` (chat, embeddings); streams end with
    /// a usage chunk.
    OpenAiChat,
    /// `usage.input_tokens` / `output_tokens`; streams carry it in `response.completed`.
    OpenAiResponses,
    /// Anthropic's `usage`; streams carry it in `message_start` and `message_delta`.
    Anthropic,
    /// Gemini's `usageMetadata`; in streams every chunk carries it, cumulative, and
    /// the last one (with a `finishReason`) ends the stream.
    Gemini,
    /// Nothing to read (binary audio, token counting): the call is one request.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Responses,
    Embeddings,
    AudioSpeech,
    AudioTranscriptions,
    AudioTranslations,
    Messages,
    CountTokens,
}

impl Endpoint {
    pub const ALL: [Self; 8] = [
        Self::ChatCompletions,
        Self::Responses,
        Self::Embeddings,
        Self::AudioSpeech,
        Self::AudioTranscriptions,
        Self::AudioTranslations,
        Self::Messages,
        Self::CountTokens,
    ];

    /// This endpoint's place in [`Self::ALL`], for tables indexed by endpoint.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The client-facing path.
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/v1/chat/completions",
            Self::Responses => "/v1/responses",
            Self::Embeddings => "/v1/embeddings",
            Self::AudioSpeech => "/v1/audio/speech",
            Self::AudioTranscriptions => "/v1/audio/transcriptions",
            Self::AudioTranslations => "/v1/audio/translations",
            Self::Messages => "/v1/messages",
            Self::CountTokens => "/v1/messages/count_tokens",
        }
    }

    /// The OpenTelemetry GenAI `gen_ai.operation.name` of a call to this endpoint.
    pub fn gen_ai_operation(self) -> &'static str {
        match self {
            Self::ChatCompletions | Self::Responses | Self::Messages => "chat",
            Self::Embeddings => "embeddings",
            Self::AudioSpeech => "speech",
            Self::AudioTranscriptions => "transcription",
            Self::AudioTranslations => "translation",
            Self::CountTokens => "count_tokens",
        }
    }

    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.path() == path)
    }

    /// Appended to a provider key's base URL (which ends in its version, e.g. `/v1`).
    pub fn upstream_suffix(self) -> &'static str {
        &self.path()[3..]
    }

    pub fn protocol(self) -> Protocol {
        match self {
            Self::Messages | Self::CountTokens => Protocol::Anthropic,
            _ => Protocol::OpenAi,
        }
    }

    pub fn request_body(self) -> RequestBody {
        match self {
            Self::AudioTranscriptions | Self::AudioTranslations => RequestBody::Multipart,
            _ => RequestBody::Json,
        }
    }

    pub fn usage_shape(self) -> UsageShape {
        match self {
            Self::ChatCompletions | Self::Embeddings => UsageShape::OpenAiChat,
            Self::Responses | Self::AudioTranscriptions | Self::AudioTranslations => {
                UsageShape::OpenAiResponses
            }
            Self::Messages => UsageShape::Anthropic,
            Self::AudioSpeech | Self::CountTokens => UsageShape::None,
        }
    }

    /// Whether a call spends tokens and credit. Token counting generates nothing: it
    /// counts against requests per minute like any call the upstream rate-limits,
    /// but reserves, settles and bills no tokens and no credit.
    pub fn spends(self) -> bool {
        !matches!(self, Self::CountTokens)
    }

    /// Whether a non-streamed answer is passed through as it arrives rather than read
    /// whole for its usage (binary audio).
    pub fn passes_body_through(self) -> bool {
        matches!(self, Self::AudioSpeech)
    }
}

/// The `type` of an Anthropic error object.
fn anthropic_type(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidRequest
        | ErrorCode::Conflict
        | ErrorCode::Unprocessable
        | ErrorCode::UnsupportedMediaType => "invalid_request_error",
        ErrorCode::Unauthenticated => "authentication_error",
        ErrorCode::PermissionDenied => "permission_error",
        ErrorCode::QuotaExceeded => "billing_error",
        ErrorCode::NotFound => "not_found_error",
        ErrorCode::PayloadTooLarge => "request_too_large",
        ErrorCode::RateLimited => "rate_limit_error",
        ErrorCode::Unavailable => "overloaded_error",
        ErrorCode::UpstreamFailed | ErrorCode::UpstreamTimeout | ErrorCode::Internal => "api_error",
    }
}

#[derive(Serialize)]
struct AnthropicErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicError<'a>,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

/// The JSON body of an error in Anthropic's shape (also the data of its `error` event).
pub fn anthropic_error_body(code: ErrorCode, message: &str) -> Vec<u8> {
    let body = AnthropicErrorBody {
        kind: "error",
        error: AnthropicError {
            kind: anthropic_type(code),
            message,
        },
    };
    serde_json::to_vec(&body).unwrap_or_else(|_| {
        br#"{"type":"error","error":{"type":"api_error","message":"internal error"}}"#.to_vec()
    })
}

#[derive(Serialize)]
struct ResponsesErrorEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    message: &'a str,
    param: Option<&'a str>,
}

/// The HTTP status of an error for `protocol` clients: OpenAI signals exhausted credit
/// as 429 `insufficient_quota`, Anthropic as 402 `billing_error`.
pub fn error_status(protocol: Protocol, code: ErrorCode) -> u16 {
    match (protocol, code) {
        (Protocol::OpenAi, ErrorCode::QuotaExceeded) => 429,
        _ => code.http_status(),
    }
}

/// An error body in the shape `protocol` clients parse.
pub fn error_body(protocol: Protocol, code: ErrorCode, message: &str) -> Vec<u8> {
    match protocol {
        Protocol::OpenAi => crate::error::openai_error_body(code, message),
        Protocol::Anthropic => anthropic_error_body(code, message),
    }
}

/// Whether an upstream's answer body is an error in `protocol`'s own shape (OpenAI:
/// an object with `error`; Anthropic: `{"type":"error","error":…}`). A 404 without one
/// did not come from the protocol's endpoint: the provider key's base URL is wrong.
pub fn is_protocol_error(protocol: Protocol, body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Shape<'a> {
        #[serde(default, borrow, rename = "type")]
        kind: Option<&'a str>,
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Shape<'_>>(body) {
        Ok(shape) => match protocol {
            Protocol::OpenAi => shape.error.is_some(),
            Protocol::Anthropic => shape.error.is_some() && shape.kind == Some("error"),
        },
        Err(_) => false,
    }
}

/// The SSE event that ends a stream which failed after it started, in the form the
/// endpoint's clients recognise as an error (never a clean end that looks like success);
/// for Responses, `error` and then `response.failed`.
pub fn stream_error_event(endpoint: Endpoint, code: ErrorCode, message: &str) -> Vec<u8> {
    let (name, data) = match endpoint {
        Endpoint::Messages | Endpoint::CountTokens => {
            (Some("error"), anthropic_error_body(code, message))
        }
        Endpoint::Responses => {
            let event = ResponsesErrorEvent {
                kind: "error",
                code: code.as_str(),
                message,
                param: None,
            };
            let data = serde_json::to_vec(&event).unwrap_or_default();
            let mut out = sse_event(Some("error"), &data);
            // Clients that follow the response's life (Codex) end on
            // `response.failed` and pass over a bare `error`.
            let failed = ResponseFailedEvent {
                kind: "response.failed",
                response: FailedResponse {
                    id: "resp_failed",
                    object: "response",
                    created_at: 0,
                    status: "failed",
                    error: FailedResponseError {
                        code: code.as_str(),
                        message,
                    },
                    output: [],
                },
            };
            let data = serde_json::to_vec(&failed).unwrap_or_default();
            out.extend_from_slice(&sse_event(Some("response.failed"), &data));
            return out;
        }
        _ => (None, crate::error::openai_error_body(code, message)),
    };
    sse_event(name, &data)
}

fn sse_event(name: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out
}

#[derive(Serialize)]
struct ResponseFailedEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    response: FailedResponse<'a>,
}

#[derive(Serialize)]
struct FailedResponse<'a> {
    id: &'static str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    error: FailedResponseError<'a>,
    output: [(); 0],
}

#[derive(Serialize)]
struct FailedResponseError<'a> {
    code: &'static str,
    message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_token_counting_spends_nothing() {
        let free: Vec<Endpoint> = Endpoint::ALL.into_iter().filter(|e| !e.spends()).collect();
        assert_eq!(free, [Endpoint::CountTokens]);
    }

    #[test]
    fn each_endpoint_sits_at_its_index() {
        for (i, e) in Endpoint::ALL.into_iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
        }
    }

    #[test]
    fn paths_round_trip_and_suffixes_follow_the_version() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
            assert!(e.upstream_suffix().starts_with('/'));
            assert_eq!(format!("/v1{}", e.upstream_suffix()), e.path());
        }
        assert_eq!(Endpoint::from_path("/v1/chat/completions/"), None);
        assert_eq!(Endpoint::from_path("/v2/messages"), None);
        assert_eq!(Endpoint::Messages.upstream_suffix(), "/messages");
    }

    #[test]
    fn protocols_pick_provider_kinds() {
        assert_eq!(Endpoint::Messages.protocol(), Protocol::Anthropic);
        assert_eq!(Endpoint::CountTokens.protocol(), Protocol::Anthropic);
        assert_eq!(Endpoint::Responses.protocol(), Protocol::OpenAi);
        assert_eq!(Protocol::Anthropic.provider_kind(), ProviderKind::Anthropic);
    }

    #[test]
    fn declared_content_types_must_be_the_endpoints() {
        let json = Endpoint::ChatCompletions.request_body();
        for ok in [
            None,
            Some(&b"application/json"[..]),
            Some(b"Application/JSON"),
            Some(b"application/json; charset=utf-8"),
            Some(b" application/json ;charset=UTF-8"),
        ] {
            assert!(json.accepts(ok), "{ok:?}");
        }
        for refused in [
            &b"text/plain"[..],
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b"application/jsonp",
            b"",
        ] {
            assert!(!json.accepts(Some(refused)), "{refused:?}");
        }
        let upload = Endpoint::AudioTranscriptions.request_body();
        assert!(upload.accepts(Some(b"multipart/form-data; boundary=abc")));
        assert!(!upload.accepts(Some(b"application/json")));
        assert!(!upload.accepts(None));
        let body = anthropic_error_body(ErrorCode::UnsupportedMediaType, "json only");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(
            error_status(Protocol::Anthropic, ErrorCode::UnsupportedMediaType),
            415
        );
    }

    #[test]
    fn anthropic_error_shape() {
        let body = anthropic_error_body(ErrorCode::RateLimited, "slow down");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "slow down");
    }

    #[test]
    fn stream_errors_in_each_dialect() {
        let e = stream_error_event(Endpoint::Messages, ErrorCode::UpstreamFailed, "cut");
        let text = String::from_utf8(e).unwrap();
        assert!(text.starts_with("event: error\ndata: {\"type\":\"error\""));
        assert!(text.ends_with("\n\n"));
        let e = stream_error_event(Endpoint::ChatCompletions, ErrorCode::UpstreamFailed, "cut");
        let text = String::from_utf8(e).unwrap();
        assert!(text.starts_with("data: {\"error\":"));
        let e = stream_error_event(Endpoint::Responses, ErrorCode::UpstreamFailed, "cut");
        let text = String::from_utf8(e).unwrap();
        let events: Vec<serde_json::Value> = text
            .split("data: ")
            .skip(1)
            .map(|d| serde_json::from_str(d.split("\n\n").next().unwrap()).unwrap())
            .collect();
        assert_eq!(events[0]["type"], "error");
        assert_eq!(events[0]["code"], "upstream_failed");
        // Then the response's own end, which Codex reads.
        assert!(
            text.contains("\n\nevent: response.failed\ndata: "),
            "{text}"
        );
        assert_eq!(events[1]["type"], "response.failed");
        assert_eq!(events[1]["response"]["status"], "failed");
        assert_eq!(events[1]["response"]["error"]["code"], "upstream_failed");
        assert_eq!(events[1]["response"]["error"]["message"], "cut");
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn protocol_errors_are_told_from_other_answers() {
        let openai = br#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#;
        let anthropic =
            br#"{"type":"error","error":{"type":"not_found_error","message":"model: x"}}"#;
        assert!(is_protocol_error(Protocol::OpenAi, openai));
        assert!(is_protocol_error(Protocol::Anthropic, anthropic));
        assert!(is_protocol_error(Protocol::OpenAi, anthropic));
        assert!(!is_protocol_error(Protocol::Anthropic, openai));
        for other in [
            &b"404 page not found"[..],
            b"<html><body>Not Found</body></html>",
            br#"{"detail":"Not Found"}"#,
            b"",
            b"[1,2]",
        ] {
            assert!(!is_protocol_error(Protocol::OpenAi, other));
            assert!(!is_protocol_error(Protocol::Anthropic, other));
        }
    }
}
