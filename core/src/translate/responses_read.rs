//! An OpenAI Responses request read into a [`Conversation`].

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::ir::{Conversation, Format, Media, Part, Role, Tool, ToolChoice};
use super::read::{self, Content, RefusalPart, parse};
use super::refusal::{Dropped, Refusal, drop_field};

/// The prefix of a reasoning item's `encrypted_content` that carries an Anthropic
/// thinking signature (written by the Responses writers, read back here).
pub const THINKING_PREFIX: &str = "anthropic.thinking:";
/// The prefix of one that carries Anthropic's redacted thinking.
pub const REDACTED_PREFIX: &str = "anthropic.redacted:";

/// Every field of a Responses request this reader knows; any other is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponsesRequest<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<Cow<'a, str>>,
    max_output_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    #[serde(borrow, default)]
    tools: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    tool_choice: Option<&'a RawValue>,
    parallel_tool_calls: Option<bool>,
    #[serde(borrow, default)]
    reasoning: Option<ReasoningConfig<'a>>,
    #[serde(borrow, default)]
    text: Option<TextConfig<'a>>,
    stream: Option<bool>,
    #[serde(default)]
    #[serde(rename = "stream_options")]
    _stream_options: Option<IgnoredAny>,
    store: Option<bool>,
    #[serde(borrow, default)]
    include: Option<Vec<Cow<'a, str>>>,
    #[serde(default)]
    metadata: Option<IgnoredAny>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    safety_identifier: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_cache_key: Option<IgnoredAny>,
    #[serde(default)]
    service_tier: Option<IgnoredAny>,
    #[serde(borrow, default)]
    truncation: Option<Cow<'a, str>>,
    #[serde(default)]
    previous_response_id: Option<IgnoredAny>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    conversation: Option<IgnoredAny>,
    #[serde(default)]
    max_tool_calls: Option<IgnoredAny>,
    #[serde(default)]
    top_logprobs: Option<u64>,
    #[serde(default)]
    prompt: Option<IgnoredAny>,
    /// Codex's labels of the call (session, turn, installation): for OpenAI's own
    /// records, nothing the target reads.
    #[serde(default)]
    client_metadata: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasoningConfig<'a> {
    #[serde(borrow, default)]
    effort: Option<Cow<'a, str>>,
    #[serde(default)]
    #[serde(rename = "summary")]
    _summary: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "generate_summary")]
    _generate_summary: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextConfig<'a> {
    #[serde(borrow, default)]
    format: Option<TextFormat<'a>>,
    #[serde(default)]
    verbosity: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
    #[serde(default)]
    #[serde(rename = "description")]
    _description: Option<IgnoredAny>,
}

/// Read a Responses request bound for `target`.
pub(crate) fn conversation<'a>(
    body: &'a [u8],
    target: &'static str,
    dropped: &mut Vec<Dropped>,
) -> Result<Conversation<'a>, Refusal> {
    let text = std::str::from_utf8(body).map_err(Refusal::malformed)?;
    let req: ResponsesRequest<'a> = parse(text, "request")?;
    for (present, what) in [
        (
            req.previous_response_id.is_some(),
            "previous_response_id (no stored responses)",
        ),
        (req.background == Some(true), "background responses"),
        (
            req.conversation.is_some(),
            "conversation (no stored conversations)",
        ),
        (req.max_tool_calls.is_some(), "max_tool_calls"),
        (req.top_logprobs.is_some_and(|n| n > 0), "top_logprobs"),
        (req.prompt.is_some(), "prompt templates"),
    ] {
        if present {
            return Err(Refusal::unsupported(what, target));
        }
    }
    let unavailable = "the target has no such setting";
    for (present, field) in [
        (req.store == Some(true), "store"),
        (req.metadata.is_some(), "metadata"),
        (req.prompt_cache_key.is_some(), "prompt_cache_key"),
        (req.client_metadata.is_some(), "client_metadata"),
        (req.service_tier.is_some(), "service_tier"),
        (req.truncation.as_deref() == Some("auto"), "truncation"),
        (
            req.text.as_ref().is_some_and(|t| t.verbosity.is_some()),
            "text.verbosity",
        ),
    ] {
        if present {
            drop_field(dropped, field, unavailable);
        }
    }
    for item in req.include.unwrap_or_default() {
        match &*item {
            "reasoning.encrypted_content" => {}
            // Log probabilities are part of the answer asked for.
            "message.output_text.logprobs" => {
                return Err(Refusal::unsupported(format!("include `{item}`"), target));
            }
            // The rest ask for what built-in tools and stored inputs return, which a
            // translated call never has: nothing of the answer is lost.
            _ => drop_field(dropped, "include", "the target returns no such items"),
        }
    }
    let mut conv = Conversation {
        model: req.model,
        max_tokens: req.max_output_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stream: req.stream.unwrap_or(false),
        include_usage: true,
        parallel_tool_calls: req.parallel_tool_calls,
        user: req.user.or(req.safety_identifier),
        ..Conversation::default()
    };
    if let Some(instructions) = req.instructions {
        conv.system.push(instructions);
    }
    for (i, raw) in req.tools.unwrap_or_default().into_iter().enumerate() {
        if let Some(tool) = tool(raw, i, target, dropped)? {
            conv.tools.push(tool);
        }
    }
    if let Some(choice) = req.tool_choice {
        conv.tool_choice = Some(tool_choice(choice, target)?);
    }
    if let Some(effort) = req.reasoning.and_then(|r| r.effort) {
        conv.reasoning = Some(read::effort(&effort, "reasoning.effort")?);
    }
    if let Some(format) = req.text.and_then(|t| t.format) {
        conv.format = match format.kind.as_ref() {
            "text" => None,
            "json_object" => Some(Format::JsonObject),
            "json_schema" => Some(Format::JsonSchema {
                name: format.name,
                schema: format
                    .schema
                    .map(Cow::Borrowed)
                    .ok_or_else(|| Refusal::malformed("text.format: missing field `schema`"))?,
                strict: format.strict.unwrap_or(false),
            }),
            other => {
                return Err(Refusal::malformed(format_args!(
                    "text.format: unknown type `{other}`"
                )));
            }
        };
    }
    match read::content(req.input, "input")? {
        Content::Text(t) => conv.push(Role::User, vec![Part::Text(t)]),
        Content::Absent => {}
        Content::Parts(items) => {
            let mut leading = true;
            for (i, raw) in items.into_iter().enumerate() {
                item(raw, i, target, &mut leading, &mut conv, dropped)?;
            }
        }
    }
    Ok(conv)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionTool<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
}

