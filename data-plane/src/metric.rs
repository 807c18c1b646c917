//! The data plane's Prometheus metrics: names in one place, described once.
//!
//! Label values are bounded, none is a client's string: `route` is one of the
//! endpoint table's paths, `status` an HTTP status code (a number below 1000),
//! `model` the served model as the configuration names it or `other`
//! (`Compiled::metric_model`: at most `MAX_METRIC_MODELS` names an owner spelled out;
//! empty when no provider key was tried), `provider_key` an owner's key id, `reason`,
//! `policy` and `limit` names from fixed lists.

use metrics::{
    Counter, Histogram, SharedString, describe_counter, describe_gauge, describe_histogram,
};
use switchyard_core::endpoint::Endpoint;

use crate::swap_table::SwapTable;

/// Proxied calls answered, by `route`, `status` and `model`.
pub const REQUESTS: &str = "switchyard_requests_total";
/// Time from the request to the response head, by `route`.
pub const REQUEST_DURATION: &str = "switchyard_request_duration_seconds";
/// Time from the request to the upstream's first byte (first event for streams), by `route`.
pub const TIME_TO_FIRST_BYTE: &str = "switchyard_time_to_first_byte_seconds";
/// Failed attempts on a provider key, by `provider_key` and `reason`.
pub const UPSTREAM_ERRORS: &str = "switchyard_upstream_errors_total";
/// Times a provider key was put to sleep, by `provider_key` and `reason`.
pub const COOL_DOWNS: &str = "switchyard_provider_key_cool_downs_total";

/// 1 while the last limit check reached the limit counters, 0 while it could not.
pub const LIMIT_STORE_UP: &str = "switchyard_limit_store_up";
/// Calls decided by an owner's `when_store_down` policy, by `policy`.
pub const LIMIT_STORE_DOWN_DECISIONS: &str = "switchyard_limit_store_down_decisions_total";
/// Calls refused by a limit, by `limit` (key_rpm, account_rpm, model_rpm, model_tpm, credit).
pub const LIMIT_REFUSALS: &str = "switchyard_limit_refusals_total";

/// The configuration version served.
pub const SNAPSHOT_VERSION: &str = "switchyard_snapshot_version";
/// Seconds since the served snapshot was installed.
pub const SNAPSHOT_AGE: &str = "switchyard_snapshot_age_seconds";
/// 1 while a snapshot stream is up and its newest snapshot is served.
pub const SNAPSHOT_FRESH: &str = "switchyard_snapshot_fresh";

/// Usage events waiting in memory for delivery.
pub const USAGE_QUEUE_DEPTH: &str = "switchyard_usage_queue_depth";
/// Bytes of usage events waiting in the spool for the collector.
/// Usage events the collector refused and set aside in its quarantine.
pub const USAGE_REFUSED: &str = "switchyard_usage_events_refused_total";
pub const USAGE_SPOOL_BYTES: &str = "switchyard_usage_spool_bytes";
/// Usage events lost: the queue was full with no room in the spool (an alert).
pub const USAGE_DROPPED: &str = "switchyard_usage_events_dropped_total";

/// Client connections open now.
pub const CONNECTIONS_OPEN: &str = "switchyard_connections_open";
/// Connections closed at accept over a cap, by `reason` (max_connections,
/// max_connections_per_client).
pub const CONNECTIONS_REFUSED: &str = "switchyard_connections_refused_total";
/// Connections or requests ended by a timeout, by `timeout` (header, body_idle, body_read).
pub const CONNECTION_TIMEOUTS: &str = "switchyard_connection_timeouts_total";

/// The metrics every call records, as handles kept from one call to the next:
/// the recorder copies a metric's name and labels each time a handle is asked for,
/// which cost more on every call than recording into it.
pub struct CallMetrics {
    timers: [Timers; Endpoint::ALL.len()],
    /// [`REQUESTS`] by route, status and model.
    requests: SwapTable<(Endpoint, u16, String), Counter>,
}

/// One route's histograms.
pub struct Timers {
    /// [`REQUEST_DURATION`]
    pub duration: Histogram,
    /// [`TIME_TO_FIRST_BYTE`]
    pub first_byte: Histogram,
}

/// Label sets of [`REQUESTS`] kept at most; beyond, the table starts over.
const MOST_REQUEST_LABELS: usize = 4096;

impl CallMetrics {
    /// Handles from the installed recorder (inert ones when none is).
    pub fn register() -> Self {
        Self {
            timers: Endpoint::ALL.map(|e| Timers {
                duration: metrics::histogram!(REQUEST_DURATION, "route" => e.path()),
                first_byte: metrics::histogram!(TIME_TO_FIRST_BYTE, "route" => e.path()),
            }),
            requests: SwapTable::new(MOST_REQUEST_LABELS),
        }
    }

