//! [`Event`]s written as OpenAI Responses stream events.
//!
//! Responses repeats what it streamed: each `*.done` event carries its item whole,
//! and `response.completed` the whole output. So the writer keeps the open item's
//! text and each finished item (as the JSON it already sent); it never delays an
//! event for them.

use serde::Serialize;
use serde_json::value::RawValue;

use super::emit::{Progress, error_event, write_event};
use crate::error::ErrorCode;
use crate::translate::dialect::Dialect;
use crate::translate::ir::{Event, Finish, Usage};
use crate::translate::responses_answer::{
    Item, OutputText, Response, SummaryText, item_id, redacted, response_id, signed, status,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Message,
    Reasoning,
    Call(u32),
}

struct Open {
    kind: Kind,
    index: usize,
    id: String,
    /// The text streamed into the item (message text, reasoning, arguments).
    text: String,
    call_id: String,
    name: String,
}

pub(crate) struct ResponsesWriter {
    created: u64,
    upstream_id: String,
    id: String,
    model: String,
    started: bool,
    sequence: u64,
    open: Option<Open>,
    items: Vec<Box<RawValue>>,
    finish: Finish,
    usage: Usage,
}

#[derive(Serialize)]
struct Envelope<'c, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'c str,
    sequence_number: u64,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct WithResponse<'c, I: Serialize> {
    response: Response<'c, I>,
}

#[derive(Serialize)]
struct ItemEvent<'c, T: Serialize> {
    output_index: usize,
    item: &'c T,
}

#[derive(Serialize)]
struct InProgressMessage<'c> {
    id: &'c str,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    role: &'static str,
    content: [(); 0],
}

#[derive(Serialize)]
struct InProgressReasoning<'c> {
    id: &'c str,
    #[serde(rename = "type")]
    kind: &'static str,
    summary: [(); 0],
}

#[derive(Serialize)]
struct InProgressCall<'c> {
    id: &'c str,
    #[serde(rename = "type")]
    kind: &'static str,
    call_id: &'c str,
    name: &'c str,
    arguments: &'static str,
    status: &'static str,
}

#[derive(Serialize)]
struct PartEvent<'c, P: Serialize> {
    item_id: &'c str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    part: P,
}

#[derive(Serialize)]
struct DeltaEvent<'c> {
    item_id: &'c str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    delta: &'c str,
}

#[derive(Serialize)]
struct TextDone<'c> {
    item_id: &'c str,
    output_index: usize,
    content_index: u32,
    text: &'c str,
}

#[derive(Serialize)]
struct SummaryDone<'c> {
    item_id: &'c str,
    output_index: usize,
    summary_index: u32,
    text: &'c str,
}

#[derive(Serialize)]
struct ArgumentsDone<'c> {
    item_id: &'c str,
    output_index: usize,
    arguments: &'c str,
}

impl ResponsesWriter {
    pub(crate) fn new(created: u64) -> Self {
        Self {
            created,
            upstream_id: String::new(),
            id: String::new(),
            model: String::new(),
            started: false,
            sequence: 0,
            open: None,
            items: Vec::new(),
            finish: Finish::Stop,
            usage: Usage::default(),
        }
    }

    fn emit<T: Serialize>(&mut self, kind: &str, body: T, out: &mut Vec<u8>) {
        let envelope = Envelope {
            kind,
            sequence_number: self.sequence,
            body,
        };
        self.sequence += 1;
        write_event(Some(kind), &envelope, out);
    }

    fn response<I: Serialize>(&self, output: I, done: bool) -> Response<'_, I> {
        let (status, incomplete_details) = if done {
            status(self.finish)
        } else {
            ("in_progress", None)
        };
        Response {
            id: &self.id,
            object: "response",
            created_at: self.created,
            status,
            error: None,
            incomplete_details,
            model: &self.model,
            output,
            parallel_tool_calls: true,
            tool_choice: "auto",
            tools: [],
            usage: done.then(|| self.usage.into()),
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        for kind in ["response.created", "response.in_progress"] {
            let body = WithResponse {
                response: self.response([(); 0], false),
            };
            let envelope = Envelope {
                kind,
                sequence_number: self.sequence,
                body,
            };
            write_event(Some(kind), &envelope, out);
            self.sequence += 1;
        }
    }