/// A function tool; `None` for an offer the target cannot take but the model can do
/// without (Codex offers OpenAI's web search and its sub-agents' namespace on every
/// call): left out and said so. Any other built-in tool is refused.
fn tool<'a>(
    raw: &'a RawValue,
    i: usize,
    target: &'static str,
    dropped: &mut Vec<Dropped>,
) -> Result<Option<Tool<'a>>, Refusal> {
    let at = format!("tools[{i}]");
    let kind = read::type_of(raw, &at)?;
    match kind.as_ref() {
        "function" => {}
        "web_search" | "web_search_preview" => {
            drop_field(
                dropped,
                "web_search",
                "the target has no built-in web search",
            );
            return Ok(None);
        }
        "namespace" => {
            drop_field(dropped, "namespace", "the target takes no namespaced tools");
            return Ok(None);
        }
        _ => {
            return Err(Refusal::unsupported(
                format!("tools of type `{kind}`"),
                target,
            ));
        }
    }
    let t: FunctionTool<'a> = parse(raw.get(), &at)?;
    Ok(Some(Tool {
        name: t.name,
        description: t.description,
        schema: t
            .parameters
            .filter(|p| p.get() != "null")
            .map(Cow::Borrowed),
        strict: t.strict.unwrap_or(false),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedChoice<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

fn tool_choice<'a>(raw: &'a RawValue, target: &'static str) -> Result<ToolChoice<'a>, Refusal> {
    read::tool_choice(raw, target, |raw| {
        Ok(parse::<NamedChoice<'a>>(raw.get(), "tool_choice")?.name)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageItem<'a> {
    #[serde(rename = "type", default)]
    _kind: Option<IgnoredAny>,
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    content: &'a RawValue,
    #[serde(default)]
    #[serde(rename = "id")]
    _id: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "status")]
    _status: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallItem<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    call_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Cow<'a, str>,
    #[serde(default)]
    #[serde(rename = "id")]
    _id: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "status")]
    _status: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputItem<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    call_id: Cow<'a, str>,
    #[serde(borrow)]
    output: &'a RawValue,
    #[serde(default)]
    #[serde(rename = "id")]
    _id: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "status")]
    _status: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasoningItem<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(default)]
    #[serde(rename = "id")]
    _id: Option<IgnoredAny>,
    #[serde(borrow, default)]
    summary: Vec<SummaryPart<'a>>,
    #[serde(borrow, default)]
    content: Option<Vec<SummaryPart<'a>>>,
    #[serde(borrow, default)]
    encrypted_content: Option<Cow<'a, str>>,
    #[serde(default)]
    #[serde(rename = "status")]
    _status: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryPart<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

fn item<'a>(
    raw: &'a RawValue,
    i: usize,
    target: &'static str,
    leading: &mut bool,
    conv: &mut Conversation<'a>,
    dropped: &mut Vec<Dropped>,
) -> Result<(), Refusal> {
    let at = format!("input[{i}]");
    let kind = read::type_of(raw, &at)?;
    match kind.as_ref() {
        "message" | "" => {
            let m: MessageItem<'a> = parse(raw.get(), &at)?;
            let parts = parts(m.content, &at, target, dropped)?;
            match m.role.as_ref() {
                "system" | "developer" => read::system(conv, parts, *leading, &at, target)?,
                "user" => {
                    *leading = false;
                    conv.push(Role::User, parts);
                }
                "assistant" => {
                    *leading = false;
                    conv.push(Role::Assistant, parts);
                }
                other => {
                    return Err(Refusal::malformed(format_args!(
                        "{at}: unknown role `{other}`"
                    )));
                }
            }
        }
        "function_call" => {
            *leading = false;
            let c: CallItem<'a> = parse(raw.get(), &at)?;
            conv.push(
                Role::Assistant,
                vec![Part::ToolCall {
                    id: c.call_id,
                    name: c.name,
                    arguments: c.arguments,
                }],
            );
        }
        "function_call_output" => {
            *leading = false;
            let o: OutputItem<'a> = parse(raw.get(), &at)?;
            let content = parts(o.output, &at, target, dropped)?;
            conv.push(
                Role::User,
                vec![Part::ToolResult {
                    id: o.call_id,
                    content,
                    is_error: false,
                }],
            );
        }
        "reasoning" => {
            *leading = false;
            let r: ReasoningItem<'a> = parse(raw.get(), &at)?;
            let encrypted = r.encrypted_content.as_deref().unwrap_or("");
            let part = if let Some(signature) = encrypted.strip_prefix(THINKING_PREFIX) {
                let texts = r.content.unwrap_or(r.summary);
                let text = match texts.len() {
                    1 => texts.into_iter().next().map(|p| p.text).unwrap_or_default(),
                    _ => Cow::Owned(texts.iter().map(|p| p.text.as_ref()).collect()),
                };
                Part::Thinking {
                    text,
                    signature: Some(Cow::Owned(signature.to_owned())),
                }
            } else if let Some(data) = encrypted.strip_prefix(REDACTED_PREFIX) {
                Part::RedactedThinking(Cow::Owned(data.to_owned()))
            } else {
                drop_field(
                    dropped,
                    "reasoning items",
                    "OpenAI's own reasoning cannot go to another provider",
                );
                return Ok(());
            };
            conv.push(Role::Assistant, vec![part]);
        }
        other => {
            return Err(Refusal::unsupported(
                format!("input items of type `{other}`"),
                target,
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextPart<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    text: Cow<'a, str>,
    #[serde(default)]
    #[serde(rename = "annotations")]
    _annotations: Option<IgnoredAny>,
    #[serde(default)]
    #[serde(rename = "logprobs")]
    _logprobs: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagePart<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow, default)]
    image_url: Option<Cow<'a, str>>,
    #[serde(default)]
    file_id: Option<IgnoredAny>,
    #[serde(borrow, default)]
    detail: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePart<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow, default)]
    file_data: Option<Cow<'a, str>>,
    #[serde(default)]
    file_id: Option<IgnoredAny>,
    #[serde(default)]
    file_url: Option<IgnoredAny>,
    #[serde(borrow, default)]
    filename: Option<Cow<'a, str>>,
}

