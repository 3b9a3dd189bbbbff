//! Any text as an `ignore_hosts` list (comma-separated patterns), then any addresses and ports
//! matched against the set it makes: parsing gives a pattern or a one-line error, never a
//! panic, and the set (a prefix trie and a hash set) matches exactly when one of its patterns,
//! checked alone and naively, does.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tracker::{HostPattern, HostPatterns};

/// A connection's remote end to match.
#[derive(Debug, Arbitrary)]
struct Probe {
    address: [u8; 16],
    ipv4: bool,
    port: Option<u16>,
}

impl Probe {
    fn host(&self) -> IpAddr {
        if self.ipv4 {
            let [a, b, c, d, ..] = self.address;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.address))
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    patterns: &'a str,
    probes: Vec<Probe>,
}

/// Whether `pattern` alone matches `host` with remote `port`. An IPv4-mapped IPv6 host is its
/// IPv4 address, as patterns are.
fn matches_alone(pattern: &HostPattern, host: IpAddr, port: Option<u16>) -> bool {
    let host = host.to_canonical();
    match pattern {
        HostPattern::Address(address) => *address == host,
        HostPattern::Endpoint(endpoint) => endpoint.ip() == host && port == Some(endpoint.port()),
        HostPattern::Network(network) => network.contains(&host),
    }
}

fuzz_target!(|input: Input<'_>| {
    let mut patterns = Vec::new();
    for text in input.patterns.split(',') {
        match text.parse::<HostPattern>() {
            Ok(pattern) => patterns.push(pattern),
            Err(error) => {
                let message = error.to_string();
                assert!(!message.contains('\n'), "an error of several lines: {message:?}");
            }
        }
    }
    let set: HostPatterns = patterns.iter().copied().collect();
    assert_eq!(set.is_empty(), patterns.is_empty());
    for probe in &input.probes {
        let host = probe.host();
        let expected = patterns
            .iter()
            .any(|pattern| matches_alone(pattern, host, probe.port));
        assert_eq!(
            set.matches(host, probe.port),
            expected,
            "{host} port {:?} against {patterns:?}",
            probe.port
        );
    }
});
