//! The value of the `host` label: the remote address, the network it is aggregated into, or
//! the named group it belongs to.
//!
//! Computing it at classification time, rather than at render time, is what bounds memory:
//! the host value is part of the aggregation key, so a thousand addresses of one group or one
//! network cost one aggregate, not a thousand.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::networks::{NetworkMap, canonical_address};

/// The label value every label of the overflow label set reads, which no group may take.
pub const OVERFLOW_VALUE: &str = "other";

/// The most groups there can be: a group is stored as a 16-bit id in every label set.
const MAX_GROUPS: usize = u16::MAX as usize + 1;

/// What the `host` label of a label set stands for. Small and `Copy`: it is part of every
/// label set, hashed on every new connection; group names live once, in [`HostLabels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// One remote address (the prefix length of its family is the full length).
    Address(IpAddr),
    /// The network a remote address outside every group falls into.
    Network(IpNet),
    /// A named group, by its position among the configured groups.
    Group(u16),
}

/// A named set of networks whose remote addresses share one `host` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGroup {
    /// The label value.
    pub name: String,
    /// The networks; an address stands for the network of itself alone.
    pub networks: Vec<IpNet>,
}

impl HostGroup {
    /// A group named `name` of the networks (or single addresses) written in `networks`.
    pub fn parse<'a>(
        name: &str,
        networks: impl IntoIterator<Item = &'a str>,
    ) -> Result<HostGroup, HostGroupError> {
        let network = |text: &str| {
            let text = text.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| HostGroupError::Network {
                    group: name.to_owned(),
                    text: text.to_owned(),
                })
        };
        Ok(HostGroup {
            name: name.to_owned(),
            networks: networks
                .into_iter()
                .map(network)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Why a list of host groups was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostGroupError {
    /// A group without a name.
    #[error("a group has an empty name: every group needs a name, its host label value")]
    EmptyName,
    /// Two groups of one name.
    #[error("group {0:?} is defined twice: group names must be unique")]
    Repeated(String),
    /// A group named like the overflow label set.
    #[error("group name {OVERFLOW_VALUE:?} is reserved for the overflow label set of max_series")]
    Reserved,
    /// A network that is not one.
    #[error(
        "group {group:?}: {text:?} is not a network: expected an IP address or a network in CIDR notation (10.1.2.0/24, fd00:1:2::/64)"
    )]
    Network {
        /// The group's name.
        group: String,
        /// The text given.
        text: String,
    },
    /// More groups than a label set can tell apart.
    #[error("{0} groups: at most {MAX_GROUPS}")]
    TooMany(usize),
}

/// Checks that `groups` can be used together: each named, no name twice, none named
/// [`OVERFLOW_VALUE`], at most 65,536 of them.
pub fn check_host_groups(groups: &[HostGroup]) -> Result<(), HostGroupError> {
    if groups.len() > MAX_GROUPS {
        return Err(HostGroupError::TooMany(groups.len()));
    }
    for (position, group) in groups.iter().enumerate() {
        if group.name.trim().is_empty() {
            return Err(HostGroupError::EmptyName);
        }
        if group.name == OVERFLOW_VALUE {
            return Err(HostGroupError::Reserved);
        }
        if groups[..position].iter().any(|g| g.name == group.name) {
            return Err(HostGroupError::Repeated(group.name.clone()));
        }
    }
    Ok(())
}

/// Computes the `host` value of a remote address: the group of the most specific group
/// network that contains it, else its network at the prefix length of its family (the
/// address itself at the full length), and turns such a value back into text.
///
/// ```
/// use tracker::{HostGroup, HostLabels};
///
/// let groups = [HostGroup::parse("postgres", ["10.1.2.0/24", "fd00:1:2::/64"]).unwrap()];
/// let hosts = HostLabels::new(&groups, 24, 128).unwrap();
/// let text = |address: &str| hosts.text(hosts.host(address.parse().unwrap()));
/// assert_eq!(text("10.1.2.3"), "postgres");
/// assert_eq!(text("fd00:1:2::9"), "postgres");
/// assert_eq!(text("203.0.113.7"), "203.0.113.0/24");
/// assert_eq!(text("2001:db8::1"), "2001:db8::1");
/// ```
#[derive(Debug, Clone)]
pub struct HostLabels {
    names: Vec<String>,
    groups: NetworkMap<u16>,
    prefix_v4: u8,
    prefix_v6: u8,
}

impl Default for HostLabels {
    /// No group, every address itself.
    fn default() -> Self {
        HostLabels {
            names: Vec::new(),
            groups: NetworkMap::new(),
            prefix_v4: 32,
            prefix_v6: 128,
        }
    }
}

