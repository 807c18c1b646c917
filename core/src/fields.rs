//! What the usage store can hold: one definition of each text field's bounds and
//! allowed characters. The data plane refuses a call whose values fall outside them
//! before it reaches an upstream, and the collector checks every event again, so a
//! value a tenant chose can never make an event unstorable (PostgreSQL refuses NUL in
//! text; an unbounded value is a cost every reader pays).

use crate::usage::UsageEvent;

/// Longest model name, requested or served, and longest model pattern.
pub const MODEL_MAX_BYTES: usize = 200;
/// Longest path of a proxied call (the endpoints are a fixed table; this is a guard).
pub const PATH_MAX_BYTES: usize = 256;
/// Longest client address (an IPv6 address with a zone is under 64 bytes).
pub const CLIENT_ADDR_MAX_BYTES: usize = 64;

/// Longest client session id (the clients that send one send a UUID).
pub const SESSION_MAX_BYTES: usize = 128;
/// Longest end user (Claude Code sends `user_<64 hex>_account_<uuid>_session_<uuid>`,
/// about 160 bytes; OpenAI's clients a hash or an id).
pub const END_USER_MAX_BYTES: usize = 256;
/// Longest tag.
pub const TAG_MAX_BYTES: usize = 64;

/// A text field of a usage event and its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextField {
    pub name: &'static str,
    pub max_bytes: usize,
    pub may_be_empty: bool,
    /// Whether whitespace is refused too (names are single tokens).
    pub no_whitespace: bool,
}

pub const MODEL_REQUESTED: TextField = TextField {
    name: "model",
    max_bytes: MODEL_MAX_BYTES,
    may_be_empty: false,
    no_whitespace: true,
};
pub const MODEL_SERVED: TextField = TextField {
    name: "model_served",
    ..MODEL_REQUESTED
};
pub const PATH: TextField = TextField {
    name: "path",
    max_bytes: PATH_MAX_BYTES,
    may_be_empty: false,
    no_whitespace: true,
};
pub const CLIENT_ADDR: TextField = TextField {
    name: "client_addr",
    max_bytes: CLIENT_ADDR_MAX_BYTES,
    may_be_empty: true,
    no_whitespace: true,
};

/// The client's session, from its session header (see [`session_from_headers`]).
pub const SESSION: TextField = TextField {
    name: "session",
    max_bytes: SESSION_MAX_BYTES,
    may_be_empty: false,
    no_whitespace: true,
};

/// Headers that name a client's session, in order of preference: Claude Code's,
/// Codex CLI's (`session-id`; `session_id` in older releases), then Switchyard's own
/// for any other client.
pub const SESSION_HEADERS: [&str; 4] = [
    "x-claude-code-session-id",
    "session-id",
    "session_id",
    "x-switchyard-session",
];

/// The session of a call, from the value of each of [`SESSION_HEADERS`] it carries
/// (`header` looks one up): the first that is one the store holds. A value that is
/// not (too long, control characters, whitespace, not UTF-8) is dropped, never a
/// reason to refuse the call: the session only labels usage.
pub fn session_from_headers<'a>(header: impl Fn(&str) -> Option<&'a [u8]>) -> Option<String> {
    SESSION_HEADERS
        .iter()
        .find_map(|name| SESSION.storable(header(name)?))
}

/// The end user a call names in its body (OpenAI's `safety_identifier` or `user`,
/// Anthropic's `metadata.user_id`; read by `core::request`). Whitespace is kept (a
/// name may hold a space); control characters are not.
pub const END_USER: TextField = TextField {
    name: "user",
    max_bytes: END_USER_MAX_BYTES,
    may_be_empty: false,
    no_whitespace: false,
};

/// The end user of an Anthropic `metadata.user_id` already bounded by [`END_USER`].
/// Claude Code sends JSON text naming its account, its device and its session
/// (`{"device_id":…,"account_uuid":…,"session_id":…}`): the end user is the account
/// when it has one, else the device, so one person's sessions bill as one user (the
/// session has its own label, from its header). Any other value is the end user as sent.
pub fn anthropic_end_user(user_id: String) -> String {
    if !user_id.starts_with('{') {
        return user_id;
    }
    let Ok(sent) = serde_json::from_str::<serde_json::Value>(&user_id) else {
        return user_id;
    };
    ["account_uuid", "device_id"]
        .into_iter()
        .filter_map(|name| sent.get(name)?.as_str())
        .find(|id| END_USER.check(id).is_ok())
        .map(str::to_owned)
        .unwrap_or(user_id)
}

/// A label of the client's choosing, from [`TAG_HEADER`].
pub const TAG: TextField = TextField {
    name: "tag",
    max_bytes: TAG_MAX_BYTES,
    may_be_empty: false,
    no_whitespace: true,
};

/// The protocol a call's client spoke and the one its upstream spoke
/// (`core::translate::Dialect::wire_name`, or a protocol's name).
pub const CLIENT_PROTOCOL: TextField = TextField {
    name: "client_protocol",
    max_bytes: 32,
    may_be_empty: false,
    no_whitespace: true,
};

