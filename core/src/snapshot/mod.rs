//! The snapshot: everything a data plane needs to authorise and route, as plain data
//! ([`data`]), and the lookup tables built from it once ([`compiled`]).

pub mod compiled;
pub mod data;

pub use crate::types::{ProviderKind, Status};
pub use compiled::{AuthError, Caller, Compiled, MAX_METRIC_MODELS, OTHER_MODEL, SnapshotError};
pub use data::{Account, Configuration, IssuedKey, ProviderKey, Snapshot};