/// The parts of a message's content or a tool output (a string or a list).
fn parts<'a>(
    content: &'a RawValue,
    at: &str,
    target: &'static str,
    dropped: &mut Vec<Dropped>,
) -> Result<Vec<Part<'a>>, Refusal> {
    let list = match read::content(Some(content), at)? {
        Content::Text(t) => return Ok(vec![Part::Text(t)]),
        Content::Absent => return Ok(Vec::new()),
        Content::Parts(list) => list,
    };
    let mut parts = Vec::with_capacity(list.len());
    for (j, raw) in list.into_iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        let part = match read::type_of(raw, &at)?.as_ref() {
            "input_text" | "output_text" => {
                let p: TextPart<'a> = parse(raw.get(), &at)?;
                Part::Text(p.text)
            }
            "refusal" => Part::Text(parse::<RefusalPart<'a>>(raw.get(), &at)?.refusal),
            "input_image" => {
                let p: ImagePart<'a> = parse(raw.get(), &at)?;
                if p.detail.is_some_and(|d| d != "auto") {
                    drop_field(
                        dropped,
                        "input_image.detail",
                        "the target picks image resolution itself",
                    );
                }
                match (p.image_url, p.file_id) {
                    (Some(url), _) => Part::Image(Media::from_url(url)),
                    _ => return Err(Refusal::unsupported("images by file_id", target)),
                }
            }
            "input_file" => {
                let p: FilePart<'a> = parse(raw.get(), &at)?;
                let (Some(data), None, None) = (p.file_data, p.file_id, p.file_url) else {
                    return Err(Refusal::unsupported("files by file_id or file_url", target));
                };
                read::pdf(data, p.filename, target)?
            }
            other => {
                return Err(Refusal::unsupported(
                    format!("content parts of type `{other}`"),
                    target,
                ));
            }
        };
        parts.push(part);
    }
    Ok(parts)
}