    pub fn timers(&self, endpoint: Endpoint) -> &Timers {
        &self.timers[endpoint.index()]
    }

    /// Count a call answered with `status`; `model` is empty before any provider
    /// key was tried.
    pub fn count_request(&self, endpoint: Endpoint, status: u16, model: String) {
        let labels = (endpoint, status, model);
        if let Some(counter) = self.requests.load().get(&labels) {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(
            REQUESTS,
            "route" => endpoint.path(),
            "status" => status_label(status),
            "model" => labels.2.clone(),
        );
        counter.increment(1);
        self.requests.insert(labels, counter);
    }
}

pub fn describe() {
    describe_gauge!(CONNECTIONS_OPEN, "Client connections open now");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed at accept because a cap was reached, by reason"
    );
    describe_counter!(
        CONNECTION_TIMEOUTS,
        "Connections or requests ended by a timeout, by timeout (header, body_idle, body_read)"
    );
    describe_counter!(
        REQUESTS,
        "Proxied calls answered, by route, status and model"
    );
    describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from the request to the response head, by route"
    );
    describe_histogram!(
        TIME_TO_FIRST_BYTE,
        metrics::Unit::Seconds,
        "Time from the request to the upstream's first byte or first stream event, by route"
    );
    describe_counter!(
        UPSTREAM_ERRORS,
        "Failed attempts on a provider key, by provider key and reason"
    );
    describe_counter!(
        COOL_DOWNS,
        "Times a provider key was put to sleep, by provider key and reason"
    );
    describe_gauge!(
        LIMIT_STORE_UP,
        "1 while limit checks reach the limit counters, 0 while they cannot"
    );
    describe_counter!(
        LIMIT_STORE_DOWN_DECISIONS,
        "Calls decided by the owner's policy for an unreachable limit store, by policy"
    );
    describe_counter!(LIMIT_REFUSALS, "Calls refused by a limit, by limit");
    describe_gauge!(SNAPSHOT_VERSION, "The configuration version served");
    describe_gauge!(
        SNAPSHOT_AGE,
        metrics::Unit::Seconds,
        "Seconds since the served snapshot was installed"
    );
    describe_gauge!(
        SNAPSHOT_FRESH,
        "1 while a snapshot stream is up and its newest snapshot is served"
    );
    describe_gauge!(
        USAGE_QUEUE_DEPTH,
        "Usage events waiting in memory for delivery"
    );
    describe_gauge!(
        USAGE_SPOOL_BYTES,
        "Bytes of usage events waiting in the spool for the collector"
    );
    describe_counter!(
        USAGE_REFUSED,
        "Usage events the collector refused; it keeps them in its quarantine"
    );
    describe_counter!(
        USAGE_DROPPED,
        "Usage events lost because neither the queue nor the spool could hold them"
    );
}

/// An HTTP status as a label value, without allocating for the common ones.
pub fn status_label(status: u16) -> SharedString {
    let fixed = match status {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        408 => "408",
        413 => "413",
        422 => "422",
        429 => "429",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        529 => "529",
        other => return SharedString::from(other.to_string()),
    };
    SharedString::const_str(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn kept_handles_count_into_the_recorder() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let calls = CallMetrics::register();
            let chat = Endpoint::ChatCompletions;
            calls.count_request(chat, 200, "m".into());
            calls.count_request(chat, 200, "m".into());
            calls.count_request(chat, 401, String::new());
            calls.count_request(Endpoint::Messages, 200, "m".into());
            calls.timers(Endpoint::Messages).duration.record(0.25);
            // Past the table's bound it starts over; the recorder keeps the counts.
            for i in 0..MOST_REQUEST_LABELS {
                calls.count_request(chat, 200, format!("x{i}"));
            }
            calls.count_request(chat, 200, "m".into());
        });
        let text = handle.render();
        let chat = r#"route="/v1/chat/completions""#;
        for (series, count) in [
            (
                format!(r#"switchyard_requests_total{{{chat},status="200",model="m"}}"#),
                3.0,
            ),
            (
                format!(r#"switchyard_requests_total{{{chat},status="401",model=""}}"#),
                1.0,
            ),
            (
                r#"switchyard_requests_total{route="/v1/messages",status="200",model="m"}"#.into(),
                1.0,
            ),
            (
                format!(r#"switchyard_requests_total{{{chat},status="200",model="x7"}}"#),
                1.0,
            ),
            (
                r#"switchyard_request_duration_seconds_count{route="/v1/messages"}"#.into(),
                1.0,
            ),
        ] {
            assert_eq!(sample(&text, &series), Some(count), "{series}\n{text}");
        }
    }
}
