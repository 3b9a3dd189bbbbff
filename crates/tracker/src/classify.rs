//! Deciding, for one conntrack entry, which label set it is counted under, which state group
//! it is in, and whether it is counted at all.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use conntrack_codec::{Entry, Protocol, Tuple};

use crate::hosts::HostLabels;
use crate::labels::{Direction, LabelName, LabelNames, LabelSet};
use crate::patterns::{HostPattern, HostPatterns};
use crate::protocols::ProtocolSet;
use crate::state::StateGroup;

/// What the classifier decided about a counted entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// Where the connection is counted.
    pub labels: LabelSet,
    /// The remote end's address, whichever labels are chosen.
    pub remote_host: IpAddr,
    /// The remote end's port, when the protocol has ports.
    pub remote_port: Option<u16>,
    /// Whether the remote end is the original source (it opened the connection), so that
    /// the reply direction is what this host sends to it.
    pub remote_is_source: bool,
    /// The state group, or `None` when the message did not say (UPDATE events may omit the
    /// protocol state: the previous state then stands).
    pub group: Option<StateGroup>,
}

/// Decides which entries are counted and where.
///
/// The remote end of a connection: if the original source is a local address, the original
/// destination; if the original destination is local, the original source; otherwise
/// (forwarded or NATed traffic) the reply tuple read the same way; failing that, the original
/// destination. The local end is the other address of the tuple the remote end came from.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    local: HashSet<IpAddr>,
    ignore: HostPatterns,
    labels: LabelNames,
    protocols: ProtocolSet,
    /// The `host` values; shared with whatever turns them into text.
    hosts: Arc<HostLabels>,
}

/// The two ends of a connection as the classifier sees them.
struct Ends {
    host: IpAddr,
    host_port: Option<u16>,
    local_host: IpAddr,
    /// The host is on the original source's side.
    host_is_source: bool,
}

impl Classifier {
    /// A classifier of TCP connections that drops those matching any of `ignore` and labels
    /// the rest by remote host alone.
    pub fn new(ignore: Vec<HostPattern>) -> Classifier {
        Classifier {
            local: HashSet::new(),
            ignore: ignore.into_iter().collect(),
            labels: LabelNames::default(),
            protocols: ProtocolSet::TCP,
            hosts: Arc::default(),
        }
    }

    /// This classifier, giving `host` the values of `hosts` (groups, networks).
    pub fn with_hosts(self, hosts: Arc<HostLabels>) -> Classifier {
        Classifier { hosts, ..self }
    }

    /// Replaces the patterns of the remote hosts not counted.
    pub fn set_ignore(&mut self, ignore: Vec<HostPattern>) {
        self.ignore = ignore.into_iter().collect();
    }

    /// This classifier, counting connections of `protocols`.
    pub fn with_protocols(self, protocols: ProtocolSet) -> Classifier {
        Classifier { protocols, ..self }
    }

    /// This classifier, labelling connections with `labels`.
    pub fn with_labels(self, labels: LabelNames) -> Classifier {
        Classifier { labels, ..self }
    }

    /// Replaces the set of addresses assigned to this namespace's interfaces.
    pub fn set_local_addresses(&mut self, local: HashSet<IpAddr>) {
        self.local = local;
    }

    /// Classifies `entry`, or returns `None` when it is not counted: not of a counted
    /// protocol, in a state of no group (TCP `NONE`, say), or matching an ignore pattern.
    pub fn classify(&self, entry: &Entry) -> Option<Classification> {
        let protocol = entry.original.protocol;
        if !self.protocols.contains(protocol) {
            return None;
        }
        // `Some(None)`: a state of no group; `None`: the message did not say.
        let group = match protocol {
            Protocol::TCP => entry.tcp_state.map(StateGroup::of_tcp),
            Protocol::SCTP => entry.sctp_state.map(StateGroup::of_sctp),
            Protocol::DCCP => entry.dccp_state.map(StateGroup::of_dccp),
            _ => entry
                .status
                .map(|status| Some(StateGroup::of_status(status))),
        };
        let group = match group {
            Some(group) => Some(group?),
            None => None,
        };
        let ends = self.ends(entry);
        if self.ignore.matches(ends.host, ends.host_port) {
            return None;
        }
        Some(Classification {
            labels: self.label_set(entry, &ends),
            remote_host: ends.host,
            remote_port: ends.host_port,
            remote_is_source: ends.host_is_source,
            group,
        })
    }

