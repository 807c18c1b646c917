//! The usage event, its log view, and the rollup rows bills are made of.

use std::borrow::Cow;

use serde::Serialize;

use super::{TokenUsage, UsageSource};
use crate::ids::{AccountId, EventId, IssuedKeyId, ProviderKeyId};

/// Usage totals of one account (or, for the owner, one provider key or endpoint, or
/// one label's value) and model over one period (`YYYY-MM-DD` or `YYYY-MM`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RollupRow {
    pub period: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub provider_key_id: String,
    /// The endpoint's route path, in rows per endpoint.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// The label's value, in rows per end user, session or tag: empty for calls that
    /// carried none, [`FOLDED_LABEL`] in the row of values past the cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Whether the row gathers the values past the cap (its label is
    /// [`FOLDED_LABEL`]); a value that is itself "other" has a row of its own.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub folded: bool,
    pub model: String,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    /// What the providers cost, at the owner's prices.
    pub cost_nanos: i64,
    /// What the account's parent bills it.
    pub billed_nanos: i64,
}

/// Whose totals a rollup row holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollupBy {
    /// The calling account's.
    #[default]
    Account,
    /// The provider key's, across the owner's tree.
    ProviderKey,
    /// The endpoint's (route path), across the owner's tree: token counting apart
    /// from generation.
    Endpoint,
    /// The end user's the call named, within the caller's subtree.
    User,
    /// The client session's.
    Session,
    /// The tag's (`x-switchyard-tag`).
    Tag,
    /// The direct child's whole subtree, each in one row, beside the account's own
    /// calls (every main account's tree, when no account is asked for).
    Child,
}

impl RollupBy {
    /// The label this grouping reads, if it groups by one.
    pub fn label(self) -> Option<LabelKind> {
        match self {
            Self::Account | Self::ProviderKey | Self::Endpoint | Self::Child => None,
            Self::User => Some(LabelKind::User),
            Self::Session => Some(LabelKind::Session),
            Self::Tag => Some(LabelKind::Tag),
        }
    }
}

/// A label a call may carry, which usage is rolled up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabelKind {
    User,
    Session,
    Tag,
}

impl LabelKind {
    pub const ALL: [Self; 3] = [Self::User, Self::Session, Self::Tag];

    /// The name it is stored and asked by.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Session => "session",
            Self::Tag => "tag",
        }
    }
}

/// The label of the rollup row that gathers a day's values past the cap.
pub const FOLDED_LABEL: &str = "other";

/// Distinct values of one label kind an account's rollups keep per day, by default.
pub const DEFAULT_LABEL_CAP: u32 = 1000;

/// How many of `fresh` values new to an account's day and label kind (none of them
/// admitted before, in the order they arrived) are admitted when `admitted` values
/// were before: the first ones, until the day holds `cap`. The rest fold into
/// [`FOLDED_LABEL`] in the rollups, as does every value that comes later that day.
pub fn label_room(cap: u32, admitted: u64, fresh: usize) -> usize {
    let room = u64::from(cap).saturating_sub(admitted);
    usize::try_from(room).map_or(fresh, |room| room.min(fresh))
}

impl std::str::FromStr for RollupBy {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "account" => Ok(Self::Account),
            "provider_key" => Ok(Self::ProviderKey),
            "endpoint" => Ok(Self::Endpoint),
            "user" => Ok(Self::User),
            "session" => Ok(Self::Session),
            "tag" => Ok(Self::Tag),
            "child" => Ok(Self::Child),
            _ => Err(()),
        }
    }
}

/// One metered call, as the data plane reports it to the collector. This is the one
/// definition of the event: its wire form (`switchyard-wire`), its stored row (the
/// collector's column table) and its log view ([`UsageLogView`], this type's
/// serialization) are each written once from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageEvent {
    pub id: EventId,
    pub at_unix_ms: i64,
    /// The calling account first, then its ancestors, the main account last.
    pub account_chain: Vec<AccountId>,
    #[serde(rename = "issued_key_id")]
    pub issued_key: IssuedKeyId,
    #[serde(rename = "provider_key_id")]
    pub provider_key: Option<ProviderKeyId>,
    pub model_requested: String,
    pub model_served: String,
    pub level: u32,
    pub status: u16,
    pub latency_ms: u32,
    pub ttfb_ms: Option<u32>,
    #[serde(flatten)]
    pub tokens: TokenUsage,
    #[serde(rename = "usage_source")]
    pub source: UsageSource,
    /// What the call cost at the owner's prices.
    pub cost_nanos: i64,
    /// What the calling account's parent bills it for the call.
    pub billed_nanos: i64,
    /// The configuration version (snapshot) whose price table priced the call.
    pub price_version: u64,
    pub path: String,
    pub client_addr: String,
    pub streamed: bool,
    /// The client's session (`core::fields::session_from_headers`), when it named one.
    pub session: Option<String>,
    /// The end user the call's body named (`core::request`), when it named one.
    #[serde(rename = "user")]
    pub end_user: Option<String>,
    /// The call's tag (`core::fields::tag_from_header`), when it carried one.
    pub tag: Option<String>,
    /// The protocol the client spoke (`openai-chat`, `anthropic-messages`,
    /// `openai-responses`, or `openai` / `anthropic` for the other endpoints).
    /// Borrowed from a constant on the request path: naming it costs no allocation.
    pub client_protocol: Option<Cow<'static, str>>,
    /// The protocol the provider key spoke: the client's, unless the call was
    /// translated; absent when no upstream answered it.
    pub upstream_protocol: Option<Cow<'static, str>>,
}

