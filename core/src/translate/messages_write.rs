//! A [`Conversation`] written as an Anthropic Messages request.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::ir::{Conversation, Effort, Format, Media, Part, Reasoning, Role, ToolChoice};
use super::read;
use super::refusal::{Dropped, Refusal, drop_field};

const TARGET: &str = "Anthropic Messages";

/// `max_tokens` when the client set none (Anthropic requires it; OpenAI's default is
/// the model's limit): what every current Claude model can produce.
pub const DEFAULT_MAX_TOKENS: u64 = 8192;

/// The least thinking budget Anthropic accepts.
pub const MIN_THINKING_BUDGET: u64 = 1024;

/// The thinking budget each OpenAI reasoning effort becomes (`minimal`: no thinking).
pub fn effort_budget(effort: Effort) -> Option<u64> {
    match effort {
        Effort::Minimal => None,
        Effort::Low => Some(1024),
        Effort::Medium => Some(4096),
        Effort::High => Some(16384),
    }
}

#[derive(Serialize)]
struct Request<'c> {
    model: &'c str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<TextBlock<'c>>,
    messages: Vec<OutMessage<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'c [Cow<'c, str>],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutChoice<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Thinking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_config: Option<OutputConfig<'c>>,
}

#[derive(Serialize)]
struct TextBlock<'c> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'c str,
}

#[derive(Serialize)]
struct OutMessage<'c> {
    role: &'static str,
    content: Vec<Block<'c>>,
}

/// A content block, in requests and answers.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Block<'c> {
    Text {
        text: &'c str,
    },
    Image {
        source: Source<'c>,
    },
    Document {
        source: Source<'c>,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<&'c str>,
    },
    Thinking {
        thinking: &'c str,
        signature: &'c str,
    },
    RedactedThinking {
        data: &'c str,
    },
    ToolUse {
        id: &'c str,
        name: &'c str,
        input: &'c RawValue,
    },
    ToolResult {
        tool_use_id: &'c str,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        content: Vec<Block<'c>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Source<'c> {
    Base64 { media_type: &'c str, data: &'c str },
    Url { url: &'c str },
}

#[derive(Serialize)]
struct OutTool<'c> {
    name: &'c str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'c str>,
    input_schema: &'c RawValue,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    strict: bool,
}

#[derive(Serialize)]
struct OutChoice<'c> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'c str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Thinking {
    Enabled { budget_tokens: u64 },
    Disabled,
}

#[derive(Serialize)]
struct Metadata<'c> {
    user_id: &'c str,
}

#[derive(Serialize)]
struct OutputConfig<'c> {
    format: OutputFormat<'c>,
}

#[derive(Serialize)]
struct OutputFormat<'c> {
    #[serde(rename = "type")]
    kind: &'static str,
    schema: &'c RawValue,
}

/// The schema of a tool that declares none: any object.
const ANY_OBJECT: &str = r#"{"type":"object","properties":{}}"#;

fn raw(text: &str) -> Result<&RawValue, Refusal> {
    serde_json::from_str(text).map_err(Refusal::malformed)
}

/// Whether the last assistant turn, if it called tools, starts with thinking
/// Anthropic signed (what it sees first, once unsigned thinking and empty text are
/// left out).
fn last_tool_turn_signed(conv: &Conversation<'_>) -> bool {
    let Some(end) = conv
        .messages
        .iter()
        .rposition(|m| m.role == Role::Assistant)
    else {
        return true;
    };
    let start = conv.messages[..end]
        .iter()
        .rposition(|m| m.role != Role::Assistant)
        .map_or(0, |i| i + 1);
    let mut parts = conv.messages[start..=end].iter().flat_map(|m| &m.parts);
    if !parts.clone().any(|p| matches!(p, Part::ToolCall { .. })) {
        return true;
    }
    let first = parts.find(|p| match p {
        Part::Thinking { signature, .. } => signature.is_some(),
        Part::Text(t) => !t.is_empty(),
        _ => true,
    });
    matches!(
        first,
        Some(Part::Thinking { .. } | Part::RedactedThinking(_))
    )
}

