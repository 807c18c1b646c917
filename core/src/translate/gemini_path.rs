//! A Gemini client names its model and what it wants done in the path
//! (`/v1beta/models/{model}:generateContent`), not in the body: the data plane reads
//! the call from the path before anything else.

use crate::error::ErrorCode;
use crate::fields::MODEL_MAX_BYTES;

/// What a Gemini client asked of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeminiMethod {
    /// `:generateContent`, a whole answer.
    Generate,
    /// `:streamGenerateContent`, answered as SSE (`alt=sse`, what the Google GenAI
    /// SDKs and Gemini CLI ask for).
    Stream,
    /// `:countTokens`: read here, not translated.
    CountTokens,
}

/// The call a Gemini client's path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeminiCall<'a> {
    pub model: &'a str,
    pub method: GeminiMethod,
}

/// Why a path is not a Gemini call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeminiPathError {
    /// Not `/v1beta/models/…` (or `/v1/…`, `/v1alpha/…`), or a method Gemini does not
    /// have on a model.
    #[error("no Gemini method at {0}")]
    NotFound(String),
    #[error("the model name in the path {0}")]
    BadModel(&'static str),
    #[error("streamGenerateContent is answered only as SSE (alt=sse), not alt={0}")]
    NotSse(String),
}

impl GeminiPathError {
    /// The error code the client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::BadModel(_) | Self::NotSse(_) => ErrorCode::InvalidRequest,
        }
    }
}

const VERSIONS: [&str; 3] = ["/v1beta/models/", "/v1/models/", "/v1alpha/models/"];

impl<'a> GeminiCall<'a> {
    /// Read the call from the request's path (its query, when given, is read only for
    /// `alt`). The path is taken as sent, not percent-decoded: a model name holding
    /// `%`, a slash, whitespace or a control character is refused, as is one longer
    /// than the store's bound on model names.
    pub fn parse(path_and_query: &'a str) -> Result<Self, GeminiPathError> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let not_found = || GeminiPathError::NotFound(shown(path));
        let rest = VERSIONS
            .iter()
            .find_map(|v| path.strip_prefix(v))
            .ok_or_else(not_found)?;
        let (model, method) = rest.rsplit_once(':').ok_or_else(not_found)?;
        let method = match method {
            "generateContent" => GeminiMethod::Generate,
            "streamGenerateContent" => GeminiMethod::Stream,
            "countTokens" => GeminiMethod::CountTokens,
            _ => return Err(not_found()),
        };
        check_model(model)?;
        if method == GeminiMethod::Stream
            && let Some(alt) = query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .find_map(|pair| pair.strip_prefix("alt="))
                .filter(|alt| *alt != "sse")
        {
            return Err(GeminiPathError::NotSse(shown(alt)));
        }
        Ok(Self { model, method })
    }

    /// Whether the answer is a stream.
    pub fn stream(&self) -> bool {
        self.method == GeminiMethod::Stream
    }
}

fn check_model(model: &str) -> Result<(), GeminiPathError> {
    let bad = GeminiPathError::BadModel;
    if model.is_empty() {
        return Err(bad("is empty"));
    }
    if model.len() > MODEL_MAX_BYTES {
        return Err(bad("is too long"));
    }
    if model
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '/' | '%' | '\\' | '#'))
    {
        return Err(bad(
            "holds a control character, whitespace, a slash, `%`, `\\` or `#`",
        ));
    }
    Ok(())
}

/// A path as an error shows it: at most 100 characters, control characters escaped.
fn shown(text: &str) -> String {
    text.chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect()
}
