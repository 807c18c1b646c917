//! Reading a stream as it passes: its usage, the text it streams (to estimate its
//! output should no usage come), and whether it reached its protocol's last event.

use serde::Deserialize;

use super::gemini::gemini_event;
use super::{
    AnthropicUsage, OpenAiUsage, TextBytes, TokenUsage, WithAnthropicUsage, WithResponsesUsage,
};
use crate::endpoint::UsageShape;

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    /// An error in the chunk's place: the provider ended the stream with it.
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// A choice of a chat answer; in a stream, its `delta` carries the new text.
#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: TextBytes,
    /// Set (not null) on the choice's last chunk.
    #[serde(default)]
    finish_reason: Option<serde::de::IgnoredAny>,
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

/// What one chunk of an OpenAI-style stream says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ChatChunk {
    usage: StreamChunkUsage,
    /// Bytes of text its choices add.
    text: u64,
    /// A choice finished (its `finish_reason` is set).
    finished: bool,
    /// The chunk is an error.
    error: bool,
}

impl ChatChunk {
    const NOTHING: Self = Self {
        usage: StreamChunkUsage::None,
        text: 0,
        finished: false,
        error: false,
    };
}

/// Inspect the `data` of one SSE event of an OpenAI-style stream.
fn openai_chunk(data: &[u8]) -> ChatChunk {
    if data.first() != Some(&b'{') {
        return ChatChunk::NOTHING; // `[DONE]` and other non-JSON payloads
    }
    let Ok(chunk) = serde_json::from_slice::<WithUsage>(data) else {
        return ChatChunk::NOTHING;
    };
    let (text, finished) = chunk.choices.as_ref().map_or((0, false), |c| {
        (
            c.iter().map(|c| c.delta.0).sum(),
            c.iter().any(|c| c.finish_reason.is_some()),
        )
    });
    let usage = match (chunk.usage, chunk.choices) {
        (Some(u), Some(choices)) if choices.is_empty() => StreamChunkUsage::UsageOnly(u.into()),
        (Some(u), _) => StreamChunkUsage::WithContent(u.into()),
        (None, _) => StreamChunkUsage::None,
    };
    ChatChunk {
        usage,
        text,
        finished,
        error: chunk.error.is_some(),
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

/// An event's type alone.
#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// What the stream meter says about one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventVerdict {
    Forward,
    /// The usage-only chunk the router asked for on the client's behalf.
    UsageOnly,
}

/// How a stream that stopped had ended, by its protocol's last event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// Its last event arrived: chat completions, a finish reason and `[DONE]`;
    /// Responses, `response.completed` or `response.incomplete`; Anthropic messages,
    /// `message_stop`. (A protocol without one always ends so.)
    Complete,
    /// The upstream ended it with the protocol's own error event (chat: an `error`
    /// chunk; Responses: `error` or `response.failed`; Anthropic: `error`), which the
    /// client has already received.
    Failed,
    /// It stopped before its last event, cut or closed early: a broken stream.
    Truncated,
}

/// Reads usage from a stream, event by event, whatever its dialect, counts the text
/// the answer streams, to estimate its output should no usage come, and follows
/// whether it reaches its protocol's last event.
#[derive(Debug)]
pub struct StreamMeter {
    shape: UsageShape,
    usage: Option<TokenUsage>,
    text: TextBytes,
    /// Chat: a choice finished. Others: the last event arrived.
    finished: bool,
    /// Chat: `[DONE]` arrived.
    done: bool,
    failed: bool,
}

impl StreamMeter {
    pub fn new(shape: UsageShape) -> Self {
        Self {
            shape,
            usage: None,
            text: TextBytes(0),
            finished: false,
            done: false,
            failed: false,
        }
    }

    /// The usage seen so far (complete once the stream has ended).
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    /// The output tokens of the text streamed so far, estimated as
    /// [`super::estimate_tokens`] does; `None` before any text.
    pub fn estimated_output(&self) -> Option<u64> {
        (self.text.0 > 0).then(|| self.text.tokens())
    }

