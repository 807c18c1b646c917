//! The client's address behind trusted proxies (`X-Forwarded-For`).

/// The client's address. Without trusted proxies it is the peer. When the peer is a
/// trusted proxy, `X-Forwarded-For` (every header value, in order) is read from the
/// right: each trusted hop is skipped, and the first untrusted address is the client.
/// An entry that is not an address stops the walk at the hop that reported it.
pub fn client_ip<'a>(
    peer: std::net::IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer;
    if !is_trusted(&client) {
        return client;
    }
    for header in forwarded_for.rev() {
        for hop in header.rsplit(',') {
            match hop.trim().parse::<std::net::IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !is_trusted(&ip) {
                        return client;
                    }
                }
                Err(_) => return client,
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_behind_trusted_proxies() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let lb: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = ip("10.0.0.5");
        // Off by default: the header is ignored.
        assert_eq!(client_ip(peer, ["1.2.3.4"].into_iter(), &[]), peer);
        // An untrusted peer cannot claim another address.
        assert_eq!(
            client_ip(ip("8.8.8.8"), ["1.2.3.4"].into_iter(), &lb),
            ip("8.8.8.8")
        );
        // Multi-hop: the rightmost untrusted entry, across several header lines.
        assert_eq!(
            client_ip(peer, ["6.6.6.6, 1.2.3.4", "10.1.1.1"].into_iter(), &lb),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(peer, ["  2001:db8::1 ,10.9.9.9"].into_iter(), &lb),
            ip("2001:db8::1")
        );
        // Garbage stops at the hop that reported it; no header leaves the peer.
        assert_eq!(
            client_ip(peer, ["1.2.3.4, junk, 10.2.2.2"].into_iter(), &lb),
            ip("10.2.2.2")
        );
        assert_eq!(client_ip(peer, std::iter::empty(), &lb), peer);
    }
}
