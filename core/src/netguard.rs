//! Which upstream addresses a provider key may reach: none of the special-purpose
//! blocks (loopback, private, link-local, documentation, multicast, reserved, …), so
//! a tenant cannot point the router at internal services. Judged on addresses, not
//! on URL text: the control plane on what a base URL resolves to when it is written,
//! the data plane on every address it is about to connect to.
//!
//! - IPv4: every block of IANA's IPv4 special-purpose address registry, multicast
//!   (224.0.0.0/4) and the reserved 240.0.0.0/4 (with the broadcast address).
//! - IPv6: every block of IANA's IPv6 special-purpose address registry, and
//!   everything outside global unicast 2000::/3 (ULA fc00::/7, link-local fe80::/10,
//!   site-local fec0::/10, multicast ff00::/8, discard 100::/64, …).
//! - IPv4 inside IPv6 is judged by the IPv4 address it carries: IPv4-mapped
//!   ::ffff:0:0/96, IPv4-compatible ::/96, NAT64 64:ff9b::/96 and 6to4 2002::/16 (the
//!   IPv4 address in bits 16 to 48). Teredo 2001::/32 and the local-use NAT64 prefix
//!   64:ff9b:1::/48 (where the IPv4 address sits depends on the operator's prefix
//!   length) are refused whole.
//!
//! The operator lifts the refusal for networks of its own (an in-cluster router, a
//! local model) or entirely (`--allow-private-upstreams`).

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;

use ipnet::IpNet;

/// A kind of address no upstream may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Unspecified,
    ThisNetwork,
    Loopback,
    Private,
    SharedAddressSpace,
    LinkLocal,
    ProtocolAssignments,
    Documentation,
    Benchmarking,
    As112,
    Amt,
    SixToFourRelay,
    Multicast,
    Broadcast,
    Reserved,
    Discard,
    UniqueLocal,
    SiteLocal,
    Teredo,
    LocalTranslation,
    Srv6,
    NotGlobalUnicast,
}

impl Special {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "the unspecified address",
            Self::ThisNetwork => "\"this network\" (0.0.0.0/8)",
            Self::Loopback => "loopback",
            Self::Private => "a private network",
            Self::SharedAddressSpace => "carrier-grade NAT space (100.64.0.0/10)",
            Self::LinkLocal => "link-local",
            Self::ProtocolAssignments => "reserved for IETF protocol assignments",
            Self::Documentation => "reserved for documentation",
            Self::Benchmarking => "reserved for benchmarking",
            Self::As112 => "an AS112 DNS sink",
            Self::Amt => "AMT relay anycast",
            Self::SixToFourRelay => "6to4 relay anycast",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
            Self::Discard => "the discard prefix",
            Self::UniqueLocal => "a unique local network (fc00::/7)",
            Self::SiteLocal => "site-local (fec0::/10)",
            Self::Teredo => "a Teredo tunnel",
            Self::LocalTranslation => "local-use IPv4/IPv6 translation (64:ff9b:1::/48)",
            Self::Srv6 => "reserved for SRv6 segment identifiers",
            Self::NotGlobalUnicast => "outside IPv6 global unicast (2000::/3)",
        }
    }
}

impl fmt::Display for Special {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one address is refused: its kind, and the IPv4 address it was judged by
/// when it carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forbidden {
    pub address: IpAddr,
    pub special: Special,
    pub embedded: Option<Ipv4Addr>,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some(v4) => write!(f, "{} carries {v4}, {}", self.address, self.special),
            None => write!(f, "{} is {}", self.address, self.special),
        }
    }
}

