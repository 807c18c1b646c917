//! The few facts routing reads from a request body. The body itself is forwarded as
//! the client sent it; only fields routing must change are rewritten.

use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactsError {
    #[error("request body is not valid JSON: {0}")]
    Malformed(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("`model` is required")]
    MissingModel,
    #[error("`model` must be a non-empty string")]
    BadModel,
    #[error("`stream` must be a boolean")]
    BadStream,
}

/// What routing needs from a chat-style request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<u64>,
    /// Whether the client already asked for a usage chunk on a stream.
    pub stream_usage_requested: bool,
    /// Whether the body carries `stream_options` at all (decides how to add usage).
    pub has_stream_options: bool,
}

#[derive(Deserialize)]
struct RawFacts {
    #[serde(default)]
    model: Option<serde_json::Value>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
    #[serde(flatten)]
    _rest: std::collections::BTreeMap<String, IgnoredAny>,
}

/// Read model, stream and token bounds; everything else is skipped without copying.
pub fn parse_facts(body: &[u8]) -> Result<RequestFacts, FactsError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => Err(FactsError::NotAnObject),
            Err(e) => Err(FactsError::Malformed(e.to_string())),
        };
    }
    let raw: RawFacts =
        serde_json::from_slice(body).map_err(|e| FactsError::Malformed(e.to_string()))?;
    let model = match raw.model {
        None | Some(serde_json::Value::Null) => return Err(FactsError::MissingModel),
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
        Some(_) => return Err(FactsError::BadModel),
    };
    let stream = match raw.stream {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(_) => return Err(FactsError::BadStream),
    };
    Ok(RequestFacts {
        model,
        stream,
        max_tokens: raw.max_completion_tokens.or(raw.max_tokens),
        stream_usage_requested: raw
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        has_stream_options: raw.stream_options.is_some(),
    })
}

/// For a stream whose client did not ask for usage, return a body that asks the
/// upstream for the final usage chunk. Common case: splice the field in after the
/// opening brace without re-serialising. Rare case (`stream_options` present without
/// `include_usage: true`): rewrite that one object.
pub fn with_stream_usage(body: &[u8], facts: &RequestFacts) -> Result<Option<Vec<u8>>, FactsError> {
    if !facts.stream || facts.stream_usage_requested {
        return Ok(None);
    }
    if !facts.has_stream_options {
        let open = body
            .iter()
            .position(|&b| b == b'{')
            .ok_or(FactsError::NotAnObject)?;
        let rest = &body[open + 1..];
        let empty = rest.iter().all(|b| b.is_ascii_whitespace() || *b == b'}');
        let mut out = Vec::with_capacity(body.len() + 40);
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
        if !empty {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        return Ok(Some(out));
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| FactsError::Malformed(e.to_string()))?;
    let obj = value.as_object_mut().ok_or(FactsError::NotAnObject)?;
    let options = obj
        .entry("stream_options")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    match options.as_object_mut() {
        Some(map) => {
            map.insert("include_usage".into(), serde_json::Value::Bool(true));
        }
        None => *options = serde_json::json!({"include_usage": true}),
    }
    serde_json::to_vec(&value)
        .map(Some)
        .map_err(|e| FactsError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_facts() {
        let f = parse_facts(br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":5}"#).unwrap();
        assert_eq!(f.model, "gpt-4o");
        assert!(f.stream);
        assert_eq!(f.max_tokens, Some(5));
        assert!(!f.stream_usage_requested);
    }

    #[test]
    fn bad_bodies() {
        assert!(matches!(
            parse_facts(b"{nope"),
            Err(FactsError::Malformed(_))
        ));
        assert!(matches!(parse_facts(b""), Err(FactsError::Malformed(_))));
        assert_eq!(parse_facts(b"[1]"), Err(FactsError::NotAnObject));
        assert_eq!(
            parse_facts(br#"{"messages":[]}"#),
            Err(FactsError::MissingModel)
        );
        assert_eq!(
            parse_facts(br#"{"model":null}"#),
            Err(FactsError::MissingModel)
        );
        assert_eq!(parse_facts(br#"{"model":""}"#), Err(FactsError::BadModel));
        assert_eq!(parse_facts(br#"{"model":7}"#), Err(FactsError::BadModel));
        assert_eq!(
            parse_facts(br#"{"model":"m","stream":"yes"}"#),
            Err(FactsError::BadStream)
        );
    }

    #[test]
    fn splices_usage_request_into_streams() {
        let body = br#"{"model":"m","stream":true,"messages":[]}"#;
        let facts = parse_facts(body).unwrap();
        let out = with_stream_usage(body, &facts).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");
        assert_eq!(v["messages"], serde_json::json!([]));
    }

    #[test]
    fn rewrites_existing_stream_options() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
        let facts = parse_facts(body).unwrap();
        let out = with_stream_usage(body, &facts).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true, "x": 1})
        );
    }

    #[test]
    fn leaves_other_bodies_alone() {
        for body in [
            &br#"{"model":"m"}"#[..],
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
        ] {
            let facts = parse_facts(body).unwrap();
            assert_eq!(with_stream_usage(body, &facts).unwrap(), None);
        }
    }
}
