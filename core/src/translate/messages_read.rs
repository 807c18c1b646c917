//! An Anthropic Messages request read into a [`Conversation`].

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::dialect::ClientHeaders;
use super::ir::{
    Conversation, Effort, Format, Media, Message, Part, Reasoning, Role, Tool, ToolChoice,
};
use super::read::{self, Content, parse};
use super::refusal::{Dropped, Refusal, drop_field};

/// Every field of a Messages request this reader knows; any other is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesRequest<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    messages: Vec<InMessage<'a>>,
    max_tokens: u64,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<RequestMetadata<'a>>,
    #[serde(borrow, default)]
    stop_sequences: Option<Vec<Cow<'a, str>>>,
    #[serde(default)]
    stream: Option<bool>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u64>,
    #[serde(borrow, default)]
    tools: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    tool_choice: Option<InChoice<'a>>,
    #[serde(default)]
    thinking: Option<InThinking>,
    #[serde(default)]
    service_tier: Option<IgnoredAny>,
    #[serde(borrow, default)]
    output_config: Option<OutputConfig<'a>>,
    #[serde(borrow, default)]
    output_format: Option<InFormat<'a>>,
    #[serde(default)]
    context_management: Option<IgnoredAny>,
    #[serde(default)]
    mcp_servers: Option<IgnoredAny>,
    #[serde(default)]
    container: Option<IgnoredAny>,
}

/// Anthropic's request metadata: only `user_id` is carried; other keys (tracking
/// only, never the answer's meaning) are left behind.
#[derive(Deserialize)]
struct RequestMetadata<'a> {
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InMessage<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    content: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InChoice<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InThinking {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    budget_tokens: Option<u64>,
    /// How Claude shows its thinking (`summarized`, `omitted`), as Claude Code asks:
    /// the target's reasoning comes back as its protocol gives it.
    #[serde(rename = "display", default)]
    _display: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputConfig<'a> {
    #[serde(borrow, default)]
    format: Option<InFormat<'a>>,
    #[serde(borrow, default)]
    effort: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    schema: &'a RawValue,
}

