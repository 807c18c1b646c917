//! The few facts routing reads from a request body. The body itself is forwarded as
//! the client sent it; only fields routing must change are rewritten.

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::endpoint::{Endpoint, Protocol};
use crate::fields::{self, TextField};
use crate::json_bounds::{self, BoundsError};

mod client_ip;
mod multipart;

pub use client_ip::client_ip;
pub use multipart::{FieldScan, multipart_boundary, multipart_text_field};

/// The largest output-token limit (`max_tokens`, `max_completion_tokens`,
/// `max_output_tokens`) a request may name: i32's maximum. No model's output comes
/// near it, providers validate these fields as 32-bit integers, and the reservation
/// priced from it stays far from overflow.
pub const MAX_TOKEN_LIMIT: u64 = i32::MAX as u64;

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
    #[error(transparent)]
    Bounds(#[from] BoundsError),
    #[error("`{field}` must be an integer from 1 to {MAX_TOKEN_LIMIT}; got {got}")]
    BadTokenLimit {
        field: &'static str,
        /// What kind of value was sent (never the client's text itself).
        got: &'static str,
    },
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
    /// Byte range of the `model` value (with its quotes), for rewriting it alone.
    pub model_span: (usize, usize),
    /// The end user the body names (OpenAI's `safety_identifier`, else its `user`;
    /// Anthropic's `metadata.user_id`, Claude Code's account or device in it:
    /// `core::fields::anthropic_end_user`), when it is a string the usage store holds
    /// (`core::fields::END_USER`). Any other value is dropped, never refused: it only
    /// labels usage, and the upstream judges the request as it would without us.
    pub end_user: Option<String>,
}

#[derive(Deserialize)]
struct RawFacts<'a> {
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    /// Token limits as sent (`null` included, which plain `Option` would hide).
    #[serde(default, borrow, deserialize_with = "present")]
    max_tokens: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    max_completion_tokens: Option<&'a RawValue>,
    /// The Responses API's name for it.
    #[serde(default, borrow, deserialize_with = "present")]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// OpenAI's end-user fields, as sent (of any type: only a string is read).
    #[serde(default, borrow)]
    safety_identifier: Option<&'a RawValue>,
    #[serde(default, borrow)]
    user: Option<&'a RawValue>,
    /// Anthropic's `metadata`, of which only `user_id` is read.
    #[serde(default, borrow)]
    metadata: Option<Metadata<'a>>,
}

/// The `user_id` of Anthropic's `metadata`, read in the same pass as the rest. A
/// `metadata` of another type is skipped, not refused: the upstream judges it.
#[derive(Default)]
struct Metadata<'a> {
    user_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum MetadataKey {
    UserId,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Metadata<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MetadataVisitor(std::marker::PhantomData))
    }
}

struct MetadataVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for MetadataVisitor<'a> {
    type Value = Metadata<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut user_id = None;
        while let Some(key) = map.next_key::<MetadataKey>()? {
            match key {
                MetadataKey::UserId => user_id = Some(map.next_value::<&'a RawValue>()?),
                MetadataKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Metadata { user_id })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Metadata::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Metadata::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Metadata::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Metadata::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Metadata::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Metadata::default())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Metadata::default())
    }
}

/// A label sent as a JSON value, when it is a string `field` holds. Text too long
/// to decode into the bound is dropped before decoding (a byte of the value takes
/// at most six of its JSON text, as `\u00XX`).
fn label_text(raw: &RawValue, field: TextField) -> Option<String> {
    let text = raw.get();
    if !text.starts_with('"') || text.len() > field.max_bytes.saturating_mul(6) + 2 {
        return None;
    }
    let value: String = serde_json::from_str(text).ok()?;
    field.check(&value).ok()?;
    Some(value)
}

