//! The data plane's Prometheus metrics: names in one place, described once.

use metrics::{describe_counter, describe_gauge};

/// 1 while the last limit check reached the limit counters, 0 while it could not.
pub const LIMIT_STORE_UP: &str = "switchyard_limit_store_up";
/// Calls decided by an owner's `when_store_down` policy, by `policy`.
pub const LIMIT_STORE_DOWN_DECISIONS: &str = "switchyard_limit_store_down_decisions_total";
/// Calls refused by a limit, by `limit` (key_rpm, account_rpm, model_rpm, model_tpm, credit).
pub const LIMIT_REFUSALS: &str = "switchyard_limit_refusals_total";

/// Bytes of usage events waiting in the spool for the collector.
pub const USAGE_SPOOL_BYTES: &str = "switchyard_usage_spool_bytes";
/// Usage events lost: the queue was full with no room in the spool (an alert).
pub const USAGE_DROPPED: &str = "switchyard_usage_events_dropped_total";

pub fn describe() {
    describe_gauge!(
        USAGE_SPOOL_BYTES,
        "Bytes of usage events waiting in the spool for the collector"
    );
    describe_counter!(
        USAGE_DROPPED,
        "Usage events lost because neither the queue nor the spool could hold them"
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
}
