//! The bounds on client connections: caps on how many, deadlines on their requests.

use std::time::Duration;

/// Bounds on the connections clients hold.
#[derive(Clone, Debug)]
pub struct ConnectionBounds {
    /// Connections open at once; beyond, new ones are closed at accept.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 one by its /64).
    pub max_connections_per_client: usize,
    /// Peers the per-client cap does not apply to: proxies in front of the router,
    /// which carry many clients' connections.
    pub shared_peers: Vec<ipnet::IpNet>,
    /// Longest wait for a request's headers, from the connection's opening or the
    /// previous answer: also the longest an idle connection stays open.
    pub header_read_timeout: Duration,
    /// Longest silence while a request body is received.
    pub body_idle_timeout: Duration,
    /// Longest time to receive a request body whole, from its headers.
    pub body_read_timeout: Duration,
}

impl Default for ConnectionBounds {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_client: 256,
            shared_peers: Vec::new(),
            header_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(300),
        }
    }
}