pub const UPSTREAM_PROTOCOL: TextField = TextField {
    name: "upstream_protocol",
    max_bytes: 32,
    may_be_empty: false,
    no_whitespace: true,
};

/// The header that tags a call (a project, a job, a feature: what the client bills by).
pub const TAG_HEADER: &str = "x-switchyard-tag";

/// The tag of a call, from the value of its [`TAG_HEADER`], when it is one the store
/// holds; any other value is dropped, never a reason to refuse the call (the tag only
/// labels usage).
pub fn tag_from_header(value: Option<&[u8]>) -> Option<String> {
    TAG.storable(value?)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("`{field}` is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("`{field}` holds a control character")]
    Control { field: &'static str },
    #[error("`{field}` holds whitespace")]
    Whitespace { field: &'static str },
}

impl FieldError {
    /// A bounded name for the kind of refusal (a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "empty",
            Self::TooLong { .. } => "too_long",
            Self::Control { .. } => "control_character",
            Self::Whitespace { .. } => "whitespace",
        }
    }

    pub fn field(&self) -> &'static str {
        match self {
            Self::Empty { field }
            | Self::TooLong { field, .. }
            | Self::Control { field }
            | Self::Whitespace { field } => field,
        }
    }
}

impl TextField {
    /// Whether `value` fits this field. Control characters are C0, DEL and C1
    /// (`char::is_control`); NUL among them.
    pub fn check(&self, value: &str) -> Result<(), FieldError> {
        let field = self.name;
        if value.is_empty() && !self.may_be_empty {
            return Err(FieldError::Empty { field });
        }
        if value.len() > self.max_bytes {
            return Err(FieldError::TooLong {
                field,
                max: self.max_bytes,
            });
        }
        for c in value.chars() {
            if c.is_control() {
                return Err(FieldError::Control { field });
            }
            if self.no_whitespace && c.is_whitespace() {
                return Err(FieldError::Whitespace { field });
            }
        }
        Ok(())
    }

    /// `value` as text when it fits this field (UTF-8 within the bounds); `None`
    /// otherwise. For the labels a call may carry, which are dropped, never refused.
    pub fn storable(&self, value: &[u8]) -> Option<String> {
        if value.len() > self.max_bytes {
            return None;
        }
        let text = std::str::from_utf8(value).ok()?;
        self.check(text).ok()?;
        Some(text.to_owned())
    }
}

