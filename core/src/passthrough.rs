//! Passthrough provider keys: an owner's governed route to an upstream where each
//! caller brings its own upstream credential (a subscription's OAuth login, such as
//! Claude Code's or Codex's), and the key holds no secret.
//!
//! The caller proves who it is with its issued key in [`KEY_HEADER`]; its
//! `Authorization` then belongs to the upstream and goes there unchanged, with the
//! few headers the protocol's login needs ([`forwards_credential_header`]). Policies,
//! limits, metering and audit apply as to any call. The rules here:
//! - which header carries the issued key, and when the caller brought its own
//!   credential ([`own_credential`]);
//! - which keys may serve a call ([`may_serve`]): a passthrough key only a call that
//!   carries its caller's credential, of the key's own protocol (it is never
//!   translated: the credential is for that upstream only);
//! - what an upstream's refusal means ([`callers_own`]): a refused or rate-limited
//!   credential is the caller's, so its answer goes back to that caller and the key
//!   stays healthy for everyone else;
//! - how the kind is written where it is stored ([`stored_kind`], [`parse_stored_kind`])
//!   and which protocols it may speak ([`parse_protocol`]).

use crate::types::ProviderKind;

/// The API's name for the kind.
pub const KIND: &str = "passthrough";

/// The header a caller of a passthrough route sends its issued key in. When present
/// it wins over `Authorization` and `x-api-key` for admission.
pub const KEY_HEADER: &str = "x-switchyard-key";

/// The ChatGPT account a Codex login acts for; goes with its bearer.
pub const CHATGPT_ACCOUNT_HEADER: &str = "chatgpt-account-id";

/// The protocols a passthrough key may speak.
pub const PROTOCOLS: [ProviderKind; 2] = [ProviderKind::Anthropic, ProviderKind::OpenAi];

/// Whether the caller brought its own upstream credential: it named itself in
/// [`KEY_HEADER`], so the `Authorization` it also sent is the upstream's.
pub fn own_credential(sent_key_header: bool, sent_authorization: bool) -> bool {
    sent_key_header && sent_authorization
}

/// Whether a key (`passthrough` or not, speaking `key_kind`) may serve a call of
/// protocol `call_kind` whose caller did or did not bring its own credential. Keys
/// holding a secret serve whoever calls (the caller's credential then stays behind).
pub fn may_serve(
    passthrough: bool,
    key_kind: ProviderKind,
    call_kind: ProviderKind,
    own_credential: bool,
) -> bool {
    !passthrough || (own_credential && key_kind == call_kind)
}

/// The client headers (lowercase) that carry a caller's credential upstream, on a
/// passthrough key speaking `kind` only: its `Authorization`, and for OpenAI's
/// protocol the ChatGPT account a Codex login names. (`anthropic-beta`, which
/// Claude Code's login needs, is on the allow-list for every key.)
pub fn forwards_credential_header(name: &str, kind: ProviderKind) -> bool {
    name == "authorization" || (kind == ProviderKind::OpenAi && name == CHATGPT_ACCOUNT_HEADER)
}

/// Whether an upstream status on a passthrough key is about its caller's own
/// credential: refused (401, 403) or rate-limited (429, a subscription's own
/// limits). Such an answer goes back to that caller as the provider gave it, and the
/// key stays awake for other callers.
pub fn callers_own(status: u16) -> bool {
    matches!(status, 401 | 403 | 429)
}

/// Why a passthrough key's protocol is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("protocol must be \"anthropic\" or \"openai\" for a passthrough key, not {0:?}")]
pub struct ProtocolError(pub String);

/// The protocol a passthrough key speaks, from its API name.
pub fn parse_protocol(text: &str) -> Result<ProviderKind, ProtocolError> {
    ProviderKind::parse(text)
        .filter(|k| PROTOCOLS.contains(k))
        .ok_or_else(|| ProtocolError(text.to_owned()))
}

const STORED_ANTHROPIC: &str = "passthrough-anthropic";
const STORED_OPENAI: &str = "passthrough-openai";

/// How a key's kind is stored (one text column): its provider kind, or
/// `passthrough-<protocol>`.
pub fn stored_kind(kind: ProviderKind, passthrough: bool) -> &'static str {
    match (passthrough, kind) {
        (false, _) => kind.as_str(),
        (true, ProviderKind::Anthropic) => STORED_ANTHROPIC,
        // Only the protocols of `PROTOCOLS` are accepted for a passthrough key.
        (true, _) => STORED_OPENAI,
    }
}

