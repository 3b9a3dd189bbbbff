//! Typed values of a conntrack entry, as the kernel reports them.

use std::fmt;
use std::net::IpAddr;

/// Address family of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    Ipv4,
    /// IPv6 (`AF_INET6`).
    Ipv6,
}

impl Family {
    /// The `AF_*` number used on the wire.
    pub fn to_raw(self) -> u8 {
        match self {
            Family::Ipv4 => crate::wire::AF_INET,
            Family::Ipv6 => crate::wire::AF_INET6,
        }
    }

    /// The family of an address.
    pub fn of(address: IpAddr) -> Family {
        match address {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

/// IP protocol number of a tuple (`IPPROTO_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(pub u8);

impl Protocol {
    /// ICMP.
    pub const ICMP: Protocol = Protocol(1);
    /// TCP.
    pub const TCP: Protocol = Protocol(6);
    /// UDP.
    pub const UDP: Protocol = Protocol(17);
    /// DCCP.
    pub const DCCP: Protocol = Protocol(33);
    /// ICMPv6.
    pub const ICMPV6: Protocol = Protocol(58);
    /// SCTP.
    pub const SCTP: Protocol = Protocol(132);
    /// UDP-Lite.
    pub const UDPLITE: Protocol = Protocol(136);

    /// The lower-case name the `conntrack` tool prints, or `None` for an unnamed number.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Protocol::ICMP => "icmp",
            Protocol::TCP => "tcp",
            Protocol::UDP => "udp",
            Protocol::DCCP => "dccp",
            Protocol::ICMPV6 => "icmpv6",
            Protocol::SCTP => "sctp",
            Protocol::UDPLITE => "udplite",
            _ => return None,
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// The layer-4 part of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer4 {
    /// Port-based protocols (TCP, UDP, SCTP, DCCP, UDP-Lite).
    Ports {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP and ICMPv6: identifier, type and code.
    Icmp {
        /// Echo identifier.
        id: u16,
        /// ICMP type.
        kind: u8,
        /// ICMP code.
        code: u8,
    },
    /// A protocol the kernel tracks by addresses only.
    None,
}

/// One direction of a connection: addresses, protocol and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol.
    pub protocol: Protocol,
    /// Ports or ICMP fields.
    pub layer4: Layer4,
}

impl Tuple {
    /// A TCP tuple.
    pub fn tcp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Tuple {
        Self::with_ports(Protocol::TCP, src, src_port, dst, dst_port)
    }

    /// A UDP tuple.
    pub fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Tuple {
        Self::with_ports(Protocol::UDP, src, src_port, dst, dst_port)
    }

    fn with_ports(protocol: Protocol, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Tuple {
        Tuple {
            src,
            dst,
            protocol,
            layer4: Layer4::Ports {
                src: sport,
                dst: dport,
            },
        }
    }

    /// The tuple of the other direction, as the kernel derives it for a connection without
    /// NAT (ports swapped, ICMP fields kept).
    pub fn inverted(&self) -> Tuple {
        let layer4 = match self.layer4 {
            Layer4::Ports { src, dst } => Layer4::Ports { src: dst, dst: src },
            other => other,
        };
        Tuple {
            src: self.dst,
            dst: self.src,
            protocol: self.protocol,
            layer4,
        }
    }

    /// The source port, when the protocol has ports.
    pub fn src_port(&self) -> Option<u16> {
        match self.layer4 {
            Layer4::Ports { src, .. } => Some(src),
            _ => None,
        }
    }

    /// The destination port, when the protocol has ports.
    pub fn dst_port(&self) -> Option<u16> {
        match self.layer4 {
            Layer4::Ports { dst, .. } => Some(dst),
            _ => None,
        }
    }
}

/// TCP connection state as tracked by the kernel (`enum tcp_conntrack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    /// No state yet.
    None,
    /// SYN seen.
    SynSent,
    /// SYN/ACK seen.
    SynRecv,
    /// Three-way handshake done.
    Established,
    /// First FIN seen.
    FinWait,
    /// FIN seen from the responder first.
    CloseWait,
    /// Second FIN seen.
    LastAck,
    /// Last ACK seen; waiting for stray packets.
    TimeWait,
    /// RST seen.
    Close,
    /// Simultaneous open.
    SynSent2,
    /// A value newer than this library (kept, not rejected).
    Other(u8),
}

impl TcpState {
    /// Decodes the kernel's number.
    pub fn from_raw(value: u8) -> TcpState {
        match value {
            0 => TcpState::None,
            1 => TcpState::SynSent,
            2 => TcpState::SynRecv,
            3 => TcpState::Established,
            4 => TcpState::FinWait,
            5 => TcpState::CloseWait,
            6 => TcpState::LastAck,
            7 => TcpState::TimeWait,
            8 => TcpState::Close,
            9 => TcpState::SynSent2,
            other => TcpState::Other(other),
        }
    }

    /// The kernel's number.
    pub fn to_raw(self) -> u8 {
        match self {
            TcpState::None => 0,
            TcpState::SynSent => 1,
            TcpState::SynRecv => 2,
            TcpState::Established => 3,
            TcpState::FinWait => 4,
            TcpState::CloseWait => 5,
            TcpState::LastAck => 6,
            TcpState::TimeWait => 7,
            TcpState::Close => 8,
            TcpState::SynSent2 => 9,
            TcpState::Other(value) => value,
        }
    }

    /// Every named state, in the kernel's order.
    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The upper-case name the `conntrack` tool prints.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
            TcpState::Other(_) => "UNKNOWN",
        }
    }
}

/// Connection status bits (`enum ip_conntrack_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status(pub u32);

impl Status {
    /// An expected connection (of a helper).
    pub const EXPECTED: Status = Status(1 << 0);
    /// Packets seen in both directions.
    pub const SEEN_REPLY: Status = Status(1 << 1);
    /// Will not be dropped early when the table is full.
    pub const ASSURED: Status = Status(1 << 2);
    /// Committed to the table.
    pub const CONFIRMED: Status = Status(1 << 3);
    /// Source NAT applies.
    pub const SRC_NAT: Status = Status(1 << 4);
    /// Destination NAT applies.
    pub const DST_NAT: Status = Status(1 << 5);
    /// Being removed.
    pub const DYING: Status = Status(1 << 9);
    /// Timeout is fixed.
    pub const FIXED_TIMEOUT: Status = Status(1 << 10);
    /// Offloaded to a flow table.
    pub const OFFLOAD: Status = Status(1 << 14);