    /// The values of the chosen labels; the others stay empty.
    fn label_set(&self, entry: &Entry, ends: &Ends) -> LabelSet {
        let chosen = |name: LabelName| self.labels.contains(name);
        let original = &entry.original;
        let direction = if self.local.contains(&original.src) {
            Direction::Out
        } else if self.local.contains(&original.dst) {
            Direction::In
        } else {
            Direction::Forwarded
        };
        LabelSet {
            host: chosen(LabelName::Host).then(|| self.hosts.host(ends.host)),
            direction: chosen(LabelName::Direction).then_some(direction),
            service_port: original
                .dst_port()
                .filter(|_| chosen(LabelName::ServicePort)),
            local_host: chosen(LabelName::LocalHost).then_some(ends.local_host),
            protocol: chosen(LabelName::Protocol).then_some(original.protocol),
            zone: chosen(LabelName::Zone).then_some(entry.zone.unwrap_or(0)),
            overflow: false,
        }
    }

    fn ends(&self, entry: &Entry) -> Ends {
        // `reply`: the tuple is the reply direction, whose source is the original
        // destination's side.
        let ends_of = |tuple: &Tuple, reply: bool| {
            if self.local.contains(&tuple.src) {
                Some(Ends {
                    host: tuple.dst,
                    host_port: tuple.dst_port(),
                    local_host: tuple.src,
                    host_is_source: reply,
                })
            } else if self.local.contains(&tuple.dst) {
                Some(Ends {
                    host: tuple.src,
                    host_port: tuple.src_port(),
                    local_host: tuple.dst,
                    host_is_source: !reply,
                })
            } else {
                None
            }
        };
        ends_of(&entry.original, false)
            .or_else(|| entry.reply.as_ref().and_then(|reply| ends_of(reply, true)))
            .unwrap_or(Ends {
                host: entry.original.dst,
                host_port: entry.original.dst_port(),
                local_host: entry.original.src,
                host_is_source: false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::Host;
    use conntrack_codec::{Status, TcpState};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn host(text: &str) -> Option<Host> {
        Some(Host::Address(ip(text)))
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
        assert_eq!(class.labels.host, host("10.0.0.9"));
        assert_eq!(class.remote_port, Some(5432));
        assert_eq!(class.group, Some(StateGroup::Open));
    }

    #[test]
    fn inbound_connection_counts_under_its_source() {
        let c = classifier(&["fd00::1"], &[]);
        let entry = tcp_entry("fd00::7", 51000, "fd00::1", 443, TcpState::SynRecv);
        let class = c.classify(&entry).unwrap();
        assert_eq!(class.labels.host, host("fd00::7"));
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
        assert_eq!(c.classify(&entry).unwrap().labels.host, host("192.0.2.7"));
    }

    #[test]
    fn source_nat_uses_the_reply_tuple() {
        // A container behind masquerading talks to a remote host; the reply comes back to
        // the node's own address.
        let c = classifier(&["203.0.113.1"], &[]);
        let mut entry = tcp_entry("172.17.0.2", 40000, "192.0.2.9", 443, TcpState::Established);
        entry.reply = Some(Tuple::tcp(ip("192.0.2.9"), 443, ip("203.0.113.1"), 61000));
        let class = c.classify(&entry).unwrap();
        assert_eq!(class.labels.host, host("192.0.2.9"));
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
        assert_eq!(
            c.classify(&entry).unwrap().labels.host,
            host("198.51.100.1")
        );
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

    fn every_label(c: Classifier) -> Classifier {
        c.with_labels(LabelNames::new(LabelName::ALL.into()).unwrap())
    }

    #[test]
    fn every_label_follows_the_direction_of_the_connection() {
        let c = every_label(classifier(&["10.0.0.1"], &[]));
        let label_set = |entry: &Entry| {
            let labels = c.classify(entry).unwrap().labels;
            LabelName::ALL.map(|name| labels.value(name, &HostLabels::default()))
        };
        let mut out = tcp_entry("10.0.0.1", 40000, "10.0.0.9", 5432, TcpState::Established);
        out.zone = Some(3);
        assert_eq!(
            label_set(&out),
            ["10.0.0.9", "out", "5432", "10.0.0.1", "tcp", "3"]
        );
        let inbound = tcp_entry("10.0.0.7", 51000, "10.0.0.1", 443, TcpState::SynRecv);
        assert_eq!(
            label_set(&inbound),
            ["10.0.0.7", "in", "443", "10.0.0.1", "tcp", "0"]
        );
        let forwarded = tcp_entry("192.0.2.7", 50000, "198.51.100.1", 80, TcpState::Close);
        assert_eq!(
            label_set(&forwarded),
            ["198.51.100.1", "forwarded", "80", "192.0.2.7", "tcp", "0"]
        );
    }

    #[test]
    fn labels_not_chosen_stay_empty_so_their_connections_share_a_set() {
        let c =
            classifier(&["10.0.0.1"], &[]).with_labels("service_port,direction".parse().unwrap());
        let a = tcp_entry("10.0.0.1", 40000, "10.0.0.9", 443, TcpState::Established);
        let b = tcp_entry("10.0.0.1", 40001, "10.0.0.8", 443, TcpState::SynSent);
        let (a, b) = (c.classify(&a).unwrap(), c.classify(&b).unwrap());
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.labels.host, None);
        assert_eq!(a.labels.service_port, Some(443));
        assert_eq!(a.labels.direction, Some(Direction::Out));
    }

    #[test]
    fn every_protocol_is_counted_when_chosen_in_its_groups() {
        let c = classifier(&["10.0.0.1"], &[]).with_protocols(ProtocolSet::ALL);
        let group = |entry: &Entry| c.classify(entry).map(|class| class.group);
        let mut sctp = Entry::new(Tuple {
            protocol: Protocol::SCTP,
            ..Tuple::tcp(ip("10.0.0.1"), 1, ip("10.0.0.2"), 2)
        });
        sctp.sctp_state = Some(4);
        assert_eq!(group(&sctp), Some(Some(StateGroup::Open)));
        sctp.sctp_state = Some(0);
        assert_eq!(group(&sctp), None, "SCTP NONE is not counted");
        let mut dccp = Entry::new(Tuple {
            protocol: Protocol::DCCP,
            ..sctp.original
        });
        dccp.dccp_state = Some(1);
        assert_eq!(group(&dccp), Some(Some(StateGroup::Opening)));
        let mut udp = Entry::new(Tuple::udp(ip("10.0.0.1"), 1, ip("10.0.0.2"), 53));
        assert_eq!(
            group(&udp),
            Some(None),
            "no status: the previous group stands"
        );
        udp.status = Some(Status::CONFIRMED);
        assert_eq!(group(&udp), Some(Some(StateGroup::Opening)));
        udp.status = Some(Status::CONFIRMED | Status::SEEN_REPLY);
        assert_eq!(group(&udp), Some(Some(StateGroup::Open)));
        let only_udp = classifier(&["10.0.0.1"], &[]).with_protocols("udp".parse().unwrap());
        assert!(only_udp.classify(&udp).is_some());
        assert!(only_udp.classify(&sctp).is_none());
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
