//! The connection caps, in all and per client address: checked at accept, a permit
//! held for as long as the connection lasts.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::bounds::ConnectionBounds;
use crate::metric;

/// Why a connection was closed at accept (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    MaxConnections,
    MaxConnectionsPerClient,
}

impl Refusal {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxConnectionsPerClient => "max_connections_per_client",
        }
    }
}

/// Whether one more connection fits, given those open in all and from its client
/// (`None`: the client is not capped).
fn refusal(
    open: usize,
    open_from_client: Option<usize>,
    max: usize,
    max_per_client: usize,
) -> Option<Refusal> {
    if open >= max {
        Some(Refusal::MaxConnections)
    } else if open_from_client.is_some_and(|n| n >= max_per_client) {
        Some(Refusal::MaxConnectionsPerClient)
    } else {
        None
    }
}

/// What a client's connections are counted under: its address, an IPv6 one by its
/// /64 (what one subscriber is given), an IPv4-mapped one as IPv4.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// The connection caps, checked by the acceptor, released by the serving threads.
pub(super) struct Gate {
    max: usize,
    max_per_client: usize,
    shared_peers: Vec<ipnet::IpNet>,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    open_gauge: metrics::Gauge,
}

impl Gate {
    pub(super) fn new(bounds: &ConnectionBounds) -> Self {
        Self {
            max: bounds.max_connections,
            max_per_client: bounds.max_connections_per_client,
            shared_peers: bounds.shared_peers.clone(),
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            open_gauge: metrics::gauge!(metric::CONNECTIONS_OPEN),
        }
    }

    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refusal> {
        let client =
            (!self.shared_peers.iter().any(|n| n.contains(&peer))).then(|| client_key(peer));
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let from_client = client.map(|c| per_client.get(&c).copied().unwrap_or(0));
        if let Some(refused) = refusal(
            self.open.load(Ordering::Relaxed),
            from_client,
            self.max,
            self.max_per_client,
        ) {
            return Err(refused);
        }
        if let Some(c) = client {
            *per_client.entry(c).or_insert(0) += 1;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        self.open_gauge.increment(1.0);
        Ok(Permit {
            gate: self.clone(),
            client,
        })
    }
}

/// One admitted connection; dropped when it ends.
pub(super) struct Permit {
    gate: Arc<Gate>,
    client: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(c) = self.client {
            let mut per_client = self
                .gate
                .per_client
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = per_client.get_mut(&c) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_client.remove(&c);
                }
            }
        }
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
        self.gate.open_gauge.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_at_their_limit() {
        assert_eq!(refusal(0, Some(0), 10, 2), None);
        assert_eq!(refusal(9, Some(1), 10, 2), None);
        assert_eq!(
            refusal(9, Some(2), 10, 2),
            Some(Refusal::MaxConnectionsPerClient)
        );
        assert_eq!(refusal(10, Some(0), 10, 2), Some(Refusal::MaxConnections));
        // A shared peer (a trusted proxy) is held only to the total.
        assert_eq!(refusal(9, None, 10, 2), None);
        assert_eq!(refusal(10, None, 10, 2), Some(Refusal::MaxConnections));
    }

    #[test]
    fn clients_are_counted_by_address_and_ipv6_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        assert_eq!(client_key(mapped), v4);
    }
}
