//! [`Event`]s written as Chat Completions chunks.

use serde::Serialize;

use super::emit::{Progress, error_event, write_event};
use crate::translate::chat_answer::{OutCall, OutFunction, OutUsage, finish_name};
use crate::translate::dialect::Dialect;
use crate::translate::ir::{Event, Usage};

pub(crate) struct ChatWriter {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Chunk<'c, D> {
    id: &'c str,
    object: &'static str,
    created: u64,
    model: &'c str,
    choices: &'c [ChunkChoice<D>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OutUsage>,
}

#[derive(Serialize)]
struct ChunkChoice<D> {
    index: u32,
    delta: D,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'c> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'c str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'c str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_blocks: Option<[ThinkingDelta<'c>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[CallDelta<'c>; 1]>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ThinkingDelta<'c> {
    /// The signature closing the reasoning streamed since the last one.
    Thinking {
        thinking: &'static str,
        signature: &'c str,
    },
    RedactedThinking {
        data: &'c str,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum CallDelta<'c> {
    Start {
        index: u32,
        #[serde(flatten)]
        call: OutCall<'c>,
    },
    Arguments {
        index: u32,
        function: Arguments<'c>,
    },
}

#[derive(Serialize)]
struct Arguments<'c> {
    arguments: &'c str,
}

impl ChatWriter {
    pub(crate) fn new(created: u64, include_usage: bool) -> Self {
        Self {
            id: String::new(),
            model: String::new(),
            created,
            include_usage,
            started: false,
            usage: None,
        }
    }

    fn chunk<D: Serialize>(
        &self,
        delta: D,
        finish_reason: Option<&'static str>,
        out: &mut Vec<u8>,
    ) {
        let choice = [ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }];
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &choice,
            usage: None,
        };
        write_event(None, &chunk, out);
    }

    fn delta(&self, delta: Delta<'_>, out: &mut Vec<u8>) {
        self.chunk(delta, None, out);
    }

    /// The first chunk (the role), if it has not gone yet.
    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            let delta = Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::default()
            };
            self.delta(delta, out);
        }
    }

    pub(crate) fn write(&mut self, event: Event<'_>, out: &mut Vec<u8>) -> Progress {
        if let Event::Start { id, model } = &event {
            self.id = id.to_string();
            self.model = model.to_string();
        }
        match event {
            Event::Error { code, message } => {
                error_event(Dialect::Chat, code, &message, out);
                return Progress::Failed;
            }
            Event::Usage(u) => {
                self.usage = Some(u);
                return Progress::Open;
            }
            _ => self.start(out),
        }
        match event {
            Event::Start { .. } | Event::Usage(_) | Event::Error { .. } => {}
            Event::Text(text) => self.delta(
                Delta {
                    content: Some(&text),
                    ..Delta::default()
                },
                out,
            ),
            Event::Thinking(text) => self.delta(
                Delta {
                    reasoning_content: Some(&text),
                    ..Delta::default()
                },
                out,
            ),
            Event::Signature(signature) => self.delta(
                Delta {
                    thinking_blocks: Some([ThinkingDelta::Thinking {
                        thinking: "",
                        signature: &signature,
                    }]),
                    ..Delta::default()
                },
                out,
            ),
            Event::RedactedThinking(data) => self.delta(
                Delta {
                    thinking_blocks: Some([ThinkingDelta::RedactedThinking { data: &data }]),
                    ..Delta::default()
                },
                out,
            ),
            Event::ToolStart { call, id, name } => self.delta(
                Delta {
                    tool_calls: Some([CallDelta::Start {
                        index: call,
                        call: OutCall {
                            id: &id,
                            kind: "function",
                            function: OutFunction {
                                name: &name,
                                arguments: "",
                            },
                        },
                    }]),
                    ..Delta::default()
                },
                out,
            ),
            Event::ToolArguments { call, json } => self.delta(
                Delta {
                    tool_calls: Some([CallDelta::Arguments {
                        index: call,
                        function: Arguments { arguments: &json },
                    }]),
                    ..Delta::default()
                },
                out,
            ),
            Event::Finish { finish, .. } => {
                self.chunk(Delta::default(), Some(finish_name(finish)), out)
            }
            Event::Done => {
                if self.include_usage {
                    let chunk: Chunk<'_, Delta<'_>> = Chunk {
                        id: &self.id,
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: &self.model,
                        choices: &[],
                        usage: Some(self.usage.unwrap_or_default().into()),
                    };
                    write_event(None, &chunk, out);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                return Progress::Complete;
            }
        }
        Progress::Open
    }
}