impl UsageEvent {
    pub fn account(&self) -> Option<AccountId> {
        self.account_chain.first().copied()
    }

    pub fn main_account(&self) -> Option<AccountId> {
        self.account_chain.last().copied()
    }

    /// The value of a label the call carried.
    pub fn label(&self, kind: LabelKind) -> Option<&str> {
        match kind {
            LabelKind::User => self.end_user.as_deref(),
            LabelKind::Session => self.session.as_deref(),
            LabelKind::Tag => self.tag.as_deref(),
        }
    }
}

/// One metered call as the logs show it (never prompt or completion content): the
/// event's own fields, and the calling account beside them.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct UsageLogView<'a> {
    #[serde(serialize_with = "calling_account")]
    pub account_id: &'a UsageEvent,
    #[serde(flatten)]
    pub event: &'a UsageEvent,
}

impl<'a> From<&'a UsageEvent> for UsageLogView<'a> {
    fn from(event: &'a UsageEvent) -> Self {
        Self {
            account_id: event,
            event,
        }
    }
}

/// The calling account's id; empty text for an event without one (refused at ingest,
/// so never stored).
fn calling_account<S: serde::Serializer>(e: &&UsageEvent, s: S) -> Result<S::Ok, S::Error> {
    match e.account() {
        Some(a) => a.serialize(s),
        None => s.serialize_str(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_admits_the_first_values_until_full() {
        assert_eq!(label_room(3, 0, 2), 2);
        assert_eq!(label_room(3, 1, 5), 2);
        assert_eq!(label_room(3, 3, 5), 0);
        // A cap lowered below what a day already holds admits nothing more.
        assert_eq!(label_room(3, 7, 1), 0);
        assert_eq!(label_room(0, 0, 4), 0);
        assert_eq!(label_room(u32::MAX, 0, usize::MAX), u32::MAX as usize);
    }

    #[test]
    fn groupings_name_their_label() {
        for (text, kind) in [
            ("user", LabelKind::User),
            ("session", LabelKind::Session),
            ("tag", LabelKind::Tag),
        ] {
            let by: RollupBy = text.parse().unwrap();
            assert_eq!(by.label(), Some(kind));
            assert_eq!(kind.as_str(), text);
        }
        assert_eq!(RollupBy::Endpoint.label(), None);
        assert_eq!("child".parse::<RollupBy>(), Ok(RollupBy::Child));
        assert_eq!(RollupBy::Child.label(), None);
        assert!("users".parse::<RollupBy>().is_err());
    }

    #[test]
    fn the_log_view_shows_every_field_of_the_event_once() {
        let event = UsageEvent {
            id: EventId::new(),
            at_unix_ms: 7,
            account_chain: vec![AccountId::new(), AccountId::new()],
            issued_key: IssuedKeyId::new(),
            provider_key: None,
            model_requested: "m".into(),
            model_served: "m".into(),
            level: 1,
            status: 200,
            latency_ms: 3,
            ttfb_ms: None,
            tokens: TokenUsage {
                input: 5,
                output: 1,
                cached: 2,
                cache_write: 1,
            },
            source: UsageSource::Estimated,
            cost_nanos: 9,
            billed_nanos: 10,
            price_version: 4,
            path: "/v1/chat/completions".into(),
            client_addr: "127.0.0.1".into(),
            streamed: true,
            session: Some("s-1".into()),
            end_user: Some("ada".into()),
            tag: None,
            client_protocol: Some("openai-chat".into()),
            upstream_protocol: Some("anthropic-messages".into()),
        };
        let view = serde_json::to_value(UsageLogView::from(&event)).unwrap();
        let mut keys: Vec<&str> = view
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut want = vec![
            "id",
            "at_unix_ms",
            "account_id",
            "account_chain",
            "issued_key_id",
            "provider_key_id",
            "model_requested",
            "model_served",
            "level",
            "status",
            "latency_ms",
            "ttfb_ms",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "cache_write_tokens",
            "usage_source",
            "cost_nanos",
            "billed_nanos",
            "price_version",
            "path",
            "client_addr",
            "streamed",
            "session",
            "user",
            "tag",
            "client_protocol",
            "upstream_protocol",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        let account = event.account_chain[0].to_string();
        assert_eq!(view["account_id"], account.as_str());
        assert_eq!(view["account_chain"][0], account.as_str());
        assert_eq!(view["usage_source"], "estimated");
        assert_eq!(view["cached_tokens"], 2);
        assert_eq!(view["session"], "s-1");
        assert_eq!(view["user"], "ada");
        assert!(view["tag"].is_null());
        assert!(view["provider_key_id"].is_null() && view["ttfb_ms"].is_null());
    }
}
