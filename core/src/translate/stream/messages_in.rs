//! Anthropic Messages stream events read as [`Event`]s.

use std::borrow::Cow;

use serde::Deserialize;

use crate::translate::errors::code_of;
use crate::translate::ir::{Event, Usage};
use crate::translate::messages_answer::{InUsage, finish_of};

#[derive(Default)]
pub(crate) struct MessagesReader {
    /// Tool calls started so far.
    calls: u32,
    /// The tool call the open block carries, if it carries one.
    open_call: Option<u32>,
    usage: Usage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent<'a> {
    MessageStart {
        #[serde(borrow)]
        message: Start<'a>,
    },
    ContentBlockStart {
        #[serde(borrow)]
        content_block: Block<'a>,
    },
    ContentBlockDelta {
        #[serde(borrow)]
        delta: Change<'a>,
    },
    ContentBlockStop,
    MessageDelta {
        #[serde(borrow)]
        delta: MessageDelta<'a>,
        #[serde(default)]
        usage: Option<InUsage>,
    },
    MessageStop,
    Ping,
    Error {
        #[serde(borrow)]
        error: ErrorBody<'a>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Start<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(default)]
    usage: Option<InUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        #[serde(borrow, default)]
        text: Cow<'a, str>,
    },
    Thinking {
        #[serde(borrow, default)]
        thinking: Cow<'a, str>,
    },
    RedactedThinking {
        #[serde(borrow)]
        data: Cow<'a, str>,
    },
    ToolUse {
        #[serde(borrow)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        name: Cow<'a, str>,
    },
    #[serde(other)]
    Other,
}

/// A block's delta.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Change<'a> {
    TextDelta {
        #[serde(borrow)]
        text: Cow<'a, str>,
    },
    InputJsonDelta {
        #[serde(borrow)]
        partial_json: Cow<'a, str>,
    },
    ThinkingDelta {
        #[serde(borrow)]
        thinking: Cow<'a, str>,
    },
    SignatureDelta {
        #[serde(borrow)]
        signature: Cow<'a, str>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDelta<'a> {
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_sequence: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Cow<'a, str>,
}

impl MessagesReader {
    pub(crate) fn read<'a>(
        &mut self,
        data: &'a [u8],
        emit: &mut impl FnMut(Event<'a>),
    ) -> Result<(), serde_json::Error> {
        match serde_json::from_slice::<StreamEvent<'a>>(data)? {
            StreamEvent::MessageStart { message } => {
                emit(Event::Start {
                    id: message.id,
                    model: message.model,
                });
                if let Some(u) = message.usage {
                    u.apply(&mut self.usage);
                    emit(Event::Usage(self.usage));
                }
            }
            StreamEvent::ContentBlockStart { content_block } => {
                self.open_call = None;
                match content_block {
                    Block::Text { text } if !text.is_empty() => emit(Event::Text(text)),
                    Block::Thinking { thinking } if !thinking.is_empty() => {
                        emit(Event::Thinking(thinking))
                    }
                    Block::RedactedThinking { data } => emit(Event::RedactedThinking(data)),
                    Block::ToolUse { id, name } => {
                        let call = self.calls;
                        self.calls += 1;
                        self.open_call = Some(call);
                        emit(Event::ToolStart { call, id, name });
                    }
                    Block::Text { .. } | Block::Thinking { .. } | Block::Other => {}
                }
            }
            StreamEvent::ContentBlockDelta { delta } => match delta {
                Change::TextDelta { text } if !text.is_empty() => emit(Event::Text(text)),
                Change::ThinkingDelta { thinking } if !thinking.is_empty() => {
                    emit(Event::Thinking(thinking))
                }
                Change::SignatureDelta { signature } => emit(Event::Signature(signature)),
                Change::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                    if let Some(call) = self.open_call {
                        emit(Event::ToolArguments {
                            call,
                            json: partial_json,
                        });
                    }
                }
                _ => {}
            },
            StreamEvent::ContentBlockStop => self.open_call = None,
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    u.apply(&mut self.usage);
                    emit(Event::Usage(self.usage));
                }
                if let Some(reason) = delta.stop_reason {
                    emit(Event::Finish {
                        finish: finish_of(&reason),
                        stop_sequence: delta.stop_sequence,
                    });
                }
            }
            StreamEvent::MessageStop => emit(Event::Done),
            StreamEvent::Error { error } => emit(Event::Error {
                code: code_of(500, error.kind.as_deref()),
                message: error.message,
            }),
            StreamEvent::Ping | StreamEvent::Other => {}
        }
        Ok(())
    }
}
