//! An OpenAI Chat Completions request read into a [`Conversation`].

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::chat_answer::ThinkingBlock;
use super::ir::{Conversation, Format, Media, Part, Role, Tool, ToolChoice};
use super::read::{self, Content, RefusalPart, parse};
use super::refusal::{Dropped, Refusal, drop_field};

/// Every field of a Chat Completions request this reader knows; any other is refused
/// (`deny_unknown_fields`): a field we do not know might change the answer's meaning.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatRequest<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    #[serde(borrow)]
    stop: Option<&'a RawValue>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(borrow)]
    tools: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    tool_choice: Option<&'a RawValue>,
    parallel_tool_calls: Option<bool>,
    #[serde(borrow)]
    response_format: Option<&'a RawValue>,
    #[serde(borrow)]
    reasoning_effort: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    safety_identifier: Option<Cow<'a, str>>,
    n: Option<u64>,
    logprobs: Option<bool>,
    top_logprobs: Option<u64>,
    #[serde(borrow)]
    logit_bias: Option<&'a RawValue>,
    seed: Option<IgnoredAny>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    store: Option<IgnoredAny>,
    metadata: Option<IgnoredAny>,
    service_tier: Option<IgnoredAny>,
    prompt_cache_key: Option<IgnoredAny>,
    verbosity: Option<IgnoredAny>,
    prediction: Option<IgnoredAny>,
    #[serde(borrow)]
    modalities: Option<Vec<Cow<'a, str>>>,
    audio: Option<IgnoredAny>,
    web_search_options: Option<IgnoredAny>,
    functions: Option<IgnoredAny>,
    function_call: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
    #[serde(default, rename = "include_obfuscation")]
    _include_obfuscation: Option<IgnoredAny>,
}

/// Read a Chat Completions request bound for `target`.
pub(crate) fn conversation<'a>(
    body: &'a [u8],
    target: &'static str,
    dropped: &mut Vec<Dropped>,
) -> Result<Conversation<'a>, Refusal> {
    let text = std::str::from_utf8(body).map_err(Refusal::malformed)?;
    let req: ChatRequest<'a> = parse(text, "request")?;
    refuse_unsupported(&req, target)?;
    drop_hints(&req, dropped);
    let mut conv = Conversation {
        model: req.model,
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
        parallel_tool_calls: req.parallel_tool_calls,
        user: req.user.or(req.safety_identifier),
        ..Conversation::default()
    };
    if let Some(stop) = req.stop {
        conv.stop = match stop.get().as_bytes().first() {
            Some(b'"') => vec![parse(stop.get(), "stop")?],
            Some(b'n') => Vec::new(),
            _ => parse(stop.get(), "stop")?,
        };
    }
    for (i, raw) in req.tools.unwrap_or_default().into_iter().enumerate() {
        conv.tools.push(tool(raw, i, target)?);
    }
    if let Some(choice) = req.tool_choice {
        conv.tool_choice = Some(tool_choice(choice, target)?);
    }
    if let Some(format) = req.response_format {
        conv.format = response_format(format)?;
    }
    if let Some(effort) = req.reasoning_effort {
        conv.reasoning = Some(read::effort(&effort, "reasoning_effort")?);
    }
    let mut leading = true;
    for (i, raw) in req.messages.into_iter().enumerate() {
        message(raw, i, target, &mut leading, &mut conv, dropped)?;
    }
    Ok(conv)
}

fn refuse_unsupported(req: &ChatRequest<'_>, target: &'static str) -> Result<(), Refusal> {
    let refuse = |what: &'static str| Err(Refusal::unsupported(what, target));
    if req.n.is_some_and(|n| n != 1) {
        return refuse("n other than 1 (several choices)");
    }
    if req.logprobs == Some(true) || req.top_logprobs.is_some_and(|n| n > 0) {
        return refuse("logprobs");
    }
    if req
        .logit_bias
        .is_some_and(|b| !matches!(b.get(), "{}" | "null"))
    {
        return refuse("logit_bias");
    }
    if req.audio.is_some()
        || req
            .modalities
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m != "text"))
    {
        return refuse("audio output");
    }
    if req.web_search_options.is_some() {
        return refuse("web_search_options");
    }
    if req.functions.is_some() || req.function_call.is_some() {
        return refuse("functions and function_call (use tools)");
    }
    Ok(())
}

