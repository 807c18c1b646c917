//! The neutral form every dialect is read into and written from: a conversation (the
//! request), an answer (a whole response) and the events of a streamed answer.
//! Strings borrow from the body they were read from where they can (`Cow`), and
//! opaque JSON (schemas, tool inputs) stays as the raw text it arrived as.

use std::borrow::Cow;

use serde_json::value::RawValue;

/// A request, whatever dialect it came in.
#[derive(Debug, Default)]
pub struct Conversation<'a> {
    pub model: Cow<'a, str>,
    /// System instructions, in order (OpenAI `system`/`developer` messages that lead
    /// the conversation; Anthropic `system`).
    pub system: Vec<Cow<'a, str>>,
    pub messages: Vec<Message<'a>>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    pub stop: Vec<Cow<'a, str>>,
    pub stream: bool,
    /// The client asked for the usage chunk of a Chat stream.
    pub include_usage: bool,
    pub tools: Vec<Tool<'a>>,
    pub tool_choice: Option<ToolChoice<'a>>,
    /// `Some(false)`: at most one tool call per turn.
    pub parallel_tool_calls: Option<bool>,
    pub format: Option<Format<'a>>,
    pub reasoning: Option<Reasoning>,
    /// The end user, for the provider's abuse tracking.
    pub user: Option<Cow<'a, str>>,
}

impl<'a> Conversation<'a> {
    /// Append parts, joining them to the last message when it has the same role
    /// (tool results and the user's next words make one Anthropic turn).
    pub fn push(&mut self, role: Role, parts: Vec<Part<'a>>) {
        match self.messages.last_mut() {
            Some(last) if last.role == role => last.parts.extend(parts),
            _ => self.messages.push(Message { role, parts }),
        }
    }

    /// Each turn's parts as `write` makes them (`None`: left out), turns left empty
    /// dropped and consecutive turns of one role joined: what every writer sends.
    pub fn turns<'c, T, E>(
        &'c self,
        mut write: impl FnMut(&'c Part<'a>) -> Result<Option<T>, E>,
    ) -> Result<Vec<(Role, Vec<T>)>, E> {
        let mut turns: Vec<(Role, Vec<T>)> = Vec::with_capacity(self.messages.len());
        for m in &self.messages {
            let mut parts = Vec::with_capacity(m.parts.len());
            for p in &m.parts {
                parts.extend(write(p)?);
            }
            match turns.last_mut() {
                _ if parts.is_empty() => {}
                Some((role, last)) if *role == m.role => last.extend(parts),
                _ => turns.push((m.role, parts)),
            }
        }
        Ok(turns)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug)]
pub struct Message<'a> {
    pub role: Role,
    pub parts: Vec<Part<'a>>,
}