impl RawFacts<'_> {
    /// The end user named by the fields of `protocol`: the first that holds one.
    fn end_user(&self, protocol: Protocol) -> Option<String> {
        let sent = match protocol {
            Protocol::OpenAi => [self.safety_identifier, self.user],
            Protocol::Anthropic => {
                let sent = self.metadata.as_ref().and_then(|m| m.user_id)?;
                return label_text(sent, fields::END_USER).map(fields::anthropic_end_user);
            }
        };
        sent.into_iter()
            .flatten()
            .find_map(|raw| label_text(raw, fields::END_USER))
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
    #[serde(flatten)]
    _rest: std::collections::BTreeMap<String, IgnoredAny>,
}

/// A field that is present, `null` included.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// What an explicit `null` token limit means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NullLimit {
    /// The field was not sent: OpenAI documents these fields as "integer or null",
    /// and its SDKs send `null` for a limit the caller set to none.
    Absent,
    /// Refused: Anthropic's Messages API requires `max_tokens` as an integer of at
    /// least 1 and answers 400 to `null` itself.
    Refused,
}

impl NullLimit {
    pub fn of(endpoint: Endpoint) -> Self {
        Self::of_protocol(endpoint.protocol())
    }

    fn of_protocol(protocol: Protocol) -> Self {
        match protocol {
            Protocol::OpenAi => Self::Absent,
            Protocol::Anthropic => Self::Refused,
        }
    }
}

/// One token limit as sent: `Ok(None)` when it means no limit, else an integer in
/// `1..=MAX_TOKEN_LIMIT` written as one (no fraction or exponent).
pub fn token_limit(
    field: &'static str,
    raw: &RawValue,
    null: NullLimit,
) -> Result<Option<u64>, FactsError> {
    let text = raw.get().trim();
    let bad = |got| Err(FactsError::BadTokenLimit { field, got });
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    match text.as_bytes().first() {
        Some(b'n') if null == NullLimit::Absent => Ok(None),
        Some(b'n') => bad("null"),
        Some(b'"') => bad("a string"),
        Some(b't' | b'f') => bad("a boolean"),
        Some(b'[') => bad("an array"),
        Some(b'{') => bad("an object"),
        Some(b'-') if digits(&text[1..]) => bad("a negative number"),
        _ if !digits(text) => bad("a number that is not an integer"),
        _ => match text.parse::<u64>() {
            Ok(0) => bad("0"),
            Ok(n) if n <= MAX_TOKEN_LIMIT => Ok(Some(n)),
            _ => bad("a number above the bound"),
        },
    }
}

/// Read model, stream, token bounds and end user; everything else is skipped without
/// copying. A `null` token limit means none (OpenAI's rule); see [`parse_facts_for`].
pub fn parse_facts(body: &[u8]) -> Result<RequestFacts, FactsError> {
    parse_facts_with(body, Protocol::OpenAi)
}

/// [`parse_facts`] with the token-limit rules and end-user fields of `endpoint`'s
/// protocol.
pub fn parse_facts_for(endpoint: Endpoint, body: &[u8]) -> Result<RequestFacts, FactsError> {
    parse_facts_with(body, endpoint.protocol())
}

fn parse_facts_with(body: &[u8], protocol: Protocol) -> Result<RequestFacts, FactsError> {
    let null = NullLimit::of_protocol(protocol);
    json_bounds::check(body)?;
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => Err(FactsError::NotAnObject),
            Err(e) => Err(FactsError::Malformed(e.to_string())),
        };
    }
    let raw: RawFacts =
        serde_json::from_slice(body).map_err(|e| FactsError::Malformed(e.to_string()))?;
    let Some(model_raw) = raw.model else {
        return Err(FactsError::MissingModel);
    };
    let text = model_raw.get();
    // The raw value borrows from `body`; its address gives its place there.
    let start = (text.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let model_span = (start, start + text.len());
    if body.get(model_span.0..model_span.1) != Some(text.as_bytes()) {
        return Err(FactsError::Malformed("cannot locate `model`".into()));
    }
    let model = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Null) => return Err(FactsError::MissingModel),
        Ok(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
        _ => return Err(FactsError::BadModel),
    };
    let stream = match raw.stream {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(_) => return Err(FactsError::BadStream),
    };
    // Every limit sent is checked, the first of them in this order is the one used.
    let mut max_tokens = None;
    for (field, value) in [
        ("max_completion_tokens", raw.max_completion_tokens),
        ("max_tokens", raw.max_tokens),
        ("max_output_tokens", raw.max_output_tokens),
    ] {
        if let Some(value) = value {
            let limit = token_limit(field, value, null)?;
            max_tokens = max_tokens.or(limit);
        }
    }
    Ok(RequestFacts {
        model,
        stream,
        max_tokens,
        stream_usage_requested: raw
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        has_stream_options: raw.stream_options.is_some(),
        model_span,
        end_user: raw.end_user(protocol),
    })
}

