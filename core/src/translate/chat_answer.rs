//! Whole Chat Completions answers: read into an [`Answer`], written from one; the
//! usage and finish-reason vocabulary the stream shares.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::ir::{Answer, Finish, OutPart, Usage};

#[derive(Deserialize)]
struct InAnswer<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    choices: Vec<InChoice<'a>>,
    #[serde(default)]
    usage: Option<InUsage>,
}

#[derive(Deserialize)]
struct InChoice<'a> {
    #[serde(borrow)]
    message: InMessage<'a>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct InMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "reasoning")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking_blocks: Option<Vec<ThinkingBlock<'a>>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<InCall<'a>>>,
}

/// The convention OpenAI-compatible gateways use for Anthropic's thinking blocks.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ThinkingBlock<'a> {
    Thinking {
        #[serde(borrow, default)]
        thinking: Cow<'a, str>,
        #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
        signature: Option<Cow<'a, str>>,
    },
    RedactedThinking {
        #[serde(borrow)]
        data: Cow<'a, str>,
    },
}

#[derive(Deserialize)]
struct InCall<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    function: InFunction<'a>,
}

#[derive(Deserialize)]
struct InFunction<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Cow<'a, str>,
}

/// OpenAI's usage object, as read.
#[derive(Deserialize, Default, Clone, Copy)]
pub(crate) struct InUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<InUsage> for Usage {
    fn from(u: InUsage) -> Self {
        let read = u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
            .min(u.prompt_tokens);
        Usage {
            input: u.prompt_tokens,
            output: u.completion_tokens,
            cache_read: read,
            cache_write: u
                .cache_creation_input_tokens
                .unwrap_or(0)
                .min(u.prompt_tokens - read),
            reasoning: u.completion_tokens_details.and_then(|d| d.reasoning_tokens),
        }
    }
}

pub(crate) fn finish_of(reason: &str) -> Finish {
    match reason {
        "length" => Finish::Length,
        "tool_calls" | "function_call" => Finish::ToolUse,
        "content_filter" => Finish::Refusal,
        _ => Finish::Stop,
    }
}

pub(crate) fn finish_name(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop | Finish::StopSequence => "stop",
        Finish::Length => "length",
        Finish::ToolUse => "tool_calls",
        Finish::Refusal => "content_filter",
    }
}

/// Read a whole Chat Completions answer (its first choice).
pub(crate) fn read(body: &[u8]) -> Result<Answer<'_>, serde_json::Error> {
    let a: InAnswer<'_> = serde_json::from_slice(body)?;
    let mut answer = Answer {
        id: a.id,
        model: a.model,
        usage: a.usage.map(Usage::from).unwrap_or_default(),
        ..Answer::default()
    };
    let Some(choice) = a.choices.into_iter().next() else {
        return Ok(answer);
    };
    let m = choice.message;
    match m.thinking_blocks {
        Some(blocks) => answer.parts.extend(blocks.into_iter().map(|b| match b {
            ThinkingBlock::Thinking {
                thinking,
                signature,
            } => OutPart::Thinking {
                text: thinking,
                signature,
            },
            ThinkingBlock::RedactedThinking { data } => OutPart::RedactedThinking(data),
        })),
        None => {
            if let Some(text) = m.reasoning_content.filter(|t| !t.is_empty()) {
                answer.parts.push(OutPart::Thinking {
                    text,
                    signature: None,
                });
            }
        }
    }
    if let Some(text) = m.content.filter(|t| !t.is_empty()) {
        answer.parts.push(OutPart::Text(text));
    }
    let refused = m.refusal.is_some();
    if let Some(text) = m.refusal {
        answer.parts.push(OutPart::Text(text));
    }
    for call in m.tool_calls.unwrap_or_default() {
        answer.parts.push(OutPart::ToolCall {
            id: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
        });
    }
    answer.finish = match choice.finish_reason.as_deref() {
        _ if refused => Finish::Refusal,
        Some(reason) => finish_of(reason),
        None => Finish::Stop,
    };
    Ok(answer)
}

/// OpenAI's usage object, as written.
#[derive(Serialize, Debug)]
pub(crate) struct OutUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: OutPromptDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<OutCompletionDetails>,
    /// Cache writes have no place in OpenAI's usage; OpenAI-compatible gateways put
    /// Anthropic's here.
    #[serde(skip_serializing_if = "is_zero")]
    cache_creation_input_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize, Debug)]
struct OutPromptDetails {
    cached_tokens: u64,
}

#[derive(Serialize, Debug)]
struct OutCompletionDetails {
    reasoning_tokens: u64,
}

impl From<Usage> for OutUsage {
    fn from(u: Usage) -> Self {
        OutUsage {
            prompt_tokens: u.input,
            completion_tokens: u.output,
            total_tokens: u.input.saturating_add(u.output),
            prompt_tokens_details: OutPromptDetails {
                cached_tokens: u.cache_read,
            },
            completion_tokens_details: u
                .reasoning
                .map(|reasoning_tokens| OutCompletionDetails { reasoning_tokens }),
            cache_creation_input_tokens: u.cache_write,
        }
    }
}

#[derive(Serialize)]
struct OutAnswer<'c> {
    id: &'c str,
    object: &'static str,
    created: u64,
    model: &'c str,
    choices: [OutChoice<'c>; 1],
    usage: OutUsage,
}

#[derive(Serialize)]
struct OutChoice<'c> {
    index: u32,
    message: OutMessage<'c>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct OutMessage<'c> {
    role: &'static str,
    content: Option<String>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    thinking_blocks: Vec<ThinkingBlock<'c>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutCall<'c>>,
}

#[derive(Serialize)]
pub(crate) struct OutCall<'c> {
    pub(crate) id: &'c str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) function: OutFunction<'c>,
}

#[derive(Serialize)]
pub(crate) struct OutFunction<'c> {
    pub(crate) name: &'c str,
    pub(crate) arguments: &'c str,
}

/// Write `answer` as a Chat Completions answer created at `created` (Unix seconds).
/// Reasoning goes in `reasoning_content` (all of it) and `thinking_blocks` (each
/// block with its signature, so a client can send it back).
pub(crate) fn write(answer: &Answer<'_>, created: u64) -> Vec<u8> {
    let mut content: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for part in &answer.parts {
        match part {
            OutPart::Text(t) => content.get_or_insert_with(String::new).push_str(t),
            OutPart::Thinking { text, signature } => {
                reasoning.get_or_insert_with(String::new).push_str(text);
                // Only signed thinking can be sent back; the rest is reasoning text.
                if let Some(signature) = signature {
                    blocks.push(ThinkingBlock::Thinking {
                        thinking: Cow::Borrowed(text),
                        signature: Some(Cow::Borrowed(signature)),
                    });
                }
            }
            OutPart::RedactedThinking(data) => blocks.push(ThinkingBlock::RedactedThinking {
                data: Cow::Borrowed(data),
            }),
            OutPart::ToolCall {
                id,
                name,
                arguments,
            } => tool_calls.push(OutCall {
                id,
                kind: "function",
                function: OutFunction { name, arguments },
            }),
        }
    }
    let out = OutAnswer {
        id: &answer.id,
        object: "chat.completion",
        created,
        model: &answer.model,
        choices: [OutChoice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content,
                refusal: None,
                reasoning_content: reasoning,
                thinking_blocks: blocks,
                tool_calls,
            },
            logprobs: None,
            finish_reason: finish_name(answer.finish),
        }],
        usage: answer.usage.into(),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}