/// Read a Messages request bound for `target`.
pub(crate) fn conversation<'a>(
    body: &'a [u8],
    headers: ClientHeaders<'_>,
    target: &'static str,
    dropped: &mut Vec<Dropped>,
) -> Result<Conversation<'a>, Refusal> {
    let text = std::str::from_utf8(body).map_err(Refusal::malformed)?;
    let req: MessagesRequest<'a> = parse(text, "request")?;
    for (present, what) in [
        (req.mcp_servers.is_some(), "mcp_servers"),
        (req.container.is_some(), "container"),
    ] {
        if present {
            return Err(Refusal::unsupported(what, target));
        }
    }
    if headers.anthropic_beta.is_some_and(|b| !b.trim().is_empty()) {
        drop_field(
            dropped,
            "anthropic-beta",
            "Anthropic's beta flags mean nothing to the target",
        );
    }
    if req.service_tier.is_some() {
        drop_field(dropped, "service_tier", "the target has no such setting");
    }
    if req.context_management.is_some() {
        // Context editing only trims what the upstream reads of a long conversation:
        // without it the whole conversation is read, and the answer means the same.
        drop_field(
            dropped,
            "context_management",
            "the target reads the whole conversation",
        );
    }
    let mut conv = Conversation {
        model: req.model,
        max_tokens: Some(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stop: req.stop_sequences.unwrap_or_default(),
        stream: req.stream.unwrap_or(false),
        // The Anthropic stream carries usage, so the translated stream always asks.
        include_usage: true,
        user: req.metadata.and_then(|m| m.user_id),
        ..Conversation::default()
    };
    if conv.top_k.is_some() {
        drop_field(dropped, "top_k", "the target has no such setting");
        conv.top_k = None;
    }
    if let Some(system) = req.system {
        for part in blocks(system, "system", Role::User, target, dropped)? {
            match part {
                Part::Text(t) => conv.system.push(t),
                _ => return Err(Refusal::malformed("system: only text blocks")),
            }
        }
    }
    for (i, raw) in req.tools.unwrap_or_default().into_iter().enumerate() {
        conv.tools.push(tool(raw, i, target, dropped)?);
    }
    if let Some(choice) = req.tool_choice {
        conv.tool_choice = Some(match choice.kind.as_ref() {
            "auto" => ToolChoice::Auto,
            "any" => ToolChoice::Required,
            "none" => ToolChoice::None,
            "tool" => ToolChoice::Named(
                choice
                    .name
                    .ok_or_else(|| Refusal::malformed("tool_choice: missing field `name`"))?,
            ),
            other => {
                return Err(Refusal::malformed(format_args!(
                    "tool_choice: unknown type `{other}`"
                )));
            }
        });
        if choice.disable_parallel_tool_use == Some(true) {
            conv.parallel_tool_calls = Some(false);
        }
    }
    if let Some(thinking) = req.thinking {
        conv.reasoning = Some(match (thinking.kind.as_str(), thinking.budget_tokens) {
            ("enabled", Some(budget)) => Reasoning::Budget(budget),
            ("enabled", None) => {
                return Err(Refusal::malformed(
                    "thinking: missing field `budget_tokens`",
                ));
            }
            ("disabled", _) => Reasoning::Disabled,
            (other, _) => {
                return Err(Refusal::unsupported(
                    format!("thinking of type `{other}`"),
                    target,
                ));
            }
        });
    }
    let mut format = req.output_format;
    if let Some(config) = req.output_config {
        format = config.format.or(format);
        if let Some(effort) = config.effort {
            let level = match effort.as_ref() {
                "low" => Effort::Low,
                "medium" => Effort::Medium,
                "high" | "max" => Effort::High,
                other => {
                    return Err(Refusal::malformed(format_args!(
                        "output_config.effort: unknown level `{other}`"
                    )));
                }
            };
            if conv.reasoning.is_none() {
                conv.reasoning = Some(Reasoning::Effort(level));
            }
        }
    }
    if let Some(f) = format {
        if f.kind != "json_schema" {
            return Err(Refusal::malformed(format_args!(
                "output format: unknown type `{}`",
                f.kind
            )));
        }
        conv.format = Some(Format::JsonSchema {
            name: None,
            schema: Cow::Borrowed(f.schema),
            strict: true,
        });
    }
    for (i, m) in req.messages.into_iter().enumerate() {
        let role = match m.role.as_ref() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(Refusal::malformed(format_args!(
                    "messages[{i}]: unknown role `{other}`"
                )));
            }
        };
        let at = format!("messages[{i}]");
        let parts = blocks(m.content, &at, role, target, dropped)?;
        conv.messages.push(Message { role, parts });
    }
    Ok(conv)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InTool<'a> {
    #[serde(rename = "type", default)]
    _kind: Option<IgnoredAny>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow)]
    input_schema: &'a RawValue,
    #[serde(default)]
    strict: Option<bool>,
    #[serde(default)]
    cache_control: Option<IgnoredAny>,
    /// Claude Code marks most of its tools for loading on demand (tool search): the
    /// target is offered them all up front instead.
    #[serde(default)]
    defer_loading: Option<bool>,
}

fn tool<'a>(
    raw: &'a RawValue,
    i: usize,
    target: &'static str,
    dropped: &mut Vec<Dropped>,
) -> Result<Tool<'a>, Refusal> {
    let at = format!("tools[{i}]");
    let kind = read::type_of(raw, &at)?;
    if !matches!(kind.as_ref(), "" | "custom") {
        return Err(Refusal::unsupported(
            format!("Anthropic's server and client tools (`{kind}`)"),
            target,
        ));
    }
    let t: InTool<'a> = parse(raw.get(), &at)?;
    if t.cache_control.is_some() {
        drop_cache_control(dropped);
    }
    if t.defer_loading == Some(true) {
        drop_field(
            dropped,
            "defer_loading",
            "the target is offered every tool up front",
        );
    }
    Ok(Tool {
        name: t.name,
        description: t.description,
        schema: Some(Cow::Borrowed(t.input_schema)),
        strict: t.strict.unwrap_or(false),
    })
}

