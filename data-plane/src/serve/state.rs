//! What one connection's requests tell its serving loop, and the step the loop takes
//! from it (a pure function: its timing rules are tested without a socket).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What one connection's requests tell its serving loop.
pub(super) struct ConnState {
    /// When the connection was accepted: the origin of the times below.
    accepted: Instant,
    /// Requests begun whose answer is not yet wholly sent.
    pub(super) in_flight: AtomicUsize,
    /// Milliseconds from `accepted` to the end of the last answer (0: none yet).
    last_end_ms: AtomicU64,
    any_request: AtomicBool,
    pub(super) h2: AtomicBool,
    /// Shutdown began: HTTP/1 answers say the connection closes.
    pub(super) closing: AtomicBool,
    /// End the connection once its answers are sent (a 401, a body timed out).
    pub(super) close: AtomicBool,
    pub(super) wake: Notify,
}

impl ConnState {
    pub(super) fn new() -> Self {
        Self {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            any_request: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            close: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        // No wake-up: a deadline the serving loop set before is checked again when
        // it comes, against the facts of then.
        self.any_request.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub(super) fn request_close(&self) {
        self.close.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub(super) fn facts(&self, stopping: Option<Instant>) -> ConnFacts {
        let last_end_ms = self.last_end_ms.load(Ordering::Relaxed);
        ConnFacts {
            accepted: self.accepted,
            any_request: self.any_request.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            last_end: self.accepted + Duration::from_millis(last_end_ms),
            stopping,
            h2: self.h2.load(Ordering::Relaxed),
            close: self.close.load(Ordering::Relaxed),
        }
    }
}

/// A request being answered; its end is when the answer's body is dropped.
pub(super) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.0;
        let elapsed = state.accepted.elapsed().as_millis();
        state.last_end_ms.store(
            u64::try_from(elapsed).unwrap_or(u64::MAX).max(1),
            Ordering::Relaxed,
        );
        if state.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            state.wake.notify_one();
        }
    }
}

/// What a connection's serving loop decides from.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnFacts {
    accepted: Instant,
    any_request: bool,
    in_flight: usize,
    last_end: Instant,
    stopping: Option<Instant>,
    h2: bool,
    close: bool,
}

/// What a connection's serving loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Shut down gracefully now: answers in flight are finished.
    Graceful,
    /// Wait for news, or until this instant, then do this.
    Until(Instant, Due),
    /// Wait for news only.
    Wait,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// No request came in time (or an idle connection did not end after graceful
    /// shutdown): drop the connection.
    Drop,
    /// Idle or quiet long enough: shut down gracefully.
    Graceful,
}

/// The serving loop's next step, before graceful shutdown began.
pub(super) fn next_step(f: ConnFacts, header_read_timeout: Duration, quiet: Duration) -> Step {
    if f.close || (f.stopping.is_some() && f.h2) {
        return Step::Graceful;
    }
    if f.in_flight > 0 {
        return Step::Wait;
    }
    let quiet_until = f.stopping.map(|at| at.max(f.last_end) + quiet);
    if !f.any_request {
        let first = f.accepted + header_read_timeout;
        return match quiet_until {
            Some(q) if q < first => Step::Until(q, Due::Graceful),
            _ => Step::Until(first, Due::Drop),
        };
    }
    let idle_until = f.last_end + header_read_timeout;
    Step::Until(
        quiet_until.map_or(idle_until, |q| q.min(idle_until)),
        Due::Graceful,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(at: Instant) -> ConnFacts {
        ConnFacts {
            accepted: at,
            any_request: false,
            in_flight: 0,
            last_end: at,
            stopping: None,
            h2: false,
            close: false,
        }
    }

    #[test]
    fn a_connection_without_a_request_is_dropped_at_the_header_timeout() {
        let t = Instant::now();
        let header = Duration::from_secs(30);
        let quiet = Duration::from_secs(1);
        assert_eq!(
            next_step(facts(t), header, quiet),
            Step::Until(t + header, Due::Drop)
        );
        // Shutdown: it gets the quiet time to send what it may have sent.
        let stopping = ConnFacts {
            stopping: Some(t + Duration::from_secs(5)),
            ..facts(t)
        };
        assert_eq!(
            next_step(stopping, header, quiet),
            Step::Until(t + Duration::from_secs(6), Due::Graceful)
        );
    }

    #[test]
    fn requests_in_flight_are_never_cut_and_idle_connections_close() {
        let t = Instant::now();
        let header = Duration::from_secs(30);
        let quiet = Duration::from_secs(1);
        let busy = ConnFacts {
            any_request: true,
            in_flight: 2,
            stopping: Some(t),
            ..facts(t)
        };
        assert_eq!(next_step(busy, header, quiet), Step::Wait);
        let end = t + Duration::from_secs(3);
        let idle = ConnFacts {
            any_request: true,
            last_end: end,
            ..facts(t)
        };
        assert_eq!(
            next_step(idle, header, quiet),
            Step::Until(end + header, Due::Graceful)
        );
        // After shutdown began, quiet for a second since the later of the two.
        let stopped = ConnFacts {
            stopping: Some(t + Duration::from_secs(10)),
            ..idle
        };
        assert_eq!(
            next_step(stopped, header, quiet),
            Step::Until(t + Duration::from_secs(11), Due::Graceful)
        );
        // HTTP/2 has GOAWAY for this: at once, streams begun still finish.
        let h2 = ConnFacts { h2: true, ..busy };
        assert_eq!(next_step(h2, header, quiet), Step::Graceful);
        let refused = ConnFacts {
            close: true,
            ..busy
        };
        assert_eq!(next_step(refused, header, quiet), Step::Graceful);
    }
}
