//! The dialects translation speaks, and what a call's translation carries from its
//! request to its answer.

use super::gemini_path::GeminiCall;
use crate::endpoint::{Endpoint, UsageShape};
use crate::types::ProviderKind;

/// A protocol a client or an upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    Chat,
    /// Anthropic Messages (`/v1/messages`).
    Messages,
    /// OpenAI Responses (`/v1/responses`): a client dialect only; no request is
    /// translated into it.
    Responses,
    /// Gemini `generateContent` / `streamGenerateContent`: an upstream, and a client
    /// whose model and method are in its path ([`GeminiCall`], given in
    /// [`ClientHeaders::gemini`]).
    Gemini,
}

impl Dialect {
    /// The endpoint a client of this dialect calls, and an upstream of it serves.
    /// Gemini's calls are not one of [`Endpoint`]'s (they are read by
    /// [`GeminiCall::parse`]); Chat Completions stands in for them.
    pub fn endpoint(self) -> Endpoint {
        match self {
            Self::Chat | Self::Gemini => Endpoint::ChatCompletions,
            Self::Messages => Endpoint::Messages,
            Self::Responses => Endpoint::Responses,
        }
    }

    /// The dialect of a client calling `endpoint`, if it is one translation serves.
    pub fn of_endpoint(endpoint: Endpoint) -> Option<Self> {
        match endpoint {
            Endpoint::ChatCompletions => Some(Self::Chat),
            Endpoint::Messages => Some(Self::Messages),
            Endpoint::Responses => Some(Self::Responses),
            _ => None,
        }
    }

    /// The dialect a provider key of `kind` speaks upstream: the one place a kind
    /// names its translator.
    pub fn of_kind(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::OpenAi => Self::Chat,
            ProviderKind::Anthropic => Self::Messages,
            ProviderKind::Gemini => Self::Gemini,
        }
    }

    /// The name of the protocol a client of `endpoint` speaks, as the usage log
    /// records it: its dialect's, or for endpoints translation does not serve
    /// (embeddings, audio, token counting) the protocol's (`openai`, `anthropic`).
    pub fn protocol_of(endpoint: Endpoint) -> &'static str {
        Self::of_endpoint(endpoint).map_or(endpoint.protocol().gen_ai_provider(), Self::wire_name)
    }

    /// The short name the `x-switchyard-translated` header and the usage log use.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Chat => "openai-chat",
            Self::Messages => "anthropic-messages",
            Self::Responses => "openai-responses",
            Self::Gemini => "gemini",
        }
    }

    /// How usage is read from an answer in this dialect (an upstream's, so the
    /// meter sees what the provider reported, not its translation).
    pub fn usage_shape(self) -> UsageShape {
        match self {
            Self::Chat => UsageShape::OpenAiChat,
            Self::Messages => UsageShape::Anthropic,
            Self::Responses => UsageShape::OpenAiResponses,
            Self::Gemini => UsageShape::Gemini,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Chat => "OpenAI Chat Completions",
            Self::Messages => "Anthropic Messages",
            Self::Responses => "OpenAI Responses",
            Self::Gemini => "Gemini generateContent",
        }
    }
}

/// What a client sent besides its body that translation reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientHeaders<'a> {
    /// `anthropic-beta`, comma-separated flags (Claude Code sends several).
    pub anthropic_beta: Option<&'a str>,
    /// A Gemini client's call, read from its path by [`GeminiCall::parse`]: the
    /// model and whether to stream are there, not in the body.
    pub gemini: Option<GeminiCall<'a>>,
}

/// What the answer's translation needs of the request, kept for the call's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub client: Dialect,
    pub upstream: Dialect,
    /// The client asked for a stream.
    pub stream: bool,
    /// A Chat client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}
