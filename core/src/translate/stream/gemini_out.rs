//! [`Event`]s written as Gemini `streamGenerateContent?alt=sse` chunks: each SSE
//! event's data is a whole `GenerateContentResponse` holding the parts that arrived.
//! Gemini sends a function call whole, so a call's arguments are held until they end;
//! the finish reason and the usage go in the last chunk.

use super::emit::{Progress, error_event, write_event};
use crate::error::ErrorCode;
use crate::translate::dialect::Dialect;
use crate::translate::gemini_answer::{
    GeminiPart, OutCandidate, OutContent, OutResponse, OutUsage, finish_name,
};
use crate::translate::gemini_signature::{redacted_signature, thinking_signature};
use crate::translate::ir::{Event, Finish, Usage};

#[derive(Default)]
pub(crate) struct GeminiWriter {
    id: String,
    model: String,
    /// The call whose arguments are arriving.
    call: Option<OpenCall>,
    finish: Option<Finish>,
    usage: Option<Usage>,
}

struct OpenCall {
    index: u32,
    id: String,
    name: String,
    arguments: String,
}

impl GeminiWriter {
    fn chunk(
        &self,
        parts: Vec<GeminiPart<'_>>,
        finish_reason: Option<&'static str>,
        usage_metadata: Option<OutUsage>,
        out: &mut Vec<u8>,
    ) {
        let chunk = OutResponse {
            candidates: [OutCandidate {
                content: OutContent {
                    role: "model",
                    parts,
                },
                finish_reason,
                index: 0,
            }],
            usage_metadata,
            model_version: &self.model,
            response_id: &self.id,
        };
        write_event(None, &chunk, out);
    }

    /// Write the open call, whole, now that its arguments have ended.
    fn close_call(&mut self, out: &mut Vec<u8>) {
        if let Some(c) = self.call.take() {
            self.chunk(
                vec![GeminiPart::call(&c.id, &c.name, &c.arguments)],
                None,
                None,
                out,
            );
        }
    }

    pub(crate) fn write(&mut self, event: Event<'_>, out: &mut Vec<u8>) -> Progress {
        if !matches!(event, Event::ToolArguments { .. } | Event::Usage(_)) {
            self.close_call(out);
        }
        match event {
            Event::Start { id, model } => {
                self.id = id.into_owned();
                self.model = model.into_owned();
            }
            Event::Text(text) if !text.is_empty() => {
                self.chunk(vec![GeminiPart::text(&text)], None, None, out);
            }
            Event::Thinking(text) if !text.is_empty() => {
                self.chunk(vec![GeminiPart::thought(&text, None)], None, None, out);
            }
            Event::Text(_) | Event::Thinking(_) => {}
            Event::Signature(s) => {
                let part = GeminiPart::thought("", Some(thinking_signature(&s)));
                self.chunk(vec![part], None, None, out);
            }
            Event::RedactedThinking(data) => {
                let part = GeminiPart::thought("", Some(redacted_signature(&data)));
                self.chunk(vec![part], None, None, out);
            }
            Event::ToolStart { call, id, name } => {
                self.call = Some(OpenCall {
                    index: call,
                    id: id.into_owned(),
                    name: name.into_owned(),
                    arguments: String::new(),
                });
            }
            Event::ToolArguments { call, json } => match &mut self.call {
                Some(open) if open.index == call => open.arguments.push_str(&json),
                _ => {
                    let message = "the upstream interleaved the arguments of two tool calls";
                    error_event(Dialect::Gemini, ErrorCode::UpstreamFailed, message, out);
                    return Progress::Failed;
                }
            },
            Event::Finish { finish, .. } => self.finish = Some(finish),
            Event::Usage(u) => self.usage = Some(u),
            Event::Error { code, message } => {
                error_event(Dialect::Gemini, code, &message, out);
                return Progress::Failed;
            }
            Event::Done => {
                // Gemini's last chunk: an empty text part, the finish reason and the
                // whole usage.
                let finish = self.finish.unwrap_or_default();
                let usage = self.usage.unwrap_or_default();
                self.chunk(
                    vec![GeminiPart::text("")],
                    Some(finish_name(finish)),
                    Some(usage.into()),
                    out,
                );
                return Progress::Complete;
            }
        }
        Progress::Open
    }
}
