//! Base64 as Gemini clients send it, and how Anthropic's signed thinking travels
//! to a Gemini client and back: as a thought part whose `thoughtSignature` (bytes,
//! base64 in JSON) holds the same marked text the Responses answers carry in
//! `encrypted_content` (`anthropic.thinking:<signature>`, `anthropic.redacted:<data>`).
//! The SDKs keep the signature as opaque bytes and send it back re-encoded, maybe in
//! the URL-safe alphabet, so it is decoded in either.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

use super::responses_read::{REDACTED_PREFIX, THINKING_PREFIX};

/// Standard alphabet, padding optional: URL-safe text is mapped to it first.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a thought part's signature says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signed {
    /// Anthropic's signature over the thought's text.
    Thinking(String),
    /// Anthropic's encrypted thinking.
    Redacted(String),
    /// Gemini's own signature (or bytes we did not write): meaningless elsewhere.
    Foreign,
}

/// The `thoughtSignature` of Anthropic's signed thinking.
pub(crate) fn thinking_signature(signature: &str) -> String {
    STANDARD.encode(format!("{THINKING_PREFIX}{signature}"))
}

/// The `thoughtSignature` of Anthropic's redacted thinking.
pub(crate) fn redacted_signature(data: &str) -> String {
    STANDARD.encode(format!("{REDACTED_PREFIX}{data}"))
}

/// Read a `thoughtSignature` a client sent back.
pub(crate) fn read_signature(text: &str) -> Signed {
    let Ok(bytes) = LENIENT.decode(standard_alphabet(text).as_bytes()) else {
        return Signed::Foreign;
    };
    let Ok(marked) = String::from_utf8(bytes) else {
        return Signed::Foreign;
    };
    if let Some(signature) = marked.strip_prefix(THINKING_PREFIX) {
        Signed::Thinking(signature.to_owned())
    } else if let Some(data) = marked.strip_prefix(REDACTED_PREFIX) {
        Signed::Redacted(data.to_owned())
    } else {
        Signed::Foreign
    }
}

fn standard_alphabet(text: &str) -> Cow<'_, str> {
    if text.contains(['-', '_']) {
        Cow::Owned(text.replace('-', "+").replace('_', "/"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Inline data as the targets take it: standard alphabet, padded. The Google GenAI
/// SDKs send bytes URL-safe; Gemini reads either, Anthropic and OpenAI only the
/// standard one. `None`: not base64 (checked in one pass, nothing decoded).
pub(crate) fn standard_base64(data: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let body = data.trim_end_matches('=');
    let padding = data.len() - body.len();
    let alphabet_ok = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'));
    let mixed = body.contains(['+', '/']) && body.contains(['-', '_']);
    if body.is_empty() || !alphabet_ok || mixed || body.len() % 4 == 1 || padding > 2 {
        return None;
    }
    let missing = (4 - body.len() % 4) % 4;
    if padding != 0 && padding != missing {
        return None;
    }
    if padding == missing && !body.contains(['-', '_']) {
        return Some(data);
    }
    let mut out = standard_alphabet(body).into_owned();
    out.extend(std::iter::repeat_n('=', missing));
    Some(Cow::Owned(out))
}
