//! The usage event of one client call, filled in as the call goes and emitted once:
//! when the call ends, or, if the client went away first, when it is dropped.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use switchyard_core::ids::{EventId, ProviderKeyId};
use switchyard_core::limits::Used;
use switchyard_core::rules::Price;
use switchyard_core::snapshot::{Caller, ProviderKey};
use switchyard_core::usage::{StreamMeter, TokenUsage, UsageEvent, UsageSource, estimate_tokens};
use switchyard_runtime::now_ms;

use crate::access::{self, AccessLog};
use crate::limits::Admitted;
use crate::usage::UsageSink;

pub use switchyard_core::usage::CLIENT_CLOSED;

/// What a call is metered as, known once it is admitted.
pub struct Metered {
    pub sink: UsageSink,
    pub started: Instant,
    /// The id the call's answer carries in `x-request-id`.
    pub request_id: uuid::Uuid,
    /// Whether the call gets an access line.
    pub access_log: AccessLog,
    pub caller: Caller,
    pub model_requested: String,
    pub model_served: String,
    pub path: &'static str,
    /// The route's time-to-first-byte histogram.
    pub first_byte: metrics::Histogram,
    pub client_addr: String,
    pub streamed: bool,
    /// Whether the call spends tokens and credit (`Endpoint::spends`); one that does
    /// not is recorded with no tokens, no cost and nothing billed.
    pub spends: bool,
    /// The client's session, from its session header.
    pub session: Option<String>,
    /// The end user the request's body named.
    pub end_user: Option<String>,
    /// The call's tag, from `x-switchyard-tag`.
    pub tag: Option<String>,
    /// The owner's price for the served model at request time.
    pub price: Option<Price>,
    /// The configuration version whose prices apply.
    pub price_version: u64,
    /// Limit reservations to settle when the call ends.
    pub admitted: Option<Admitted>,
    /// The JSON request, kept (shared, not copied) to estimate its tokens should
    /// the answer report none.
    pub prompt: Option<bytes::Bytes>,
    /// The call's trace span, held open until its usage is known.
    pub span: tracing::Span,
    /// The protocol the client speaks (`Dialect::wire_name`, or the protocol's name
    /// for endpoints translation does not serve).
    pub client_protocol: &'static str,
}

pub struct Meter {
    call: Metered,
    /// The provider key tried last, and its level.
    provider: Option<ProviderKeyId>,
    level: u32,
    /// Provider keys tried.
    attempts: u32,
    /// The protocol of the provider key tried last.
    upstream_protocol: Option<&'static str>,
    ttfb: Option<Duration>,
    done: bool,
}

impl Meter {
    pub fn new(call: Metered) -> Self {
        Self {
            call,
            provider: None,
            level: 0,
            attempts: 0,
            upstream_protocol: None,
            ttfb: None,
            done: false,
        }
    }

    /// A provider key is being tried, speaking `protocol`: the event names both,
    /// should the call end there.
    pub fn attempting(&mut self, key: &ProviderKey, protocol: &'static str) {
        self.provider = Some(key.id);
        self.level = key.level;
        self.attempts = self.attempts.saturating_add(1);
        self.upstream_protocol = Some(protocol);
    }

    /// The provider key tried last.
    pub fn provider(&self) -> Option<ProviderKeyId> {
        self.provider
    }

    /// The upstream's first byte (or first event, for streams) has arrived.
    pub fn mark_first_byte(&mut self) {
        let ttfb = self.call.started.elapsed();
        self.ttfb = Some(ttfb);
        self.call.first_byte.record(ttfb);
    }

    /// A call refused before any upstream was tried records nothing.
    pub fn discard(mut self) {
        self.done = true;
    }

    pub fn finish(mut self, status: u16, tokens: Option<TokenUsage>) {
        let source = UsageSource::of(tokens, status, self.ttfb.is_some());
        self.emit(status, tokens, source);
    }

    /// A successful answer without usage: its tokens estimated from the text of the
    /// request and the `output` estimated from the answer's text (`None`: no text).
    pub fn finish_estimated(mut self, status: u16, output: Option<u64>) {
        let input = self.call.prompt.as_deref().and_then(estimate_tokens);
        let tokens = output.map(|output| TokenUsage {
            input: input.unwrap_or(0),
            output,
            cached: 0,
            cache_write: 0,
        });
        let source = if tokens.is_some() {
            UsageSource::Estimated
        } else {
            UsageSource::Missing
        };
        self.emit(status, tokens, source);
    }

    /// A stream that ended before its protocol's last event (cut, or closed early):
    /// recorded with `status` as incomplete, with the tokens it is likely to be
    /// charged for (see [`StreamMeter::usage_so_far`]).
    pub fn finish_cut(mut self, status: u16, stream: &StreamMeter) {
        let prompt = self.call.prompt.as_deref().and_then(estimate_tokens);
        let tokens = stream.usage_so_far(prompt);
        self.emit(status, tokens, UsageSource::Incomplete);
    }