/// Settings that tune how the model samples or how the provider stores the call,
/// without changing what is asked: left out, and said so.
fn drop_hints(req: &ChatRequest<'_>, dropped: &mut Vec<Dropped>) {
    let unavailable = "the target has no such setting";
    if req.seed.is_some() {
        drop_field(dropped, "seed", unavailable);
    }
    if req.presence_penalty.is_some_and(|p| p != 0.0) {
        drop_field(dropped, "presence_penalty", unavailable);
    }
    if req.frequency_penalty.is_some_and(|p| p != 0.0) {
        drop_field(dropped, "frequency_penalty", unavailable);
    }
    for (present, field) in [
        (req.store.is_some(), "store"),
        (req.metadata.is_some(), "metadata"),
        (req.service_tier.is_some(), "service_tier"),
        (req.prompt_cache_key.is_some(), "prompt_cache_key"),
        (req.verbosity.is_some(), "verbosity"),
        (req.prediction.is_some(), "prediction"),
    ] {
        if present {
            drop_field(dropped, field, unavailable);
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatTool<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    function: Function<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Function<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
}

fn tool<'a>(raw: &'a RawValue, i: usize, target: &'static str) -> Result<Tool<'a>, Refusal> {
    let at = format_args!("tools[{i}]").to_string();
    let kind = read::type_of(raw, &at)?;
    if kind != "function" {
        return Err(Refusal::unsupported(
            format!("tools of type `{kind}`"),
            target,
        ));
    }
    let tool: ChatTool<'a> = parse(raw.get(), &at)?;
    let f = tool.function;
    Ok(Tool {
        name: f.name,
        description: f.description,
        schema: f
            .parameters
            .filter(|p| p.get() != "null")
            .map(Cow::Borrowed),
        strict: f.strict.unwrap_or(false),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedChoice<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    function: NamedFunction<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

fn tool_choice<'a>(raw: &'a RawValue, target: &'static str) -> Result<ToolChoice<'a>, Refusal> {
    read::tool_choice(raw, target, |raw| {
        Ok(parse::<NamedChoice<'a>>(raw.get(), "tool_choice")?
            .function
            .name)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    json_schema: Option<JsonSchema<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSchema<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default, rename = "description")]
    _description: Option<IgnoredAny>,
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
}

fn response_format(raw: &RawValue) -> Result<Option<Format<'_>>, Refusal> {
    let format: ResponseFormat<'_> = parse(raw.get(), "response_format")?;
    match (format.kind.as_ref(), format.json_schema) {
        ("text", _) => Ok(None),
        ("json_object", _) => Ok(Some(Format::JsonObject)),
        ("json_schema", Some(s)) => Ok(Some(Format::JsonSchema {
            name: s.name,
            schema: Cow::Borrowed(s.schema.ok_or_else(|| {
                Refusal::malformed("response_format.json_schema: missing field `schema`")
            })?),
            strict: s.strict.unwrap_or(false),
        })),
        ("json_schema", None) => Err(Refusal::malformed(
            "response_format: missing field `json_schema`",
        )),
        (other, _) => Err(Refusal::malformed(format_args!(
            "response_format: unknown type `{other}`"
        ))),
    }
}

/// A system, developer, user or assistant message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatMessage<'a> {
    #[serde(rename = "role")]
    _role: IgnoredAny,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(default)]
    name: Option<IgnoredAny>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking_blocks: Option<Vec<ThinkingBlock<'a>>>,
    #[serde(borrow, default)]
    tool_call_id: Option<Cow<'a, str>>,
    #[serde(default)]
    audio: Option<IgnoredAny>,
    #[serde(default)]
    function_call: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolCall<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "type", default)]
    _kind: Option<IgnoredAny>,
    /// The stream delta's position, which the OpenAI SDKs keep on a call they
    /// accumulated from a stream and send back as it is: the order of the list says it.
    #[serde(rename = "index", default)]
    _index: Option<IgnoredAny>,
    #[serde(borrow)]
    function: CalledFunction<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalledFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Cow<'a, str>,
}

