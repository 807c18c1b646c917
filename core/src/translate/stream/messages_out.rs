//! [`Event`]s written as Anthropic Messages stream events.

use serde::Serialize;

use super::emit::{Progress, error_event, write_event};
use crate::error::ErrorCode;
use crate::translate::dialect::Dialect;
use crate::translate::ir::{Event, Finish, Usage};
use crate::translate::messages_answer::{OutUsage, finish_name};

/// The block open on the client's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    Tool(u32),
}

#[derive(Default)]
pub(crate) struct MessagesWriter {
    started: bool,
    /// The index the next block gets.
    next_block: u32,
    open: Option<Open>,
    /// Tool calls started so far: a call's arguments must follow its start.
    calls: u32,
    finish: Option<(Finish, Option<String>)>,
    usage: Usage,
}

#[derive(Serialize)]
struct MessageStart<'c> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: StartMessage<'c>,
}

#[derive(Serialize)]
struct StartMessage<'c> {
    id: &'c str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'c str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: OutUsage,
}

#[derive(Serialize)]
struct BlockStart<'c> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: StartBlock<'c>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'c> {
    Text {
        text: &'static str,
    },
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    RedactedThinking {
        data: &'c str,
    },
    ToolUse {
        id: &'c str,
        name: &'c str,
        input: Empty,
    },
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct BlockDelta<'c> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaBody<'c>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum DeltaBody<'c> {
    #[serde(rename = "text_delta")]
    Text { text: &'c str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'c str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'c str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'c str },
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageDelta<'c> {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta<'c>,
    usage: OutUsage,
}

#[derive(Serialize)]
struct StopDelta<'c> {
    stop_reason: &'static str,
    stop_sequence: Option<&'c str>,
}

#[derive(Serialize)]
struct MessageStop {
    #[serde(rename = "type")]
    kind: &'static str,
}

impl MessagesWriter {
    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let start = MessageStart {
            kind: "message_start",
            message: StartMessage {
                id,
                kind: "message",
                role: "assistant",
                model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                usage: self.usage.into(),
            },
        };
        write_event(Some("message_start"), &start, out);
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            let stop = BlockStop {
                kind: "content_block_stop",
                index: self.next_block - 1,
            };
            write_event(Some("content_block_stop"), &stop, out);
        }
    }

    /// Open a block of `kind` unless it is the open one.
    fn open(&mut self, kind: Open, block: StartBlock<'_>, out: &mut Vec<u8>) {
        if self.open == Some(kind) {
            return;
        }
        self.close(out);
        let start = BlockStart {
            kind: "content_block_start",
            index: self.next_block,
            content_block: block,
        };
        write_event(Some("content_block_start"), &start, out);
        self.next_block += 1;
        self.open = Some(kind);
    }

    fn delta(&self, delta: DeltaBody<'_>, out: &mut Vec<u8>) {
        let event = BlockDelta {
            kind: "content_block_delta",
            index: self.next_block.saturating_sub(1),
            delta,
        };
        write_event(Some("content_block_delta"), &event, out);
    }

    pub(crate) fn write(&mut self, event: Event<'_>, out: &mut Vec<u8>) -> Progress {
        match event {
            Event::Start { id, model } => self.start(&id, &model, out),
            Event::Usage(u) => self.usage = u,
            Event::Error { code, message } => {
                error_event(Dialect::Messages, code, &message, out);
                return Progress::Failed;
            }
            other => {
                self.start("", "", out);
                return self.write_content(other, out);
            }
        }
        Progress::Open
    }

    fn write_content(&mut self, event: Event<'_>, out: &mut Vec<u8>) -> Progress {
        match event {
            Event::Text(text) => {
                self.open(Open::Text, StartBlock::Text { text: "" }, out);
                self.delta(DeltaBody::Text { text: &text }, out);
            }
            Event::Thinking(thinking) => {
                self.open(Open::Thinking, thinking_block(), out);
                self.delta(
                    DeltaBody::Thinking {
                        thinking: &thinking,
                    },
                    out,
                );
            }
            Event::Signature(signature) => {
                self.open(Open::Thinking, thinking_block(), out);
                self.delta(
                    DeltaBody::Signature {
                        signature: &signature,
                    },
                    out,
                );
                // A signature ends its block: reasoning after it is a new block.
                self.close(out);
            }
            Event::RedactedThinking(data) => {
                self.close(out);
                self.open(
                    Open::Thinking,
                    StartBlock::RedactedThinking { data: &data },
                    out,
                );
                self.close(out);
            }
            Event::ToolStart { call, id, name } => {
                self.calls = self.calls.max(call + 1);
                self.close(out);
                self.open(
                    Open::Tool(call),
                    StartBlock::ToolUse {
                        id: &id,
                        name: &name,
                        input: Empty {},
                    },
                    out,
                );
            }
            Event::ToolArguments { call, json } => {
                if self.open != Some(Open::Tool(call)) {
                    // Anthropic's blocks follow one another: arguments of a call
                    // whose block has closed cannot be told.
                    let message = "the upstream interleaved the arguments of several tool calls";
                    error_event(Dialect::Messages, ErrorCode::UpstreamFailed, message, out);
                    return Progress::Failed;
                }
                self.delta(
                    DeltaBody::InputJson {
                        partial_json: &json,
                    },
                    out,
                );
            }
            Event::Finish {
                finish,
                stop_sequence,
            } => {
                self.close(out);
                self.finish = Some((finish, stop_sequence.map(|s| s.into_owned())));
            }
            Event::Done => {
                self.close(out);
                let (finish, stop_sequence) = self.finish.take().unwrap_or_default();
                let delta = MessageDelta {
                    kind: "message_delta",
                    delta: StopDelta {
                        stop_reason: finish_name(finish),
                        stop_sequence: stop_sequence.as_deref(),
                    },
                    usage: self.usage.into(),
                };
                write_event(Some("message_delta"), &delta, out);
                write_event(
                    Some("message_stop"),
                    &MessageStop {
                        kind: "message_stop",
                    },
                    out,
                );
                return Progress::Complete;
            }
            Event::Start { .. } | Event::Usage(_) | Event::Error { .. } => {}
        }
        Progress::Open
    }
}

fn thinking_block() -> StartBlock<'static> {
    StartBlock::Thinking {
        thinking: "",
        signature: "",
    }
}
