//! Gemini `generateContent` answers (whole, or each chunk of a stream) read into the
//! neutral form, and written from it for Gemini clients.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::gemini_signature::{redacted_signature, thinking_signature};
use super::ir::{Answer, Finish, OutPart, Usage};
use super::messages_answer::input_of;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Chunk<'a> {
    #[serde(borrow, default)]
    pub(crate) candidates: Vec<Candidate<'a>>,
    #[serde(default)]
    pub(crate) usage_metadata: Option<UsageMetadata>,
    #[serde(borrow, default)]
    pub(crate) model_version: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) response_id: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Candidate<'a> {
    #[serde(borrow, default)]
    pub(crate) content: Option<CandidateContent<'a>>,
    #[serde(borrow, default)]
    pub(crate) finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(crate) struct CandidateContent<'a> {
    #[serde(borrow, default)]
    pub(crate) parts: Vec<InPart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InPart<'a> {
    #[serde(borrow, default)]
    pub(crate) text: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) thought: bool,
    #[serde(borrow, default)]
    pub(crate) function_call: Option<InCall<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct InCall<'a> {
    #[serde(borrow, default)]
    pub(crate) id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) args: Option<&'a RawValue>,
}

/// Gemini's `usageMetadata`, read as the meter reads it.
pub(crate) use crate::usage::GeminiUsage as UsageMetadata;

impl From<UsageMetadata> for Usage {
    /// Gemini counts thinking apart from the answer; ours is part of the output.
    fn from(u: UsageMetadata) -> Self {
        let tokens = crate::usage::TokenUsage::from(u);
        Usage {
            input: tokens.input,
            output: tokens.output,
            cache_read: tokens.cached,
            cache_write: 0,
            reasoning: u.thoughts(),
        }
    }
}

pub(crate) fn finish_of(reason: &str, called: bool) -> Finish {
    match reason {
        "MAX_TOKENS" => Finish::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => Finish::Refusal,
        _ if called => Finish::ToolUse,
        _ => Finish::Stop,
    }
}

/// The id a Gemini function call gets when Gemini gives none: its number in the
/// answer.
pub(crate) fn call_id<'a>(id: Option<Cow<'a, str>>, call: u32) -> Cow<'a, str> {
    id.filter(|i| !i.is_empty())
        .unwrap_or_else(|| Cow::Owned(format!("call_{call}")))
}

pub(crate) fn arguments(args: Option<&RawValue>) -> &str {
    args.map_or("{}", RawValue::get)
}

/// Read a whole Gemini answer (its first candidate).
pub(crate) fn read(body: &[u8]) -> Result<Answer<'_>, serde_json::Error> {
    let chunk: Chunk<'_> = serde_json::from_slice(body)?;
    let mut answer = Answer {
        id: chunk.response_id,
        model: chunk.model_version,
        usage: chunk.usage_metadata.map(Usage::from).unwrap_or_default(),
        ..Answer::default()
    };
    let Some(candidate) = chunk.candidates.into_iter().next() else {
        return Ok(answer);
    };
    let mut calls = 0;
    for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
        if let Some(call) = part.function_call {
            answer.parts.push(OutPart::ToolCall {
                id: call_id(call.id, calls),
                name: call.name,
                arguments: Cow::Borrowed(arguments(call.args)),
            });
            calls += 1;
        } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
            // Gemini splits text into parts at will: consecutive ones are one.
            match (answer.parts.last_mut(), part.thought) {
                (Some(OutPart::Text(last)), false)
                | (Some(OutPart::Thinking { text: last, .. }), true) => {
                    last.to_mut().push_str(&text)
                }
                (_, false) => answer.parts.push(OutPart::Text(text)),
                (_, true) => answer.parts.push(OutPart::Thinking {
                    text,
                    signature: None,
                }),
            }
        }
    }
    answer.finish = candidate
        .finish_reason
        .as_deref()
        .map_or(Finish::Stop, |r| finish_of(r, calls > 0));
    Ok(answer)
}

