//! What every call shares: the snapshot, the keyring, the upstream client, usage
//! delivery, the limit gate, and the bounds of the request path.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::crypto::Keyring;
use switchyard_core::route::CoolDown;

use crate::access::AccessLog;
use crate::limits::Gate;
use crate::live::Live;
use crate::metric;
use crate::upstream::Upstream;
use crate::usage::UsageSink;

/// Bounds of the request path.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_request_body: usize,
    pub max_response_body: usize,
    /// From sending a request to the upstream's first event (streams) or headers.
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of an answer.
    pub idle_timeout: Duration,
    /// How long a stream whose client left keeps draining for its usage.
    pub drain_timeout: Duration,
    /// Keys tried on one level before switching over.
    pub tries_per_level: u32,
    /// Bytes of a multipart upload read while looking for its `model` field.
    pub multipart_prefix: usize,
    /// Output tokens reserved for a request that names no `max_tokens`.
    pub default_max_output_tokens: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_body: 32 * 1024 * 1024,
            max_response_body: 64 * 1024 * 1024,
            first_byte_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(300),
            tries_per_level: 3,
            multipart_prefix: 1024 * 1024,
            default_max_output_tokens: 4096,
        }
    }
}

pub struct App {
    pub live: Arc<Live>,
    pub keyring: Arc<Keyring>,
    pub(crate) upstream: Upstream,
    pub usage: UsageSink,
    pub limits: Limits,
    pub cool_down: CoolDown,
    /// Proxies whose `X-Forwarded-For` is believed (none by default).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Limit counters, their rebuild, and the answer when they are away.
    pub gate: Gate,
    pub metrics: metric::CallMetrics,
    /// Which calls get an access line.
    pub access_log: AccessLog,
}
