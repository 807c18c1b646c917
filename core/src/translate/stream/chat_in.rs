//! Chat Completions chunks read as [`Event`]s.

use std::borrow::Cow;

use serde::Deserialize;

use crate::translate::chat_answer::{InUsage, ThinkingBlock, finish_of};
use crate::translate::errors::code_of;
use crate::translate::ir::{Event, Finish, Usage};

#[derive(Default)]
pub(crate) struct ChatReader {
    started: bool,
    /// Tool calls started so far (OpenAI numbers them from 0 by `index`).
    calls: u32,
    refused: bool,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<InUsage>,
    #[serde(borrow, default)]
    error: Option<ChunkError<'a>>,
}

#[derive(Deserialize)]
struct ChunkError<'a> {
    #[serde(borrow, default)]
    message: Cow<'a, str>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    delta: Delta<'a>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "reasoning")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking_blocks: Option<Vec<ThinkingBlock<'a>>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<CallDelta<'a>>>,
}

#[derive(Deserialize)]
struct CallDelta<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

fn nonempty(text: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    text.filter(|t| !t.is_empty())
}

impl ChatReader {
    pub(crate) fn read<'a>(
        &mut self,
        data: &'a [u8],
        emit: &mut impl FnMut(Event<'a>),
    ) -> Result<(), serde_json::Error> {
        if data == b"[DONE]" {
            emit(Event::Done);
            return Ok(());
        }
        let chunk: Chunk<'a> = serde_json::from_slice(data)?;
        if let Some(error) = chunk.error {
            emit(Event::Error {
                code: code_of(500, error.kind.as_deref()),
                message: error.message,
            });
            return Ok(());
        }
        if !self.started {
            self.started = true;
            emit(Event::Start {
                id: chunk.id,
                model: chunk.model,
            });
        }
        // Translation asks for one choice (`n` is refused above 1).
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let d = choice.delta;
            if let Some(text) = nonempty(d.reasoning_content) {
                emit(Event::Thinking(text));
            }
            for block in d.thinking_blocks.unwrap_or_default() {
                match block {
                    ThinkingBlock::Thinking {
                        signature: Some(s), ..
                    } => emit(Event::Signature(s)),
                    ThinkingBlock::Thinking {
                        signature: None, ..
                    } => {}
                    ThinkingBlock::RedactedThinking { data } => emit(Event::RedactedThinking(data)),
                }
            }
            if let Some(text) = nonempty(d.content) {
                emit(Event::Text(text));
            }
            if let Some(text) = nonempty(d.refusal) {
                self.refused = true;
                emit(Event::Text(text));
            }
            for call in d.tool_calls.unwrap_or_default() {
                let (name, arguments) = call
                    .function
                    .map_or((None, None), |f| (f.name, f.arguments));
                if call.index >= self.calls {
                    self.calls = call.index + 1;
                    emit(Event::ToolStart {
                        call: call.index,
                        id: call.id.unwrap_or_default(),
                        name: name.unwrap_or_default(),
                    });
                }
                if let Some(json) = nonempty(arguments) {
                    emit(Event::ToolArguments {
                        call: call.index,
                        json,
                    });
                }
            }
            if let Some(reason) = choice.finish_reason {
                let finish = if self.refused {
                    Finish::Refusal
                } else {
                    finish_of(&reason)
                };
                emit(Event::Finish {
                    finish,
                    stop_sequence: None,
                });
            }
        }
        if let Some(usage) = chunk.usage {
            emit(Event::Usage(Usage::from(usage)));
        }
        Ok(())
    }
}
