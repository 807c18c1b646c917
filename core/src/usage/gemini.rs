//! Gemini's `usageMetadata`, in a whole `generateContent` answer and in each chunk of
//! `streamGenerateContent` (cumulative there: the last one counts).

use serde::Deserialize;

use super::{TextBytes, TokenUsage};

/// Gemini's usage. `promptTokenCount` counts every prompt token, cached ones
/// (`cachedContentTokenCount`) included; tool-use prompt tokens are prompt tokens
/// too. `candidatesTokenCount` leaves out thinking (`thoughtsTokenCount`), which is
/// billed as output.
/// Read once for the meter and for translated answers alike.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GeminiUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

impl GeminiUsage {
    /// The thinking tokens, when Gemini reported them (part of the output).
    pub(crate) fn thoughts(&self) -> Option<u64> {
        self.thoughts_token_count
    }
}

impl From<GeminiUsage> for TokenUsage {
    fn from(u: GeminiUsage) -> Self {
        let input = u
            .prompt_token_count
            .saturating_add(u.tool_use_prompt_token_count);
        Self {
            input,
            output: u
                .candidates_token_count
                .saturating_add(u.thoughts_token_count.unwrap_or(0)),
            cached: u.cached_content_token_count.min(input),
            cache_write: 0,
        }
    }
}

/// A Gemini answer or stream chunk: its usage, its candidates (for the text streamed
/// and whether one finished) and, in a stream, an error in a chunk's place.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiChunk {
    #[serde(default)]
    usage_metadata: Option<GeminiUsage>,
    #[serde(default)]
    candidates: Option<Vec<Candidate>>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: TextBytes,
    /// Set on the candidate's last chunk.
    #[serde(default)]
    finish_reason: Option<serde::de::IgnoredAny>,
}

/// What one Gemini chunk says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct GeminiEvent {
    pub usage: Option<TokenUsage>,
    /// Bytes of text its candidates add.
    pub text: u64,
    /// A candidate finished (its `finishReason` is set).
    pub finished: bool,
    /// The chunk is an error.
    pub error: bool,
}

/// Read one Gemini answer or stream chunk; anything unreadable says nothing.
pub(super) fn gemini_event(data: &[u8]) -> GeminiEvent {
    let Ok(chunk) = serde_json::from_slice::<GeminiChunk>(data) else {
        return GeminiEvent::default();
    };
    let candidates = chunk.candidates.unwrap_or_default();
    GeminiEvent {
        usage: chunk.usage_metadata.map(TokenUsage::from),
        text: candidates.iter().map(|c| c.content.0).sum(),
        finished: candidates.iter().any(|c| c.finish_reason.is_some()),
        error: chunk.error.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::UsageShape;
    use crate::usage::{StreamEnd, StreamMeter, usage_from_json};

    #[test]
    fn whole_answers_count_thinking_as_output_and_cache_inside_the_prompt() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":40,"candidatesTokenCount":6,"cachedContentTokenCount":32,"thoughtsTokenCount":10,"totalTokenCount":56},"modelVersion":"gemini-2.5-flash"}"#;
        assert_eq!(
            usage_from_json(UsageShape::Gemini, body),
            Some(TokenUsage {
                input: 40,
                output: 16,
                cached: 32,
                cache_write: 0
            })
        );
        let tools = br#"{"usageMetadata":{"promptTokenCount":5,"toolUsePromptTokenCount":3,"candidatesTokenCount":1,"cachedContentTokenCount":99}}"#;
        assert_eq!(
            usage_from_json(UsageShape::Gemini, tools),
            Some(TokenUsage {
                input: 8,
                output: 1,
                cached: 8,
                cache_write: 0
            })
        );
        assert_eq!(
            usage_from_json(UsageShape::Gemini, br#"{"candidates":[]}"#),
            None
        );
        assert_eq!(usage_from_json(UsageShape::Gemini, b"not json"), None);
    }

    #[test]
    fn streams_take_the_last_chunks_usage_and_end_on_a_finish_reason() {
        let chunks: [&[u8]; 3] = [
            br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hello"}]}}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":1}}"#,
            br#"{"candidates":[{"content":{"role":"model","parts":[{"text":" there"}]}}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":2}}"#,
            br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"!"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":3,"thoughtsTokenCount":4}}"#,
        ];
        let mut m = StreamMeter::new(UsageShape::Gemini);
        m.observe(chunks[0]);
        m.observe(chunks[1]);
        assert_eq!(m.end(), StreamEnd::Truncated);
        assert_eq!(m.estimated_output(), Some(3)); // "Hello there": 11 bytes
        m.observe(chunks[2]);
        assert_eq!(m.end(), StreamEnd::Complete);
        assert_eq!(
            m.usage(),
            Some(TokenUsage {
                input: 12,
                output: 7,
                cached: 0,
                cache_write: 0
            })
        );
        let mut failed = StreamMeter::new(UsageShape::Gemini);
        failed.observe(chunks[0]);
        failed.observe(br#"{"error":{"code":500,"message":"internal","status":"INTERNAL"}}"#);
        assert_eq!(failed.end(), StreamEnd::Failed);
    }
}