#[derive(Debug)]
pub enum Part<'a> {
    Text(Cow<'a, str>),
    Image(Media<'a>),
    /// A PDF document.
    Document {
        media: Media<'a>,
        name: Option<Cow<'a, str>>,
    },
    /// Reasoning the assistant did, with the provider's signature over it.
    Thinking {
        text: Cow<'a, str>,
        signature: Option<Cow<'a, str>>,
    },
    /// Reasoning the provider returned encrypted.
    RedactedThinking(Cow<'a, str>),
    ToolCall {
        id: Cow<'a, str>,
        name: Cow<'a, str>,
        /// The arguments: a JSON object, as its text.
        arguments: Cow<'a, str>,
    },
    ToolResult {
        id: Cow<'a, str>,
        /// Text and images.
        content: Vec<Part<'a>>,
        is_error: bool,
    },
}

/// Where an image or document's bytes are.
#[derive(Debug)]
pub enum Media<'a> {
    Url(Cow<'a, str>),
    Base64 {
        media_type: Cow<'a, str>,
        data: Cow<'a, str>,
    },
}

impl<'a> Media<'a> {
    /// A `data:` URL is read as inline bytes; any other as a link.
    pub fn from_url(url: Cow<'a, str>) -> Self {
        let inline = url
            .strip_prefix("data:")
            .and_then(|rest| rest.split_once(";base64,"))
            .map(|(media_type, data)| (media_type.len(), data.len()));
        match (inline, &url) {
            (Some((type_len, data_len)), Cow::Borrowed(b)) => {
                let media_type = &b[5..5 + type_len];
                let data = &b[b.len() - data_len..];
                Media::Base64 {
                    media_type: Cow::Borrowed(media_type),
                    data: Cow::Borrowed(data),
                }
            }
            (Some((type_len, data_len)), Cow::Owned(o)) => Media::Base64 {
                media_type: Cow::Owned(o[5..5 + type_len].to_owned()),
                data: Cow::Owned(o[o.len() - data_len..].to_owned()),
            },
            (None, _) => Media::Url(url),
        }
    }
}

#[derive(Debug)]
pub struct Tool<'a> {
    pub name: Cow<'a, str>,
    pub description: Option<Cow<'a, str>>,
    /// JSON Schema of the input, as its text; `None`: any object. Owned when the
    /// reader had to rewrite it (Gemini's OpenAPI schemas).
    pub schema: Option<Cow<'a, RawValue>>,
    pub strict: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ToolChoice<'a> {
    Auto,
    /// Call no tool.
    None,
    /// Call some tool.
    Required,
    Named(Cow<'a, str>),
}

#[derive(Debug)]
pub enum Format<'a> {
    /// Any JSON object (OpenAI's JSON mode).
    JsonObject,
    JsonSchema {
        name: Option<Cow<'a, str>>,
        schema: Cow<'a, RawValue>,
        strict: bool,
    },
}

/// How much the model may reason before answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reasoning {
    /// OpenAI's `reasoning_effort` levels.
    Effort(Effort),
    /// Anthropic's `thinking.budget_tokens`.
    Budget(u64),
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    Minimal,
    Low,
    Medium,
    High,
}

/// Why an answer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Finish {
    /// The model finished its turn.
    #[default]
    Stop,
    /// A stop sequence matched.
    StopSequence,
    /// The token limit was reached.
    Length,
    /// The model called tools.
    ToolUse,
    /// The provider refused or filtered the answer.
    Refusal,
}

/// Tokens of a call. `input` counts every prompt token, cached or not (OpenAI's
/// `prompt_tokens`); `cache_read` and `cache_write` are parts of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// Output tokens spent reasoning, when told (part of `output`).
    pub reasoning: Option<u64>,
}

/// One part of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutPart<'a> {
    Text(Cow<'a, str>),
    Thinking {
        text: Cow<'a, str>,
        signature: Option<Cow<'a, str>>,
    },
    RedactedThinking(Cow<'a, str>),
    ToolCall {
        id: Cow<'a, str>,
        name: Cow<'a, str>,
        /// JSON text of the arguments object.
        arguments: Cow<'a, str>,
    },
}

/// A whole answer, whatever dialect it came in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer<'a> {
    pub id: Cow<'a, str>,
    pub model: Cow<'a, str>,
    pub parts: Vec<OutPart<'a>>,
    pub finish: Finish,
    /// The stop sequence that matched, when the upstream says which.
    pub stop_sequence: Option<Cow<'a, str>>,
    pub usage: Usage,
}

/// One step of a streamed answer. Parts arrive in order: a part's events are
/// consecutive, except that a later tool call's arguments never interleave with an
/// earlier one's in any dialect we read (see `docs/translation.md`).
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// The answer started (its id and model).
    Start {
        id: Cow<'a, str>,
        model: Cow<'a, str>,
    },
    Text(Cow<'a, str>),
    Thinking(Cow<'a, str>),
    /// The signature that closes the thinking streamed before it.
    Signature(Cow<'a, str>),
    RedactedThinking(Cow<'a, str>),
    /// A tool call begins; `call` numbers the answer's tool calls from 0.
    ToolStart {
        call: u32,
        id: Cow<'a, str>,
        name: Cow<'a, str>,
    },
    /// A piece of the JSON text of call `call`'s arguments.
    ToolArguments {
        call: u32,
        json: Cow<'a, str>,
    },
    Finish {
        finish: Finish,
        stop_sequence: Option<Cow<'a, str>>,
    },
    /// The usage so far (each report replaces the last).
    Usage(Usage),
    /// The upstream ended the stream with an error.
    Error {
        code: crate::error::ErrorCode,
        message: Cow<'a, str>,
    },
    /// The upstream's stream reached its last event.
    Done,
}