    /// How the stream ended, once it has stopped (cleanly: a transport error is
    /// [`StreamEnd::Truncated`] whatever was seen).
    pub fn end(&self) -> StreamEnd {
        let complete = match self.shape {
            UsageShape::OpenAiChat => self.finished && self.done,
            UsageShape::OpenAiResponses | UsageShape::Anthropic | UsageShape::Gemini => {
                self.finished
            }
            UsageShape::None => true,
        };
        if complete {
            StreamEnd::Complete
        } else if self.failed {
            StreamEnd::Failed
        } else {
            StreamEnd::Truncated
        }
    }

    /// The tokens of a stream that did not end complete, as far as they can be
    /// known: what the provider reported, else `prompt` (the request's estimate) for
    /// the input, and at least the output of the text seen. `None`: nothing to count.
    pub fn usage_so_far(&self, prompt: Option<u64>) -> Option<TokenUsage> {
        let seen = self.estimated_output().unwrap_or(0);
        match self.usage {
            Some(mut u) => {
                if u.input == 0 {
                    u.input = prompt.unwrap_or(0);
                }
                u.output = u.output.max(seen);
                Some(u)
            }
            None if seen > 0 || prompt.is_some() => Some(TokenUsage {
                input: prompt.unwrap_or(0),
                output: seen,
                cached: 0,
                cache_write: 0,
            }),
            None => None,
        }
    }

