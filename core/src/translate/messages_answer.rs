//! Whole Anthropic Messages answers: read into an [`Answer`], written from one; the
//! usage and stop-reason vocabulary the stream shares.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ir::{Answer, Finish, OutPart, Usage};
use super::messages_write::Block;

#[derive(Deserialize)]
struct InAnswer<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    content: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_sequence: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: InUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InBlock<'a> {
    Text {
        #[serde(borrow)]
        text: Cow<'a, str>,
    },
    Thinking {
        #[serde(borrow)]
        thinking: Cow<'a, str>,
        #[serde(borrow, default)]
        signature: Option<Cow<'a, str>>,
    },
    RedactedThinking {
        #[serde(borrow)]
        data: Cow<'a, str>,
    },
    ToolUse {
        #[serde(borrow)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        name: Cow<'a, str>,
    },
    #[serde(other)]
    Other,
}

/// A tool use's input, read apart: a raw value cannot sit in a tagged enum.
#[derive(Deserialize)]
struct Input<'a> {
    #[serde(borrow)]
    input: &'a RawValue,
}

/// Anthropic's usage object, as read (each field optional: stream events carry some).
#[derive(Deserialize, Default, Clone, Copy)]
pub(crate) struct InUsage {
    #[serde(default)]
    pub(crate) input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) output_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_creation_input_tokens: Option<u64>,
}

impl InUsage {
    /// Fold what this report says into `to` (Anthropic's `input_tokens` leaves out
    /// the cache reads and writes; ours counts them).
    pub(crate) fn apply(self, to: &mut Usage) {
        if let Some(read) = self.cache_read_input_tokens {
            to.cache_read = read;
        }
        if let Some(write) = self.cache_creation_input_tokens {
            to.cache_write = write;
        }
        if let Some(input) = self.input_tokens {
            to.input = input
                .saturating_add(to.cache_read)
                .saturating_add(to.cache_write);
        }
        if let Some(output) = self.output_tokens {
            to.output = output;
        }
    }
}

pub(crate) fn finish_of(reason: &str) -> Finish {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => Finish::Length,
        "stop_sequence" => Finish::StopSequence,
        "tool_use" => Finish::ToolUse,
        "refusal" => Finish::Refusal,
        _ => Finish::Stop,
    }
}

pub(crate) fn finish_name(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::StopSequence => "stop_sequence",
        Finish::Length => "max_tokens",
        Finish::ToolUse => "tool_use",
        Finish::Refusal => "refusal",
    }
}

/// Read a whole Messages answer. Block types other than text, thinking and tool
/// use (server tools, which translation never asks for) are passed over.
pub(crate) fn read(body: &[u8]) -> Result<Answer<'_>, serde_json::Error> {
    let a: InAnswer<'_> = serde_json::from_slice(body)?;
    let mut usage = Usage::default();
    a.usage.apply(&mut usage);
    let mut parts = Vec::with_capacity(a.content.len());
    for raw in a.content {
        parts.push(match serde_json::from_str::<InBlock<'_>>(raw.get())? {
            InBlock::Text { text } => OutPart::Text(text),
            InBlock::Thinking {
                thinking,
                signature,
            } => OutPart::Thinking {
                text: thinking,
                signature,
            },
            InBlock::RedactedThinking { data } => OutPart::RedactedThinking(data),
            InBlock::ToolUse { id, name } => OutPart::ToolCall {
                id,
                name,
                arguments: Cow::Borrowed(serde_json::from_str::<Input<'_>>(raw.get())?.input.get()),
            },
            InBlock::Other => continue,
        });
    }
    Ok(Answer {
        id: a.id,
        model: a.model,
        parts,
        finish: a.stop_reason.as_deref().map_or(Finish::Stop, finish_of),
        stop_sequence: a.stop_sequence,
        usage,
    })
}

/// Anthropic's usage object, as written.
#[derive(Serialize, Debug)]
pub(crate) struct OutUsage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
}

impl From<Usage> for OutUsage {
    fn from(u: Usage) -> Self {
        OutUsage {
            input_tokens: u
                .input
                .saturating_sub(u.cache_read)
                .saturating_sub(u.cache_write),
            output_tokens: u.output,
            cache_creation_input_tokens: u.cache_write,
            cache_read_input_tokens: u.cache_read,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct OutAnswer<'c> {
    pub(crate) id: &'c str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) role: &'static str,
    pub(crate) model: &'c str,
    pub(crate) content: Vec<Block<'c>>,
    pub(crate) stop_reason: Option<&'static str>,
    pub(crate) stop_sequence: Option<&'c str>,
    pub(crate) usage: OutUsage,
}

/// The arguments of a tool call as the `input` object Anthropic wants; empty
/// arguments are `{}`, and text that is not a JSON object (a model's broken output)
/// is kept whole in a string field rather than lost.
pub(crate) fn input_of(arguments: &str) -> Cow<'_, RawValue> {
    match serde_json::from_str::<&RawValue>(arguments) {
        Ok(raw) if raw.get().starts_with('{') => Cow::Borrowed(raw),
        _ if arguments.trim().is_empty() => {
            Cow::Owned(RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| empty_object()))
        }
        _ => Cow::Owned(invalid_arguments(arguments)),
    }
}

fn empty_object() -> Box<RawValue> {
    serde_json::value::to_raw_value(&serde_json::Map::new()).unwrap_or_default()
}

/// Arguments that are not a JSON object, kept under `_invalid_arguments` so that
/// nothing of what the model produced is lost.
fn invalid_arguments(text: &str) -> Box<RawValue> {
    let mut map = serde_json::Map::new();
    map.insert(
        "_invalid_arguments".into(),
        serde_json::Value::String(text.into()),
    );
    serde_json::value::to_raw_value(&map).unwrap_or_else(|_| empty_object())
}

/// Write `answer` as a Messages answer.
pub(crate) fn write(answer: &Answer<'_>) -> Vec<u8> {
    let inputs: Vec<Cow<'_, RawValue>> = answer
        .parts
        .iter()
        .map(|p| match p {
            OutPart::ToolCall { arguments, .. } => input_of(arguments),
            _ => Cow::Owned(empty_object()),
        })
        .collect();
    let mut content = Vec::with_capacity(answer.parts.len());
    for (part, input) in answer.parts.iter().zip(&inputs) {
        content.push(match part {
            OutPart::Text(text) => Block::Text { text },
            OutPart::Thinking { text, signature } => Block::Thinking {
                thinking: text,
                signature: signature.as_deref().unwrap_or(""),
            },
            OutPart::RedactedThinking(data) => Block::RedactedThinking { data },
            OutPart::ToolCall { id, name, .. } => Block::ToolUse {
                id,
                name,
                input: input.as_ref(),
            },
        });
    }
    let out = OutAnswer {
        id: &answer.id,
        kind: "message",
        role: "assistant",
        model: &answer.model,
        content,
        stop_reason: Some(finish_name(answer.finish)),
        stop_sequence: answer.stop_sequence.as_deref(),
        usage: answer.usage.into(),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}
