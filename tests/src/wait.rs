//! Waiting on a condition instead of a fixed pause: a probe is tried until it
//! yields a value or the patience runs out, and the failure names what was awaited
//! and what was last seen.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long a test waits for a change to travel through the system (a snapshot to
/// reach a data plane, usage to reach a rollup).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long a probe rests between tries: short against the seconds a test waits.
const INTERVAL: Duration = Duration::from_millis(20);

/// Tries `probe` until it returns `Some`, and returns that value; fails naming
/// `what` if `within` passes first.
pub async fn until<T>(
    within: Duration,
    what: impl Display,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Tries `probe` until it returns `Ok`, and returns that value; fails naming `what`
/// and the last `Err` (what the probe saw instead) if `within` passes first.
pub async fn until_ok<T, E: Display>(
    within: Duration,
    what: impl Display,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "waited {within:?} for {what}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Tries `probe` until it returns `Some`, for a caller that decides itself what a
/// timeout means: `None` once `within` has passed without a value.
pub async fn within<T>(within: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// [`until`] for code that cannot await (process supervision): blocks the thread
/// between tries; `None` once `within` has passed without a value.
pub fn blocking_until<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(INTERVAL);
    }
}

/// Fixed windows: wait, when the current UTC minute is more than `latest_ms` old, for
/// the next one, so one minute's window holds what follows. Nothing to poll for: the
/// clock decides.
pub async fn early_in_a_minute(latest_ms: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let into = u64::try_from(now % 60_000).unwrap_or(0);
    if into > latest_ms {
        tokio::time::sleep(Duration::from_millis(60_000 - into + 200)).await;
    }
}
