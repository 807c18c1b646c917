//! The last line of defence for logs: text that has the shape of a credential is
//! masked before a log line leaves the process.
//!
//! Secrets are kept out of logs by their types first (`Secret<T>`, sensitive header
//! values); this catches what a dependency or a careless format string lets through.
//! Shapes masked: issued keys and most providers' keys (`sk-…`: Switchyard's
//! `sk-sy-`, OpenAI's `sk-proj-`, Anthropic's `sk-ant-`, DeepSeek's), the operator's
//! root key (`sy-root-…`), JSON Web Tokens (`eyJ…`: the ChatGPT login Codex passes
//! through a passthrough key, wherever it stands), and whatever follows `Bearer `.

use std::borrow::Cow;

/// What replaces a credential's secret part.
pub const MASK: &str = "[redacted]";

/// Prefixes whose tail is a secret once it is long enough.
const KEY_PREFIXES: [&str; 3] = ["sk-", "sy-root-", "eyJ"];
/// Shorter tails are words, not keys ("sk-learn", "sk-sy-…" in a display tail).
const MIN_SECRET_TAIL: usize = 12;
const BEARER: &str = "Bearer ";

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// `text` with every credential-shaped token masked; borrowed when there is none.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    // Bytes of `text` before `copied` are already in `out` (or need no change).
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let at_token_start = i == 0 || !is_token_byte(bytes[i - 1]);
        let secret = at_token_start.then(|| secret_at(bytes, i)).flatten();
        match secret {
            Some((keep, end)) => {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[copied..i + keep]);
                o.push_str(MASK);
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// A credential starting at `i`: how many of its bytes stay readable (the prefix)
/// and where it ends.
fn secret_at(bytes: &[u8], i: usize) -> Option<(usize, usize)> {
    let rest = &bytes[i..];
    let token_end = |from: usize| {
        from + bytes[from..]
            .iter()
            .take_while(|b| is_token_byte(**b))
            .count()
    };
    if rest.starts_with(BEARER.as_bytes()) {
        let from = i + BEARER.len();
        let end = token_end(from);
        return (end > from).then_some((BEARER.len(), end));
    }
    KEY_PREFIXES.iter().find_map(|prefix| {
        if !rest.starts_with(prefix.as_bytes()) {
            return None;
        }
        let from = i + prefix.len();
        let end = token_end(from);
        (end - from >= MIN_SECRET_TAIL).then_some((prefix.len(), end))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys_of_every_known_shape() {
        let issued = crate::apikey::generate().clear;
        let line = format!(r#"{{"msg":"presented {} twice"}}"#, issued.expose());
        let scrubbed = scrub(&line);
        assert!(!scrubbed.contains(issued.expose()));
        assert_eq!(scrubbed, r#"{"msg":"presented sk-[redacted] twice"}"#);

        for (text, want) in [
            ("key=sk-proj-abcdefghijklmnop", "key=sk-[redacted]"),
            ("sk-ant-api03-AAAAAAAAAAAAAAAA end", "sk-[redacted] end"),
            ("root sy-root-0123456789abcdef", "root sy-root-[redacted]"),
            (
                "authorization: Bearer eyJhbGciOi.payload.sig, next",
                "authorization: Bearer [redacted], next",
            ),
            (
                "two: sk-aaaaaaaaaaaaaaaa sk-bbbbbbbbbbbbbbbb",
                "two: sk-[redacted] sk-[redacted]",
            ),
            (
                "token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl!",
                "token=eyJ[redacted]!",
            ),
            ("sk-ant-oat01-AAAAAAAAAAAAAAAA", "sk-[redacted]"),
        ] {
            assert_eq!(scrub(text), want, "{text}");
        }
    }

    #[test]
    fn leaves_ordinary_text_alone_and_borrowed() {
        for text in [
            "",
            "plain words",
            "sk-learn is a library",
            "the key sk-sy-…AbC123 was revoked",
            "task-abcdefghijklmnopqrst is not a key",
            "Bearer",
            "ümlauts and sk-",
        ] {
            assert!(matches!(scrub(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn never_splits_a_character() {
        let text = "é sk-0123456789abcdef é";
        assert_eq!(scrub(text), "é sk-[redacted] é");
    }
}