/// Whether every text field of `event` is one the store holds.
pub fn check_event(event: &UsageEvent) -> Result<(), FieldError> {
    MODEL_REQUESTED.check(&event.model_requested)?;
    MODEL_SERVED.check(&event.model_served)?;
    PATH.check(&event.path)?;
    CLIENT_ADDR.check(&event.client_addr)?;
    for (field, value) in [
        (SESSION, &event.session),
        (END_USER, &event.end_user),
        (TAG, &event.tag),
    ] {
        value.as_deref().map_or(Ok(()), |v| field.check(v))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_codes_end_user_is_its_account_else_its_device() {
        let sent = |json: &str| anthropic_end_user(json.to_owned());
        let device = "bd74323261630d7d77a510ba57b41bb6659278c52ec5f771541cdd69e84c114b";
        assert_eq!(
            sent(&format!(
                r#"{{"device_id":"{device}","account_uuid":"","session_id":"09c06d89"}}"#
            )),
            device
        );
        assert_eq!(
            sent(&format!(
                r#"{{"device_id":"{device}","account_uuid":"acc-1","session_id":"09c06d89"}}"#
            )),
            "acc-1"
        );
        // Anything else is the end user as sent.
        for other in ["ada", "{not json", r#"{"device_id":""}"#, r#"{"user":"x"}"#] {
            assert_eq!(sent(other), other);
        }
    }

    #[test]
    fn sessions_come_from_the_first_header_with_a_storable_value() {
        let headers = |pairs: &'static [(&'static str, &'static [u8])]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        };
        let claude = headers(&[
            ("x-switchyard-session", b"own"),
            ("x-claude-code-session-id", b"5f0c-claude"),
        ]);
        assert_eq!(session_from_headers(claude), Some("5f0c-claude".into()));
        let codex = headers(&[("session_id", b"codex-1"), ("x-switchyard-session", b"own")]);
        assert_eq!(session_from_headers(codex), Some("codex-1".into()));
        let codex = headers(&[("session-id", b"codex-2"), ("x-switchyard-session", b"own")]);
        assert_eq!(session_from_headers(codex), Some("codex-2".into()));
        let own = headers(&[("x-switchyard-session", b"own")]);
        assert_eq!(session_from_headers(own), Some("own".into()));
        // A bad value is dropped; the next header still counts.
        let bad = headers(&[
            ("x-claude-code-session-id", b"a\x1bb"),
            ("x-switchyard-session", b"fine"),
        ]);
        assert_eq!(session_from_headers(bad), Some("fine".into()));
        let long: &'static [u8] = Box::leak(vec![b'a'; SESSION_MAX_BYTES + 1].into_boxed_slice());
        let too_long: &'static [(&'static str, &'static [u8])] =
            Box::leak(vec![("session_id", long)].into_boxed_slice());
        assert_eq!(session_from_headers(headers(too_long)), None);
        for bad in [&b""[..], b"a b", b"\xff\xfe"] {
            let pairs: &'static [(&'static str, &'static [u8])] =
                Box::leak(vec![("session_id", bad)].into_boxed_slice());
            assert_eq!(session_from_headers(headers(pairs)), None);
        }
        assert_eq!(session_from_headers(headers(&[])), None);
    }

    #[test]
    fn tags_are_single_printable_tokens_or_dropped() {
        assert_eq!(
            tag_from_header(Some(b"project-x")),
            Some("project-x".into())
        );
        assert_eq!(
            tag_from_header(Some("équipe/7".as_bytes())),
            Some("équipe/7".into())
        );
        let at_bound = [b't'; TAG_MAX_BYTES];
        assert_eq!(
            tag_from_header(Some(&at_bound)),
            Some("t".repeat(TAG_MAX_BYTES))
        );
        let over = [b't'; TAG_MAX_BYTES + 1];
        // Hostile values: dropped, whatever they hold.
        for bad in [
            &over[..],
            b"",
            b"two words",
            b"tab\there",
            b"nul\0",
            b"\x1b[31mred",
            b"\xff\xfe",
            "a\u{2028}b".as_bytes(),
            "a\u{85}b".as_bytes(),
        ] {
            assert_eq!(tag_from_header(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(tag_from_header(None), None);
    }

    #[test]
    fn end_users_may_hold_spaces_but_no_control_characters() {
        assert_eq!(END_USER.check("Ada Lovelace"), Ok(()));
        assert_eq!(END_USER.check(&"u".repeat(END_USER_MAX_BYTES)), Ok(()));
        assert!(END_USER.check(&"u".repeat(END_USER_MAX_BYTES + 1)).is_err());
        assert_eq!(
            END_USER.check("a\nb"),
            Err(FieldError::Control { field: "user" })
        );
        assert_eq!(END_USER.check(""), Err(FieldError::Empty { field: "user" }));
    }
    use proptest::prelude::*;

    #[test]
    fn model_names_are_single_printable_tokens_of_bounded_length() {
        assert_eq!(MODEL_REQUESTED.check("gpt-4o-mini"), Ok(()));
        assert_eq!(MODEL_REQUESTED.check("org/model:q4_K_M@2025"), Ok(()));
        assert_eq!(MODEL_REQUESTED.check("模型-ü"), Ok(()));
        assert_eq!(
            MODEL_REQUESTED.check(""),
            Err(FieldError::Empty { field: "model" })
        );
        assert_eq!(
            MODEL_REQUESTED.check("gpt\u{0}x"),
            Err(FieldError::Control { field: "model" })
        );
        for bad in ["a\u{7f}", "a\u{85}", "a\u{1b}[31m", "a\r\nb", "\u{9}"] {
            assert_eq!(
                MODEL_REQUESTED.check(bad),
                Err(FieldError::Control { field: "model" }),
                "{bad:?}"
            );
        }
        assert_eq!(
            MODEL_REQUESTED.check("gpt 4"),
            Err(FieldError::Whitespace { field: "model" })
        );
        assert_eq!(
            MODEL_REQUESTED.check("a\u{2028}b"),
            Err(FieldError::Whitespace { field: "model" })
        );
        let at_bound = "m".repeat(MODEL_MAX_BYTES);
        assert_eq!(MODEL_REQUESTED.check(&at_bound), Ok(()));
        assert_eq!(
            MODEL_REQUESTED.check(&format!("{at_bound}m")),
            Err(FieldError::TooLong {
                field: "model",
                max: MODEL_MAX_BYTES
            })
        );
        // The bound is in bytes: 67 three-byte characters pass 200.
        assert!(MODEL_REQUESTED.check(&"模".repeat(67)).is_err());
    }

    #[test]
    fn a_client_address_may_be_empty() {
        assert_eq!(CLIENT_ADDR.check(""), Ok(()));
        assert_eq!(CLIENT_ADDR.check("2001:db8::1"), Ok(()));
        assert!(CLIENT_ADDR.check(&"1".repeat(65)).is_err());
    }

    #[test]
    fn every_kind_has_a_bounded_label() {
        let kinds = [
            FieldError::Empty { field: "f" },
            FieldError::TooLong { field: "f", max: 1 },
            FieldError::Control { field: "f" },
            FieldError::Whitespace { field: "f" },
        ]
        .map(|e| e.kind());
        assert_eq!(
            kinds,
            ["empty", "too_long", "control_character", "whitespace"]
        );
    }

    proptest! {
        /// Whatever passes holds no control character, fits the bound, and is never
        /// empty where it may not be: exactly what both stores can hold.
        #[test]
        fn what_passes_is_storable(value in any::<String>()) {
            if MODEL_REQUESTED.check(&value).is_ok() {
                prop_assert!(!value.is_empty());
                prop_assert!(value.len() <= MODEL_MAX_BYTES);
                prop_assert!(!value.contains('\0'));
                prop_assert!(!value.chars().any(char::is_control));
            }
        }
    }
}
