//! Token usage as providers report it, and the usage event the data plane emits.

use serde::{Deserialize, Serialize};

use crate::endpoint::UsageShape;

mod event;
pub use event::{
    DEFAULT_LABEL_CAP, FOLDED_LABEL, LabelKind, RollupBy, RollupRow, UsageEvent, UsageLogView,
    label_room,
};

mod gemini;
pub(crate) use gemini::GeminiUsage;
mod stream;

pub use stream::{EventVerdict, StreamEnd, StreamMeter};

/// Tokens of one call. `input` counts every prompt token; `cached` (read from the
/// provider's prompt cache) and `cache_write` (written to it, Anthropic's cache
/// creation) are parts of it, each priced at its own rate and never counted twice.
/// Serialized as the logs show them (`input_tokens`, …).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    #[serde(rename = "input_tokens")]
    pub input: u64,
    #[serde(rename = "output_tokens")]
    pub output: u64,
    #[serde(rename = "cached_tokens")]
    pub cached: u64,
    #[serde(rename = "cache_write_tokens")]
    pub cache_write: u64,
}

/// Where an event's token counts come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageSource {
    /// The provider reported them.
    Reported,
    /// None: the call failed before any answer, or the answer (binary audio) carries
    /// none, or an answer without usage had no text to estimate from.
    #[default]
    Missing,
    /// The answer (whole or streamed) succeeded without usage; counted from the text
    /// both ways (see [`estimate_tokens`] and [`StreamMeter::estimated_output`]).
    Estimated,
    /// The call ended early (the client left, the upstream cut the stream): tokens
    /// were likely spent, and the counts hold only what was seen before the end.
    Incomplete,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Missing => "missing",
            Self::Estimated => "estimated",
            Self::Incomplete => "incomplete",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "reported" => Some(Self::Reported),
            "missing" => Some(Self::Missing),
            "estimated" => Some(Self::Estimated),
            "incomplete" => Some(Self::Incomplete),
            _ => None,
        }
    }

    /// Where the tokens of a call that ended with `status` come from: `tokens` is
    /// what the provider reported (possibly part of it), `answered` whether any of the
    /// answer had arrived. A call cut short is incomplete whatever was seen; an
    /// estimate is made by the caller, for successful JSON answers only.
    pub fn of(tokens: Option<TokenUsage>, status: u16, answered: bool) -> Self {
        let cut = status == CLIENT_CLOSED || (answered && status >= 500);
        match (cut, tokens) {
            (true, _) => Self::Incomplete,
            (false, Some(_)) => Self::Reported,
            (false, None) => Self::Missing,
        }
    }
}

/// Status recorded for a call whose client left before it ended (nginx's convention).
pub const CLIENT_CLOSED: u16 = 499;

/// Bytes of text per token in the estimate: the usual figure for English text with
/// the tokenizers of the major providers.
pub const BYTES_PER_TOKEN: u64 = 4;

/// Tokens of a JSON document, estimated: the bytes of its string values (not its keys,
/// numbers, punctuation, or `type` and `role` tags), four to a token, rounded up. The prompt's
/// text is in the request's strings and the answer's in the answer's; ids and model
/// names add a few. `None`: not JSON.
pub fn estimate_tokens(json: &[u8]) -> Option<u64> {
    let text: TextBytes = serde_json::from_slice(json).ok()?;
    Some(text.tokens())
}

/// The bytes of text in a JSON value: its string values, at any depth, except the
/// values of `type` and `role` keys (tags such as `text_delta`, not content). Read in one pass
/// without building the value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TextBytes(u64);

impl TextBytes {
    fn tokens(self) -> u64 {
        self.0.div_ceil(BYTES_PER_TOKEN)
    }
}

impl<'de> Deserialize<'de> for TextBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextBytesVisitor)
    }
}

struct TextBytesVisitor;

