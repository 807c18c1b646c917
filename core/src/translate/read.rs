//! Reading helpers every dialect's reader shares: typed parsing of one borrowed JSON
//! value with the place it sits in named in the error, and content that is a string
//! or a list of parts.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::ir::{Conversation, Effort, Media, Part, Reasoning, ToolChoice};
use super::refusal::Refusal;

/// Parse `raw` as `T`; an error names `at` (e.g. `messages[2]`).
pub(crate) fn parse<'a, T: Deserialize<'a>>(
    raw: &'a str,
    at: impl std::fmt::Display,
) -> Result<T, Refusal> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Refusal::malformed(format_args!("{at}: {inner}"))
        } else {
            Refusal::malformed(format_args!("{at}: {path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| Refusal::malformed(format_args!("{at}: {e}")))?;
    Ok(value)
}

#[derive(Deserialize)]
struct Tagged<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
}

/// The `type` of an object (`""` when it has none).
pub(crate) fn type_of<'a>(
    raw: &'a RawValue,
    at: impl std::fmt::Display,
) -> Result<Cow<'a, str>, Refusal> {
    let tagged: Tagged<'a> = parse(raw.get(), at)?;
    Ok(tagged.kind.unwrap_or(Cow::Borrowed("")))
}

/// The `role` of a message.
pub(crate) fn role_of<'a>(
    raw: &'a RawValue,
    at: impl std::fmt::Display + Copy,
) -> Result<Cow<'a, str>, Refusal> {
    let tagged: Tagged<'a> = parse(raw.get(), at)?;
    tagged
        .role
        .ok_or_else(|| Refusal::malformed(format_args!("{at}: missing field `role`")))
}

/// Content that is either a string or a list of parts.
pub(crate) enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<&'a RawValue>),
    Absent,
}

pub(crate) fn content<'a>(
    raw: Option<&'a RawValue>,
    at: impl std::fmt::Display,
) -> Result<Content<'a>, Refusal> {
    let Some(raw) = raw else {
        return Ok(Content::Absent);
    };
    match raw.get().as_bytes().first() {
        Some(b'"') => Ok(Content::Text(parse(raw.get(), at)?)),
        Some(b'[') => Ok(Content::Parts(parse(raw.get(), at)?)),
        Some(b'n') => Ok(Content::Absent),
        _ => Err(Refusal::malformed(format_args!(
            "{at}: content must be a string or an array of parts"
        ))),
    }
}

/// A JSON value's text if it is an object, for arguments and tool inputs.
pub(crate) fn object_text(raw: &RawValue, at: impl std::fmt::Display) -> Result<&str, Refusal> {
    if raw.get().starts_with('{') {
        Ok(raw.get())
    } else {
        Err(Refusal::malformed(format_args!(
            "{at}: must be a JSON object"
        )))
    }
}

/// An OpenAI reasoning effort level (`reasoning_effort`, `reasoning.effort`).
pub(crate) fn effort(level: &str, at: &str) -> Result<Reasoning, Refusal> {
    Ok(match level {
        "none" => Reasoning::Disabled,
        "minimal" => Reasoning::Effort(Effort::Minimal),
        "low" => Reasoning::Effort(Effort::Low),
        "medium" => Reasoning::Effort(Effort::Medium),
        "high" | "xhigh" => Reasoning::Effort(Effort::High),
        other => {
            return Err(Refusal::malformed(format_args!(
                "{at}: unknown level `{other}`"
            )));
        }
    })
}

/// An OpenAI `tool_choice`: a mode, or a named function (read by `named`, as the
/// dialects nest the name differently).
pub(crate) fn tool_choice<'a>(
    raw: &'a RawValue,
    target: &'static str,
    named: impl FnOnce(&'a RawValue) -> Result<Cow<'a, str>, Refusal>,
) -> Result<ToolChoice<'a>, Refusal> {
    if raw.get().starts_with('"') {
        let mode: Cow<'a, str> = parse(raw.get(), "tool_choice")?;
        return match mode.as_ref() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(Refusal::malformed(format_args!(
                "tool_choice: unknown mode `{other}`"
            ))),
        };
    }
    let kind = type_of(raw, "tool_choice")?;
    if kind != "function" {
        return Err(Refusal::unsupported(
            format!("tool_choice of type `{kind}`"),
            target,
        ));
    }
    Ok(ToolChoice::Named(named(raw)?))
}

/// System instructions from an OpenAI `system` or `developer` message: only before
/// the conversation starts (Anthropic has no place for them later), text only.
pub(crate) fn system<'a>(
    conv: &mut Conversation<'a>,
    parts: Vec<Part<'a>>,
    leading: bool,
    at: &str,
    target: &'static str,
) -> Result<(), Refusal> {
    if !leading {
        return Err(Refusal::unsupported(
            "a system message after the conversation started",
            target,
        ));
    }
    for part in parts {
        match part {
            Part::Text(t) => conv.system.push(t),
            _ => {
                return Err(Refusal::malformed(format_args!(
                    "{at}: system content must be text"
                )));
            }
        }
    }
    Ok(())
}

/// A file given as a `data:` URL: only PDF documents travel.
pub(crate) fn pdf<'a>(
    data: Cow<'a, str>,
    name: Option<Cow<'a, str>>,
    target: &'static str,
) -> Result<Part<'a>, Refusal> {
    let media = Media::from_url(data);
    if !matches!(&media, Media::Base64 { media_type, .. } if media_type == "application/pdf") {
        return Err(Refusal::unsupported(
            "files other than base64 PDF data URLs",
            target,
        ));
    }
    Ok(Part::Document { media, name })
}

/// A `refusal` content part (OpenAI assistant content, in both OpenAI dialects).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefusalPart<'a> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    #[serde(borrow)]
    pub(crate) refusal: Cow<'a, str>,
}

/// A tool call's arguments as the JSON object Anthropic's `input` and Gemini's
/// `args` are (empty arguments are `{}`); anything else is refused.
pub(crate) fn arguments_object<'t>(id: &str, arguments: &'t str) -> Result<&'t RawValue, Refusal> {
    let text = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    serde_json::from_str::<&RawValue>(text)
        .ok()
        .filter(|r| r.get().starts_with('{'))
        .ok_or_else(|| {
            Refusal::malformed(format_args!(
                "the arguments of tool call `{id}` are not a JSON object"
            ))
        })
}
