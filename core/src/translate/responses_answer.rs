//! Answers written as OpenAI Responses: the response object, its output items and
//! usage, shared by the whole answer and the stream.

use serde::Serialize;

use super::ir::{Answer, Finish, OutPart, Usage};
use super::responses_read::{REDACTED_PREFIX, THINKING_PREFIX};

/// The response id for an upstream answer id.
pub(crate) fn response_id(upstream: &str) -> String {
    format!("resp_{upstream}")
}

/// The id of output item `index` of response `upstream`, with the kind's prefix.
pub(crate) fn item_id(prefix: &str, index: usize, upstream: &str) -> String {
    format!("{prefix}_{index}_{upstream}")
}

/// One output item, finished.
#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Item<'c> {
    Message {
        id: String,
        status: &'static str,
        role: &'static str,
        content: [OutputText<'c>; 1],
    },
    Reasoning {
        id: String,
        summary: Vec<SummaryText<'c>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<String>,
    },
    FunctionCall {
        id: String,
        call_id: &'c str,
        name: &'c str,
        arguments: &'c str,
        status: &'static str,
    },
}

#[derive(Serialize, Debug)]
pub(crate) struct OutputText<'c> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) text: &'c str,
    pub(crate) annotations: [(); 0],
}

impl<'c> OutputText<'c> {
    pub(crate) fn new(text: &'c str) -> Self {
        Self {
            kind: "output_text",
            text,
            annotations: [],
        }
    }
}

#[derive(Serialize, Debug)]
pub(crate) struct SummaryText<'c> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) text: &'c str,
}

impl<'c> SummaryText<'c> {
    pub(crate) fn new(text: &'c str) -> Self {
        Self {
            kind: "summary_text",
            text,
        }
    }
}

/// The `encrypted_content` that carries a thinking block's signature (or redacted
/// thinking) so that the client can send the item back.
pub(crate) fn signed(signature: &str) -> String {
    format!("{THINKING_PREFIX}{signature}")
}

pub(crate) fn redacted(data: &str) -> String {
    format!("{REDACTED_PREFIX}{data}")
}

#[derive(Serialize, Debug)]
pub(crate) struct OutUsage {
    input_tokens: u64,
    input_tokens_details: Cached,
    output_tokens: u64,
    output_tokens_details: Reasoned,
    total_tokens: u64,
}

#[derive(Serialize, Debug)]
struct Cached {
    cached_tokens: u64,
}

#[derive(Serialize, Debug)]
struct Reasoned {
    reasoning_tokens: u64,
}

impl From<Usage> for OutUsage {
    fn from(u: Usage) -> Self {
        OutUsage {
            input_tokens: u.input,
            input_tokens_details: Cached {
                cached_tokens: u.cache_read,
            },
            output_tokens: u.output,
            output_tokens_details: Reasoned {
                reasoning_tokens: u.reasoning.unwrap_or(0),
            },
            total_tokens: u.input.saturating_add(u.output),
        }
    }
}

/// A response object: in progress (no usage yet) or finished.
#[derive(Serialize, Debug)]
pub(crate) struct Response<'c, I: Serialize> {
    pub(crate) id: &'c str,
    pub(crate) object: &'static str,
    pub(crate) created_at: u64,
    pub(crate) status: &'static str,
    pub(crate) error: Option<()>,
    pub(crate) incomplete_details: Option<Incomplete>,
    pub(crate) model: &'c str,
    pub(crate) output: I,
    pub(crate) parallel_tool_calls: bool,
    pub(crate) tool_choice: &'static str,
    pub(crate) tools: [(); 0],
    pub(crate) usage: Option<OutUsage>,
}

#[derive(Serialize, Debug)]
pub(crate) struct Incomplete {
    reason: &'static str,
}

/// The status a finished answer has, and why it is incomplete if it is.
pub(crate) fn status(finish: Finish) -> (&'static str, Option<Incomplete>) {
    match finish {
        Finish::Length => (
            "incomplete",
            Some(Incomplete {
                reason: "max_output_tokens",
            }),
        ),
        Finish::Refusal => (
            "incomplete",
            Some(Incomplete {
                reason: "content_filter",
            }),
        ),
        Finish::Stop | Finish::StopSequence | Finish::ToolUse => ("completed", None),
    }
}

/// Write `answer` as a Responses response created at `created` (Unix seconds).
/// Consecutive text parts make one message item; each thinking block one reasoning
/// item (its text as the summary, its signature in `encrypted_content`); each tool
/// call one function call item.
pub(crate) fn write(answer: &Answer<'_>, created: u64) -> Vec<u8> {
    let texts: Vec<String> = {
        let mut texts = Vec::new();
        let mut run: Option<String> = None;
        for part in &answer.parts {
            match part {
                OutPart::Text(t) => run.get_or_insert_with(String::new).push_str(t),
                _ => texts.extend(run.take()),
            }
        }
        texts.extend(run);
        texts
    };
    let mut items = Vec::with_capacity(answer.parts.len());
    let mut text_runs = texts.iter();
    let mut in_text = false;
    for part in &answer.parts {
        let index = items.len();
        match part {
            OutPart::Text(_) if in_text => continue,
            OutPart::Text(_) => {
                in_text = true;
                let text = text_runs.next().map_or("", String::as_str);
                items.push(Item::Message {
                    id: item_id("msg", index, &answer.id),
                    status: "completed",
                    role: "assistant",
                    content: [OutputText::new(text)],
                });
                continue;
            }
            OutPart::Thinking { text, signature } => items.push(Item::Reasoning {
                id: item_id("rs", index, &answer.id),
                summary: if text.is_empty() {
                    Vec::new()
                } else {
                    vec![SummaryText::new(text)]
                },
                encrypted_content: signature.as_deref().map(signed),
            }),
            OutPart::RedactedThinking(data) => items.push(Item::Reasoning {
                id: item_id("rs", index, &answer.id),
                summary: Vec::new(),
                encrypted_content: Some(redacted(data)),
            }),
            OutPart::ToolCall {
                id,
                name,
                arguments,
            } => items.push(Item::FunctionCall {
                id: item_id("fc", index, &answer.id),
                call_id: id,
                name,
                arguments,
                status: "completed",
            }),
        }
        in_text = false;
    }
    let (status, incomplete_details) = status(answer.finish);
    let id = response_id(&answer.id);
    let response = Response {
        id: &id,
        object: "response",
        created_at: created,
        status,
        error: None,
        incomplete_details,
        model: &answer.model,
        output: items,
        parallel_tool_calls: true,
        tool_choice: "auto",
        tools: [],
        usage: Some(answer.usage.into()),
    };
    serde_json::to_vec(&response).unwrap_or_default()
}
