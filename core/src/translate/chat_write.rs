//! A [`Conversation`] written as an OpenAI Chat Completions request.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::chat_answer::{OutCall, OutFunction};
use super::ir::{Conversation, Effort, Format, Media, Part, Reasoning, Role, ToolChoice};
use super::refusal::{Dropped, Refusal, drop_field};

const TARGET: &str = "OpenAI Chat Completions";

/// The longest end-user id OpenAI takes; a longer one (Claude Code's) is left out.
pub const MAX_USER: usize = 64;

/// The most stop sequences OpenAI takes.
pub const MAX_STOP: usize = 4;

/// The reasoning effort an Anthropic thinking budget becomes: the inverse of
/// `messages_write::effort_budget` (1024 low, 4096 medium, 16384 high).
pub fn budget_effort(budget: u64) -> Effort {
    match budget {
        0..4096 => Effort::Low,
        4096..16384 => Effort::Medium,
        _ => Effort::High,
    }
}

#[derive(Serialize)]
struct Request<'c> {
    model: &'c str,
    messages: Vec<OutMessage<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop: &'c [Cow<'c, str>],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutChoice<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'c str>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
enum OutMessage<'c> {
    System {
        content: &'c str,
    },
    User {
        content: UserContent<'c>,
    },
    Assistant {
        content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<OutCall<'c>>,
    },
    Tool {
        tool_call_id: &'c str,
        content: String,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum UserContent<'c> {
    Text(&'c str),
    Parts(Vec<OutPart<'c>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutPart<'c> {
    Text { text: &'c str },
    ImageUrl { image_url: ImageUrl<'c> },
    File { file: File<'c> },
}

#[derive(Serialize)]
struct ImageUrl<'c> {
    url: Cow<'c, str>,
}

#[derive(Serialize)]
struct File<'c> {
    file_data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'c str>,
}

#[derive(Serialize)]
struct OutTool<'c> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionDef<'c>,
}

#[derive(Serialize)]
struct FunctionDef<'c> {
    name: &'c str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'c str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'c RawValue>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    strict: bool,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutChoice<'c> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: Named<'c>,
    },
}

#[derive(Serialize)]
struct Named<'c> {
    name: &'c str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseFormat<'c> {
    JsonObject,
    JsonSchema { json_schema: SchemaFormat<'c> },
}

#[derive(Serialize)]
struct SchemaFormat<'c> {
    name: &'c str,
    schema: &'c RawValue,
    strict: bool,
}

fn effort_name(effort: Effort) -> &'static str {
    match effort {
        Effort::Minimal => "minimal",
        Effort::Low => "low",
        Effort::Medium => "medium",
        Effort::High => "high",
    }
}

/// Write `conv` as a Chat Completions request body.
pub(crate) fn request(
    conv: &Conversation<'_>,
    dropped: &mut Vec<Dropped>,
) -> Result<Vec<u8>, Refusal> {
    if conv.stop.len() > MAX_STOP {
        return Err(Refusal::unsupported(
            format!("more than {MAX_STOP} stop sequences"),
            TARGET,
        ));
    }
    let mut messages = Vec::with_capacity(conv.messages.len() + conv.system.len());
    for s in &conv.system {
        messages.push(OutMessage::System { content: s });
    }
    for m in &conv.messages {
        match m.role {
            Role::User => user(&m.parts, &mut messages, dropped)?,
            Role::Assistant => messages.extend(assistant(&m.parts, dropped)),
        }
    }
    let tools: Vec<OutTool<'_>> = conv
        .tools
        .iter()
        .map(|t| OutTool {
            kind: "function",
            function: FunctionDef {
                name: &t.name,
                description: t.description.as_deref(),
                parameters: t.schema.as_deref(),
                strict: t.strict,
            },
        })
        .collect();
    let tool_choice = conv.tool_choice.as_ref().map(|c| match c {
        ToolChoice::Auto => OutChoice::Mode("auto"),
        ToolChoice::None => OutChoice::Mode("none"),
        ToolChoice::Required => OutChoice::Mode("required"),
        ToolChoice::Named(name) => OutChoice::Named {
            kind: "function",
            function: Named { name },
        },
    });
    let reasoning_effort = match conv.reasoning {
        Some(Reasoning::Effort(e)) => Some(effort_name(e)),
        Some(Reasoning::Budget(b)) => Some(effort_name(budget_effort(b))),
        Some(Reasoning::Disabled) | None => None,
    };
    let response_format = conv.format.as_ref().map(|f| match f {
        Format::JsonObject => ResponseFormat::JsonObject,
        Format::JsonSchema {
            name,
            schema,
            strict,
        } => ResponseFormat::JsonSchema {
            json_schema: SchemaFormat {
                name: name.as_deref().unwrap_or("output"),
                schema,
                strict: *strict,
            },
        },
    });
    let user = conv.user.as_deref().filter(|u| {
        let fits = u.len() <= MAX_USER;
        if !fits {
            drop_field(
                dropped,
                "metadata.user_id",
                "longer than OpenAI's 64 characters",
            );
        }
        fits
    });
    let body = Request {
        model: &conv.model,
        parallel_tool_calls: conv.parallel_tool_calls.filter(|_| !tools.is_empty()),
        messages,
        max_completion_tokens: conv.max_tokens,
        temperature: conv.temperature,
        top_p: conv.top_p,
        stop: &conv.stop,
        stream: conv.stream,
        // Always: the client's dialect reports usage in its stream.
        stream_options: conv.stream.then_some(StreamOptions {
            include_usage: true,
        }),
        tools,
        tool_choice,
        response_format,
        reasoning_effort,
        user,
    };
    serde_json::to_vec(&body).map_err(Refusal::malformed)
}

