//! Bounds a JSON request body must meet before any of it is routed: valid UTF-8
//! throughout (the routing parse skips unread strings without validating them, so
//! a body could otherwise carry invalid bytes to the upstream), and nesting no deeper
//! than [`MAX_JSON_DEPTH`] (the routing parse skips nested values without recursion
//! and would otherwise forward a body nested a million levels deep). Each check is
//! one pass over the bytes with no allocation.

/// The deepest nesting of arrays and objects a JSON body may have: the most serde_json
/// parses whole (its recursion limit of 128 refuses the 128th level), so every body
/// that passes can also be parsed whole where a rewrite needs it. Real requests nest
/// a dozen levels at most.
pub const MAX_JSON_DEPTH: usize = 127;

/// What breaks a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    #[error("request body is not valid UTF-8 (invalid bytes at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("request body nests arrays and objects deeper than {max} levels (at offset {offset})")]
    TooDeep { max: usize, offset: usize },
}

/// Check both bounds: UTF-8 first (std's validator, which runs word-at-a-time over
/// ASCII), then nesting.
pub fn check(body: &[u8]) -> Result<(), BoundsError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(BoundsError::InvalidUtf8 {
            offset: e.valid_up_to(),
        });
    }
    check_depth(body, MAX_JSON_DEPTH)
}

/// Whether the arrays and objects of `body` nest at most `max` levels. Brackets inside
/// strings do not count. One pass with a counter: no recursion, so no body can exhaust
/// the stack. String contents (most of a request's bytes) are skipped with a
/// vectorised search for the next quote or backslash. For a body that is not JSON the
/// answer is only about its brackets; the parser that runs after refuses the rest.
pub fn check_depth(body: &[u8], max: usize) -> Result<(), BoundsError> {
    let mut depth = 0usize;
    let mut offset = 0usize;
    while let Some(&b) = body.get(offset) {
        match b {
            b'"' => match string_end(body, offset + 1) {
                Some(end) => {
                    offset = end;
                    continue;
                }
                // Unterminated: no bracket follows that could count.
                None => return Ok(()),
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(BoundsError::TooDeep { max, offset });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        offset += 1;
    }
    Ok(())
}

/// The offset just past the closing quote of a string whose contents start at `from`.
fn string_end(body: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let rest = body.get(from..)?;
        let at = from + memchr::memchr2(b'"', b'\\', rest)?;
        if body.get(at) == Some(&b'"') {
            return Some(at + 1);
        }
        // A backslash escapes the byte after it.
        from = at + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nested(levels: usize) -> Vec<u8> {
        let mut body = br#"{"model":"m","x":"#.to_vec();
        body.extend(std::iter::repeat_n(b'[', levels.saturating_sub(1)));
        body.push(b'0');
        body.extend(std::iter::repeat_n(b']', levels.saturating_sub(1)));
        body.push(b'}');
        body
    }

    #[test]
    fn nesting_up_to_the_bound_passes_and_parses_whole() {
        let body = nested(MAX_JSON_DEPTH);
        assert_eq!(check(&body), Ok(()));
        // The bound is serde_json's own: a body that passes also parses into a Value.
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
        let deeper = nested(MAX_JSON_DEPTH + 1);
        assert!(matches!(
            check(&deeper),
            Err(BoundsError::TooDeep {
                max: MAX_JSON_DEPTH,
                ..
            })
        ));
    }

    #[test]
    fn a_million_levels_are_refused_without_recursion() {
        let body = nested(1_000_000);
        assert_eq!(
            check(&body),
            Err(BoundsError::TooDeep {
                max: MAX_JSON_DEPTH,
                // The opening brace, then 127 brackets: the 128th level.
                offset: br#"{"model":"m","x":"#.len() + MAX_JSON_DEPTH - 1,
            })
        );
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        let text = "[".repeat(1000);
        let body = format!(r#"{{"model":"m","s":"{text}\"{text}","t":"\\"}}"#);
        assert_eq!(check(body.as_bytes()), Ok(()));
        // An escaped backslash ends before the quote, which then closes the string.
        assert_eq!(check(br#"{"a":"\\","b":[[]]}"#), Ok(()));
        assert!(check_depth(br#"{"a":"\\",[[]]}"#, 2).is_err());
    }

    #[test]
    fn invalid_utf8_anywhere_is_refused() {
        let mut body = br#"{"model":"m","messages":[{"content":"caf"#.to_vec();
        let offset = body.len();
        body.extend_from_slice(b"\xff\xfe\"}]}");
        assert_eq!(check(&body), Err(BoundsError::InvalidUtf8 { offset }));
        // A truncated sequence, an overlong encoding, a lone surrogate's encoding.
        for bad in [&b"\xc3"[..], b"\xc0\xaf", b"\xed\xa0\x80"] {
            let mut body = br#"{"model":""#.to_vec();
            body.extend_from_slice(bad);
            body.extend_from_slice(br#""}"#);
            assert!(
                matches!(check(&body), Err(BoundsError::InvalidUtf8 { offset: 10 })),
                "{bad:?}"
            );
        }
        assert_eq!(
            check("{\"model\":\"caf\u{e9} \u{1f600}\"}".as_bytes()),
            Ok(())
        );
    }

    /// The plain byte-at-a-time scan the vectorised one must agree with.
    fn reference_depth_ok(body: &[u8], max: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in body {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > max {
                        return false;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        true
    }

    proptest! {
        #[test]
        fn the_scan_agrees_with_a_byte_at_a_time_one(
            body in proptest::collection::vec(proptest::sample::select(b"[]{}\"\\ab".to_vec()), 0..64),
            max in 0usize..6,
        ) {
            prop_assert_eq!(check_depth(&body, max).is_ok(), reference_depth_ok(&body, max));
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = check(&body);
            let _ = check_depth(&body, 0);
        }

        #[test]
        fn depth_agrees_with_the_parser(levels in 1usize..300) {
            let body = nested(levels);
            let parsed = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
            prop_assert_eq!(check(&body).is_ok(), parsed);
        }
    }
}
