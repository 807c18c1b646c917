//! Rate limits and credits: which counters a request touches, and the arithmetic of
//! admission and settlement. Pure: the limiters (in-process, Redis) apply exactly
//! these rules to their counters.
//!
//! - A request counts against its issued key, its account **and every ancestor**:
//!   each account's own limits bind the sum of its subtree.
//! - Admission reserves the request's most it can cost on every counter at once, all
//!   or nothing: it is admitted only if every reservation fits under its limit.
//! - Settlement replaces the reservation by what was used. So a counter can pass its
//!   limit only by what actual usage exceeded its reservation (the overshoot bound).
//! - Windows are fixed: the UTC minute (RPM, TPM), the UTC day or month (credit).
//!
//! Inside: the windows counters live in ([`Window`]); which counters a request is
//! charged to ([`plan`], [`Charge`]); the most it can cost ([`reservation()`]);
//! admission, the refusal a client reads and settlement ([`admit`], [`Refusal`],
//! [`settle`]); counters put back after the store lost them ([`rebuilt_credits`],
//! [`restorable_shares`]); and each replica's share while the store is away
//! ([`local_share_limit`]).

mod admission;
mod charges;
mod recovery;
mod reservation;
mod share;
mod window;

pub use admission::{Refusal, admit, settle};
pub use charges::{AccountLimits, Charge, LimitKind, LimitSubject, Unit, Used, plan};
pub use recovery::{CounterValue, DaySpend, rebuilt_credits, restorable_shares};
pub use reservation::{BYTES_PER_TOKEN_ESTIMATE, Reservation, reservation};
pub use share::{local_share_limit, share_replicas};
pub use window::Window;

#[cfg(test)]
mod fixtures;