/// IPv4 blocks no upstream may be in; the narrower first, so each is named right.
const V4: [([u8; 4], u8, Special); 19] = [
    ([0, 0, 0, 0], 32, Special::Unspecified),
    ([0, 0, 0, 0], 8, Special::ThisNetwork),
    ([10, 0, 0, 0], 8, Special::Private),
    ([100, 64, 0, 0], 10, Special::SharedAddressSpace),
    ([127, 0, 0, 0], 8, Special::Loopback),
    ([169, 254, 0, 0], 16, Special::LinkLocal),
    ([172, 16, 0, 0], 12, Special::Private),
    ([192, 0, 0, 0], 24, Special::ProtocolAssignments),
    ([192, 0, 2, 0], 24, Special::Documentation),
    ([192, 31, 196, 0], 24, Special::As112),
    ([192, 52, 193, 0], 24, Special::Amt),
    ([192, 88, 99, 0], 24, Special::SixToFourRelay),
    ([192, 168, 0, 0], 16, Special::Private),
    ([192, 175, 48, 0], 24, Special::As112),
    ([198, 18, 0, 0], 15, Special::Benchmarking),
    ([198, 51, 100, 0], 24, Special::Documentation),
    ([203, 0, 113, 0], 24, Special::Documentation),
    ([224, 0, 0, 0], 4, Special::Multicast),
    ([255, 255, 255, 255], 32, Special::Broadcast),
];

/// IPv6 blocks no upstream may be in, besides the embeddings of IPv4 (judged by the
/// address they carry); the narrower first. Whatever is outside 2000::/3 and not
/// named here is [`Special::NotGlobalUnicast`].
const V6: [(u128, u8, Special); 14] = [
    (0, 128, Special::Unspecified),
    (1, 128, Special::Loopback),
    (0x0100_0000_0000_0000 << 64, 64, Special::Discard),
    (0x0064_ff9b_0001 << 80, 48, Special::LocalTranslation),
    (0x2001 << 112, 32, Special::Teredo),
    (0x2001_0db8 << 96, 32, Special::Documentation),
    (0x2001 << 112, 23, Special::ProtocolAssignments),
    (0x2620_004f_8000 << 80, 48, Special::As112),
    (0x3fff << 112, 20, Special::Documentation),
    (0x5f00 << 112, 16, Special::Srv6),
    (0xfc00 << 112, 7, Special::UniqueLocal),
    (0xfe80 << 112, 10, Special::LinkLocal),
    (0xfec0 << 112, 10, Special::SiteLocal),
    (0xff00 << 112, 8, Special::Multicast),
];

fn in_v4(ip: u32, base: [u8; 4], len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    ip & mask == u32::from_be_bytes(base)
}

fn in_v6(ip: u128, base: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ip & mask == base
}

fn special_v4(ip: Ipv4Addr) -> Option<Special> {
    let bits = u32::from(ip);
    if let Some((_, _, special)) = V4.iter().find(|(base, len, _)| in_v4(bits, *base, *len)) {
        return Some(*special);
    }
    // 240.0.0.0/4 (the broadcast address is named above).
    (bits >> 28 == 0xf).then_some(Special::Reserved)
}

/// The IPv4 address an IPv6 address carries, where the kind of embedding says where
/// it sits (mapped, compatible, NAT64 well-known prefix, 6to4).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    if in_v6(bits, 0xffff << 32, 96) || in_v6(bits, 0, 96) && bits > 1 {
        return Some(low);
    }
    if in_v6(bits, 0x0064_ff9b << 96, 96) {
        return Some(low);
    }
    if in_v6(bits, 0x2002 << 112, 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

/// Why `ip` may not be an upstream, or `None` when it is an ordinary public address.
pub fn forbidden(ip: IpAddr) -> Option<Forbidden> {
    let verdict = |special, embedded| Forbidden {
        address: ip,
        special,
        embedded,
    };
    match ip {
        IpAddr::V4(v4) => special_v4(v4).map(|s| verdict(s, None)),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return special_v4(v4).map(|s| verdict(s, Some(v4)));
            }
            let bits = u128::from(v6);
            if let Some((_, _, special)) = V6.iter().find(|(base, len, _)| in_v6(bits, *base, *len))
            {
                return Some(verdict(*special, None));
            }
            (!in_v6(bits, 0x2000 << 112, 3)).then(|| verdict(Special::NotGlobalUnicast, None))
        }
    }
}

/// The operator's choice of which upstream addresses are reachable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamNetworks {
    /// Every address, special or not (`--allow-private-upstreams`: local models, tests).
    pub allow_private: bool,
    /// Networks reachable although special (`--allowed-upstream-networks`).
    pub allowed: Vec<IpNet>,
}

impl UpstreamNetworks {
    pub fn new(allow_private: bool, allowed: Vec<IpNet>) -> Self {
        Self {
            allow_private,
            allowed,
        }
    }

