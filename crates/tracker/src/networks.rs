//! IP networks mapped to values, looked up by address in time independent of their number.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use prefix_trie::joint::map::JointPrefixMap;

/// IP networks, each with a value, that answers which of them most specifically contains an
/// address.
///
/// A lookup walks a prefix trie: it costs at most one step per bit of the address (32 or
/// 128), never one per network, so a map of 200,000 networks answers as fast as one of ten.
///
/// **IPv4-mapped IPv6.** The kernel reports IPv4 connections with IPv4 addresses, also those
/// an IPv6 socket makes to `::ffff:a.b.c.d`. So an IPv4-mapped network with a prefix of 96 or
/// more (`::ffff:10.0.0.0/104`) is stored as the IPv4 network it carries (`10.0.0.0/8`), and
/// an IPv4-mapped address is looked up as its IPv4 address. Any other IPv6 network contains
/// IPv6 addresses only, even one that spans the mapped range (`::/0`).
///
/// ```
/// use tracker::NetworkMap;
///
/// let mut groups = NetworkMap::new();
/// groups.insert("10.0.0.0/8".parse().unwrap(), "private");
/// groups.insert("::ffff:10.1.0.0/112".parse().unwrap(), "cluster");
/// let (network, group) = groups.longest_match("10.1.2.3".parse().unwrap()).unwrap();
/// assert_eq!((network.to_string().as_str(), *group), ("10.1.0.0/16", "cluster"));
/// assert_eq!(groups.longest_match("10.2.0.1".parse().unwrap()).unwrap().1, &"private");
/// assert!(groups.longest_match("fd00::1".parse().unwrap()).is_none());
/// ```
#[derive(Debug, Clone)]
pub struct NetworkMap<V> {
    trie: JointPrefixMap<IpNet, V>,
}

impl<V> Default for NetworkMap<V> {
    fn default() -> Self {
        NetworkMap {
            trie: JointPrefixMap::default(),
        }
    }
}

impl<V> NetworkMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `network` to `value` and returns the value it had. Host bits are ignored
    /// (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn insert(&mut self, network: IpNet, value: V) -> Option<V> {
        self.trie.insert(canonical_network(network), value)
    }

    /// The most specific network that contains `address`, with its value.
    pub fn longest_match(&self, address: IpAddr) -> Option<(IpNet, &V)> {
        self.trie.get_lpm(&IpNet::from(canonical_address(address)))
    }

    /// How many networks the map holds.
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    /// Whether the map holds no network.
    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.5`) as the IPv4 address it carries; any other
/// address unchanged.
pub(crate) fn canonical_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// `network` without host bits, and an IPv4-mapped IPv6 network with a prefix of 96 or more
/// as the IPv4 network it carries.
pub(crate) fn canonical_network(network: IpNet) -> IpNet {
    let network = network.trunc();
    if let IpNet::V6(v6) = network
        && let Some(prefix) = v6.prefix_len().checked_sub(96)
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Ok(v4) = Ipv4Net::new(v4, prefix)
    {
        return IpNet::V4(v4);
    }
    network
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_most_specific_network_wins() {
        let mut map = NetworkMap::new();
        map.insert(net("10.0.0.0/8"), 8);
        map.insert(net("10.1.0.0/16"), 16);
        map.insert(net("10.1.2.3/32"), 32);
        map.insert(net("fd00::/8"), 108);
        let value = |address: &str| map.longest_match(ip(address)).map(|(_, value)| *value);
        assert_eq!(value("10.1.2.3"), Some(32));
        assert_eq!(value("10.1.2.4"), Some(16));
        assert_eq!(value("10.2.0.0"), Some(8));
        assert_eq!(value("11.0.0.0"), None);
        assert_eq!(value("fdff::1"), Some(108));
        assert_eq!(value("fe00::1"), None);
        assert_eq!(map.len(), 4);
    }

    #[test]
    fn ipv4_mapped_networks_are_ipv4_networks() {
        assert_eq!(
            canonical_network(net("::ffff:10.0.0.0/104")),
            net("10.0.0.0/8")
        );
        assert_eq!(canonical_network(net("::ffff:0:0/96")), net("0.0.0.0/0"));
        assert_eq!(
            canonical_network(net("::ffff:10.1.2.3/128")),
            net("10.1.2.3/32")
        );
        // Shorter prefixes and other ranges stay IPv6.
        assert_eq!(
            canonical_network(net("::ffff:0:0/95")),
            net("::fffe:0:0/95")
        );
        assert_eq!(canonical_network(net("::/0")), net("::/0"));
        assert_eq!(canonical_network(net("64:ff9b::/96")), net("64:ff9b::/96"));
    }

    #[test]
    fn mapped_addresses_are_looked_up_as_ipv4() {
        let mut map = NetworkMap::new();
        map.insert(net("::ffff:10.0.0.0/104"), ());
        assert!(map.longest_match(ip("10.200.0.1")).is_some());
        assert!(map.longest_match(ip("::ffff:10.200.0.1")).is_some());
        assert!(map.longest_match(ip("11.0.0.1")).is_none());
        let mut all_ipv6 = NetworkMap::new();
        all_ipv6.insert(net("::/0"), ());
        assert!(all_ipv6.longest_match(ip("10.0.0.1")).is_none());
        assert!(all_ipv6.longest_match(ip("::ffff:10.0.0.1")).is_none());
        assert!(all_ipv6.longest_match(ip("2001:db8::1")).is_some());
    }
}
