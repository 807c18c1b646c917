//! Framing of server-sent events: bytes in, whole events out. The proxy forwards an
//! event as soon as it is complete, so streams pass through event by event while the
//! usage chunk can still be read (and, when the router asked for it, held back).

use std::borrow::Cow;

/// Accumulates stream bytes and yields complete events (each with its terminator).
#[derive(Default, Debug)]
pub struct SseFramer {
    buf: Vec<u8>,
    /// Where to resume searching for a terminator, so a slow trickle stays linear.
    scanned: usize,
}

impl SseFramer {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if one has arrived.
    pub fn next_event(&mut self) -> Option<Vec<u8>> {
        let start = self.scanned.saturating_sub(3);
        let end = find_event_end(&self.buf[start..]).map(|e| e + start);
        match end {
            Some(end) => {
                let rest = self.buf.split_off(end);
                let event = std::mem::replace(&mut self.buf, rest);
                self.scanned = 0;
                Some(event)
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Bytes of an unfinished event (a stream that ended without a blank line).
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.scanned = 0;
        std::mem::take(&mut self.buf)
    }

    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Index just past the first blank line (`\n\n`, `\r\n\r\n` or `\r\r`).
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buf.len() {
        match (buf[i], buf[i + 1]) {
            (b'\n', b'\n') | (b'\r', b'\r') => return Some(i + 2),
            (b'\r', b'\n') if buf.get(i + 2) == Some(&b'\r') && buf.get(i + 3) == Some(&b'\n') => {
                return Some(i + 4);
            }
            _ => i += 1,
        }
    }
    None
}

/// The `data` of an event: its `data:` lines joined by newlines, or `None` when it
/// has none (a comment or a keep-alive).
pub fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut parts = event
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter_map(|line| line.strip_prefix(b"data:"))
        .map(|v| v.strip_prefix(b" ").unwrap_or(v));
    let first = parts.next()?;
    match parts.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = first.to_vec();
            joined.push(b'\n');
            joined.extend_from_slice(second);
            for more in parts {
                joined.push(b'\n');
                joined.extend_from_slice(more);
            }
            Some(Cow::Owned(joined))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(framer: &mut SseFramer) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| framer.next_event()).collect()
    }

    #[test]
    fn events_split_across_chunks() {
        let stream = b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\n: keep-alive\n\ndata: [DONE]\n\n";
        for size in 1..stream.len() {
            let mut framer = SseFramer::default();
            let mut events = Vec::new();
            for chunk in stream.chunks(size) {
                framer.push(chunk);
                events.extend(all(&mut framer));
            }
            assert_eq!(events.len(), 4, "chunk size {size}");
            assert_eq!(events.concat(), stream.to_vec());
            assert_eq!(framer.pending(), 0);
        }
    }

    #[test]
    fn crlf_events() {
        let mut framer = SseFramer::default();
        framer.push(b"event: ping\r\ndata: x\r\n\r\ndata: y\r\n");
        let events = all(&mut framer);
        assert_eq!(events.len(), 1);
        assert_eq!(event_data(&events[0]).as_deref(), Some(&b"x"[..]));
        assert_eq!(framer.take_rest(), b"data: y\r\n".to_vec());
    }

    #[test]
    fn data_lines() {
        assert_eq!(
            event_data(b"data: a\ndata: b\n\n").as_deref(),
            Some(&b"a\nb"[..])
        );
        assert_eq!(
            event_data(b"data:tight\n\n").as_deref(),
            Some(&b"tight"[..])
        );
        assert_eq!(event_data(b": comment\n\n"), None);
    }
}
