//! Failed console sign-ins per client address: after a few, the address waits, longer
//! with each further failure. In process (each replica counts its own) and bounded,
//! so a flood of addresses cannot grow it without end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

/// Failures older than this are forgotten.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// The first wait once the allowance is spent; it doubles with each further failure.
const FIRST_WAIT_MS: i64 = 30 * 1000;
/// The longest wait.
const MAX_WAIT_MS: i64 = WINDOW_MS;
/// Addresses tracked at once.
pub const MAX_TRACKED: usize = 10_000;

/// The failures of one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub last_ms: i64,
}

/// Whether an address with `failures` may try now: `Err` holds the milliseconds it
/// must still wait.
pub fn may_try(failures: Option<Failures>, allowance: u32, now_ms: i64) -> Result<(), i64> {
    let Some(f) = failures.filter(|f| !forgotten(f, now_ms)) else {
        return Ok(());
    };
    if f.count < allowance {
        return Ok(());
    }
    let doublings = (f.count - allowance).min(16);
    let wait = FIRST_WAIT_MS
        .saturating_mul(1_i64 << doublings)
        .min(MAX_WAIT_MS);
    let until = f.last_ms.saturating_add(wait);
    if now_ms >= until {
        Ok(())
    } else {
        Err(until - now_ms)
    }
}

/// One more failure at `now_ms`.
pub fn failed(failures: Option<Failures>, now_ms: i64) -> Failures {
    match failures.filter(|f| !forgotten(f, now_ms)) {
        Some(f) => Failures {
            count: f.count.saturating_add(1),
            last_ms: now_ms,
        },
        None => Failures {
            count: 1,
            last_ms: now_ms,
        },
    }
}

fn forgotten(f: &Failures, now_ms: i64) -> bool {
    now_ms.saturating_sub(f.last_ms) > WINDOW_MS
}

pub struct SignInLimiter {
    allowance: u32,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl SignInLimiter {
    pub fn new(allowance: u32) -> Self {
        Self {
            allowance,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(ms)`: `addr` must wait that long before trying again.
    pub fn check(&self, addr: IpAddr, now_ms: i64) -> Result<(), i64> {
        let map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        may_try(map.get(&addr).copied(), self.allowance, now_ms)
    }

    pub fn record_failure(&self, addr: IpAddr, now_ms: i64) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            map.retain(|_, f| !forgotten(f, now_ms));
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map.iter().min_by_key(|(_, f)| f.last_ms).map(|(a, _)| *a)
            {
                map.remove(&oldest);
            }
        }
        let next = failed(map.get(&addr).copied(), now_ms);
        map.insert(addr, next);
    }

    /// A successful sign-in clears the address's failures.
    pub fn record_success(&self, addr: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
    }

    pub fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_then_growing_waits() {
        let mut f = None;
        for i in 0..5 {
            assert_eq!(may_try(f, 5, 1_000 + i), Ok(()));
            f = Some(failed(f, 1_000 + i));
        }
        assert_eq!(may_try(f, 5, 1_004), Err(FIRST_WAIT_MS));
        assert_eq!(may_try(f, 5, 1_004 + FIRST_WAIT_MS), Ok(()));
        f = Some(failed(f, 100_000));
        assert_eq!(may_try(f, 5, 100_000), Err(2 * FIRST_WAIT_MS));
    }

    #[test]
    fn old_failures_are_forgotten() {
        let f = Some(Failures {
            count: 50,
            last_ms: 0,
        });
        assert_eq!(may_try(f, 5, 1), Err(MAX_WAIT_MS - 1));
        assert_eq!(may_try(f, 5, WINDOW_MS + 1), Ok(()));
        assert_eq!(failed(f, WINDOW_MS + 1).count, 1);
    }

    #[test]
    fn the_map_stays_bounded() {
        let limiter = SignInLimiter::new(1);
        for i in 0..(MAX_TRACKED as u32 + 10) {
            limiter.record_failure(IpAddr::from(i.to_be_bytes()), i64::from(i));
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED);
        let newest = IpAddr::from((MAX_TRACKED as u32 + 9).to_be_bytes());
        assert!(
            limiter
                .check(newest, i64::from(MAX_TRACKED as u32 + 9))
                .is_err()
        );
        limiter.record_success(newest);
        assert_eq!(limiter.tracked(), MAX_TRACKED - 1);
    }
}
