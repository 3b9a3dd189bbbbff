//! Host patterns (`--ignore-hosts`): addresses, addresses with a port, and networks, and the
//! set that matches a connection's remote end against all of them at once.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

use crate::networks::{NetworkMap, canonical_address, canonical_network};

/// One host pattern: an address, an address with the remote port, or a network.
///
/// Parsing normalises IPv4-mapped IPv6 forms to IPv4 (`::ffff:10.0.0.5` is `10.0.0.5`,
/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`; see [`NetworkMap`]) and clears a network's host
/// bits. An IPv6 address whose last group could be a port (`fd00::5:3306`) is refused as
/// ambiguous: `[fd00::5]:3306` says address and port, `fd00::5:3306/128` the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPattern {
    /// Every connection with this remote address.
    Address(IpAddr),
    /// Connections with this remote address and remote port (`10.0.0.5:3306`,
    /// `[fd00::5]:3306`).
    Endpoint(SocketAddr),
    /// Every connection whose remote address is in this network (`10.0.0.0/8`).
    Network(IpNet),
}

impl FromStr for HostPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.contains('/') {
            let network: IpNet = text
                .parse()
                .map_err(|_| PatternError::Invalid(text.to_owned()))?;
            return Ok(HostPattern::Network(canonical_network(network)));
        }
        if let Ok(address) = text.parse::<IpAddr>() {
            if let Some((address, port)) = address_and_port(text) {
                return Err(PatternError::Ambiguous {
                    text: text.to_owned(),
                    address,
                    port,
                });
            }
            return Ok(HostPattern::Address(canonical_address(address)));
        }
        if let Ok(endpoint) = text.parse::<SocketAddr>() {
            let address = canonical_address(endpoint.ip());
            return Ok(HostPattern::Endpoint(SocketAddr::new(
                address,
                endpoint.port(),
            )));
        }
        Err(PatternError::Invalid(text.to_owned()))
    }
}

/// The reading of an IPv6 address text as `address:port`, when there is one: a last group of
/// decimal digits that fits a port, after a text that is an IPv6 address on its own.
fn address_and_port(text: &str) -> Option<(Ipv6Addr, u16)> {
    let (address, port) = text.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some((address.parse().ok()?, port.parse().ok()?))
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Address(address) => address.fmt(f),
            HostPattern::Endpoint(endpoint) => endpoint.fmt(f),
            HostPattern::Network(network) => network.fmt(f),
        }
    }
}

/// Why a text is not a host pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Neither an address, an `address:port` nor a network.
    #[error(
        "{0:?} is not a host pattern: expected an IP address (10.0.0.5, fd00::5), an address with a port (10.0.0.5:3306, [fd00::5]:3306) or a network in CIDR notation (10.0.0.0/8, fd00::/8)"
    )]
    Invalid(String),
    /// An IPv6 address that reads as well as an address followed by a port.
    #[error(
        "{text:?} is ambiguous: write \"[{address}]:{port}\" for the address {address} with remote port {port}, or \"{text}/128\" for the address {text}"
    )]
    Ambiguous {
        /// The pattern as written.
        text: String,
        /// The address of the `address:port` reading.
        address: Ipv6Addr,
        /// The port of that reading.
        port: u16,
    },
}

/// A set of host patterns, matched all at once: the remote address is looked up in one
/// [`NetworkMap`] of every address and network pattern, and `address:port` in a hash set, so
/// a match costs the same for ten patterns as for hundreds of thousands.
#[derive(Debug, Clone, Default)]
pub struct HostPatterns {
    networks: NetworkMap<()>,
    endpoints: HashSet<SocketAddr>,
}

impl HostPatterns {
    /// True when a connection whose remote end is `host` (remote port `port`, when the
    /// protocol has ports) matches any pattern.
    pub fn matches(&self, host: IpAddr, port: Option<u16>) -> bool {
        if !self.networks.is_empty() && self.networks.longest_match(host).is_some() {
            return true;
        }
        port.is_some_and(|port| {
            !self.endpoints.is_empty()
                && self
                    .endpoints
                    .contains(&SocketAddr::new(canonical_address(host), port))
        })
    }

    /// Whether the set holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.endpoints.is_empty()
    }
}

impl FromIterator<HostPattern> for HostPatterns {
    fn from_iter<I: IntoIterator<Item = HostPattern>>(patterns: I) -> Self {
        let mut set = HostPatterns::default();
        for pattern in patterns {
            match pattern {
                HostPattern::Address(address) => {
                    set.networks.insert(IpNet::from(address), ());
                }
                HostPattern::Network(network) => {
                    set.networks.insert(network, ());
                }
                HostPattern::Endpoint(endpoint) => {
                    let address = canonical_address(endpoint.ip());
                    set.endpoints
                        .insert(SocketAddr::new(address, endpoint.port()));
                }
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv6Net;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, SocketAddrV6};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn patterns(texts: &[&str]) -> HostPatterns {
        texts.iter().map(|text| text.parse().unwrap()).collect()
    }

    #[test]
    fn addresses_endpoints_and_networks_match() {
        let set = patterns(&["10.0.0.9", "10.0.0.8:22", "192.168.0.0/16", "fd00::/16"]);
        assert!(set.matches(ip("10.0.0.9"), Some(80)));
        assert!(set.matches(ip("10.0.0.9"), None));
        assert!(set.matches(ip("10.0.0.8"), Some(22)));
        assert!(!set.matches(ip("10.0.0.8"), Some(80)));
        assert!(!set.matches(ip("10.0.0.8"), None));
        assert!(set.matches(ip("192.168.44.1"), Some(80)));
        assert!(!set.matches(ip("192.169.0.1"), Some(80)));
        assert!(set.matches(ip("fd00:0:1::2"), Some(80)));
        assert!(!set.matches(ip("fd01::2"), Some(80)));
        assert!(!HostPatterns::default().matches(ip("10.0.0.9"), Some(1)));
        assert!(HostPatterns::default().is_empty() && !set.is_empty());
    }

    #[test]
    fn networks_respect_partial_prefix_bytes() {
        let set = patterns(&["10.0.0.0/12"]);
        assert!(set.matches(ip("10.15.255.255"), None));
        assert!(!set.matches(ip("10.16.0.0"), None));
        assert!(set.matches(ip("::ffff:10.1.0.1"), None));
        let all = patterns(&["0.0.0.0/0"]);
        assert!(all.matches(ip("8.8.8.8"), None));
        assert!(!all.matches(ip("fd00::1"), None));
    }

    #[test]
    fn ipv4_mapped_patterns_are_ipv4_patterns() {
        // Once a panic on the first matching connection.
        let set = patterns(&["::ffff:10.0.0.0/104"]);
        assert!(set.matches(ip("10.9.8.7"), Some(1)));
        assert!(set.matches(ip("::ffff:10.9.8.7"), Some(1)));
        assert!(!set.matches(ip("11.0.0.1"), Some(1)));
        assert_eq!(
            "::ffff:10.0.0.0/104".parse::<HostPattern>().unwrap(),
            HostPattern::Network("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            "::ffff:10.0.0.5".parse::<HostPattern>().unwrap(),
            HostPattern::Address(ip("10.0.0.5"))
        );
        assert_eq!(
            "[::ffff:10.0.0.5]:22".parse::<HostPattern>().unwrap(),
            HostPattern::Endpoint("10.0.0.5:22".parse().unwrap())
        );
        let endpoint = patterns(&["[::ffff:10.0.0.5]:22"]);
        assert!(endpoint.matches(ip("10.0.0.5"), Some(22)));
        let every_ipv4 = patterns(&["::ffff:0.0.0.0/96"]);
        assert!(every_ipv4.matches(ip("203.0.113.9"), None));
        assert!(!every_ipv4.matches(ip("2001:db8::1"), None));
    }

    #[test]
    fn patterns_parse_and_reject_clearly() {
        assert_eq!("10.1.2.3".parse(), Ok(HostPattern::Address(ip("10.1.2.3"))));
        assert_eq!(
            "[fd00::5]:3306".parse::<HostPattern>().unwrap().to_string(),
            "[fd00::5]:3306"
        );
        assert_eq!(
            "10.0.0.0/8".parse::<HostPattern>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "10.1.2.3/8".parse::<HostPattern>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        for bad in [
            "10.0.0.0/33",
            "host.example",
            "10.0.0.1:99999",
            "fd00::/129",
            "",
            "10.0.0.0/",
            "/8",
        ] {
            let error = bad.parse::<HostPattern>().unwrap_err();
            assert!(error.to_string().contains("CIDR"), "{error}");
        }
    }

    #[test]
    fn an_ipv6_address_that_could_end_in_a_port_is_refused() {
        let error = "fd00::5:3306".parse::<HostPattern>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "\"fd00::5:3306\" is ambiguous: write \"[fd00::5]:3306\" for the address fd00::5 \
             with remote port 3306, or \"fd00::5:3306/128\" for the address fd00::5:3306"
        );
        // Both unambiguous spellings are accepted.
        assert_eq!(
            "[fd00::5]:3306".parse(),
            Ok(HostPattern::Endpoint("[fd00::5]:3306".parse().unwrap()))
        );
        assert_eq!(
            "fd00::5:3306/128".parse(),
            Ok(HostPattern::Network("fd00::5:3306/128".parse().unwrap()))
        );
        // Texts that have no `address:port` reading stay addresses.
        for address in [
            "fd00::5",
            "2001:db8::9",
            "fd00::abcd",
            "1:2:3:4:5:6:7:8",
            "::1",
        ] {
            assert_eq!(address.parse(), Ok(HostPattern::Address(ip(address))));
        }
        for ambiguous in ["::1:80", "fd00::1:2:3", "fd00::5:0"] {
            assert!(
                matches!(
                    ambiguous.parse::<HostPattern>(),
                    Err(PatternError::Ambiguous { .. })
                ),
                "{ambiguous}"
            );
        }
    }

    /// What a set of pattern texts should match, from the rule rather than from the parser
    /// and the trie: every address is placed in the IPv6 space (IPv4 as `::ffff:a.b.c.d`),
    /// and a network contains an address when it does so there and both are IPv4 (mapped) or
    /// both IPv6.
    fn naive_matches(patterns: &[String], host: IpAddr, port: Option<u16>) -> bool {
        fn as_ipv6(address: IpAddr) -> (Ipv6Addr, bool) {
            match address {
                IpAddr::V4(v4) => (v4.to_ipv6_mapped(), true),
                IpAddr::V6(v6) => (v6, v6.to_ipv4_mapped().is_some()),
            }
        }
        let (host, host_is_v4) = as_ipv6(host);
        patterns.iter().any(|text| {
            if let Ok(network) = text.parse::<IpNet>() {
                let (network, is_v4) = match network {
                    IpNet::V4(v4) => {
                        let mapped = v4.addr().to_ipv6_mapped();
                        (Ipv6Net::new(mapped, v4.prefix_len() + 96).unwrap(), true)
                    }
                    IpNet::V6(v6) => {
                        let mapped = v6.prefix_len() >= 96 && as_ipv6(v6.network().into()).1;
                        (v6, mapped)
                    }
                };
                is_v4 == host_is_v4 && network.contains(&host)
            } else if let Ok(address) = text.parse::<IpAddr>() {
                as_ipv6(address).0 == host
            } else {
                let endpoint: SocketAddr = text.parse().unwrap();
                as_ipv6(endpoint.ip()).0 == host && port == Some(endpoint.port())
            }
        })
    }

    /// Addresses from a small space, so that patterns and hosts overlap often: IPv4 in
    /// 10.0.0.0/16, IPv6 in fd00::/112, and IPv4-mapped forms of the IPv4 ones.
    fn address() -> impl Strategy<Value = IpAddr> {
        let v4 = |low: u16| Ipv4Addr::from(0x0a00_0000 | u32::from(low));
        prop_oneof![
            any::<u16>().prop_map(move |low| IpAddr::V4(v4(low))),
            any::<u16>().prop_map(|low| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, low))),
            any::<u16>().prop_map(move |low| IpAddr::V6(v4(low).to_ipv6_mapped())),
        ]
    }

    /// Pattern texts of every kind over [`address`], the unambiguous ones.
    fn pattern() -> impl Strategy<Value = String> {
        let port = 1u16..4;
        // Prefixes near the ends of the address space, where the mapped range begins and
        // where the small space of [`address`] differs.
        let prefix = prop_oneof![0u8..=8, 90u8..=128];
        prop_oneof![
            address().prop_map(|address| format!("{address}")),
            (address(), port).prop_map(|(address, port)| match address {
                IpAddr::V4(v4) => format!("{v4}:{port}"),
                IpAddr::V6(v6) => SocketAddrV6::new(v6, port, 0, 0).to_string(),
            }),
            (address(), prefix).prop_map(|(address, prefix)| {
                let prefix = if address.is_ipv4() {
                    prefix % 33
                } else {
                    prefix
                };
                format!("{address}/{prefix}")
            }),
        ]
        .prop_filter("only unambiguous patterns", |text| {
            text.parse::<HostPattern>().is_ok()
        })
    }

    proptest! {
        #[test]
        fn the_set_matches_as_the_rule_says(
            patterns in proptest::collection::vec(pattern(), 0..40),
            hosts in proptest::collection::vec((address(), proptest::option::of(1u16..4)), 1..40),
        ) {
            let set: HostPatterns = patterns.iter().map(|text| text.parse().unwrap()).collect();
            for (host, port) in hosts {
                prop_assert_eq!(
                    set.matches(host, port),
                    naive_matches(&patterns, host, port),
                    "host {} port {:?} patterns {:?}", host, port, patterns
                );
            }
        }
    }
}
