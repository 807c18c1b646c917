//! The access log: one structured line per call. A metered call's line is written
//! where its usage event is made, from the values the meter holds (ids, route,
//! models, provider key, attempts, status, timings, tokens and their source); a call
//! refused before it had a meter (authentication, policy, limits, its body) gets a
//! shorter line from [`refused`]. Never content: no prompt, no answer, no key, no
//! header.

use std::cell::Cell;
use std::time::Duration;

use switchyard_core::error::ErrorCode;
use switchyard_core::ids::AccountId;

/// The log target operators filter on (`RUST_LOG=switchyard::access=off`, or on alone).
pub const TARGET: &str = "switchyard::access";

/// Which calls get an access line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessLog {
    /// One successful call in this many is logged; 0: none at all. Failed calls
    /// (an error status, or a call cut short) are logged whenever this is not 0.
    pub one_in: u32,
}

impl Default for AccessLog {
    fn default() -> Self {
        Self::EVERY_CALL
    }
}

impl AccessLog {
    pub const EVERY_CALL: Self = Self { one_in: 1 };
    pub const OFF: Self = Self { one_in: 0 };

    /// Whether this call gets a line. The count is per serving thread: sampling
    /// needs no shared counter, and each thread logs one in `one_in` of its calls.
    pub fn admits(self, failed: bool) -> bool {
        thread_local! {
            static SEEN: Cell<u32> = const { Cell::new(0) };
        }
        match self.one_in {
            0 => false,
            1 => true,
            _ if failed => true,
            n => SEEN.with(|seen| {
                let next = seen.get().wrapping_add(1) % n;
                seen.set(next);
                next == 0
            }),
        }
    }
}

/// The access line of a call refused before a provider key was tried: `account` is
/// known once the call's key was admitted.
pub fn refused(
    log: AccessLog,
    request_id: uuid::Uuid,
    route: &'static str,
    account: Option<AccountId>,
    status: u16,
    code: ErrorCode,
    latency: Duration,
) {
    if !log.admits(true) {
        return;
    }
    tracing::info!(
        target: TARGET,
        request_id = %request_id.hyphenated(),
        account = account.map(tracing::field::display),
        route,
        status,
        error = code.as_str(),
        attempts = 0u32,
        latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        "refused"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_logs_one_in_n_and_every_failure() {
        assert!(!AccessLog::OFF.admits(true));
        assert!((0..10).all(|_| AccessLog::EVERY_CALL.admits(false)));
        let sampled = AccessLog { one_in: 4 };
        let logged = (0..100).filter(|_| sampled.admits(false)).count();
        assert_eq!(logged, 25);
        assert!((0..10).all(|_| sampled.admits(true)));
    }
}