/// Write `conv` as an Anthropic Messages request body.
pub(crate) fn request(
    conv: &Conversation<'_>,
    dropped: &mut Vec<Dropped>,
) -> Result<Vec<u8>, Refusal> {
    let any_object = raw(ANY_OBJECT)?;
    let budget = match conv.reasoning {
        Some(Reasoning::Effort(e)) => effort_budget(e),
        Some(Reasoning::Budget(b)) => Some(b.max(MIN_THINKING_BUDGET)),
        Some(Reasoning::Disabled) | None => None,
    };
    let (max_tokens, thinking) = match (budget, conv.max_tokens) {
        (None, max) => (
            max.unwrap_or(DEFAULT_MAX_TOKENS),
            (conv.reasoning == Some(Reasoning::Disabled)).then_some(Thinking::Disabled),
        ),
        (Some(budget), None) => (
            budget + DEFAULT_MAX_TOKENS,
            Some(Thinking::Enabled {
                budget_tokens: budget,
            }),
        ),
        // Both count reasoning within the output limit: keep the client's limit and
        // fit the budget inside it.
        (Some(budget), Some(max)) => {
            let fitted = budget.min(max.saturating_sub(1));
            if fitted < MIN_THINKING_BUDGET {
                return Err(Refusal::unsupported(
                    format!(
                        "reasoning with a token limit under {} (Anthropic's least thinking budget)",
                        MIN_THINKING_BUDGET + 1
                    ),
                    TARGET,
                ));
            }
            (
                max,
                Some(Thinking::Enabled {
                    budget_tokens: fitted,
                }),
            )
        }
    };
    // With thinking on, Anthropic wants the last tool-calling turn to start with its
    // signed thinking; a client that does not keep it (OpenAI's, Gemini CLI) gets
    // the request without thinking rather than Anthropic's refusal.
    let thinking = match thinking {
        Some(Thinking::Enabled { .. }) if !last_tool_turn_signed(conv) => {
            drop_field(
                dropped,
                "reasoning",
                "Anthropic thinks only when the last tool-calling turn brings its signed thinking back",
            );
            None
        }
        t => t,
    };
    let thinking_on = matches!(thinking, Some(Thinking::Enabled { .. }));
    let mut temperature = conv.temperature;
    if let Some(t) = temperature.filter(|t| *t > 1.0) {
        drop_field(
            dropped,
            "temperature",
            "above Anthropic's maximum of 1: sent as 1",
        );
        temperature = Some(t.min(1.0));
    }
    let (mut top_p, mut top_k) = (conv.top_p, conv.top_k);
    if thinking_on {
        // Anthropic refuses sampling settings other than the defaults with thinking.
        let why = "Anthropic allows no sampling settings with thinking";
        if temperature.take().is_some_and(|t| t != 1.0) {
            drop_field(dropped, "temperature", why);
        }
        if top_k.take().is_some() {
            drop_field(dropped, "top_k", why);
        }
        if top_p.is_some_and(|p| p < 0.95) {
            top_p = None;
            drop_field(dropped, "top_p", why);
        }
    }
    let mut tools = Vec::with_capacity(conv.tools.len());
    for t in &conv.tools {
        tools.push(OutTool {
            name: &t.name,
            description: t.description.as_deref(),
            input_schema: t.schema.as_deref().unwrap_or(any_object),
            strict: t.strict,
        });
    }
    let no_parallel = conv.parallel_tool_calls == Some(false);
    let tool_choice = match (&conv.tool_choice, no_parallel) {
        (None, false) => None,
        (None, true) if tools.is_empty() => None,
        (None, true) | (Some(ToolChoice::Auto), _) => Some(("auto", None)),
        (Some(ToolChoice::None), _) => Some(("none", None)),
        (Some(ToolChoice::Required), _) => Some(("any", None)),
        (Some(ToolChoice::Named(n)), _) => Some(("tool", Some(n.as_ref()))),
    }
    .map(|(kind, name)| OutChoice {
        kind,
        name,
        disable_parallel_tool_use: no_parallel && kind != "none",
    });
    if thinking_on
        && tool_choice
            .as_ref()
            .is_some_and(|c| c.kind == "any" || c.kind == "tool")
    {
        return Err(Refusal::unsupported(
            "a forced tool choice with reasoning",
            TARGET,
        ));
    }
    let output_config = match &conv.format {
        None => None,
        Some(Format::JsonObject) => {
            return Err(Refusal::unsupported(
                "JSON mode without a schema (response_format json_object; use json_schema)",
                TARGET,
            ));
        }
        Some(Format::JsonSchema { schema, .. }) => Some(OutputConfig {
            format: OutputFormat {
                kind: "json_schema",
                schema,
            },
        }),
    };
    let messages: Vec<OutMessage<'_>> = conv
        .turns(|p| block(p, dropped))?
        .into_iter()
        .map(|(role, content)| OutMessage {
            role: match role {
                Role::User => "user",
                Role::Assistant => "assistant",
            },
            content,
        })
        .collect();
    let body = Request {
        model: &conv.model,
        max_tokens,
        system: conv
            .system
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| TextBlock {
                kind: "text",
                text: s,
            })
            .collect(),
        messages,
        temperature,
        top_p,
        top_k,
        stop_sequences: &conv.stop,
        stream: conv.stream,
        tools,
        tool_choice,
        thinking,
        metadata: conv.user.as_deref().map(|user_id| Metadata { user_id }),
        output_config,
    };
    serde_json::to_vec(&body).map_err(Refusal::malformed)
}

fn source<'c>(media: &'c Media<'_>) -> Source<'c> {
    match media {
        Media::Url(url) => Source::Url { url },
        Media::Base64 { media_type, data } => Source::Base64 { media_type, data },
    }
}

fn block<'c>(part: &'c Part<'_>, dropped: &mut Vec<Dropped>) -> Result<Option<Block<'c>>, Refusal> {
    Ok(Some(match part {
        Part::Text(t) if t.is_empty() => return Ok(None),
        Part::Text(text) => Block::Text { text },
        Part::Image(media) => Block::Image {
            source: source(media),
        },
        Part::Document { media, name } => Block::Document {
            source: source(media),
            title: name.as_deref(),
        },
        Part::Thinking {
            text,
            signature: Some(signature),
        } => Block::Thinking {
            thinking: text,
            signature,
        },
        Part::Thinking {
            signature: None, ..
        } => {
            drop_field(
                dropped,
                "reasoning_content",
                "Anthropic takes back only signed thinking (thinking_blocks)",
            );
            return Ok(None);
        }
        Part::RedactedThinking(data) => Block::RedactedThinking { data },
        Part::ToolCall {
            id,
            name,
            arguments,
        } => {
            let input = read::arguments_object(id, arguments)?;
            Block::ToolUse { id, name, input }
        }
        Part::ToolResult {
            id,
            content,
            is_error,
        } => {
            let mut blocks = Vec::with_capacity(content.len());
            for p in content {
                match p {
                    Part::Text(_) | Part::Image(_) | Part::Document { .. } => {
                        blocks.extend(block(p, dropped)?);
                    }
                    _ => {
                        return Err(Refusal::malformed(
                            "a tool result holds only text and images",
                        ));
                    }
                }
            }
            Block::ToolResult {
                tool_use_id: id,
                content: blocks,
                is_error: *is_error,
            }
        }
    }))
}
