//! Token usage as providers report it, and the usage event the data plane emits.

use serde::{Deserialize, Serialize};

use crate::endpoint::UsageShape;

mod event;
pub use event::{RollupBy, RollupRow, UsageEvent, UsageLogView};

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
struct WithUsage {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
}

/// A choice of a chat answer; in a stream, its `delta` carries the new text.
#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: TextBytes,
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
            cache_write: 0,
        }
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

/// What one chunk of an OpenAI-style stream says about usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamChunkUsage {
    /// No usage in this chunk.
    None,
    /// Usage in a chunk that also carries choices.
    WithContent(TokenUsage),
    /// The usage-only chunk (`choices: []`) that `include_usage` adds at the end.
    UsageOnly(TokenUsage),
}

/// Inspect the `data` of one SSE event of an OpenAI-style stream: its usage, and the
/// bytes of text its choices add.
fn openai_usage_from_sse_data(data: &[u8]) -> (StreamChunkUsage, u64) {
    if data.first() != Some(&b'{') {
        return (StreamChunkUsage::None, 0); // `[DONE]` and other non-JSON payloads
    }
    let Ok(chunk) = serde_json::from_slice::<WithUsage>(data) else {
        return (StreamChunkUsage::None, 0);
    };
    let text = chunk
        .choices
        .as_ref()
        .map_or(0, |c| c.iter().map(|c| c.delta.0).sum());
    let usage = match (chunk.usage, chunk.choices) {
        (Some(u), Some(choices)) if choices.is_empty() => StreamChunkUsage::UsageOnly(u.into()),
        (Some(u), _) => StreamChunkUsage::WithContent(u.into()),
        (None, _) => StreamChunkUsage::None,
    };
    (usage, text)
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
        let cached = u.input_tokens_details.map_or(0, |d| d.cached_tokens);
        Self {
            input: u.input_tokens,
            output: u.output_tokens,
            cached: cached.min(u.input_tokens),
            cache_write: 0,
        }
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
        UsageShape::None => Some(TokenUsage::default()),
    }
}

#[derive(Deserialize)]
struct TypedEvent<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    response: Option<WithResponsesUsage>,
    #[serde(default)]
    message: Option<WithAnthropicUsage>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    /// The text a delta event adds (Responses' `*.delta`, Anthropic's
    /// `content_block_delta`).
    #[serde(default)]
    delta: TextBytes,
}

/// What the stream meter says about one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventVerdict {
    Forward,
    /// The usage-only chunk the router asked for on the client's behalf.
    UsageOnly,
}

/// Reads usage from a stream, event by event, whatever its dialect, and counts the
/// text the answer streams, to estimate its output should no usage come.
#[derive(Debug)]
pub struct StreamMeter {
    shape: UsageShape,
    usage: Option<TokenUsage>,
    text: TextBytes,
}

impl StreamMeter {
    pub fn new(shape: UsageShape) -> Self {
        Self {
            shape,
            usage: None,
            text: TextBytes(0),
        }
    }

    /// The usage seen so far (complete once the stream has ended).
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    /// The output tokens of the text streamed so far, estimated as
    /// [`estimate_tokens`] does; `None` before any text.
    pub fn estimated_output(&self) -> Option<u64> {
        (self.text.0 > 0).then(|| self.text.tokens())
    }