fn data_url(media_type: &str, data: &str) -> String {
    let mut url = String::with_capacity(media_type.len() + data.len() + 13);
    url.push_str("data:");
    url.push_str(media_type);
    url.push_str(";base64,");
    url.push_str(data);
    url
}

fn image_url<'c>(media: &'c Media<'_>) -> ImageUrl<'c> {
    ImageUrl {
        url: match media {
            Media::Url(url) => Cow::Borrowed(url),
            Media::Base64 { media_type, data } => Cow::Owned(data_url(media_type, data)),
        },
    }
}

/// A user turn: its tool results first (each a `tool` message, as OpenAI wants them
/// right after the assistant's calls), then the rest as one user message.
fn user<'c>(
    parts: &'c [Part<'_>],
    messages: &mut Vec<OutMessage<'c>>,
    dropped: &mut Vec<Dropped>,
) -> Result<(), Refusal> {
    let mut rest = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Part::ToolResult {
                id,
                content,
                is_error,
            } => {
                if *is_error {
                    drop_field(
                        dropped,
                        "is_error",
                        "OpenAI tool messages have no error flag",
                    );
                }
                let mut text = String::new();
                for p in content {
                    match p {
                        Part::Text(t) => text.push_str(t),
                        _ => {
                            return Err(Refusal::unsupported(
                                "images and documents in tool results",
                                TARGET,
                            ));
                        }
                    }
                }
                messages.push(OutMessage::Tool {
                    tool_call_id: id,
                    content: text,
                });
            }
            Part::Text(text) => rest.push(OutPart::Text { text }),
            Part::Image(media) => rest.push(OutPart::ImageUrl {
                image_url: image_url(media),
            }),
            Part::Document { media, name } => match media {
                Media::Base64 { media_type, data } => rest.push(OutPart::File {
                    file: File {
                        file_data: data_url(media_type, data),
                        filename: name.as_deref(),
                    },
                }),
                Media::Url(_) => {
                    return Err(Refusal::unsupported("documents by URL", TARGET));
                }
            },
            Part::Thinking { .. } | Part::RedactedThinking(_) | Part::ToolCall { .. } => {
                return Err(Refusal::malformed(
                    "reasoning and tool calls belong to assistant turns",
                ));
            }
        }
    }
    let content = match rest.as_slice() {
        [] => return Ok(()),
        [OutPart::Text { text }] => UserContent::Text(text),
        _ => UserContent::Parts(rest),
    };
    messages.push(OutMessage::User { content });
    Ok(())
}

/// An assistant turn; `None` when nothing of it is left (a turn of reasoning alone,
/// which OpenAI would refuse as an empty message).
fn assistant<'c>(parts: &'c [Part<'_>], dropped: &mut Vec<Dropped>) -> Option<OutMessage<'c>> {
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for part in parts {
        match part {
            Part::Text(t) => text.get_or_insert_with(String::new).push_str(t),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => tool_calls.push(OutCall {
                id,
                kind: "function",
                function: OutFunction { name, arguments },
            }),
            Part::Thinking { .. } | Part::RedactedThinking(_) => drop_field(
                dropped,
                "thinking",
                "OpenAI Chat Completions takes no reasoning back",
            ),
            // Readers never put these in assistant turns.
            Part::Image(_) | Part::Document { .. } | Part::ToolResult { .. } => {}
        }
    }
    if text.is_none() && tool_calls.is_empty() {
        return None;
    }
    Some(OutMessage::Assistant {
        content: text,
        tool_calls,
    })
}
