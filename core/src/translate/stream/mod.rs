//! Streamed answers: the upstream's SSE events read one at a time into [`Event`]s
//! and written at once as the client's SSE events. Nothing is held but the little
//! state each side needs (the open block, the usage so far, the finish reason until
//! the usage that follows it).

mod chat_in;
mod chat_out;
mod emit;
mod gemini_in;
mod gemini_out;
mod messages_in;
mod messages_out;
mod responses_out;

use super::dialect::{Dialect, Exchange};
use super::ir::Event;
use crate::error::ErrorCode;
use crate::usage::StreamEnd;
use emit::Progress;

enum Reader {
    Chat(chat_in::ChatReader),
    Messages(messages_in::MessagesReader),
    Gemini(gemini_in::GeminiReader),
    /// An upstream dialect no stream is read from (Responses): its first event ends
    /// the client's stream with an error.
    Unread,
}

enum Writer {
    Chat(chat_out::ChatWriter),
    Messages(messages_out::MessagesWriter),
    Responses(responses_out::ResponsesWriter),
    Gemini(gemini_out::GeminiWriter),
}

impl Writer {
    fn write(&mut self, event: Event<'_>, out: &mut Vec<u8>) -> Progress {
        match self {
            Self::Chat(w) => w.write(event, out),
            Self::Messages(w) => w.write(event, out),
            Self::Responses(w) => w.write(event, out),
            Self::Gemini(w) => w.write(event, out),
        }
    }
}

/// Translates one streamed answer, upstream events in, client events out.
pub struct StreamTranslator {
    client: Dialect,
    reader: Reader,
    writer: Writer,
    progress: Progress,
}

impl StreamTranslator {
    /// A translator for the stream of `exchange`; `now_unix` is the `created` time
    /// OpenAI chunks carry.
    pub fn new(exchange: &Exchange, now_unix: u64) -> Self {
        let reader = match exchange.upstream {
            Dialect::Chat => Reader::Chat(chat_in::ChatReader::default()),
            Dialect::Messages => Reader::Messages(messages_in::MessagesReader::default()),
            Dialect::Gemini => Reader::Gemini(gemini_in::GeminiReader::default()),
            Dialect::Responses => Reader::Unread,
        };
        let writer = match exchange.client {
            Dialect::Chat => {
                Writer::Chat(chat_out::ChatWriter::new(now_unix, exchange.include_usage))
            }
            Dialect::Gemini => Writer::Gemini(gemini_out::GeminiWriter::default()),
            Dialect::Messages => Writer::Messages(messages_out::MessagesWriter::default()),
            Dialect::Responses => Writer::Responses(responses_out::ResponsesWriter::new(now_unix)),
        };
        Self {
            client: exchange.client,
            reader,
            writer,
            progress: Progress::Open,
        }
    }

    /// Feed one whole upstream SSE event (as the framer yields it, terminator
    /// included); the client's events for it are appended to `out`. Events after the
    /// client's stream ended are ignored.
    pub fn feed(&mut self, event: &[u8], out: &mut Vec<u8>) {
        if self.progress != Progress::Open {
            return;
        }
        let Some(data) = crate::sse::event_data(event) else {
            return; // a comment or keep-alive
        };
        let writer = &mut self.writer;
        let progress = &mut self.progress;
        let mut emit = |e: Event<'_>| {
            if *progress == Progress::Open {
                *progress = writer.write(e, out);
            }
        };
        let read = match &mut self.reader {
            Reader::Chat(r) => r.read(&data, &mut emit),
            Reader::Messages(r) => r.read(&data, &mut emit),
            Reader::Gemini(r) => r.read(&data, &mut emit),
            Reader::Unread => Err(serde::de::Error::custom(
                "streams are not translated from OpenAI Responses",
            )),
        };
        if let Err(e) = read {
            let message = format!("the upstream sent an event that could not be read: {e}");
            emit(Event::Error {
                code: ErrorCode::UpstreamFailed,
                message: message.into(),
            });
        }
    }

    /// The upstream's stream ended (closed cleanly). A client stream that has not
    /// had its last event is ended with the protocol's error event, never with a
    /// clean end that would look like a whole answer.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> StreamEnd {
        // Gemini's stream has no last event: a finish reason, then a clean close.
        if let Reader::Gemini(r) = &self.reader
            && r.finished
            && self.progress == Progress::Open
        {
            self.progress = self.writer.write(Event::Done, out);
        }
        match self.progress {
            Progress::Complete => StreamEnd::Complete,
            Progress::Failed => StreamEnd::Failed,
            Progress::Open => {
                self.broken("the upstream stream ended before its last event", out);
                StreamEnd::Truncated
            }
        }
    }

    /// The upstream's stream broke (a transport error, a timeout): end the client's
    /// stream with its protocol's error event, unless it has already ended.
    pub fn broken(&mut self, message: &str, out: &mut Vec<u8>) {
        if self.progress == Progress::Open {
            emit::error_event(self.client, ErrorCode::UpstreamFailed, message, out);
            self.progress = Progress::Failed;
        }
    }

    /// Whether the client's stream has ended (completely or with an error).
    pub fn ended(&self) -> bool {
        self.progress != Progress::Open
    }
}
