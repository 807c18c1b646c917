//! The dialects translation speaks, and what a call's translation carries from its
//! request to its answer.

use super::gemini_path::GeminiCall;
use crate::endpoint::Endpoint;

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