/// A `GenerateContentResponse` (a whole answer, or one chunk of a stream).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutResponse<'c> {
    pub(crate) candidates: [OutCandidate<'c>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage_metadata: Option<OutUsage>,
    pub(crate) model_version: &'c str,
    pub(crate) response_id: &'c str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutCandidate<'c> {
    pub(crate) content: OutContent<'c>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) finish_reason: Option<&'static str>,
    pub(crate) index: u32,
}

#[derive(Serialize)]
pub(crate) struct OutContent<'c> {
    pub(crate) role: &'static str,
    pub(crate) parts: Vec<GeminiPart<'c>>,
}

#[derive(Serialize, Debug)]
#[serde(untagged)]
pub(crate) enum GeminiPart<'c> {
    Text {
        text: &'c str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        thought: bool,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        thought_signature: Option<String>,
    },
    Call {
        #[serde(rename = "functionCall")]
        function_call: OutCall<'c>,
    },
}

#[derive(Serialize, Debug)]
pub(crate) struct OutCall<'c> {
    pub(crate) id: &'c str,
    pub(crate) name: &'c str,
    pub(crate) args: Cow<'c, RawValue>,
}

impl<'c> GeminiPart<'c> {
    pub(crate) fn text(text: &'c str) -> Self {
        Self::Text {
            text,
            thought: false,
            thought_signature: None,
        }
    }

    pub(crate) fn thought(text: &'c str, signature: Option<String>) -> Self {
        Self::Text {
            text,
            thought: true,
            thought_signature: signature,
        }
    }

    /// A call; arguments that are not a JSON object are kept whole under
    /// `_invalid_arguments`, as for Anthropic clients.
    pub(crate) fn call(id: &'c str, name: &'c str, arguments: &'c str) -> Self {
        Self::Call {
            function_call: OutCall {
                id,
                name,
                args: input_of(arguments),
            },
        }
    }
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutUsage {
    prompt_token_count: u64,
    candidates_token_count: u64,
    total_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_content_token_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thoughts_token_count: Option<u64>,
}

impl From<Usage> for OutUsage {
    /// Gemini counts thinking apart from the answer (`candidatesTokenCount` leaves it
    /// out); the prompt count holds the cached part.
    fn from(u: Usage) -> Self {
        let thoughts = u.reasoning.map(|r| r.min(u.output));
        OutUsage {
            prompt_token_count: u.input,
            candidates_token_count: u.output - thoughts.unwrap_or(0),
            total_token_count: u.input.saturating_add(u.output),
            cached_content_token_count: (u.cache_read > 0).then_some(u.cache_read),
            thoughts_token_count: thoughts,
        }
    }
}

pub(crate) fn finish_name(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop | Finish::StopSequence | Finish::ToolUse => "STOP",
        Finish::Length => "MAX_TOKENS",
        Finish::Refusal => "SAFETY",
    }
}

/// An answer part as Gemini parts (a thinking block's signature travels marked, see
/// `gemini_signature`).
pub(crate) fn part<'c>(p: &'c OutPart<'_>) -> GeminiPart<'c> {
    match p {
        OutPart::Text(t) => GeminiPart::text(t),
        OutPart::Thinking { text, signature } => {
            GeminiPart::thought(text, signature.as_deref().map(thinking_signature))
        }
        OutPart::RedactedThinking(data) => GeminiPart::thought("", Some(redacted_signature(data))),
        OutPart::ToolCall {
            id,
            name,
            arguments,
        } => GeminiPart::call(id, name, arguments),
    }
}

/// Write `answer` as a Gemini `GenerateContentResponse`.
pub(crate) fn write(answer: &Answer<'_>) -> Vec<u8> {
    let body = OutResponse {
        candidates: [OutCandidate {
            content: OutContent {
                role: "model",
                parts: answer.parts.iter().map(part).collect(),
            },
            finish_reason: Some(finish_name(answer.finish)),
            index: 0,
        }],
        usage_metadata: Some(answer.usage.into()),
        model_version: &answer.model,
        response_id: &answer.id,
    };
    serde_json::to_vec(&body).unwrap_or_default()
}