    /// `Ok` when an upstream may be at `ip`; otherwise why not. An IPv4-mapped
    /// address is inside an allowed IPv4 network when its IPv4 address is: that is
    /// where a connection to it goes.
    pub fn check(&self, ip: IpAddr) -> Result<(), Forbidden> {
        if self.allow_private {
            return Ok(());
        }
        let Some(refusal) = forbidden(ip) else {
            return Ok(());
        };
        let canonical = ip.to_canonical();
        if self
            .allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return Ok(());
        }
        Err(refusal)
    }

    /// The addresses of `resolved` an upstream may be at, in their order; when none
    /// is, why the first was refused (`None` when `resolved` is empty).
    pub fn permitted(&self, resolved: &[IpAddr]) -> Result<Vec<IpAddr>, Option<Forbidden>> {
        let mut first_refusal = None;
        let mut kept = Vec::with_capacity(resolved.len());
        for ip in resolved {
            match self.check(*ip) {
                Ok(()) => kept.push(*ip),
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        if kept.is_empty() {
            Err(first_refusal)
        } else {
            Ok(kept)
        }
    }
}

/// What a host name resolves to, boxed so a resolver can be chosen at run time.
pub type Resolving = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// The seam where name resolution enters: the services resolve through the system,
/// tests through a table of their own.
pub trait Resolve: Send + Sync {
    /// The addresses `host` (a name, never an IP literal) resolves to.
    fn resolve(&self, host: &str) -> Resolving;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Option<Special> {
        forbidden(text.parse().unwrap()).map(|f| f.special)
    }

    #[test]
    fn ipv4_special_purpose_blocks_are_refused() {
        for (text, special) in [
            ("0.0.0.0", Special::Unspecified),
            ("0.1.2.3", Special::ThisNetwork),
            ("10.0.0.1", Special::Private),
            ("10.255.255.255", Special::Private),
            ("100.64.0.1", Special::SharedAddressSpace),
            ("100.127.255.254", Special::SharedAddressSpace),
            ("127.0.0.1", Special::Loopback),
            ("127.255.0.9", Special::Loopback),
            ("169.254.169.254", Special::LinkLocal),
            ("172.16.0.1", Special::Private),
            ("172.31.255.255", Special::Private),
            ("192.0.0.9", Special::ProtocolAssignments),
            ("192.0.0.170", Special::ProtocolAssignments),
            ("192.0.2.5", Special::Documentation),
            ("192.31.196.1", Special::As112),
            ("192.52.193.1", Special::Amt),
            ("192.88.99.1", Special::SixToFourRelay),
            ("192.168.1.1", Special::Private),
            ("192.175.48.6", Special::As112),
            ("198.18.0.1", Special::Benchmarking),
            ("198.19.255.255", Special::Benchmarking),
            ("198.51.100.7", Special::Documentation),
            ("203.0.113.9", Special::Documentation),
            ("224.0.0.1", Special::Multicast),
            ("239.255.255.250", Special::Multicast),
            ("240.0.0.1", Special::Reserved),
            ("254.1.2.3", Special::Reserved),
            ("255.255.255.255", Special::Broadcast),
        ] {
            assert_eq!(refused(text), Some(special), "{text}");
        }
    }

    #[test]
    fn ipv6_special_purpose_blocks_are_refused() {
        for (text, special) in [
            ("::", Special::Unspecified),
            ("::1", Special::Loopback),
            ("100::1", Special::Discard),
            ("100::ffff:ffff:ffff:ffff", Special::Discard),
            ("64:ff9b:1::a9fe:a9fe", Special::LocalTranslation),
            ("64:ff9b:1:ffff::8.8.8.8", Special::LocalTranslation),
            ("2001::1", Special::Teredo),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Special::Teredo),
            ("2001:2::1", Special::ProtocolAssignments),
            ("2001:20::1", Special::ProtocolAssignments),
            ("2001:db8::1", Special::Documentation),
            ("3fff::1", Special::Documentation),
            ("2620:4f:8000::1", Special::As112),
            ("5f00::1", Special::Srv6),
            ("fc00::1", Special::UniqueLocal),
            ("fd12:3456::1", Special::UniqueLocal),
            ("fe80::1", Special::LinkLocal),
            ("febf::1", Special::LinkLocal),
            ("fec0::1", Special::SiteLocal),
            ("feff::1", Special::SiteLocal),
            ("ff02::1", Special::Multicast),
            ("ff0e::1", Special::Multicast),
            ("::ffff:0:7f00:1", Special::NotGlobalUnicast),
            ("4000::1", Special::NotGlobalUnicast),
            ("1::1", Special::NotGlobalUnicast),
        ] {
            assert_eq!(refused(text), Some(special), "{text}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_by_the_ipv4_address() {
        for (text, v4, special) in [
            ("::ffff:127.0.0.1", "127.0.0.1", Special::Loopback),
            ("::ffff:10.0.0.1", "10.0.0.1", Special::Private),
            (
                "::ffff:169.254.169.254",
                "169.254.169.254",
                Special::LinkLocal,
            ),
            ("::127.0.0.1", "127.0.0.1", Special::Loopback),
            ("::10.1.2.3", "10.1.2.3", Special::Private),
            ("64:ff9b::a9fe:a9fe", "169.254.169.254", Special::LinkLocal),
            ("64:ff9b::127.0.0.1", "127.0.0.1", Special::Loopback),
            ("2002:a9fe:a9fe::", "169.254.169.254", Special::LinkLocal),
            ("2002:7f00:1::1", "127.0.0.1", Special::Loopback),
            ("2002:c0a8:101:5::9", "192.168.1.1", Special::Private),
            ("2002:e000:1::", "224.0.0.1", Special::Multicast),
        ] {
            let verdict = forbidden(text.parse().unwrap()).unwrap();
            assert_eq!(verdict.special, special, "{text}");
            assert_eq!(verdict.embedded, Some(v4.parse().unwrap()), "{text}");
        }
        // The same embeddings of public addresses pass.
        for text in [
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(refused(text), None, "{text}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "104.18.6.192",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1",
            "2a00:1450:4001:82a::200e",
            "2001:4860:4860::8888",
            "2001:200::1",
            "2003::1",
        ] {
            assert_eq!(refused(text), None, "{text}");
        }
    }

    #[test]
    fn the_operator_lifts_refusals_for_its_networks_or_entirely() {
        let ip = |t: &str| -> IpAddr { t.parse().unwrap() };
        let strict = UpstreamNetworks::default();
        assert!(strict.check(ip("10.1.2.3")).is_err());
        assert!(strict.check(ip("8.8.8.8")).is_ok());

        let some = UpstreamNetworks::new(
            false,
            vec!["10.1.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
        );
        assert!(some.check(ip("10.1.2.3")).is_ok());
        assert!(some.check(ip("::ffff:10.1.2.3")).is_ok(), "mapped");
        assert!(some.check(ip("fd00::5")).is_ok());
        assert!(some.check(ip("10.2.0.1")).is_err());
        assert!(some.check(ip("127.0.0.1")).is_err());
        assert!(some.check(ip("fe80::1")).is_err());

        let all = UpstreamNetworks::new(true, Vec::new());
        for t in ["127.0.0.1", "::1", "169.254.169.254", "ff02::1"] {
            assert!(all.check(ip(t)).is_ok(), "{t}");
        }
    }

    #[test]
    fn of_a_mixed_answer_only_the_allowed_addresses_remain() {
        let strict = UpstreamNetworks::default();
        let ip = |t: &str| -> IpAddr { t.parse().unwrap() };
        assert_eq!(
            strict.permitted(&[ip("127.0.0.1"), ip("8.8.8.8"), ip("::1")]),
            Ok(vec![ip("8.8.8.8")])
        );
        let refusal = strict
            .permitted(&[ip("127.0.0.1"), ip("10.0.0.1")])
            .unwrap_err()
            .unwrap();
        assert_eq!(refusal.special, Special::Loopback);
        assert_eq!(refusal.to_string(), "127.0.0.1 is loopback");
        assert_eq!(strict.permitted(&[]), Err(None));
    }

    #[test]
    fn refusals_say_what_was_carried() {
        let verdict = forbidden("64:ff9b::a9fe:a9fe".parse().unwrap()).unwrap();
        assert_eq!(
            verdict.to_string(),
            "64:ff9b::a9fe:a9fe carries 169.254.169.254, link-local"
        );
    }
}