    /// Inspect the `data` of one event.
    pub fn observe(&mut self, data: &[u8]) -> EventVerdict {
        if data.first() != Some(&b'{') {
            return EventVerdict::Forward;
        }
        match self.shape {
            UsageShape::OpenAiChat => {
                let (usage, text) = openai_usage_from_sse_data(data);
                self.text.0 = self.text.0.saturating_add(text);
                match usage {
                    StreamChunkUsage::UsageOnly(u) => {
                        self.usage = Some(u);
                        return EventVerdict::UsageOnly;
                    }
                    StreamChunkUsage::WithContent(u) => self.usage = Some(u),
                    StreamChunkUsage::None => {}
                }
            }
            UsageShape::OpenAiResponses | UsageShape::Anthropic => {
                let Ok(event) = serde_json::from_slice::<TypedEvent<'_>>(data) else {
                    return EventVerdict::Forward;
                };
                let kind = event.kind.as_deref().unwrap_or_default();
                if kind.ends_with(".delta") || kind == "content_block_delta" {
                    self.text.0 = self.text.0.saturating_add(event.delta.0);
                }
                match (self.shape, event.kind.as_deref()) {
                    (
                        UsageShape::OpenAiResponses,
                        Some("response.completed" | "response.incomplete" | "response.failed"),
                    ) => {
                        if let Some(u) = event.response.and_then(|r| r.usage) {
                            self.usage = Some(u.into());
                        }
                    }
                    (UsageShape::Anthropic, Some("message_start")) => {
                        if let Some(u) = event.message.and_then(|m| m.usage) {
                            u.apply(self.usage.get_or_insert_with(TokenUsage::default));
                        }
                    }
                    (UsageShape::Anthropic, Some("message_delta")) => {
                        if let Some(u) = event.usage {
                            u.apply(self.usage.get_or_insert_with(TokenUsage::default));
                        }
                    }
                    _ => {}
                }
            }
            UsageShape::None => {}
        }
        EventVerdict::Forward
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
    fn stream_meters_read_each_dialect() {
        let mut m = StreamMeter::new(UsageShape::Anthropic);
        for data in [
            &br#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":12,"cache_read_input_tokens":3,"output_tokens":1}}}"#[..],
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#,
            br#"{"type":"message_stop"}"#,
        ] {
            assert_eq!(m.observe(data), EventVerdict::Forward);
        }
        assert_eq!(
            m.usage(),
            Some(TokenUsage {
                input: 15,
                output: 9,
                cached: 3,
                cache_write: 0
            })
        );

        let mut m = StreamMeter::new(UsageShape::OpenAiResponses);
        m.observe(br#"{"type":"response.output_text.delta","delta":"hi"}"#);
        assert_eq!(m.usage(), None);
        m.observe(br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":5,"output_tokens":2}}}"#);
        assert_eq!(
            m.usage(),
            Some(TokenUsage {
                input: 5,
                output: 2,
                cached: 0,
                cache_write: 0
            })
        );

        let mut m = StreamMeter::new(UsageShape::OpenAiChat);
        assert_eq!(
            m.observe(br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#),
            EventVerdict::UsageOnly
        );
        assert_eq!(m.observe(b"[DONE]"), EventVerdict::Forward);
        assert_eq!(m.usage().map(|u| u.output), Some(7));
    }

    #[test]
    fn cached_never_exceeds_input() {
        let body = br#"{"usage":{"prompt_tokens":2,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9}}}"#;
        assert_eq!(openai_usage_from_json(body).map(|u| u.cached), Some(2));
    }

    #[test]
    fn sse_usage_chunks() {
        let usage = |data: &[u8]| openai_usage_from_sse_data(data).0;
        assert_eq!(usage(b"[DONE]"), StreamChunkUsage::None);
        assert_eq!(
            openai_usage_from_sse_data(br#"{"choices":[{"delta":{"content":"abc"}}]}"#),
            (StreamChunkUsage::None, 3)
        );
        assert_eq!(
            usage(br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#),
            StreamChunkUsage::UsageOnly(TokenUsage {
                input: 5,
                output: 7,
                ..TokenUsage::default()
            })
        );
        assert_eq!(
            usage(
                br#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#
            ),
            StreamChunkUsage::WithContent(TokenUsage {
                input: 1,
                output: 2,
                ..TokenUsage::default()
            })
        );
        assert_eq!(
            usage(br#"{"choices":[],"usage":null}"#),
            StreamChunkUsage::None
        );
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

    /// A stream without usage is estimated from the text its deltas carry, in every
    /// dialect; tags, roles' keys and stop reasons are not text.
    #[test]
    fn streams_without_usage_estimate_their_output() {
        let cases: [(UsageShape, &[&[u8]]); 3] = [
            (
                UsageShape::OpenAiChat,
                &[
                    br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                    br#"{"choices":[{"index":0,"delta":{"content":"Hello "}}]}"#,
                    br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
                    br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                    b"[DONE]",
                ],
            ),
            (
                UsageShape::OpenAiResponses,
                &[
                    br#"{"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}"#,
                    br#"{"type":"response.output_text.delta","item_id":"i","delta":"Hello "}"#,
                    br#"{"type":"response.function_call_arguments.delta","delta":"{}"}"#,
                    br#"{"type":"response.output_text.done","text":"Hello "}"#,
                ],
            ),
            (
                UsageShape::Anthropic,
                &[
                    br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello "}}"#,
                    br#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
                    br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#,
                ],
            ),
        ];
        for (shape, events) in cases {
            let mut m = StreamMeter::new(shape);
            assert_eq!(m.estimated_output(), None);
            for e in events {
                m.observe(e);
            }
            assert_eq!(m.usage(), None, "{shape:?}");
            // "Hello " and "{}": 8 bytes, two tokens.
            assert_eq!(m.estimated_output(), Some(2), "{shape:?}");
        }
    }
}
