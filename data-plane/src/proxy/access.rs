//! The access log: one structured line per metered call, written where its usage
//! event is made, from the values the meter holds. It names the call (ids, route,
//! models, provider key, attempts, status, timings, tokens and their source) and
//! never its content: no prompt, no answer, no key, no header.

use std::cell::Cell;

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