fn drop_cache_control(dropped: &mut Vec<Dropped>) {
    drop_field(
        dropped,
        "cache_control",
        "the target caches prompts by itself",
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    text: Cow<'a, str>,
    #[serde(default)]
    cache_control: Option<IgnoredAny>,
    #[serde(default)]
    citations: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaBlock<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    source: InSource<'a>,
    #[serde(borrow, default)]
    title: Option<Cow<'a, str>>,
    #[serde(default)]
    context: Option<IgnoredAny>,
    #[serde(default)]
    citations: Option<IgnoredAny>,
    #[serde(default)]
    cache_control: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InSource<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThinkingBlock<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    thinking: Cow<'a, str>,
    #[serde(borrow)]
    signature: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedactedBlock<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    data: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolUseBlock<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    input: &'a RawValue,
    #[serde(default)]
    cache_control: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolResultBlock<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    cache_control: Option<IgnoredAny>,
}

/// The blocks of `content` (a string or a list), as parts.
fn blocks<'a>(
    content: &'a RawValue,
    at: &str,
    role: Role,
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
        let kind = read::type_of(raw, &at)?;
        let part = match (kind.as_ref(), role) {
            ("text", _) => {
                let b: TextBlock<'a> = parse(raw.get(), &at)?;
                if b.cache_control.is_some() {
                    drop_cache_control(dropped);
                }
                if b.citations.is_some() {
                    drop_field(dropped, "citations", "the target has no citations");
                }
                Part::Text(b.text)
            }
            ("image", Role::User) | ("document", Role::User) => {
                let b: MediaBlock<'a> = parse(raw.get(), &at)?;
                if b.cache_control.is_some() {
                    drop_cache_control(dropped);
                }
                if b.context.is_some() || b.citations.is_some() {
                    drop_field(
                        dropped,
                        "document context and citations",
                        "the target has no such setting",
                    );
                }
                media_part(kind.as_ref(), b, &at, target)?
            }
            ("tool_result", Role::User) => {
                let b: ToolResultBlock<'a> = parse(raw.get(), &at)?;
                if b.cache_control.is_some() {
                    drop_cache_control(dropped);
                }
                let content = match b.content {
                    Some(c) => blocks(c, &at, Role::User, target, dropped)?,
                    None => Vec::new(),
                };
                Part::ToolResult {
                    id: b.tool_use_id,
                    content,
                    is_error: b.is_error.unwrap_or(false),
                }
            }
            ("thinking", Role::Assistant) => {
                let b: ThinkingBlock<'a> = parse(raw.get(), &at)?;
                Part::Thinking {
                    text: b.thinking,
                    signature: Some(b.signature),
                }
            }
            ("redacted_thinking", Role::Assistant) => {
                Part::RedactedThinking(parse::<RedactedBlock<'a>>(raw.get(), &at)?.data)
            }
            ("tool_use", Role::Assistant) => {
                let b: ToolUseBlock<'a> = parse(raw.get(), &at)?;
                if b.cache_control.is_some() {
                    drop_cache_control(dropped);
                }
                Part::ToolCall {
                    id: b.id,
                    name: b.name,
                    arguments: Cow::Borrowed(read::object_text(b.input, format!("{at}.input"))?),
                }
            }
            (other, _) => {
                return Err(Refusal::unsupported(
                    format!(
                        "content blocks of type `{other}` in {} turns",
                        match role {
                            Role::User => "user",
                            Role::Assistant => "assistant",
                        }
                    ),
                    target,
                ));
            }
        };
        parts.push(part);
    }
    Ok(parts)
}

fn media_part<'a>(
    kind: &str,
    b: MediaBlock<'a>,
    at: &str,
    target: &'static str,
) -> Result<Part<'a>, Refusal> {
    let s = b.source;
    let media = match (s.kind.as_ref(), s.media_type, s.data, s.url) {
        ("base64", Some(media_type), Some(data), _) => Media::Base64 { media_type, data },
        ("url", _, _, Some(url)) => Media::Url(url),
        ("text", _, Some(data), _) if kind == "document" => return Ok(Part::Text(data)),
        ("base64" | "url", ..) => {
            return Err(Refusal::malformed(format_args!("{at}.source: incomplete")));
        }
        (other, ..) => {
            return Err(Refusal::unsupported(
                format!("{kind} sources of type `{other}`"),
                target,
            ));
        }
    };
    Ok(match kind {
        "image" => Part::Image(media),
        _ => {
            if let Media::Base64 { media_type, .. } = &media
                && media_type != "application/pdf"
            {
                return Err(Refusal::unsupported(
                    format!("documents of type `{media_type}`"),
                    target,
                ));
            }
            Part::Document {
                media,
                name: b.title,
            }
        }
    })
}
