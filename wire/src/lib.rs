//! Conversions between domain types and the gRPC contracts. Each service meets prost
//! types only at its gRPC edge, through these functions.
//!
//! Layout:
//! - here: usage events and rollup rows, with the checks an event must pass.
//! - [`snapshot`]: snapshots, policies and rules, both ways, validated.
//! - [`delta`]: the difference between two snapshots and its application.

pub mod delta;
pub mod snapshot;

use std::borrow::Cow;

use switchyard_core::fields::{self, FieldError, TextField};
use switchyard_core::ids::{AccountId, EventId, IssuedKeyId, ProviderKeyId};
use switchyard_core::usage::{RollupRow, TokenUsage, UsageEvent, UsageSource};
use switchyard_proto::v1 as pb;

/// Longest account chain accepted; deeper trees are refused at the control plane.
const MAX_CHAIN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("field {0} is not a valid id")]
    BadId(&'static str),
    #[error("account_chain must hold 1-{MAX_CHAIN} accounts")]
    BadChain,
    #[error(transparent)]
    BadText(#[from] FieldError),
    #[error("status {0} is not an HTTP status")]
    BadStatus(u32),
    #[error("token counts do not fit")]
    BadTokens,
}

pub fn id<T: std::str::FromStr>(text: &str, field: &'static str) -> Result<T, EventError> {
    text.parse().map_err(|_| EventError::BadId(field))
}

impl EventError {
    /// A bounded name for the kind of refusal (a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadId(_) => "bad_id",
            Self::BadChain => "bad_chain",
            Self::BadText(e) => e.kind(),
            Self::BadStatus(_) => "bad_status",
            Self::BadTokens => "bad_tokens",
        }
    }
}

/// A text field of an event, if the store can hold it (one definition, in core).
fn text(value: String, field: TextField) -> Result<String, EventError> {
    field.check(&value)?;
    Ok(value)
}

/// The wire event as a domain event, or why it is refused.
pub fn decode_event(e: pb::UsageEvent) -> Result<UsageEvent, EventError> {
    if e.account_chain.is_empty() || e.account_chain.len() > MAX_CHAIN {
        return Err(EventError::BadChain);
    }
    let account_chain = e
        .account_chain
        .iter()
        .map(|a| id::<AccountId>(a, "account_chain"))
        .collect::<Result<Vec<_>, _>>()?;
    let status = u16::try_from(e.status)
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or(EventError::BadStatus(e.status))?;
    if e.cached_tokens.saturating_add(e.cache_write_tokens) > e.input_tokens
        || i64::try_from(e.input_tokens.max(e.output_tokens)).is_err()
    {
        return Err(EventError::BadTokens);
    }
    let source = match pb::UsageSource::try_from(e.source) {
        Ok(pb::UsageSource::Reported) => UsageSource::Reported,
        Ok(pb::UsageSource::Estimated) => UsageSource::Estimated,
        Ok(pb::UsageSource::Incomplete) => UsageSource::Incomplete,
        _ => UsageSource::Missing,
    };
    Ok(UsageEvent {
        id: id::<EventId>(&e.id, "id")?,
        at_unix_ms: e.at_unix_ms,
        account_chain,
        issued_key: id::<IssuedKeyId>(&e.issued_key_id, "issued_key_id")?,
        provider_key: if e.provider_key_id.is_empty() {
            None
        } else {
            Some(id::<ProviderKeyId>(&e.provider_key_id, "provider_key_id")?)
        },
        model_requested: text(e.model_requested, fields::MODEL_REQUESTED)?,
        model_served: text(e.model_served, fields::MODEL_SERVED)?,
        level: e.level,
        status,
        latency_ms: e.latency_ms,
        ttfb_ms: e.ttfb_ms,
        tokens: TokenUsage {
            input: e.input_tokens,
            output: e.output_tokens,
            cached: e.cached_tokens,
            cache_write: e.cache_write_tokens,
        },
        source,
        cost_nanos: e.cost_nanos,
        billed_nanos: e.billed_nanos,
        price_version: e.price_version,
        path: text(e.path, fields::PATH)?,
        client_addr: text(e.client_addr, fields::CLIENT_ADDR)?,
        streamed: e.streamed,
        session: e.session.map(|s| text(s, fields::SESSION)).transpose()?,
        end_user: e.end_user.map(|u| text(u, fields::END_USER)).transpose()?,
        tag: e.tag.map(|t| text(t, fields::TAG)).transpose()?,
        client_protocol: e
            .client_protocol
            .map(|p| text(p, fields::CLIENT_PROTOCOL).map(Cow::Owned))
            .transpose()?,
        upstream_protocol: e
            .upstream_protocol
            .map(|p| text(p, fields::UPSTREAM_PROTOCOL).map(Cow::Owned))
            .transpose()?,
    })
}

/// A rollup row in its wire form.
pub fn encode_rollup(r: RollupRow) -> pb::RollupRow {
    pb::RollupRow {
        period: r.period,
        account_id: r.account_id,
        model: r.model,
        requests: r.requests,
        errors: r.errors,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_tokens: r.cached_tokens,
        cost_nanos: r.cost_nanos,
        billed_nanos: r.billed_nanos,
        cache_write_tokens: r.cache_write_tokens,
        provider_key_id: r.provider_key_id,
        endpoint: r.endpoint,
        label: r.label,
        folded: r.folded,
    }
}

