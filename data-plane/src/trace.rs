//! W3C trace context at the data plane's two edges: continued from the client's
//! `traceparent`, passed on to the upstream.
//!
//! With trace export on, the request span takes the client's trace as its parent
//! and the upstream receives the context of the attempt's span. With it off, the
//! client's `traceparent` and `tracestate` go upstream unchanged, so a trace the
//! client started still joins the provider's side.

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace-context headers.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

struct Extract<'a>(&'a HeaderMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Header pairs to send; at most the two trace headers.
#[derive(Default)]
pub struct Outgoing(pub Vec<(&'static str, String)>);

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        if let Some(name) = TRACE_HEADERS
            .into_iter()
            .find(|n| n.eq_ignore_ascii_case(key))
        {
            self.0.push((name, value));
        }
    }
}

/// Make `span` a child of the trace the client's headers carry, if any.
pub fn continue_from(span: &Span, headers: &HeaderMap) {
    if !switchyard_runtime::tracing_on() || !headers.contains_key(TRACE_HEADERS[0]) {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(headers)));
    // Refused only when the span has started already, which it has not.
    let _ = span.set_parent(parent);
}

/// The trace headers for the upstream call made inside the current span, when
/// traces are exported.
pub fn injected() -> Outgoing {
    let mut out = Outgoing::default();
    let cx = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut out));
    out
}
