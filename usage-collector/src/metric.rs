//! The collector's Prometheus metrics: what it stores, how fast, and how far behind
//! the calls it records.

use metrics::{describe_counter, describe_histogram};

/// Usage events stored for the first time (their rate is the ingest rate).
pub const EVENTS_STORED: &str = "switchyard_usage_events_stored_total";
/// Usage events received again and ignored (replays after a lost ack).
pub const EVENTS_DUPLICATE: &str = "switchyard_usage_events_duplicate_total";
/// Usage events set aside in the quarantine table, by a bounded reason.
pub const EVENTS_QUARANTINED: &str = "switchyard_usage_events_quarantined_total";
/// Transactions that failed; their batches are not acked and will be resent.
pub const WRITE_FAILURES: &str = "switchyard_usage_write_failures_total";
/// Time to write one group of batches (one transaction).
pub const WRITE_DURATION: &str = "switchyard_usage_write_duration_seconds";
/// Events per transaction.
pub const WRITE_EVENTS: &str = "switchyard_usage_write_events";
/// From a call's end (the event's time) to its event being stored: the lag.
pub const INGEST_LAG: &str = "switchyard_usage_ingest_lag_seconds";

pub fn describe() {
    describe_counter!(EVENTS_STORED, "Usage events stored for the first time");
    describe_counter!(
        EVENTS_DUPLICATE,
        "Usage events received again and ignored (replays)"
    );
    describe_counter!(
        EVENTS_QUARANTINED,
        "Usage events the collector could not store, set aside in usage_quarantine"
    );
    describe_counter!(
        WRITE_FAILURES,
        "Usage transactions that failed; their batches are resent"
    );
    describe_histogram!(
        WRITE_DURATION,
        metrics::Unit::Seconds,
        "Time to write one group of usage batches (one transaction)"
    );
    describe_histogram!(WRITE_EVENTS, "Usage events per transaction");
    describe_histogram!(
        INGEST_LAG,
        metrics::Unit::Seconds,
        "From a call's end to its usage event being stored"
    );
}
