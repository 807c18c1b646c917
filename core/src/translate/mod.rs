//! Protocol translation: a client speaking one dialect (OpenAI Chat Completions,
//! Anthropic Messages, OpenAI Responses, Gemini) served by an upstream speaking
//! another (Chat Completions, Messages or Gemini).
//!
//! Every translation passes through one neutral form ([`ir`]): a client request is
//! read into a [`ir::Conversation`] and written in the upstream's dialect; an upstream
//! answer is read into an [`ir::Answer`] (or, streamed, into [`ir::Event`]s one SSE
//! event at a time) and written in the client's dialect. So each dialect has one reader
//! and one writer per direction, not one per pair.
//!
//! The data plane calls, per attempt:
//! - [`translate_request`]: the client's body → the upstream's body, path and headers,
//!   or a [`Refusal`] naming what the target cannot carry;
//! - [`translate_answer`]: a whole upstream answer (success or error) → the client's;
//! - [`StreamTranslator`]: upstream SSE events in, client SSE bytes out, one event at a
//!   time, with [`StreamTranslator::finish`] at the end of the upstream stream and
//!   [`StreamTranslator::broken`] when it broke.
//!
//! The rules (what maps to what, what is refused, what is dropped and how the answer
//! says so) are in `docs/translation.md`.

mod answer;
mod chat_answer;
mod chat_read;
mod chat_write;
mod dialect;
mod errors;
mod estimate;
mod gemini_answer;
mod gemini_parts;
mod gemini_path;
mod gemini_read;
mod gemini_schema;
mod gemini_signature;
mod gemini_write;
pub mod ir;
mod messages_answer;
mod messages_read;
mod messages_write;
mod read;
mod refusal;
mod responses_answer;
mod responses_read;
mod stream;

use std::borrow::Cow;

use crate::endpoint::Endpoint;
use crate::error::ErrorCode;

pub use answer::{TranslatedAnswer, translate_answer};
pub use dialect::{ClientHeaders, Dialect, Exchange};
pub use estimate::estimate_input_tokens;
pub use gemini_path::{GeminiCall, GeminiMethod, GeminiPathError};
pub use refusal::{Dropped, Refusal};
pub use stream::StreamTranslator;

/// The Anthropic API version a translated request is sent with.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A request ready for the upstream.
#[derive(Clone, Debug)]
pub struct TranslatedRequest {
    pub body: Vec<u8>,
    /// Appended to the provider key's base URL (which ends in its version, `/v1`).
    pub path: Cow<'static, str>,
    /// Headers to set on the upstream request (replacing any the client sent).
    pub set_headers: Vec<(&'static str, &'static str)>,
    /// Client headers that must not travel upstream: they belong to the client's
    /// dialect (an OpenAI upstream has no use for `anthropic-beta`).
    pub strip_headers: &'static [&'static str],
    /// What of the request the upstream will not see, and why: the data plane tells
    /// the client in [`DROPPED_HEADER`] (see [`TranslatedRequest::dropped_header`]).
    pub dropped: Vec<Dropped>,
    /// What translating the answer needs to know of the request.
    pub exchange: Exchange,
}

/// The response header that names what translation dropped: `field (reason)` items
/// separated by `; `.
pub const DROPPED_HEADER: &str = "x-switchyard-translation-dropped";

impl TranslatedRequest {
    /// The value of [`DROPPED_HEADER`], `None` when nothing was dropped.
    pub fn dropped_header(&self) -> Option<String> {
        refusal::dropped_header(&self.dropped)
    }
}

/// Translate a client's request body for an upstream of another dialect.
pub fn translate_request(
    client: Dialect,
    upstream: Dialect,
    body: &[u8],
    headers: ClientHeaders<'_>,
) -> Result<TranslatedRequest, Refusal> {
    if std::str::from_utf8(body).is_err() {
        return Err(Refusal::Malformed {
            detail: "the body is not valid UTF-8".into(),
        });
    }
    crate::json_bounds::check_depth(body, crate::json_bounds::MAX_JSON_DEPTH).map_err(|e| {
        Refusal::Malformed {
            detail: e.to_string(),
        }
    })?;
    if upstream == client || upstream == Dialect::Responses {
        return Err(not_translated(client, upstream));
    }
    let mut dropped = Vec::new();
    let conversation = match client {
        Dialect::Chat => chat_read::conversation(body, upstream.name(), &mut dropped)?,
        Dialect::Responses => responses_read::conversation(body, upstream.name(), &mut dropped)?,
        Dialect::Gemini => {
            let call = headers.gemini.ok_or_else(|| {
                Refusal::malformed("a Gemini request names its model in its path")
            })?;
            gemini_read::conversation(body, call, upstream, &mut dropped)?
        }
        Dialect::Messages => {
            messages_read::conversation(body, headers, upstream.name(), &mut dropped)?
        }
    };
    let exchange = Exchange {
        client,
        upstream,
        stream: conversation.stream,
        include_usage: conversation.include_usage,
    };
    let (body, path, set_headers, strip_headers) = match upstream {
        Dialect::Chat => (
            chat_write::request(&conversation, &mut dropped)?,
            Cow::Borrowed(Endpoint::ChatCompletions.upstream_suffix()),
            Vec::new(),
            &ANTHROPIC_HEADERS[..],
        ),
        Dialect::Messages => (
            messages_write::request(&conversation, &mut dropped)?,
            Cow::Borrowed(Endpoint::Messages.upstream_suffix()),
            vec![("anthropic-version", ANTHROPIC_VERSION)],
            &ANTHROPIC_HEADERS[..],
        ),
        Dialect::Gemini => (
            gemini_write::request(&conversation, &mut dropped)?,
            Cow::Owned(gemini_write::path(&conversation.model, conversation.stream)),
            Vec::new(),
            &ANTHROPIC_HEADERS[..],
        ),
        Dialect::Responses => return Err(not_translated(client, upstream)),
    };
    Ok(TranslatedRequest {
        body,
        path,
        set_headers,
        strip_headers,
        dropped,
        exchange,
    })
}

/// A pair translation does not serve: the same dialect (nothing to translate), or an
/// OpenAI Responses upstream (Responses is a client dialect only).
fn not_translated(client: Dialect, upstream: Dialect) -> Refusal {
    Refusal::unsupported(
        format!("a {} request (no translation to it)", client.name()),
        upstream.name(),
    )
}

/// An error (a [`Refusal`], or the data plane's own) as a client of `client` reads
/// it: status and body in its dialect's shape (Gemini's `{"error": {"code",
/// "message", "status"}}` for Gemini clients).
pub fn error_answer(client: Dialect, code: ErrorCode, message: &str) -> TranslatedAnswer {
    let (status, body) = errors::client_error(client, code, message);
    TranslatedAnswer { status, body }
}

/// Client headers of the Anthropic dialect, never forwarded as the client sent them to
/// a translated upstream (an Anthropic upstream gets the translator's own).
const ANTHROPIC_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

#[cfg(test)]
mod tests;
