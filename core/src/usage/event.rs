//! The usage event, its log view, and the rollup rows bills are made of.

use serde::Serialize;

use super::{TokenUsage, UsageSource};
use crate::ids::{AccountId, EventId, IssuedKeyId, ProviderKeyId};

/// Usage totals of one account (or, for the owner, one provider key) and model over
/// one period (`YYYY-MM-DD` or `YYYY-MM`).
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
}

impl std::str::FromStr for RollupBy {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "account" => Ok(Self::Account),
            "provider_key" => Ok(Self::ProviderKey),
            "endpoint" => Ok(Self::Endpoint),
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
}

impl UsageEvent {
    pub fn account(&self) -> Option<AccountId> {
        self.account_chain.first().copied()
    }

    pub fn main_account(&self) -> Option<AccountId> {
        self.account_chain.last().copied()
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
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        let account = event.account_chain[0].to_string();
        assert_eq!(view["account_id"], account.as_str());
        assert_eq!(view["account_chain"][0], account.as_str());
        assert_eq!(view["usage_source"], "estimated");
        assert_eq!(view["cached_tokens"], 2);
        assert_eq!(view["session"], "s-1");
        assert!(view["provider_key_id"].is_null() && view["ttfb_ms"].is_null());
    }
}
