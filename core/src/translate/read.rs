//! Reading helpers every dialect's reader shares: typed parsing of one borrowed JSON
//! value with the place it sits in named in the error, and content that is a string
//! or a list of parts.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

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