/// A rollup row from the wire.
pub fn decode_rollup(r: pb::RollupRow) -> RollupRow {
    RollupRow {
        period: r.period,
        account_id: r.account_id,
        model: r.model,
        requests: r.requests,
        errors: r.errors,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_tokens: r.cached_tokens,
        cost_nanos: r.cost_nanos,
        billed_nanos: r.billed_nanos,
        cache_write_tokens: r.cache_write_tokens,
        provider_key_id: r.provider_key_id,
        endpoint: r.endpoint,
        label: r.label,
        folded: r.folded,
    }
}

/// A domain event in its wire form.
pub fn encode_event(e: UsageEvent) -> pb::UsageEvent {
    pb::UsageEvent {
        id: e.id.to_string(),
        at_unix_ms: e.at_unix_ms,
        account_chain: e.account_chain.iter().map(ToString::to_string).collect(),
        issued_key_id: e.issued_key.to_string(),
        provider_key_id: e.provider_key.map(|p| p.to_string()).unwrap_or_default(),
        model_requested: e.model_requested,
        model_served: e.model_served,
        level: e.level,
        status: u32::from(e.status),
        latency_ms: e.latency_ms,
        ttfb_ms: e.ttfb_ms,
        input_tokens: e.tokens.input,
        output_tokens: e.tokens.output,
        cached_tokens: e.tokens.cached,
        cache_write_tokens: e.tokens.cache_write,
        source: match e.source {
            UsageSource::Reported => pb::UsageSource::Reported.into(),
            UsageSource::Missing => pb::UsageSource::Missing.into(),
            UsageSource::Estimated => pb::UsageSource::Estimated.into(),
            UsageSource::Incomplete => pb::UsageSource::Incomplete.into(),
        },
        cost_nanos: e.cost_nanos,
        billed_nanos: e.billed_nanos,
        price_version: e.price_version,
        path: e.path,
        client_addr: e.client_addr,
        streamed: e.streamed,
        session: e.session,
        end_user: e.end_user,
        tag: e.tag,
        client_protocol: e.client_protocol.map(Cow::into_owned),
        upstream_protocol: e.upstream_protocol.map(Cow::into_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> pb::UsageEvent {
        pb::UsageEvent {
            id: EventId::new().to_string(),
            at_unix_ms: 1,
            account_chain: vec![AccountId::new().to_string()],
            issued_key_id: IssuedKeyId::new().to_string(),
            provider_key_id: String::new(),
            model_requested: "m".into(),
            model_served: "m".into(),
            status: 200,
            path: "/v1/chat/completions".into(),
            input_tokens: 3,
            cached_tokens: 1,
            cache_write_tokens: 1,
            session: Some("s".into()),
            end_user: Some("Ada L".into()),
            tag: Some("project-x".into()),
            ..Default::default()
        }
    }

    #[test]
    fn events_round_trip() {
        let event = decode_event(event()).unwrap();
        assert_eq!(decode_event(encode_event(event.clone())).unwrap(), event);
        assert_eq!(
            (event.end_user.as_deref(), event.tag.as_deref()),
            (Some("Ada L"), Some("project-x"))
        );
        // A label row keeps its empty label (calls without one) apart from none.
        for label in [None, Some(String::new()), Some("other".to_owned())] {
            let row = RollupRow {
                label: label.clone(),
                folded: label.is_some(),
                ..RollupRow::default()
            };
            assert_eq!(decode_rollup(encode_rollup(row.clone())), row);
        }
    }

    #[test]
    fn decodes_a_good_event() {
        let e = decode_event(event()).unwrap();
        assert_eq!(e.tokens.input, 3);
        assert_eq!(e.provider_key, None);
    }

    #[test]
    fn refuses_bad_events() {
        type Mutation = fn(&mut pb::UsageEvent);
        let cases: Vec<(Mutation, EventError)> = vec![
            (|e| e.id = "nope".into(), EventError::BadId("id")),
            (|e| e.account_chain.clear(), EventError::BadChain),
            (
                |e| e.account_chain = vec!["x".into()],
                EventError::BadId("account_chain"),
            ),
            (|e| e.status = 42, EventError::BadStatus(42)),
            (|e| e.cached_tokens = 9, EventError::BadTokens),
            // Cache reads and writes are parts of the input: together no more than it.
            (|e| e.cache_write_tokens = 3, EventError::BadTokens),
            (
                |e| e.model_served = String::new(),
                EventError::BadText(FieldError::Empty {
                    field: "model_served",
                }),
            ),
            (
                |e| e.model_requested = "gpt\u{0}x".into(),
                EventError::BadText(FieldError::Control { field: "model" }),
            ),
            (
                |e| e.model_served = "m".repeat(fields::MODEL_MAX_BYTES + 1),
                EventError::BadText(FieldError::TooLong {
                    field: "model_served",
                    max: fields::MODEL_MAX_BYTES,
                }),
            ),
            (
                |e| e.client_addr = "1.2.3.4\u{1b}".into(),
                EventError::BadText(FieldError::Control {
                    field: "client_addr",
                }),
            ),
            (
                |e| e.provider_key_id = "bad".into(),
                EventError::BadId("provider_key_id"),
            ),
            (
                |e| e.session = Some("a\u{7}b".into()),
                EventError::BadText(FieldError::Control { field: "session" }),
            ),
            (
                |e| e.end_user = Some("u".repeat(fields::END_USER_MAX_BYTES + 1)),
                EventError::BadText(FieldError::TooLong {
                    field: "user",
                    max: fields::END_USER_MAX_BYTES,
                }),
            ),
            (
                |e| e.tag = Some("two words".into()),
                EventError::BadText(FieldError::Whitespace { field: "tag" }),
            ),
        ];
        for (mutate, want) in cases {
            let mut e = event();
            mutate(&mut e);
            assert_eq!(decode_event(e), Err(want));
        }
    }
}