    fn emit(&mut self, status: u16, tokens: Option<TokenUsage>, source: UsageSource) {
        if self.done {
            return;
        }
        self.done = true;
        let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let (tokens, source) = match (self.call.spends, source) {
            (true, _) | (false, UsageSource::Incomplete) => (tokens, source),
            // Counted tokens are the answer, not usage.
            (false, _) => (None, UsageSource::Missing),
        };
        // A successful call without reported usage still costs its per-request price.
        let charged = match (tokens, status < 400 && self.call.spends) {
            (Some(t), _) => Some(t),
            (None, true) => Some(TokenUsage::default()),
            (None, false) => None,
        };
        let cost_nanos = match (self.call.price, charged) {
            (Some(price), Some(t)) => price.cost_nanos(&t),
            _ => 0,
        };
        self.settle_limits(status, tokens, source, cost_nanos);
        self.log_access(status, tokens, source);
        if let Some(t) = tokens {
            self.call.span.record("gen_ai.usage.input_tokens", t.input);
            self.call
                .span
                .record("gen_ai.usage.output_tokens", t.output);
        }
        self.call
            .span
            .record("switchyard.usage_source", source.as_str());
        if !self.call.sink.is_on() {
            return;
        }
        let _emit = tracing::info_span!(parent: &self.call.span, "usage.emit").entered();
        let billed_nanos = match charged {
            Some(t) => {
                self.call
                    .caller
                    .billing
                    .billed_nanos(&self.call.model_served, &t, cost_nanos)
            }
            None => 0,
        };
        self.call.sink.emit(UsageEvent {
            id: EventId::new(),
            at_unix_ms: now_ms(),
            account_chain: self.call.caller.chain.to_vec(),
            issued_key: self.call.caller.key,
            provider_key: self.provider,
            model_requested: std::mem::take(&mut self.call.model_requested),
            model_served: std::mem::take(&mut self.call.model_served),
            level: self.level,
            status,
            latency_ms: millis(self.call.started.elapsed()),
            ttfb_ms: self.ttfb.map(millis),
            cost_nanos,
            billed_nanos,
            price_version: self.call.price_version,
            tokens: tokens.unwrap_or_default(),
            source,
            path: self.call.path.to_owned(),
            client_addr: std::mem::take(&mut self.call.client_addr),
            streamed: self.call.streamed,
            session: self.call.session.take(),
            end_user: self.call.end_user.take(),
            tag: self.call.tag.take(),
            client_protocol: Some(Cow::Borrowed(self.call.client_protocol)),
            upstream_protocol: self.upstream_protocol.map(Cow::Borrowed),
        });
    }
}

impl Meter {
    /// Replace the limit reservations by what the call used. A call cut short is
    /// settled at the tokens counted for it; when tokens may have been spent but none
    /// are known (a client that left, an answer without usage), the reservation
    /// stands: counters never under-count.
    fn settle_limits(
        &mut self,
        status: u16,
        tokens: Option<TokenUsage>,
        source: UsageSource,
        cost_nanos: i64,
    ) {
        let Some(admitted) = self.call.admitted.take() else {
            return;
        };
        let used = match (tokens, source) {
            (None, UsageSource::Incomplete) => return,
            (Some(t), _) => Used {
                tokens: t.input.saturating_add(t.output),
                cost_nanos: u64::try_from(cost_nanos).unwrap_or(0),
            },
            (None, _) if self.ttfb.is_some() && !(400..500).contains(&status) => return,
            (None, _) => Used::default(),
        };
        admitted.settle(used, now_ms());
    }
}

impl Meter {
    /// The call's access line, from what the meter holds (see [`access`]).
    fn log_access(&self, status: u16, tokens: Option<TokenUsage>, source: UsageSource) {
        let failed = status >= 400 || source == UsageSource::Incomplete;
        if !self.call.access_log.admits(failed) {
            return;
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let t = tokens.unwrap_or_default();
        tracing::info!(
            target: access::TARGET,
            request_id = %self.call.request_id.hyphenated(),
            account = %self.call.caller.account(),
            issued_key = %self.call.caller.key,
            route = self.call.path,
            model_requested = self.call.model_requested.as_str(),
            model_served = self.call.model_served.as_str(),
            provider_key = self.provider.map(tracing::field::display),
            level = self.level,
            attempts = self.attempts,
            status,
            latency_ms = millis(self.call.started.elapsed()),
            ttfb_ms = self.ttfb.map(millis),
            input_tokens = t.input,
            output_tokens = t.output,
            cached_tokens = t.cached,
            usage_source = source.as_str(),
            streamed = self.call.streamed,
            client = self.call.client_addr.as_str(),
            "call"
        );
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Only a call abandoned by its client gets here unfinished.
        self.emit(CLIENT_CLOSED, None, UsageSource::Incomplete);
    }
}
