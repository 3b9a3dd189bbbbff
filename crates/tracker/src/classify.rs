//! Deciding, for one conntrack entry, which remote host it belongs to, which state group it
//! is in, and whether it is counted at all.

use std::collections::HashSet;
use std::net::IpAddr;

use conntrack_codec::{Entry, Protocol, Tuple};

use crate::patterns::{HostPattern, HostPatterns};
use crate::state::StateGroup;

/// The labels a connection is aggregated under. Today only the remote host; further opt-in
/// labels (service port, protocol, direction) belong here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels {
    /// The address at the far end of the connection.
    pub host: IpAddr,
}

/// What the classifier decided about a counted entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// Where the connection is counted.
    pub labels: Labels,
    /// The remote end's port, when the protocol has ports.
    pub remote_port: Option<u16>,
    /// The state group, or `None` when the message did not say (UPDATE events may omit the
    /// protocol state: the previous state then stands).
    pub group: Option<StateGroup>,
}

/// Decides which entries are counted and where.
///
/// The remote end of a connection: if the original source is a local address, the original
/// destination; if the original destination is local, the original source; otherwise
/// (forwarded or NATed traffic) the reply tuple read the same way; failing that, the original
/// destination.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    local: HashSet<IpAddr>,
    ignore: HostPatterns,
}

impl Classifier {
    /// A classifier that drops connections matching any of `ignore`.
    pub fn new(ignore: Vec<HostPattern>) -> Classifier {
        Classifier {
            local: HashSet::new(),
            ignore: ignore.into_iter().collect(),
        }
    }

    /// Replaces the set of addresses assigned to this namespace's interfaces.
    pub fn set_local_addresses(&mut self, local: HashSet<IpAddr>) {
        self.local = local;
    }

    /// The addresses currently considered local.
    pub fn local_addresses(&self) -> &HashSet<IpAddr> {
        &self.local
    }

    /// Classifies `entry`, or returns `None` when it is not counted: not TCP, in the
    /// `NONE` state, or matching an ignore pattern.
    pub fn classify(&self, entry: &Entry) -> Option<Classification> {
        if entry.original.protocol != Protocol::TCP {
            return None;
        }
        let group = match entry.tcp_state {
            Some(state) => Some(StateGroup::of_tcp(state)?),
            None => None,
        };
        let (host, remote_port) = self.remote_end(entry);
        if self.ignore.matches(host, remote_port) {
            return None;
        }
        Some(Classification {
            labels: Labels { host },
            remote_port,
            group,
        })
    }