    /// Open an item of `kind` unless it is the open one.
    fn open(&mut self, kind: Kind, call: Option<(&str, &str)>, out: &mut Vec<u8>) {
        if self.open.as_ref().is_some_and(|o| o.kind == kind) {
            return;
        }
        self.close(out);
        let index = self.items.len();
        let (prefix, call_id, name) = match (kind, call) {
            (Kind::Message, _) => ("msg", "", ""),
            (Kind::Reasoning, _) => ("rs", "", ""),
            (Kind::Call(_), Some((id, name))) => ("fc", id, name),
            (Kind::Call(_), None) => ("fc", "", ""),
        };
        let open = Open {
            kind,
            index,
            id: item_id(prefix, index, &self.upstream_id),
            text: String::new(),
            call_id: call_id.to_owned(),
            name: name.to_owned(),
        };
        let id = open.id.clone();
        match kind {
            Kind::Message => {
                let item = InProgressMessage {
                    id: &id,
                    kind: "message",
                    status: "in_progress",
                    role: "assistant",
                    content: [],
                };
                self.emit(
                    "response.output_item.added",
                    ItemEvent {
                        output_index: index,
                        item: &item,
                    },
                    out,
                );
                let part = PartEvent {
                    item_id: &id,
                    output_index: index,
                    content_index: Some(0),
                    summary_index: None,
                    part: OutputText::new(""),
                };
                self.emit("response.content_part.added", part, out);
            }
            Kind::Reasoning => {
                let item = InProgressReasoning {
                    id: &id,
                    kind: "reasoning",
                    summary: [],
                };
                self.emit(
                    "response.output_item.added",
                    ItemEvent {
                        output_index: index,
                        item: &item,
                    },
                    out,
                );
            }
            Kind::Call(_) => {
                let item = InProgressCall {
                    id: &id,
                    kind: "function_call",
                    call_id,
                    name,
                    arguments: "",
                    status: "in_progress",
                };
                self.emit(
                    "response.output_item.added",
                    ItemEvent {
                        output_index: index,
                        item: &item,
                    },
                    out,
                );
            }
        }
        self.open = Some(open);
    }

    /// Finish the open item: its `*.done` events, then `response.output_item.done`.
    fn close(&mut self, out: &mut Vec<u8>) {
        self.close_with(None, out);
    }

    fn close_with(&mut self, encrypted: Option<String>, out: &mut Vec<u8>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let (id, index, text) = (open.id.as_str(), open.index, open.text.as_str());
        let item = match open.kind {
            Kind::Message => {
                let done = TextDone {
                    item_id: id,
                    output_index: index,
                    content_index: 0,
                    text,
                };
                self.emit("response.output_text.done", done, out);
                let part = PartEvent {
                    item_id: id,
                    output_index: index,
                    content_index: Some(0),
                    summary_index: None,
                    part: OutputText::new(text),
                };
                self.emit("response.content_part.done", part, out);
                Item::Message {
                    id: open.id.clone(),
                    status: "completed",
                    role: "assistant",
                    content: [OutputText::new(text)],
                }
            }
            Kind::Reasoning => {
                let has_summary = !text.is_empty();
                if has_summary {
                    let done = SummaryDone {
                        item_id: id,
                        output_index: index,
                        summary_index: 0,
                        text,
                    };
                    self.emit("response.reasoning_summary_text.done", done, out);
                    let part = PartEvent {
                        item_id: id,
                        output_index: index,
                        content_index: None,
                        summary_index: Some(0),
                        part: SummaryText::new(text),
                    };
                    self.emit("response.reasoning_summary_part.done", part, out);
                }
                Item::Reasoning {
                    id: open.id.clone(),
                    summary: if has_summary {
                        vec![SummaryText::new(text)]
                    } else {
                        Vec::new()
                    },
                    encrypted_content: encrypted,
                }
            }
            Kind::Call(_) => {
                let done = ArgumentsDone {
                    item_id: id,
                    output_index: index,
                    arguments: text,
                };
                self.emit("response.function_call_arguments.done", done, out);
                Item::FunctionCall {
                    id: open.id.clone(),
                    call_id: &open.call_id,
                    name: &open.name,
                    arguments: text,
                    status: "completed",
                }
            }
        };
        self.emit(
            "response.output_item.done",
            ItemEvent {
                output_index: index,
                item: &item,
            },
            out,
        );
        if let Ok(raw) = serde_json::value::to_raw_value(&item) {
            self.items.push(raw);
        }
    }

