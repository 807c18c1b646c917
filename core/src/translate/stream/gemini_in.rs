//! Gemini `streamGenerateContent?alt=sse` chunks read as [`Event`]s. Gemini's stream
//! has no last event of its own: it is whole when a chunk gave a finish reason and
//! the connection then closed cleanly.

use crate::translate::gemini_answer::{Chunk, arguments, call_id, finish_of};
use crate::translate::ir::{Event, Usage};

#[derive(Default)]
pub(crate) struct GeminiReader {
    started: bool,
    calls: u32,
    pub(crate) finished: bool,
}

impl GeminiReader {
    pub(crate) fn read<'a>(
        &mut self,
        data: &'a [u8],
        emit: &mut impl FnMut(Event<'a>),
    ) -> Result<(), serde_json::Error> {
        let chunk: Chunk<'a> = serde_json::from_slice(data)?;
        if !self.started {
            self.started = true;
            emit(Event::Start {
                id: chunk.response_id,
                model: chunk.model_version,
            });
        }
        if let Some(candidate) = chunk.candidates.into_iter().next() {
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(call) = part.function_call {
                    let n = self.calls;
                    self.calls += 1;
                    emit(Event::ToolStart {
                        call: n,
                        id: call_id(call.id, n),
                        name: call.name,
                    });
                    // Gemini sends a call's arguments whole.
                    emit(Event::ToolArguments {
                        call: n,
                        json: arguments(call.args).into(),
                    });
                } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                    emit(if part.thought {
                        Event::Thinking(text)
                    } else {
                        Event::Text(text)
                    });
                }
            }
            if let Some(reason) = candidate.finish_reason {
                self.finished = true;
                emit(Event::Finish {
                    finish: finish_of(&reason, self.calls > 0),
                    stop_sequence: None,
                });
            }
        }
        if let Some(u) = chunk.usage_metadata {
            emit(Event::Usage(Usage::from(u)));
        }
        Ok(())
    }
}
