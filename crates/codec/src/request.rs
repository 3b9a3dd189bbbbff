//! Encoding requests to the kernel: dump, create, delete, flush, statistics.
//!
//! Pure functions that return the bytes of one netlink message, so they can be tested and
//! benchmarked without a socket.

use std::net::IpAddr;

use crate::attr::AttrWriter;
use crate::entry::{Family, Layer4, Protocol, Status, TcpState, Tuple};
use crate::wire::{self, cta};

/// What to create: an entry in any state, with any tuple and timeout. No packet is sent; the
/// kernel simply records the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The original-direction tuple.
    pub original: Tuple,
    /// The reply tuple; `None` means the inverse of `original` (no NAT).
    pub reply: Option<Tuple>,
    /// TCP state (TCP only).
    pub tcp_state: Option<TcpState>,
    /// SCTP or DCCP state number, as the tuple's protocol says (those protocols only); a
    /// DCCP entry is made in the client role, an SCTP one with zero verification tags.
    pub protocol_state: Option<u8>,
    /// Seconds until the kernel expires the entry.
    pub timeout: u32,
    /// Status bits to set (the kernel adds `CONFIRMED`).
    pub status: Status,
    /// Connection mark.
    pub mark: Option<u32>,
    /// Conntrack zone.
    pub zone: Option<u16>,
}

impl NewEntry {
    /// A TCP entry in `state` that expires after `timeout` seconds.
    pub fn tcp(original: Tuple, state: TcpState, timeout: u32) -> NewEntry {
        NewEntry {
            original,
            reply: None,
            tcp_state: Some(state),
            protocol_state: None,
            timeout,
            status: Status::default(),
            mark: None,
            zone: None,
        }
    }
}

/// Builds one ctnetlink request message.
struct RequestBuilder {
    buf: Vec<u8>,
}

impl RequestBuilder {
    fn new(message: u16, flags: u16, sequence: u32, family: u8, res_id: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish()
        buf.extend_from_slice(&wire::ctnetlink_type(message).to_ne_bytes());
        buf.extend_from_slice(&(wire::NLM_F_REQUEST | flags).to_ne_bytes());
        buf.extend_from_slice(&sequence.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        buf.push(family);
        buf.push(wire::NFNETLINK_V0);
        buf.extend_from_slice(&res_id.to_be_bytes());
        RequestBuilder { buf }
    }

    fn attributes(&mut self) -> AttrWriter<'_> {
        AttrWriter::new(&mut self.buf)
    }

    fn finish(mut self) -> Vec<u8> {
        let length = u32::try_from(self.buf.len()).expect("request over 4 GiB");
        self.buf[..4].copy_from_slice(&length.to_ne_bytes());
        self.buf
    }
}

fn family_byte(family: Option<Family>) -> u8 {
    family.map_or(wire::AF_UNSPEC, Family::to_raw)
}

/// A request to dump every entry of `family` (all families when `None`).
pub fn dump(sequence: u32, family: Option<Family>) -> Vec<u8> {
    RequestBuilder::new(
        wire::IPCTNL_MSG_CT_GET,
        wire::NLM_F_DUMP,
        sequence,
        family_byte(family),
        0,
    )
    .finish()
}

/// A request to create `entry`, acknowledged by the kernel.
pub fn create(sequence: u32, entry: &NewEntry) -> Vec<u8> {
    let family = Family::of(entry.original.src).to_raw();
    let flags = wire::NLM_F_CREATE | wire::NLM_F_EXCL | wire::NLM_F_ACK;
    let mut request = RequestBuilder::new(wire::IPCTNL_MSG_CT_NEW, flags, sequence, family, 0);
    let reply = entry.reply.unwrap_or_else(|| entry.original.inverted());
    let mut attrs = request.attributes();
    write_tuple(&mut attrs, cta::TUPLE_ORIG, &entry.original);
    write_tuple(&mut attrs, cta::TUPLE_REPLY, &reply);
    attrs.u32_be(cta::TIMEOUT, entry.timeout);
    if entry.status != Status::default() {
        // The kernel marks a new entry CONFIRMED before applying CTA_STATUS and refuses any
        // status that would clear that bit (EBUSY), so it must be part of the request.
        attrs.u32_be(cta::STATUS, (entry.status | Status::CONFIRMED).0);
    }
    if let Some(state) = entry.tcp_state {
        attrs.nested(cta::PROTOINFO, |info| {
            info.nested(wire::protoinfo::TCP, |tcp| {
                tcp.u8(wire::protoinfo::TCP_STATE, state.to_raw());
            });
        });
    }
    if let Some(state) = entry.protocol_state {
        use wire::protoinfo as p;
        attrs.nested(cta::PROTOINFO, |info| {
            if entry.original.protocol == Protocol::SCTP {
                // The kernel takes an SCTP state only together with both verification tags.
                info.nested(p::SCTP, |sctp| {
                    sctp.u8(p::SCTP_STATE, state)
                        .u32_be(p::SCTP_VTAG_ORIGINAL, 0)
                        .u32_be(p::SCTP_VTAG_REPLY, 0);
                });
            } else {
                // ... and a DCCP state only together with a role (0: client).
                info.nested(p::DCCP, |dccp| {
                    dccp.u8(p::DCCP_STATE, state).u8(p::DCCP_ROLE, 0);
                });
            }
        });
    }
    if let Some(mark) = entry.mark {
        attrs.u32_be(cta::MARK, mark);
    }
    if let Some(zone) = entry.zone {
        attrs.u16_be(cta::ZONE, zone);
    }
    request.finish()
}

