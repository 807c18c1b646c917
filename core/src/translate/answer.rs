//! Whole (non-streamed) answers: the upstream's, success or error, in the client's
//! dialect.

use super::dialect::{Dialect, Exchange};
use super::ir::Answer;
use super::{chat_answer, errors, gemini_answer, messages_answer, responses_answer};
use crate::error::ErrorCode;

/// An answer ready for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslatedAnswer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Translate an upstream's whole answer (`status`, `body`) for the client of
/// `exchange`. `now_unix` is the `created` time OpenAI answers carry. An error answer
/// becomes the same kind of error in the client's shape; a success the upstream's
/// own dialect cannot read becomes a 502 in the client's shape.
pub fn translate_answer(
    exchange: &Exchange,
    status: u16,
    body: &[u8],
    now_unix: u64,
) -> TranslatedAnswer {
    if !(200..300).contains(&status) {
        let (code, message) = errors::read_error(status, body);
        let (status, body) = errors::client_error(exchange.client, code, &message);
        return TranslatedAnswer { status, body };
    }
    match read(exchange.upstream, body) {
        Ok(answer) => TranslatedAnswer {
            status,
            body: write(exchange.client, &answer, now_unix),
        },
        Err(e) => {
            let message = format!("the upstream's answer could not be read: {e}");
            let (status, body) =
                errors::client_error(exchange.client, ErrorCode::UpstreamFailed, &message);
            TranslatedAnswer { status, body }
        }
    }
}

pub(crate) fn read(dialect: Dialect, body: &[u8]) -> Result<Answer<'_>, serde_json::Error> {
    match dialect {
        Dialect::Chat => chat_answer::read(body),
        Dialect::Messages => messages_answer::read(body),
        Dialect::Gemini => gemini_answer::read(body),
        Dialect::Responses => Err(serde::de::Error::custom(
            "answers are not translated from OpenAI Responses",
        )),
    }
}

pub(crate) fn write(dialect: Dialect, answer: &Answer<'_>, now_unix: u64) -> Vec<u8> {
    match dialect {
        Dialect::Chat => chat_answer::write(answer, now_unix),
        Dialect::Gemini => gemini_answer::write(answer),
        Dialect::Messages => messages_answer::write(answer),
        Dialect::Responses => responses_answer::write(answer, now_unix),
    }
}
