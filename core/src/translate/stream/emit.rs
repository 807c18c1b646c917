//! Writing client SSE events, and where a client stream stands.

use crate::endpoint::stream_error_event;
use crate::error::ErrorCode;
use crate::translate::dialect::Dialect;
use crate::translate::errors::{gemini_error_body, gemini_status};

/// Where a client stream stands after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    Open,
    /// The client's stream has had its last event.
    Complete,
    /// The client's stream has ended with its error event.
    Failed,
}

/// Append one SSE event: `event:` line when named, one `data:` line (JSON never holds
/// a raw newline), blank line.
pub(crate) fn write_event<T: serde::Serialize>(name: Option<&str>, data: &T, out: &mut Vec<u8>) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    let mark = out.len();
    if serde_json::to_writer(&mut *out, data).is_err() {
        // Serialising plain structs of strings and numbers cannot fail.
        out.truncate(mark);
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

/// The client's error event, for an error the upstream's stream carried.
pub(crate) fn error_event(client: Dialect, code: ErrorCode, message: &str, out: &mut Vec<u8>) {
    if client == Dialect::Gemini {
        // Gemini's SDKs read an `error` object in any chunk as the stream's failure.
        let body = gemini_error_body(gemini_status(code), code, message);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
        return;
    }
    out.extend_from_slice(&stream_error_event(client.endpoint(), code, message));
}
