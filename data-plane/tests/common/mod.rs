//! What the limiter suites share: their clock and the charges of one call.

use switchyard_core::ids::IssuedKeyId;
use switchyard_core::limits::{self, AccountLimits, Charge, LimitSubject, Reservation};

/// The clock every call of a scenario uses: one instant, so one window holds every
/// request whatever the wall clock does meanwhile, and a real one, so Redis's expiry
/// times lie a minute or more ahead.
pub fn clock() -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *START.get_or_init(switchyard_runtime::now_ms)
}

/// The charges of one `gpt-4o` call by a fresh key under `chain`, reserving
/// `reservation`.
pub fn plan(chain: &[AccountLimits], reservation: Reservation) -> Vec<Charge> {
    let subject = LimitSubject {
        key: IssuedKeyId::new(),
        key_rpm: None,
        chain,
    };
    limits::plan(&subject, "gpt-4o", reservation, clock())
}