    /// True when every bit of `other` is set.
    pub fn contains(self, other: Status) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Status {
    type Output = Status;
    fn bitor(self, rhs: Status) -> Status {
        Status(self.0 | rhs.0)
    }
}

/// Packet and byte counters of one direction (present when accounting is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Start and stop times in nanoseconds since the epoch (present when timestamps are on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// When the entry was created.
    pub start: Option<u64>,
    /// When it was destroyed (DESTROY events only).
    pub stop: Option<u64>,
}

/// One conntrack entry: everything the kernel sent about a connection.
///
/// Optional fields are `None` when the message did not carry them; UPDATE events, for
/// instance, often leave out the protocol state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Address family.
    pub family: Family,
    /// The tuple of the first packet's direction.
    pub original: Tuple,
    /// The tuple of the answering direction (differs from the inverse under NAT).
    pub reply: Option<Tuple>,
    /// Status bits.
    pub status: Option<Status>,
    /// TCP state, for TCP entries that carry protocol information.
    pub tcp_state: Option<TcpState>,
    /// SCTP state number, for SCTP entries that carry protocol information.
    pub sctp_state: Option<u8>,
    /// DCCP state number, for DCCP entries that carry protocol information.
    pub dccp_state: Option<u8>,
    /// Seconds until the entry expires.
    pub timeout: Option<u32>,
    /// Connection mark.
    pub mark: Option<u32>,
    /// Conntrack zone.
    pub zone: Option<u16>,
    /// The kernel's 32-bit entry id (a hash: unique among live entries in practice, but
    /// not guaranteed, so never use it alone as a key).
    pub id: Option<u32>,
    /// Counters of the original direction.
    pub counters_original: Option<Counters>,
    /// Counters of the reply direction.
    pub counters_reply: Option<Counters>,
    /// Start and stop times.
    pub timestamp: Option<Timestamp>,
}

impl Entry {
    /// An entry with only its original tuple known.
    pub fn new(original: Tuple) -> Entry {
        Entry {
            family: Family::of(original.src),
            original,
            reply: None,
            status: None,
            tcp_state: None,
            sctp_state: None,
            dccp_state: None,
            timeout: None,
            mark: None,
            zone: None,
            id: None,
            counters_original: None,
            counters_reply: None,
            timestamp: None,
        }
    }
}
