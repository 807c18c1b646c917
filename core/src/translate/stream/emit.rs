//! Writing client SSE events, and where a client stream stands.

use crate::endpoint::stream_error_event;
use crate::error::ErrorCode;
use crate::translate::dialect::Dialect;

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
    out.extend_from_slice(&stream_error_event(client.endpoint(), code, message));
}