fn message<'a>(
    raw: &'a RawValue,
    i: usize,
    target: &'static str,
    leading: &mut bool,
    conv: &mut Conversation<'a>,
    dropped: &mut Vec<Dropped>,
) -> Result<(), Refusal> {
    let at = format!("messages[{i}]");
    let role = read::role_of(raw, at.as_str())?;
    let msg: ChatMessage<'a> = parse(raw.get(), &at)?;
    if msg.name.is_some() {
        drop_field(
            dropped,
            "messages[].name",
            "the target has no participant names",
        );
    }
    if msg.audio.is_some() || msg.function_call.is_some() {
        return Err(Refusal::unsupported(
            "assistant audio and function_call in messages",
            target,
        ));
    }
    match role.as_ref() {
        "system" | "developer" => {
            let parts = user_parts(msg.content, &at, target, dropped)?;
            read::system(conv, parts, *leading, &at, target)
        }
        "user" => {
            *leading = false;
            let parts = user_parts(msg.content, &at, target, dropped)?;
            conv.push(Role::User, parts);
            Ok(())
        }
        "tool" => {
            *leading = false;
            let id = msg.tool_call_id.ok_or_else(|| {
                Refusal::malformed(format_args!("{at}: missing field `tool_call_id`"))
            })?;
            let content = user_parts(msg.content, &at, target, dropped)?;
            conv.push(
                Role::User,
                vec![Part::ToolResult {
                    id,
                    content,
                    is_error: false,
                }],
            );
            Ok(())
        }
        "assistant" => {
            *leading = false;
            let mut parts = Vec::new();
            match msg.thinking_blocks {
                Some(blocks) => {
                    for block in blocks {
                        parts.push(match block {
                            ThinkingBlock::Thinking {
                                thinking,
                                signature,
                            } => Part::Thinking {
                                text: thinking,
                                signature,
                            },
                            ThinkingBlock::RedactedThinking { data } => {
                                Part::RedactedThinking(data)
                            }
                        });
                    }
                }
                None => {
                    if let Some(text) = msg.reasoning_content.filter(|t| !t.is_empty()) {
                        parts.push(Part::Thinking {
                            text,
                            signature: None,
                        });
                    }
                }
            }
            match read::content(msg.content, &at)? {
                Content::Text(t) if !t.is_empty() => parts.push(Part::Text(t)),
                Content::Text(_) | Content::Absent => {}
                Content::Parts(list) => {
                    for (j, raw) in list.into_iter().enumerate() {
                        let at = format!("{at}.content[{j}]");
                        let text = match read::type_of(raw, &at)?.as_ref() {
                            "text" => parse::<TextPart<'a>>(raw.get(), &at)?.text,
                            "refusal" => parse::<RefusalPart<'a>>(raw.get(), &at)?.refusal,
                            other => {
                                return Err(Refusal::unsupported(
                                    format!("assistant content of type `{other}`"),
                                    target,
                                ));
                            }
                        };
                        parts.push(Part::Text(text));
                    }
                }
            }
            if let Some(refusal) = msg.refusal {
                parts.push(Part::Text(refusal));
            }
            for call in msg.tool_calls.unwrap_or_default() {
                parts.push(Part::ToolCall {
                    id: call.id,
                    name: call.function.name,
                    arguments: call.function.arguments,
                });
            }
            conv.push(Role::Assistant, parts);
            Ok(())
        }
        "function" => Err(Refusal::unsupported("function messages (use tool)", target)),
        other => Err(Refusal::malformed(format_args!(
            "{at}: unknown role `{other}`"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextPart<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagePart<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    image_url: ImageUrl<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageUrl<'a> {
    #[serde(borrow)]
    url: Cow<'a, str>,
    #[serde(borrow, default)]
    detail: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePart<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    file: File<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File<'a> {
    #[serde(borrow, default)]
    file_data: Option<Cow<'a, str>>,
    #[serde(default)]
    #[serde(rename = "file_id")]
    _file_id: Option<IgnoredAny>,
    #[serde(borrow, default)]
    filename: Option<Cow<'a, str>>,
}

/// Parts of user (and tool, and system) content.
fn user_parts<'a>(
    content: Option<&'a RawValue>,
    at: &str,
    target: &'static str,
    dropped: &mut Vec<Dropped>,
) -> Result<Vec<Part<'a>>, Refusal> {
    let list = match read::content(content, at)? {
        Content::Text(t) => return Ok(vec![Part::Text(t)]),
        Content::Absent => return Ok(Vec::new()),
        Content::Parts(list) => list,
    };
    let mut parts = Vec::with_capacity(list.len());
    for (j, raw) in list.into_iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        let part = match read::type_of(raw, &at)?.as_ref() {
            "text" => Part::Text(parse::<TextPart<'a>>(raw.get(), &at)?.text),
            "image_url" => {
                let image: ImagePart<'a> = parse(raw.get(), &at)?;
                if image.image_url.detail.is_some_and(|d| d != "auto") {
                    drop_field(
                        dropped,
                        "image_url.detail",
                        "the target picks image resolution itself",
                    );
                }
                Part::Image(Media::from_url(image.image_url.url))
            }
            "file" => {
                let file = parse::<FilePart<'a>>(raw.get(), &at)?.file;
                let Some(data) = file.file_data else {
                    return Err(Refusal::unsupported("files by file_id", target));
                };
                read::pdf(data, file.filename, target)?
            }
            "input_audio" => return Err(Refusal::unsupported("audio input", target)),
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
