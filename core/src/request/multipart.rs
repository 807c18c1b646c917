//! The `model` field of a `multipart/form-data` upload (audio transcription), found
//! in the prefix read so far without reading the whole upload.

/// What a scan of a multipart prefix found.
#[derive(Debug, PartialEq, Eq)]
pub enum FieldScan {
    Found(String),
    /// The field may still come: read more.
    NeedMore,
    /// The body ended without it.
    Absent,
}

/// The boundary of a `multipart/form-data` content type.
pub fn multipart_boundary(content_type: &str) -> Option<&str> {
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|b| !b.is_empty() && b.len() <= 70)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `name` parameter of a part's Content-Disposition header.
fn part_name(headers: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(headers).ok()?;
    let line = text.split("\r\n").find(|l| {
        l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    line.split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim() == "name")
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// Look for the text field `field` in the first bytes of a multipart body, so routing
/// can start before a large upload has arrived.
pub fn multipart_text_field(buf: &[u8], boundary: &str, field: &str) -> FieldScan {
    let delim = format!("--{boundary}");
    let Some(mut pos) = find(buf, delim.as_bytes()) else {
        return FieldScan::NeedMore;
    };
    loop {
        let after = pos + delim.len();
        let Some(rest) = buf.get(after..) else {
            return FieldScan::NeedMore;
        };
        if rest.len() < 2 {
            return FieldScan::NeedMore;
        }
        if rest.starts_with(b"--") {
            return FieldScan::Absent;
        }
        let Some(headers_end) = find(rest, b"\r\n\r\n") else {
            return FieldScan::NeedMore;
        };
        let headers = &rest[..headers_end];
        let content_start = after + headers_end + 4;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(delim.as_bytes());
        let Some(len) = find(&buf[content_start..], &closing) else {
            return FieldScan::NeedMore;
        };
        if part_name(headers) == Some(field) {
            let value = &buf[content_start..content_start + len];
            return match std::str::from_utf8(value) {
                Ok(v) if !v.trim().is_empty() => FieldScan::Found(v.trim().to_owned()),
                _ => FieldScan::Absent,
            };
        }
        pos = content_start + len + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_model_of_a_multipart_upload() {
        let ct = "multipart/form-data; boundary=XyZ";
        let boundary = multipart_boundary(ct).unwrap();
        assert_eq!(boundary, "XyZ");
        assert_eq!(multipart_boundary("application/json"), None);
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"q q\""),
            Some("q q")
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF....\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ--\r\n";
        assert_eq!(
            multipart_text_field(body, boundary, "model"),
            FieldScan::Found("whisper-1".into())
        );
        for cut in 0..body.len() - 20 {
            assert_eq!(
                multipart_text_field(&body[..cut], boundary, "model"),
                FieldScan::NeedMore,
                "cut at {cut}"
            );
        }
        assert_eq!(
            multipart_text_field(body, boundary, "language"),
            FieldScan::Absent
        );
    }
}