/// The body with only its `model` value replaced (the ModelMapper's rewrite); every
/// other byte stays as the client sent it.
pub fn with_model(body: &[u8], facts: &RequestFacts, model: &str) -> Vec<u8> {
    let (start, end) = facts.model_span;
    let quoted = serde_json::Value::String(model.to_owned()).to_string();
    let mut out = Vec::with_capacity(body.len() + quoted.len());
    out.extend_from_slice(&body[..start]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[end..]);
    out
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

    fn end_user_of(endpoint: Endpoint, body: &str) -> Option<String> {
        let facts = parse_facts_for(endpoint, body.as_bytes()).unwrap();
        assert_eq!(facts.model, "m", "{body}");
        facts.end_user
    }

    #[test]
    fn end_users_come_from_each_protocols_fields() {
        let chat = |body: &str| end_user_of(Endpoint::ChatCompletions, body);
        assert_eq!(chat(r#"{"model":"m","user":"ada"}"#), Some("ada".into()));
        // `safety_identifier` first, wherever it sits.
        assert_eq!(
            chat(r#"{"user":"ada","model":"m","safety_identifier":"sid-1"}"#),
            Some("sid-1".into())
        );
        // One the store cannot hold leaves `user`.
        assert_eq!(
            chat(r#"{"model":"m","safety_identifier":7,"user":"ada"}"#),
            Some("ada".into())
        );
        assert_eq!(
            end_user_of(
                Endpoint::Responses,
                r#"{"model":"m","input":"hi","safety_identifier":"hash-9f"}"#
            ),
            Some("hash-9f".into())
        );
        assert_eq!(
            end_user_of(
                Endpoint::Embeddings,
                r#"{"model":"m","input":"x","user":"u-2"}"#
            ),
            Some("u-2".into())
        );
        // Escapes are decoded; a space is kept.
        assert_eq!(
            chat(r#"{"model":"m","user":"Ad\u0061 L\u00f6"}"#),
            Some("Ada Lö".into())
        );
        let claude = format!(
            "user_{}_account_0c5e6a1e-6a0b-4c1e-9f55-0123456789ab_session_7d1f0a2e-1b2c-4d3e-8f90-a1b2c3d4e5f6",
            "ab12".repeat(16)
        );
        let body = format!(
            r#"{{"model":"m","max_tokens":5,"metadata":{{"other":[1,{{"user_id":"no"}}],"user_id":"{claude}"}},"messages":[]}}"#
        );
        assert_eq!(end_user_of(Endpoint::Messages, &body), Some(claude));
        // Claude Code's newer form, JSON text: its device, not its session.
        let body = r#"{"model":"m","max_tokens":5,"metadata":{"user_id":"{\"device_id\":\"d-1\",\"account_uuid\":\"\",\"session_id\":\"s-1\"}"},"messages":[]}"#;
        assert_eq!(end_user_of(Endpoint::Messages, body), Some("d-1".into()));
        assert_eq!(
            end_user_of(
                Endpoint::CountTokens,
                r#"{"model":"m","metadata":{"user_id":"u"}}"#
            ),
            Some("u".into())
        );
        // Each protocol reads its own fields only.
        assert_eq!(
            end_user_of(
                Endpoint::Messages,
                r#"{"model":"m","max_tokens":5,"user":"ada","safety_identifier":"s"}"#
            ),
            None
        );
        assert_eq!(chat(r#"{"model":"m","metadata":{"user_id":"u"}}"#), None);
        assert_eq!(chat(r#"{"model":"m"}"#), None);
    }

    #[test]
    fn end_users_out_of_bounds_are_dropped_never_refused() {
        let max = crate::fields::END_USER_MAX_BYTES;
        let long = format!("\"{}\"", "u".repeat(max + 1));
        let hostile = [
            long.as_str(),
            r#""""#,
            r#""a\u0000b""#,
            r#""a\nb""#,
            r#""\u001b[31mred""#,
            r#""\u0085""#,
            r#""\ud800""#,
            "null",
            "7",
            "-1.5e3",
            "true",
            r#"["ada"]"#,
            r#"{"id":"ada"}"#,
        ];
        for value in hostile {
            for (endpoint, body) in [
                (
                    Endpoint::ChatCompletions,
                    format!(r#"{{"model":"m","user":{value}}}"#),
                ),
                (
                    Endpoint::Responses,
                    format!(r#"{{"model":"m","safety_identifier":{value}}}"#),
                ),
                (
                    Endpoint::Messages,
                    format!(r#"{{"model":"m","max_tokens":1,"metadata":{{"user_id":{value}}}}}"#),
                ),
            ] {
                assert_eq!(end_user_of(endpoint, &body), None, "{body}");
            }
        }
        // `metadata` of any type is the upstream's to judge, as before.
        for metadata in [
            "null",
            r#""x""#,
            "7",
            "true",
            r#"[1,{"user_id":"u"}]"#,
            "{}",
        ] {
            let body = format!(r#"{{"model":"m","max_tokens":1,"metadata":{metadata}}}"#);
            assert_eq!(end_user_of(Endpoint::Messages, &body), None, "{body}");
        }
        // Escaped text is bounded by what it decodes to; beyond six bytes of text a
        // byte, it is dropped before decoding.
        let at_bound = format!(r#"{{"model":"m","user":"{}"}}"#, r"\u0061".repeat(max));
        assert_eq!(
            end_user_of(Endpoint::ChatCompletions, &at_bound),
            Some("a".repeat(max))
        );
        let over = format!(r#"{{"model":"m","user":"{}"}}"#, r"\u0061".repeat(max + 1));
        assert_eq!(end_user_of(Endpoint::ChatCompletions, &over), None);
    }

    proptest::proptest! {
        #[test]
        fn what_an_end_user_field_yields_is_storable(value in "\\PC{0,300}|[ -~]{0,40}") {
            let body = serde_json::json!({"model": "m", "user": value, "metadata": {"user_id": value}});
            for endpoint in [Endpoint::ChatCompletions, Endpoint::Messages] {
                let facts = parse_facts_for(endpoint, body.to_string().as_bytes()).unwrap();
                if let Some(user) = facts.end_user {
                    proptest::prop_assert_eq!(&user, &value);
                    proptest::prop_assert!(crate::fields::END_USER.check(&user).is_ok());
                }
            }
        }
    }

    #[test]
    fn rewrites_only_the_model() {
        let body = br#"{ "messages":[{"content":"model"}], "model" : "alias" ,"x":1}"#;
        let facts = parse_facts(body).unwrap();
        assert_eq!(facts.model, "alias");
        let out = with_model(body, &facts, "real-\"model\"");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{ "messages":[{"content":"model"}], "model" : "real-\"model\"" ,"x":1}"#
        );
        let escaped = br#"{"model":"a\u0062"}"#;
        let facts = parse_facts(escaped).unwrap();
        assert_eq!(facts.model, "ab");
        assert_eq!(
            with_model(escaped, &facts, "c"),
            br#"{"model":"c"}"#.to_vec()
        );
        assert!(matches!(
            parse_facts(br#"{"model":"a","model":"b"}"#),
            Err(FactsError::Malformed(_))
        ));
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
    fn token_limits_in_range_are_read() {
        for field in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
            for (value, read) in [("1", 1), ("4096", 4096), ("2147483647", MAX_TOKEN_LIMIT)] {
                let body = format!(r#"{{"model":"m","{field}": {value} }}"#);
                assert_eq!(
                    parse_facts(body.as_bytes()).unwrap().max_tokens,
                    Some(read),
                    "{body}"
                );
            }
        }
        // Several present: all are checked, the completion limit wins.
        let f = parse_facts(br#"{"model":"m","max_tokens":7,"max_completion_tokens":9}"#).unwrap();
        assert_eq!(f.max_tokens, Some(9));
        assert!(matches!(
            parse_facts(br#"{"model":"m","max_tokens":0,"max_completion_tokens":9}"#),
            Err(FactsError::BadTokenLimit {
                field: "max_tokens",
                ..
            })
        ));
    }

    #[test]
    fn token_limits_out_of_range_are_refused() {
        for field in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
            for (value, got) in [
                ("0", "0"),
                ("-1", "a negative number"),
                ("-0", "a negative number"),
                ("2147483648", "a number above the bound"),
                ("9223372036854775808", "a number above the bound"),
                ("18446744073709551616", "a number above the bound"),
                ("1e400", "a number that is not an integer"),
                ("1.5", "a number that is not an integer"),
                ("100.0", "a number that is not an integer"),
                ("1e3", "a number that is not an integer"),
                ("-1.5", "a number that is not an integer"),
                (r#""100""#, "a string"),
                ("true", "a boolean"),
                ("[1]", "an array"),
                (r#"{"n":1}"#, "an object"),
            ] {
                let body = format!(r#"{{"model":"m","{field}":{value}}}"#);
                let e = parse_facts(body.as_bytes()).unwrap_err();
                assert_eq!(e, FactsError::BadTokenLimit { field, got }, "{body}");
                assert!(e.to_string().contains("1 to 2147483647"), "{e}");
                assert!(e.to_string().contains(field), "{e}");
            }
        }
    }

    #[test]
    fn null_token_limits_follow_the_protocol() {
        let body = br#"{"model":"m","max_tokens":null,"max_completion_tokens":null}"#;
        assert_eq!(parse_facts(body).unwrap().max_tokens, None);
        assert_eq!(
            parse_facts_for(Endpoint::ChatCompletions, body)
                .unwrap()
                .max_tokens,
            None
        );
        assert_eq!(
            parse_facts_for(
                Endpoint::Responses,
                br#"{"model":"m","max_output_tokens":null}"#
            )
            .unwrap()
            .max_tokens,
            None
        );
        assert_eq!(
            parse_facts_for(Endpoint::Messages, br#"{"model":"m","max_tokens":null}"#),
            Err(FactsError::BadTokenLimit {
                field: "max_tokens",
                got: "null"
            })
        );
        assert_eq!(
            parse_facts_for(Endpoint::Messages, br#"{"model":"m","max_tokens":1024}"#)
                .unwrap()
                .max_tokens,
            Some(1024)
        );
    }

    #[test]
    fn bodies_out_of_bounds_are_refused_before_parsing() {
        let mut body = br#"{"model":"m","messages":[{"content":""#.to_vec();
        body.extend_from_slice(b"\xff\x80");
        body.extend_from_slice(br#""}]}"#);
        assert!(matches!(
            parse_facts(&body),
            Err(FactsError::Bounds(BoundsError::InvalidUtf8 { .. }))
        ));
        let mut deep = br#"{"model":"m","x":"#.to_vec();
        deep.extend(std::iter::repeat_n(b'[', 1_000_000));
        deep.extend(std::iter::repeat_n(b']', 1_000_000));
        deep.push(b'}');
        let e = parse_facts(&deep).unwrap_err();
        assert!(matches!(e, FactsError::Bounds(BoundsError::TooDeep { .. })));
        assert!(e.to_string().contains("deeper than 127 levels"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_facts(&body);
            let _ = parse_facts_for(Endpoint::Messages, &body);
        }

        #[test]
        fn arbitrary_token_values_never_panic(value in "[ -~]{0,24}") {
            let body = format!(r#"{{"model":"m","max_tokens":{value}}}"#);
            if let Ok(f) = parse_facts(body.as_bytes()) {
                proptest::prop_assert!(f.max_tokens.is_none_or(|n| (1..=MAX_TOKEN_LIMIT).contains(&n)));
            }
        }
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
