//! Limits on the request path: the counters ([`limiter`]; their Redis scripts in
//! `scripts`), their credit spend put back after a loss ([`rebuild`]), and the gate
//! a call passes to reserve its cost (`gate`), which answers for the limit store
//! being away or having lost its data.

mod gate;
pub mod limiter;
pub mod rebuild;
mod scripts;

pub use gate::{Admitted, Gate, LocalShare, Refused};
