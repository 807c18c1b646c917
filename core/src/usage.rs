//! Token usage as providers report it, and the usage event the data plane emits.

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, EventId, IssuedKeyId, ProviderKeyId};

/// Tokens of one call. `input` counts every prompt token, `cached` the part of them
/// served from the provider's cache (priced separately, never counted twice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
}

/// Where an event's token counts come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UsageSource {
    /// The provider reported them.
    Reported,
    /// No usage arrived: the call failed before any, or the stream was cut.
    #[default]
    Missing,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Missing => "missing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "reported" => Some(Self::Reported),
            "missing" => Some(Self::Missing),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

impl From<OpenAiUsage> for TokenUsage {
    fn from(u: OpenAiUsage) -> Self {
        let cached = u.prompt_tokens_details.map_or(0, |d| d.cached_tokens);
        Self {
            input: u.prompt_tokens,
            output: u.completion_tokens,
            cached: cached.min(u.prompt_tokens),
        }
    }
}

/// Usage from an OpenAI-style JSON response body.
pub fn openai_usage_from_json(body: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<WithUsage>(body)
        .ok()?
        .usage
        .map(TokenUsage::from)
}

/// What one chunk of an OpenAI-style stream says about usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamChunkUsage {
    /// No usage in this chunk.
    None,
    /// Usage in a chunk that also carries choices.
    WithContent(TokenUsage),
    /// The usage-only chunk (`choices: []`) that `include_usage` adds at the end.
    UsageOnly(TokenUsage),
}

/// Inspect the `data` of one SSE event of an OpenAI-style stream.
pub fn openai_usage_from_sse_data(data: &[u8]) -> StreamChunkUsage {
    if data.first() != Some(&b'{') {
        return StreamChunkUsage::None; // `[DONE]` and other non-JSON payloads
    }
    let Ok(chunk) = serde_json::from_slice::<WithUsage>(data) else {
        return StreamChunkUsage::None;
    };
    match (chunk.usage, chunk.choices) {
        (Some(u), Some(choices)) if choices.is_empty() => StreamChunkUsage::UsageOnly(u.into()),
        (Some(u), _) => StreamChunkUsage::WithContent(u.into()),
        (None, _) => StreamChunkUsage::None,
    }
}

/// Usage totals of one account and model over one period (`YYYY-MM-DD` or `YYYY-MM`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RollupRow {
    pub period: String,
    pub account_id: String,
    pub model: String,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// What the providers cost, at the owner's prices.
    pub cost_nanos: i64,
    /// What the account's parent bills it.
    pub billed_nanos: i64,
}

/// One metered call, as the data plane reports it to the collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageEvent {
    pub id: EventId,
    pub at_unix_ms: i64,
    /// The calling account first, then its ancestors, the main account last.
    pub account_chain: Vec<AccountId>,
    pub issued_key: IssuedKeyId,
    pub provider_key: Option<ProviderKeyId>,
    pub model_requested: String,
    pub model_served: String,
    pub level: u32,
    pub status: u16,
    pub latency_ms: u32,
    pub ttfb_ms: Option<u32>,
    pub tokens: TokenUsage,
    pub source: UsageSource,
    /// What the call cost at the owner's prices.
    pub cost_nanos: i64,
    /// What the calling account's parent bills it for the call.
    pub billed_nanos: i64,
    pub path: String,
    pub client_addr: String,
    pub streamed: bool,
}

impl UsageEvent {
    pub fn account(&self) -> Option<AccountId> {
        self.account_chain.first().copied()
    }

    pub fn main_account(&self) -> Option<AccountId> {
        self.account_chain.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_usage() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        assert_eq!(
            openai_usage_from_json(body),
            Some(TokenUsage {
                input: 12,
                output: 3,
                cached: 4
            })
        );
        assert_eq!(openai_usage_from_json(br#"{"choices":[]}"#), None);
        assert_eq!(openai_usage_from_json(b"not json"), None);
    }

    #[test]
    fn cached_never_exceeds_input() {
        let body = br#"{"usage":{"prompt_tokens":2,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9}}}"#;
        assert_eq!(openai_usage_from_json(body).map(|u| u.cached), Some(2));
    }

    #[test]
    fn sse_usage_chunks() {
        assert_eq!(
            openai_usage_from_sse_data(b"[DONE]"),
            StreamChunkUsage::None
        );
        assert_eq!(
            openai_usage_from_sse_data(br#"{"choices":[{"delta":{"content":"a"}}]}"#),
            StreamChunkUsage::None
        );
        assert_eq!(
            openai_usage_from_sse_data(
                br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#
            ),
            StreamChunkUsage::UsageOnly(TokenUsage {
                input: 5,
                output: 7,
                cached: 0
            })
        );
        assert_eq!(
            openai_usage_from_sse_data(
                br#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#
            ),
            StreamChunkUsage::WithContent(TokenUsage {
                input: 1,
                output: 2,
                cached: 0
            })
        );
        assert_eq!(
            openai_usage_from_sse_data(br#"{"choices":[],"usage":null}"#),
            StreamChunkUsage::None
        );
    }
}