impl<'de> serde::de::Visitor<'de> for TextBytesVisitor {
    type Value = TextBytes;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TextBytes, E> {
        Ok(TextBytes(v.len() as u64))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<TextBytes, A::Error> {
        let mut total = 0u64;
        while let Some(TextBytes(n)) = seq.next_element()? {
            total = total.saturating_add(n);
        }
        Ok(TextBytes(total))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TextBytes, A::Error> {
        let mut total = 0u64;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "type" || key == "role" {
                map.next_value::<serde::de::IgnoredAny>()?;
            } else {
                total = total.saturating_add(map.next_value::<TextBytes>()?.0);
            }
        }
        Ok(TextBytes(total))
    }
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

impl PromptDetails {
    /// Usage whose cached part is reported inside the input's details; a cached
    /// count above the input is capped at it.
    fn usage(input: u64, output: u64, details: Option<Self>) -> TokenUsage {
        let cached = details.map_or(0, |d| d.cached_tokens);
        TokenUsage {
            input,
            output,
            cached: cached.min(input),
            cache_write: 0,
        }
    }
}

impl From<OpenAiUsage> for TokenUsage {
    fn from(u: OpenAiUsage) -> Self {
        PromptDetails::usage(
            u.prompt_tokens,
            u.completion_tokens,
            u.prompt_tokens_details,
        )
    }
}

/// A whole OpenAI-style answer: its choices are skipped, not collected.
#[derive(Deserialize)]
struct WholeWithUsage {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

/// Usage from an OpenAI-style JSON response body.
pub fn openai_usage_from_json(body: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<WholeWithUsage>(body)
        .ok()?
        .usage
        .map(TokenUsage::from)
}

/// The Responses API's usage (also what audio transcription reports).
#[derive(Deserialize)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<PromptDetails>,
}

impl From<ResponsesUsage> for TokenUsage {
    fn from(u: ResponsesUsage) -> Self {
        PromptDetails::usage(u.input_tokens, u.output_tokens, u.input_tokens_details)
    }
}

#[derive(Deserialize)]
struct WithResponsesUsage {
    #[serde(default)]
    usage: Option<ResponsesUsage>,
}

/// Anthropic's usage. Its `input_tokens` leaves out cache reads and cache writes;
/// Switchyard's `input` counts every prompt token, `cached` the cache reads and
/// `cache_write` the cache creation.
#[derive(Deserialize, Default, Clone, Copy)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WithAnthropicUsage {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

impl AnthropicUsage {
    fn apply(self, to: &mut TokenUsage) {
        let read = self.cache_read_input_tokens;
        if self.input_tokens.is_some()
            || read.is_some()
            || self.cache_creation_input_tokens.is_some()
        {
            let read = read.unwrap_or(0);
            let write = self.cache_creation_input_tokens.unwrap_or(0);
            to.input = self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(read)
                .saturating_add(write);
            to.cached = read.min(to.input);
            to.cache_write = write.min(to.input - to.cached);
        }
        if let Some(out) = self.output_tokens {
            // Cumulative in Anthropic's stream: the last one counts.
            to.output = out;
        }
    }
}

/// Usage from a whole JSON response of the given shape.
pub fn usage_from_json(shape: UsageShape, body: &[u8]) -> Option<TokenUsage> {
    match shape {
        UsageShape::OpenAiChat => openai_usage_from_json(body),
        UsageShape::OpenAiResponses => serde_json::from_slice::<WithResponsesUsage>(body)
            .ok()?
            .usage
            .map(TokenUsage::from),
        UsageShape::Anthropic => {
            let u = serde_json::from_slice::<WithAnthropicUsage>(body)
                .ok()?
                .usage?;
            let mut t = TokenUsage::default();
            u.apply(&mut t);
            Some(t)
        }
        UsageShape::Gemini => gemini::gemini_event(body).usage,
        UsageShape::None => Some(TokenUsage::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_say_how_a_call_ended() {
        let some = Some(TokenUsage {
            input: 5,
            output: 1,
            cached: 0,
            cache_write: 0,
        });
        assert_eq!(UsageSource::of(some, 200, true), UsageSource::Reported);
        assert_eq!(UsageSource::of(None, 200, true), UsageSource::Missing);
        assert_eq!(UsageSource::of(None, 502, false), UsageSource::Missing);
        assert_eq!(UsageSource::of(None, 429, false), UsageSource::Missing);
        // A stream cut after it started: what was seen is only part of it.
        assert_eq!(UsageSource::of(some, 502, true), UsageSource::Incomplete);
        assert_eq!(UsageSource::of(None, 502, true), UsageSource::Incomplete);
        // The client left.
        assert_eq!(
            UsageSource::of(None, CLIENT_CLOSED, false),
            UsageSource::Incomplete
        );
        for s in [
            UsageSource::Reported,
            UsageSource::Missing,
            UsageSource::Estimated,
            UsageSource::Incomplete,
        ] {
            assert_eq!(UsageSource::parse(s.as_str()), Some(s));
        }
        assert_eq!(UsageSource::parse("guessed"), None);
    }

    #[test]
    fn estimates_count_the_text_not_the_json() {
        // 16 bytes of text in two strings: 4 tokens, whatever the keys and numbers.
        let answer =
            br#"{"choices":[{"message":{"role":"","content":"sixteen bytes ok"}}],"n":12345}"#;
        assert_eq!(estimate_tokens(answer), Some(4));
        assert_eq!(estimate_tokens(br#"{"content":"abcde"}"#), Some(2));
        assert_eq!(
            estimate_tokens(br#"{"data":[{"embedding":[0.1,0.2]}]}"#),
            Some(0)
        );
        assert_eq!(estimate_tokens(b"not json"), None);
    }

    #[test]
    fn json_usage() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        assert_eq!(
            openai_usage_from_json(body),
            Some(TokenUsage {
                input: 12,
                output: 3,
                cached: 4,
                cache_write: 0
            })
        );
        assert_eq!(openai_usage_from_json(br#"{"choices":[]}"#), None);
        assert_eq!(openai_usage_from_json(b"not json"), None);
    }

    #[test]
    fn responses_and_anthropic_json() {
        let body = br#"{"id":"resp_1","output":[],"usage":{"input_tokens":20,"output_tokens":4,"input_tokens_details":{"cached_tokens":8},"total_tokens":24}}"#;
        assert_eq!(
            usage_from_json(UsageShape::OpenAiResponses, body),
            Some(TokenUsage {
                input: 20,
                output: 4,
                cached: 8,
                cache_write: 0
            })
        );
        let body = br#"{"type":"message","content":[],"usage":{"input_tokens":10,"cache_read_input_tokens":30,"cache_creation_input_tokens":5,"output_tokens":7}}"#;
        assert_eq!(
            usage_from_json(UsageShape::Anthropic, body),
            Some(TokenUsage {
                input: 45,
                output: 7,
                cached: 30,
                cache_write: 5
            })
        );
        assert_eq!(usage_from_json(UsageShape::Anthropic, b"{}"), None);
        assert_eq!(
            usage_from_json(UsageShape::None, b"RIFF"),
            Some(TokenUsage::default())
        );
    }

    #[test]
    fn cached_never_exceeds_input() {
        let body = br#"{"usage":{"prompt_tokens":2,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9}}}"#;
        assert_eq!(openai_usage_from_json(body).map(|u| u.cached), Some(2));
    }

    #[test]
    fn text_is_string_values_without_type_tags() {
        assert_eq!(
            estimate_tokens(
                br#"{"type":"message","content":[{"type":"text","text":"12345678"}],"n":42}"#
            ),
            Some(2)
        );
        assert_eq!(estimate_tokens(br#""\u00e9t\u00e9""#), Some(2));
        assert_eq!(estimate_tokens(b"[1, true, null]"), Some(0));
        assert_eq!(estimate_tokens(b"{not json"), None);
    }
}
