//! Usage events as store and API tests write them: one plain successful call, which
//! a test adjusts with struct update syntax.

use switchyard_core::ids::{AccountId, EventId, IssuedKeyId};
use switchyard_core::usage::{TokenUsage, UsageEvent, UsageSource};

/// A call of `chain[0]` (its ancestors after it) at `at_unix_ms` to model `m`: 200,
/// 10 input and 2 output tokens reported, costing 5 nanos and billed 6, no labels.
pub fn usage_event(chain: &[AccountId], at_unix_ms: i64) -> UsageEvent {
    UsageEvent {
        id: EventId::new(),
        at_unix_ms,
        account_chain: chain.to_vec(),
        issued_key: IssuedKeyId::new(),
        provider_key: None,
        model_requested: "m".into(),
        model_served: "m".into(),
        level: 1,
        status: 200,
        latency_ms: 1,
        ttfb_ms: None,
        tokens: TokenUsage {
            input: 10,
            output: 2,
            cached: 0,
            cache_write: 0,
        },
        source: UsageSource::Reported,
        cost_nanos: 5,
        billed_nanos: 6,
        price_version: 1,
        path: "/v1/chat/completions".into(),
        client_addr: "127.0.0.1".into(),
        streamed: false,
        session: None,
        end_user: None,
        tag: None,
        client_protocol: None,
        upstream_protocol: None,
    }
}