    fn remote_end(&self, entry: &Entry) -> (IpAddr, Option<u16>) {
        let far_end_of = |tuple: &Tuple| {
            if self.local.contains(&tuple.src) {
                Some((tuple.dst, tuple.dst_port()))
            } else if self.local.contains(&tuple.dst) {
                Some((tuple.src, tuple.src_port()))
            } else {
                None
            }
        };
        far_end_of(&entry.original)
            .or_else(|| entry.reply.as_ref().and_then(far_end_of))
            .unwrap_or((entry.original.dst, entry.original.dst_port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conntrack_codec::TcpState;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn tcp_entry(src: &str, sport: u16, dst: &str, dport: u16, state: TcpState) -> Entry {
        let mut entry = Entry::new(Tuple::tcp(ip(src), sport, ip(dst), dport));
        entry.reply = Some(entry.original.inverted());
        entry.tcp_state = Some(state);
        entry
    }

    fn classifier(local: &[&str], ignore: &[&str]) -> Classifier {
        let mut classifier = Classifier::new(ignore.iter().map(|p| p.parse().unwrap()).collect());
        classifier.set_local_addresses(local.iter().map(|a| ip(a)).collect());
        classifier
    }

    #[test]
    fn outbound_connection_counts_under_its_destination() {
        let c = classifier(&["10.0.0.1"], &[]);
        let entry = tcp_entry("10.0.0.1", 40000, "10.0.0.9", 5432, TcpState::Established);
        let class = c.classify(&entry).unwrap();
        assert_eq!(class.labels.host, ip("10.0.0.9"));
        assert_eq!(class.remote_port, Some(5432));
        assert_eq!(class.group, Some(StateGroup::Open));
    }

    #[test]
    fn inbound_connection_counts_under_its_source() {
        let c = classifier(&["fd00::1"], &[]);
        let entry = tcp_entry("fd00::7", 51000, "fd00::1", 443, TcpState::SynRecv);
        let class = c.classify(&entry).unwrap();
        assert_eq!(class.labels.host, ip("fd00::7"));
        assert_eq!(class.remote_port, Some(51000));
        assert_eq!(class.group, Some(StateGroup::Opening));
    }

    #[test]
    fn destination_nat_uses_the_reply_tuple() {
        // A client reaches a virtual address that is rewritten to a local backend.
        let c = classifier(&["10.0.0.1"], &[]);
        let mut entry = tcp_entry(
            "192.0.2.7",
            50000,
            "198.51.100.1",
            80,
            TcpState::Established,
        );
        entry.reply = Some(Tuple::tcp(ip("10.0.0.1"), 8080, ip("192.0.2.7"), 50000));
        assert_eq!(c.classify(&entry).unwrap().labels.host, ip("192.0.2.7"));
    }

    #[test]
    fn source_nat_uses_the_reply_tuple() {
        // A container behind masquerading talks to a remote host; the reply comes back to
        // the node's own address.
        let c = classifier(&["203.0.113.1"], &[]);
        let mut entry = tcp_entry("172.17.0.2", 40000, "192.0.2.9", 443, TcpState::Established);
        entry.reply = Some(Tuple::tcp(ip("192.0.2.9"), 443, ip("203.0.113.1"), 61000));
        let class = c.classify(&entry).unwrap();
        assert_eq!(class.labels.host, ip("192.0.2.9"));
        assert_eq!(class.remote_port, Some(443));
    }

    #[test]
    fn forwarded_traffic_falls_back_to_the_original_destination() {
        let c = classifier(&["10.0.0.1"], &[]);
        let entry = tcp_entry(
            "192.0.2.7",
            50000,
            "198.51.100.1",
            80,
            TcpState::Established,
        );
        assert_eq!(c.classify(&entry).unwrap().labels.host, ip("198.51.100.1"));
    }

    #[test]
    fn only_tcp_with_a_known_state_is_counted() {
        let c = classifier(&["10.0.0.1"], &[]);
        let mut udp = Entry::new(Tuple::udp(ip("10.0.0.1"), 1, ip("10.0.0.2"), 53));
        udp.reply = Some(udp.original.inverted());
        assert_eq!(c.classify(&udp), None);
        let none = tcp_entry("10.0.0.1", 1, "10.0.0.2", 2, TcpState::None);
        assert_eq!(c.classify(&none), None);
        let mut no_state = tcp_entry("10.0.0.1", 1, "10.0.0.2", 2, TcpState::None);
        no_state.tcp_state = None;
        assert_eq!(c.classify(&no_state).unwrap().group, None);
    }

    #[test]
    fn ignore_patterns_match_address_endpoint_and_network() {
        let c = classifier(
            &["10.0.0.1"],
            &["10.0.0.9", "10.0.0.8:22", "192.168.0.0/16", "fd00::/16"],
        );
        let to = |dst: &str, port| tcp_entry("10.0.0.1", 40000, dst, port, TcpState::Established);
        assert_eq!(c.classify(&to("10.0.0.9", 80)), None);
        assert_eq!(c.classify(&to("10.0.0.8", 22)), None);
        assert!(c.classify(&to("10.0.0.8", 80)).is_some());
        assert_eq!(c.classify(&to("192.168.44.1", 80)), None);
        assert!(c.classify(&to("192.169.0.1", 80)).is_some());
        let v6 = tcp_entry("fd00::1", 1, "fd00:0:1::2", 80, TcpState::Established);
        assert_eq!(c.classify(&v6), None);
    }
}