/// A request to delete the entry whose original tuple is `original`, acknowledged.
pub fn delete(sequence: u32, original: &Tuple, zone: Option<u16>) -> Vec<u8> {
    let family = Family::of(original.src).to_raw();
    let mut request = RequestBuilder::new(
        wire::IPCTNL_MSG_CT_DELETE,
        wire::NLM_F_ACK,
        sequence,
        family,
        0,
    );
    let mut attrs = request.attributes();
    write_tuple(&mut attrs, cta::TUPLE_ORIG, original);
    if let Some(zone) = zone {
        attrs.u16_be(cta::ZONE, zone);
    }
    request.finish()
}

/// A request to delete every entry of `family` (all families when `None`), acknowledged.
pub fn flush(sequence: u32, family: Option<Family>) -> Vec<u8> {
    let mut request = RequestBuilder::new(
        wire::IPCTNL_MSG_CT_DELETE,
        wire::NLM_F_ACK,
        sequence,
        family_byte(family),
        0,
    );
    // The kernel flushes every family when the nfgenmsg version is 0, whatever the family
    // byte says (old tools sent AF_INET meaning "all"); version 1 makes it honour the family.
    if family.is_some() {
        request.buf[wire::NLMSG_HDRLEN + 1] = 1;
    }
    request.finish()
}

/// A request for the table's size and limit.
pub fn table_size(sequence: u32) -> Vec<u8> {
    RequestBuilder::new(wire::IPCTNL_MSG_CT_GET_STATS, 0, sequence, 0, 0).finish()
}

/// A request that dumps per-CPU statistics.
pub fn cpu_stats(sequence: u32) -> Vec<u8> {
    RequestBuilder::new(
        wire::IPCTNL_MSG_CT_GET_STATS_CPU,
        wire::NLM_F_DUMP,
        sequence,
        0,
        0,
    )
    .finish()
}

fn write_tuple(attrs: &mut AttrWriter<'_>, kind: u16, tuple: &Tuple) {
    attrs.nested(kind, |t| {
        t.nested(wire::tuple::IP, |ip| match (tuple.src, tuple.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                ip.bytes(wire::ip::V4_SRC, &src.octets());
                ip.bytes(wire::ip::V4_DST, &dst.octets());
            }
            (src, dst) => {
                ip.bytes(wire::ip::V6_SRC, &to_v6_octets(src));
                ip.bytes(wire::ip::V6_DST, &to_v6_octets(dst));
            }
        });
        t.nested(wire::tuple::PROTO, |proto| {
            use wire::proto as p;
            proto.u8(p::NUM, tuple.protocol.0);
            match tuple.layer4 {
                Layer4::Ports { src, dst } => {
                    proto.u16_be(p::SRC_PORT, src).u16_be(p::DST_PORT, dst);
                }
                Layer4::Icmp { id, kind, code } => {
                    let v6 = tuple.src.is_ipv6();
                    let (id_attr, type_attr, code_attr) = if v6 {
                        (p::ICMPV6_ID, p::ICMPV6_TYPE, p::ICMPV6_CODE)
                    } else {
                        (p::ICMP_ID, p::ICMP_TYPE, p::ICMP_CODE)
                    };
                    proto
                        .u16_be(id_attr, id)
                        .u8(type_attr, kind)
                        .u8(code_attr, code);
                }
                Layer4::None => {}
            }
        });
    });
}

fn to_v6_octets(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}