/// The kind and whether it is passthrough, from [`stored_kind`]'s text.
pub fn parse_stored_kind(text: &str) -> Option<(ProviderKind, bool)> {
    match text {
        STORED_ANTHROPIC => Some((ProviderKind::Anthropic, true)),
        STORED_OPENAI => Some((ProviderKind::OpenAi, true)),
        other => ProviderKind::parse(other).map(|k| (k, false)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::route::tests::key;
    use crate::route::{KeyHealth, OwnerKeys, RouteError};

    const OPENAI: ProviderKind = ProviderKind::OpenAi;
    const ANTHROPIC: ProviderKind = ProviderKind::Anthropic;

    #[test]
    fn the_credential_is_the_callers_only_beside_the_key_header() {
        assert!(own_credential(true, true));
        assert!(
            !own_credential(false, true),
            "Authorization alone is the issued key"
        );
        assert!(!own_credential(true, false));
        assert!(!own_credential(false, false));
    }

    #[test]
    fn passthrough_keys_serve_only_calls_with_their_callers_credential_of_their_protocol() {
        assert!(may_serve(true, ANTHROPIC, ANTHROPIC, true));
        assert!(!may_serve(true, ANTHROPIC, ANTHROPIC, false));
        assert!(
            !may_serve(true, ANTHROPIC, OPENAI, true),
            "never translated"
        );
        assert!(may_serve(true, OPENAI, OPENAI, true));
        // Keys with a secret serve either way.
        for own in [true, false] {
            assert!(may_serve(false, OPENAI, OPENAI, own));
            assert!(may_serve(false, ANTHROPIC, OPENAI, own));
        }
    }

    #[test]
    fn credential_headers_per_protocol() {
        assert!(forwards_credential_header("authorization", ANTHROPIC));
        assert!(forwards_credential_header("authorization", OPENAI));
        assert!(forwards_credential_header("chatgpt-account-id", OPENAI));
        assert!(!forwards_credential_header("chatgpt-account-id", ANTHROPIC));
        for other in ["x-api-key", "cookie", KEY_HEADER, "x-goog-api-key"] {
            assert!(!forwards_credential_header(other, OPENAI), "{other}");
            assert!(!forwards_credential_header(other, ANTHROPIC), "{other}");
        }
    }

    #[test]
    fn a_refused_or_limited_credential_is_the_callers() {
        for status in [401, 403, 429] {
            assert!(callers_own(status), "{status}");
        }
        for status in [200, 400, 404, 408, 422, 500, 502, 529] {
            assert!(!callers_own(status), "{status}");
        }
    }

    #[test]
    fn protocols_and_stored_kinds() {
        assert_eq!(parse_protocol("anthropic"), Ok(ANTHROPIC));
        assert_eq!(parse_protocol("openai"), Ok(OPENAI));
        for bad in ["", "passthrough", "Anthropic", "gemini"] {
            assert!(parse_protocol(bad).is_err(), "{bad}");
        }
        for kind in PROTOCOLS {
            for passthrough in [true, false] {
                let text = stored_kind(kind, passthrough);
                assert_eq!(parse_stored_kind(text), Some((kind, passthrough)), "{text}");
            }
        }
        assert_eq!(stored_kind(ANTHROPIC, true), "passthrough-anthropic");
        assert_eq!(stored_kind(OPENAI, false), "openai");
        assert_eq!(parse_stored_kind("passthrough"), None);
    }

    fn owner(keys: Vec<crate::snapshot::ProviderKey>) -> OwnerKeys {
        OwnerKeys::new(keys, |_| Arc::new(KeyHealth::default()))
    }

    fn passthrough_key(level: u32, kind: ProviderKind) -> crate::snapshot::ProviderKey {
        crate::snapshot::ProviderKey {
            passthrough: true,
            ..key(level, 1, &["claude*", "gpt*"], kind)
        }
    }

    #[test]
    fn routes_pick_passthrough_keys_only_for_callers_with_their_own_credential() {
        let pass = passthrough_key(1, ANTHROPIC);
        let held = key(2, 1, &["claude*"], ANTHROPIC);
        let (pass_id, held_id) = (pass.id, held.id);
        let keys = owner(vec![pass, held]);
        // Without its own credential the call starts where a key may serve it.
        let mut plain = keys.attempts("claude-x", ANTHROPIC, true, None, None, 3);
        assert_eq!(plain.next(0).unwrap().key.id, held_id);
        assert!(plain.next(0).is_err());
        let mut own = keys
            .attempts("claude-x", ANTHROPIC, true, None, None, 3)
            .with_own_credential(true);
        assert_eq!(own.next(0).unwrap().key.id, pass_id);
        // Another protocol's call never reaches the passthrough key, translated or not.
        for translate in [true, false] {
            let mut other = keys
                .attempts("gpt-x", OPENAI, translate, None, None, 3)
                .with_own_credential(true);
            assert!(other.next(0).is_err(), "translate: {translate}");
        }
    }

    #[test]
    fn a_model_only_passthrough_keys_serve_says_what_to_send() {
        let keys = owner(vec![passthrough_key(1, OPENAI)]);
        let mut plain = keys
            .attempts("gpt-5", OPENAI, true, Some(1), None, 3)
            .with_own_credential(false);
        let refusal = plain.next(0).unwrap_err();
        assert_eq!(
            refusal,
            RouteError::NeedsOwnCredential {
                model: "gpt-5".into()
            }
        );
        assert!(refusal.to_string().contains(KEY_HEADER));
        let mut own = keys
            .attempts("gpt-5", OPENAI, true, Some(1), None, 3)
            .with_own_credential(true);
        assert!(own.next(0).unwrap().key.passthrough);
    }
}