    fn delta(&mut self, kind: &str, piece: &str, out: &mut Vec<u8>) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        open.text.push_str(piece);
        let (content_index, summary_index) = match open.kind {
            Kind::Message => (Some(0), None),
            Kind::Reasoning => (None, Some(0)),
            Kind::Call(_) => (None, None),
        };
        let (id, index) = (open.id.clone(), open.index);
        let event = DeltaEvent {
            item_id: &id,
            output_index: index,
            content_index,
            summary_index,
            delta: piece,
        };
        self.emit(kind, event, out);
    }

    pub(crate) fn write(&mut self, event: Event<'_>, out: &mut Vec<u8>) -> Progress {
        match event {
            Event::Start { id, model } => {
                self.upstream_id = id.into_owned();
                self.id = response_id(&self.upstream_id);
                self.model = model.into_owned();
                self.start(out);
            }
            Event::Usage(u) => self.usage = u,
            Event::Error { code, message } => {
                error_event(Dialect::Responses, code, &message, out);
                return Progress::Failed;
            }
            other => {
                self.start(out);
                return self.write_content(other, out);
            }
        }
        Progress::Open
    }

    fn write_content(&mut self, event: Event<'_>, out: &mut Vec<u8>) -> Progress {
        match event {
            Event::Text(text) => {
                self.open(Kind::Message, None, out);
                self.delta("response.output_text.delta", &text, out);
            }
            Event::Thinking(text) => {
                self.open(Kind::Reasoning, None, out);
                if self.open.as_ref().is_some_and(|o| o.text.is_empty()) {
                    self.summary_part_added(out);
                }
                self.delta("response.reasoning_summary_text.delta", &text, out);
            }
            Event::Signature(signature) => {
                self.open(Kind::Reasoning, None, out);
                self.close_with(Some(signed(&signature)), out);
            }
            Event::RedactedThinking(data) => {
                self.close(out);
                self.open(Kind::Reasoning, None, out);
                self.close_with(Some(redacted(&data)), out);
            }
            Event::ToolStart { call, id, name } => {
                self.close(out);
                self.open(Kind::Call(call), Some((&id, &name)), out);
            }
            Event::ToolArguments { call, json } => {
                if !self
                    .open
                    .as_ref()
                    .is_some_and(|o| o.kind == Kind::Call(call))
                {
                    let message = "the upstream interleaved the arguments of several tool calls";
                    error_event(Dialect::Responses, ErrorCode::UpstreamFailed, message, out);
                    return Progress::Failed;
                }
                self.delta("response.function_call_arguments.delta", &json, out);
            }
            Event::Finish { finish, .. } => {
                self.close(out);
                self.finish = finish;
            }
            Event::Done => {
                self.close(out);
                let (status, _) = status(self.finish);
                let kind = if status == "completed" {
                    "response.completed"
                } else {
                    "response.incomplete"
                };
                let items = std::mem::take(&mut self.items);
                let body = WithResponse {
                    response: self.response(&items, true),
                };
                let envelope = Envelope {
                    kind,
                    sequence_number: self.sequence,
                    body,
                };
                write_event(Some(kind), &envelope, out);
                self.sequence += 1;
                return Progress::Complete;
            }
            Event::Start { .. } | Event::Usage(_) | Event::Error { .. } => {}
        }
        Progress::Open
    }

    /// The summary part a reasoning item's text goes in, announced before its first delta.
    fn summary_part_added(&mut self, out: &mut Vec<u8>) {
        let Some(open) = self.open.as_ref() else {
            return;
        };
        let (id, index) = (open.id.clone(), open.index);
        let part = PartEvent {
            item_id: &id,
            output_index: index,
            content_index: None,
            summary_index: Some(0),
            part: SummaryText::new(""),
        };
        self.emit("response.reasoning_summary_part.added", part, out);
    }
}
