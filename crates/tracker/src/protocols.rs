//! Which protocols are counted, and how protocols are named in settings and labels.

use std::str::FromStr;

use conntrack_codec::Protocol;

/// GRE's protocol number, which the conntrack tool does not name but users know.
const GRE: Protocol = Protocol(47);

/// The protocols that have a name in settings and labels, besides their numbers.
const NAMED: [Protocol; 8] = [
    Protocol::TCP,
    Protocol::UDP,
    Protocol::UDPLITE,
    Protocol::SCTP,
    Protocol::DCCP,
    Protocol::ICMP,
    Protocol::ICMPV6,
    GRE,
];

/// The protocol's lower-case name, or its number.
pub(crate) fn protocol_name(protocol: Protocol) -> String {
    match protocol {
        GRE => "gre".to_owned(),
        other => other.to_string(),
    }
}

/// Why a list of protocols was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a protocol: expected \"all\", tcp, udp, udplite, sctp, dccp, icmp, icmpv6, gre or a protocol number from 0 to 255"
)]
pub struct ProtocolError(String);

/// The protocols whose connections are counted: a set of protocol numbers, checked in
/// constant time per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolSet([u64; 4]);

impl ProtocolSet {
    /// Every protocol.
    pub const ALL: ProtocolSet = ProtocolSet([u64::MAX; 4]);

    /// TCP alone, the original exporter's scope.
    pub const TCP: ProtocolSet = ProtocolSet::of(&[Protocol::TCP]);

    /// The set of `protocols`.
    pub const fn of(protocols: &[Protocol]) -> ProtocolSet {
        let mut bits = [0; 4];
        let mut index = 0;
        while index < protocols.len() {
            let number = protocols[index].0 as usize;
            bits[number / 64] |= 1 << (number % 64);
            index += 1;
        }
        ProtocolSet(bits)
    }

    /// Whether connections of `protocol` are counted.
    pub fn contains(self, protocol: Protocol) -> bool {
        let number = usize::from(protocol.0);
        self.0[number / 64] & (1 << (number % 64)) != 0
    }

    /// The set named by `names`: protocol names or numbers, or `all` alone.
    pub fn parse<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<ProtocolSet, ProtocolError> {
        let mut protocols = Vec::new();
        for name in names {
            let name = name.trim();
            if name == "all" {
                return Ok(ProtocolSet::ALL);
            }
            let named = NAMED.into_iter().find(|&p| protocol_name(p) == name);
            let protocol = named
                .or_else(|| name.parse().ok().map(Protocol))
                .ok_or_else(|| ProtocolError(name.to_owned()))?;
            protocols.push(protocol);
        }
        Ok(ProtocolSet::of(&protocols))
    }
}

impl Default for ProtocolSet {
    fn default() -> Self {
        ProtocolSet::TCP
    }
}

impl FromStr for ProtocolSet {
    type Err = ProtocolError;

    /// A comma-separated list of names or numbers, or `all`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Ok(ProtocolSet::of(&[]));
        }
        ProtocolSet::parse(text.split(','))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_by_name_number_or_all() {
        let set: ProtocolSet = "udp, sctp,47,icmpv6".parse().unwrap();
        for protocol in [Protocol::UDP, Protocol::SCTP, GRE, Protocol::ICMPV6] {
            assert!(set.contains(protocol), "{protocol}");
        }
        for protocol in [Protocol::TCP, Protocol::ICMP, Protocol(255), Protocol(0)] {
            assert!(!set.contains(protocol), "{protocol}");
        }
        assert_eq!("gre".parse(), Ok(ProtocolSet::of(&[GRE])));
        let all: ProtocolSet = "tcp,all".parse().unwrap();
        assert!((0..=255).all(|number| all.contains(Protocol(number))));
        assert_eq!(ProtocolSet::default(), ProtocolSet::TCP);
        let error = "tcp,quic".parse::<ProtocolSet>().unwrap_err().to_string();
        assert!(error.starts_with("\"quic\" is not a protocol: expected \"all\", tcp"));
        assert!("256".parse::<ProtocolSet>().is_err());
    }

    #[test]
    fn names_are_those_the_labels_show() {
        for protocol in NAMED {
            let name = protocol_name(protocol);
            assert_eq!(name.parse(), Ok(ProtocolSet::of(&[protocol])), "{name}");
        }
        assert_eq!(protocol_name(Protocol(115)), "115");
    }
}