    /// Inspect the `data` of one event.
    pub fn observe(&mut self, data: &[u8]) -> EventVerdict {
        if data.first() != Some(&b'{') {
            if self.shape == UsageShape::OpenAiChat && data == b"[DONE]" {
                self.done = true;
            }
            return EventVerdict::Forward;
        }
        match self.shape {
            UsageShape::OpenAiChat => {
                let chunk = openai_chunk(data);
                self.text.0 = self.text.0.saturating_add(chunk.text);
                self.finished |= chunk.finished;
                self.failed |= chunk.error;
                match chunk.usage {
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
                    // Responses' `error` event has a `message` string where Anthropic's
                    // events carry a message object: read its type alone.
                    self.failed |= serde_json::from_slice::<Kind<'_>>(data)
                        .is_ok_and(|k| k.kind.as_deref() == Some("error"));
                    return EventVerdict::Forward;
                };
                let kind = event.kind.as_deref().unwrap_or_default();
                if kind.ends_with(".delta") || kind == "content_block_delta" {
                    self.text.0 = self.text.0.saturating_add(event.delta.0);
                }
                match (self.shape, kind) {
                    (
                        UsageShape::OpenAiResponses,
                        "response.completed" | "response.incomplete" | "response.failed",
                    ) => {
                        if let Some(u) = event.response.and_then(|r| r.usage) {
                            self.usage = Some(u.into());
                        }
                        if kind == "response.failed" {
                            self.failed = true;
                        } else {
                            self.finished = true;
                        }
                    }
                    (UsageShape::Anthropic, "message_start") => {
                        if let Some(u) = event.message.and_then(|m| m.usage) {
                            u.apply(self.usage.get_or_insert_with(TokenUsage::default));
                        }
                    }
                    (UsageShape::Anthropic, "message_delta") => {
                        if let Some(u) = event.usage {
                            u.apply(self.usage.get_or_insert_with(TokenUsage::default));
                        }
                    }
                    (UsageShape::Anthropic, "message_stop") => self.finished = true,
                    (_, "error") => self.failed = true,
                    _ => {}
                }
            }
            UsageShape::Gemini => {
                let chunk = gemini_event(data);
                self.text.0 = self.text.0.saturating_add(chunk.text);
                self.finished |= chunk.finished;
                self.failed |= chunk.error;
                if let Some(u) = chunk.usage {
                    // Cumulative: the last chunk's counts are the call's.
                    self.usage = Some(u);
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
    fn sse_usage_chunks() {
        let usage = |data: &[u8]| openai_chunk(data).usage;
        assert_eq!(usage(b"[DONE]"), StreamChunkUsage::None);
        assert_eq!(
            openai_chunk(br#"{"choices":[{"delta":{"content":"abc"}}]}"#),
            ChatChunk {
                text: 3,
                ..ChatChunk::NOTHING
            }
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

    fn ended(shape: UsageShape, events: &[&[u8]]) -> StreamEnd {
        let mut m = StreamMeter::new(shape);
        for e in events {
            m.observe(e);
        }
        m.end()
    }

    /// A stream is complete only with its protocol's last event; an early end,
    /// however clean, is a broken stream, and the provider's own error is a failure.
    #[test]
    fn streams_end_complete_only_with_their_last_event() {
        let text =
            &br#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#[..];
        let finish = &br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#[..];
        let chat = UsageShape::OpenAiChat;
        assert_eq!(ended(chat, &[text, finish, b"[DONE]"]), StreamEnd::Complete);
        assert_eq!(ended(chat, &[text, finish]), StreamEnd::Truncated);
        assert_eq!(ended(chat, &[text, b"[DONE]"]), StreamEnd::Truncated);
        assert_eq!(ended(chat, &[text]), StreamEnd::Truncated);
        assert_eq!(
            ended(chat, &[text, br#"{"error":{"message":"overloaded"}}"#]),
            StreamEnd::Failed
        );

        let responses = UsageShape::OpenAiResponses;
        let delta = &br#"{"type":"response.output_text.delta","delta":"Hi"}"#[..];
        for last in [
            &br#"{"type":"response.completed","response":{"usage":{"input_tokens":1,"output_tokens":1}}}"#[..],
            br#"{"type":"response.incomplete","response":{}}"#,
        ] {
            assert_eq!(ended(responses, &[delta, last]), StreamEnd::Complete);
        }
        assert_eq!(
            ended(
                responses,
                &[
                    delta,
                    br#"{"type":"response.output_text.done","text":"Hi"}"#
                ]
            ),
            StreamEnd::Truncated
        );
        for failed in [
            &br#"{"type":"response.failed","response":{"error":{"code":"server_error"}}}"#[..],
            br#"{"type":"error","code":"server_error","message":"x"}"#,
        ] {
            assert_eq!(ended(responses, &[delta, failed]), StreamEnd::Failed);
        }

        let messages = UsageShape::Anthropic;
        let delta =
            &br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#[..];
        assert_eq!(
            ended(messages, &[delta, br#"{"type":"message_stop"}"#]),
            StreamEnd::Complete
        );
        assert_eq!(
            ended(
                messages,
                &[
                    delta,
                    br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#
                ]
            ),
            StreamEnd::Truncated
        );
        assert_eq!(
            ended(
                messages,
                &[
                    delta,
                    br#"{"type":"error","error":{"type":"overloaded_error"}}"#
                ]
            ),
            StreamEnd::Failed
        );
        // A stream of a protocol without a last event cannot end early.
        assert_eq!(ended(UsageShape::None, &[]), StreamEnd::Complete);
    }

    /// A stream that ended early counts its prompt and the text it streamed; what
    /// the provider reported stands, its output never below the text seen.
    #[test]
    fn usage_so_far_counts_the_prompt_and_the_text_seen() {
        let mut m = StreamMeter::new(UsageShape::OpenAiChat);
        assert_eq!(m.usage_so_far(None), None);
        assert_eq!(
            m.usage_so_far(Some(7)).map(|u| (u.input, u.output)),
            Some((7, 0))
        );
        m.observe(br#"{"choices":[{"delta":{"content":"twelve bytes"}}]}"#);
        assert_eq!(
            m.usage_so_far(Some(7)),
            Some(TokenUsage {
                input: 7,
                output: 3,
                cached: 0,
                cache_write: 0
            })
        );
        assert_eq!(
            m.usage_so_far(None).map(|u| (u.input, u.output)),
            Some((0, 3))
        );

        // Anthropic reports its input at the start and a first output token.
        let mut m = StreamMeter::new(UsageShape::Anthropic);
        m.observe(br#"{"type":"message_start","message":{"usage":{"input_tokens":40,"cache_read_input_tokens":10,"output_tokens":1}}}"#);
        m.observe(br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"sixteen bytes ok"}}"#);
        assert_eq!(
            m.usage_so_far(Some(7)),
            Some(TokenUsage {
                input: 50,
                output: 4,
                cached: 10,
                cache_write: 0
            })
        );
    }
}