impl HostLabels {
    /// Host values from `groups` (checked with [`check_host_groups`]) and, outside them, the
    /// networks of `prefix_v4` and `prefix_v6` bits (longer ones are read as the full length).
    /// A network listed in two groups belongs to the later one.
    pub fn new(
        groups: &[HostGroup],
        prefix_v4: u8,
        prefix_v6: u8,
    ) -> Result<HostLabels, HostGroupError> {
        check_host_groups(groups)?;
        let mut map = NetworkMap::new();
        for (id, group) in (0u16..).zip(groups) {
            for network in &group.networks {
                map.insert(*network, id);
            }
        }
        Ok(HostLabels {
            names: groups.iter().map(|group| group.name.clone()).collect(),
            groups: map,
            prefix_v4: prefix_v4.min(32),
            prefix_v6: prefix_v6.min(128),
        })
    }

    /// The host value of the remote address `address`. Costs one prefix-trie lookup when
    /// groups are configured, whatever their number of networks.
    pub fn host(&self, address: IpAddr) -> Host {
        if !self.groups.is_empty()
            && let Some((_, &id)) = self.groups.longest_match(address)
        {
            return Host::Group(id);
        }
        let address = canonical_address(address);
        let (prefix, full) = match address {
            IpAddr::V4(_) => (self.prefix_v4, 32),
            IpAddr::V6(_) => (self.prefix_v6, 128),
        };
        match IpNet::new(address, prefix) {
            Ok(network) if prefix < full => Host::Network(network.trunc()),
            _ => Host::Address(address),
        }
    }

    /// The label value of `host`.
    pub fn text(&self, host: Host) -> String {
        match host {
            Host::Address(address) => address.to_string(),
            Host::Network(network) => network.to_string(),
            Host::Group(id) => self
                .names
                .get(usize::from(id))
                .map_or_else(|| OVERFLOW_VALUE.to_owned(), Clone::clone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, networks: &[&str]) -> HostGroup {
        HostGroup::parse(name, networks.iter().copied()).unwrap()
    }

    fn text(hosts: &HostLabels, address: &str) -> String {
        hosts.text(hosts.host(address.parse().unwrap()))
    }

    #[test]
    fn the_longest_group_prefix_wins_in_both_families() {
        let groups = [
            group("private", &["10.0.0.0/8", "fd00::/8"]),
            group("postgres", &["10.1.2.0/24", "fd00:1:2::/64"]),
            group("primary", &["10.1.2.5", "fd00:1:2::5/128"]),
        ];
        let hosts = HostLabels::new(&groups, 32, 128).unwrap();
        for (address, name) in [
            ("10.9.9.9", "private"),
            ("10.1.2.4", "postgres"),
            ("10.1.2.5", "primary"),
            ("::ffff:10.1.2.5", "primary"),
            ("fd00:9::1", "private"),
            ("fd00:1:2::4", "postgres"),
            ("fd00:1:2::5", "primary"),
            ("192.0.2.1", "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            assert_eq!(text(&hosts, address), name, "{address}");
        }
    }

    #[test]
    fn addresses_outside_every_group_are_reported_as_their_network() {
        let groups = [group("db", &["203.0.113.128/25"])];
        let hosts = HostLabels::new(&groups, 24, 64).unwrap();
        assert_eq!(text(&hosts, "203.0.113.7"), "203.0.113.0/24");
        assert_eq!(text(&hosts, "203.0.113.200"), "db");
        assert_eq!(text(&hosts, "2001:db8:1:2:3::9"), "2001:db8:1:2::/64");
        assert_eq!(
            hosts.host("203.0.113.7".parse().unwrap()),
            hosts.host("203.0.113.99".parse().unwrap())
        );
        let everything = HostLabels::new(&[], 0, 0).unwrap();
        assert_eq!(text(&everything, "192.0.2.1"), "0.0.0.0/0");
        assert_eq!(text(&everything, "2001:db8::1"), "::/0");
        let full = HostLabels::new(&[], 40, 200).unwrap();
        assert_eq!(text(&full, "192.0.2.1"), "192.0.2.1");
        assert_eq!(
            full.host("::1".parse().unwrap()),
            Host::Address("::1".parse().unwrap())
        );
    }

    #[test]
    fn group_names_are_non_empty_unique_and_not_the_overflow_value() {
        let check = |names: &[&str]| {
            let groups: Vec<_> = names.iter().map(|name| group(name, &[])).collect();
            check_host_groups(&groups)
        };
        assert_eq!(check(&["a", "b"]), Ok(()));
        assert_eq!(check(&["a", " "]), Err(HostGroupError::EmptyName));
        assert_eq!(
            check(&["a", "b", "a"]),
            Err(HostGroupError::Repeated("a".into()))
        );
        assert_eq!(check(&["other"]), Err(HostGroupError::Reserved));
        let error = HostGroup::parse("db", ["10.0.0.0/33"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "group \"db\": \"10.0.0.0/33\" is not a network: expected an IP address or a network in CIDR notation (10.1.2.0/24, fd00:1:2::/64)"
        );
        assert!(HostLabels::new(&[group("", &["10.0.0.0/8"])], 32, 128).is_err());
    }
}
