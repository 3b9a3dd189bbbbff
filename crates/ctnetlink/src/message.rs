//! Decoding netlink buffers into typed ctnetlink messages.
//!
//! Pure functions over byte slices: no I/O, no `unsafe`, no panics on any input. Integers in
//! netlink headers are host-endian; integers inside ctnetlink attributes are big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::attr::{Attr, Attrs, align};
use crate::entry::{Counters, Entry, Family, Layer4, Protocol, Status, TcpState, Timestamp, Tuple};
use crate::error::ParseError;
use crate::stats::{CpuStats, TableSize};
use crate::wire::{self, cta};

/// What a conntrack message says happened to the entry it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A reply to a dump request: the entry exists.
    Dumped,
    /// Event: a new connection was confirmed.
    New,
    /// Event: an existing connection changed (state, status, mark, ...).
    Update,
    /// Event: the connection left the table.
    Destroy,
}

/// One decoded netlink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A conntrack entry from a dump or an event.
    Entry {
        /// Dump reply or which event.
        kind: EntryKind,
        /// The entry.
        entry: Entry,
    },
    /// The reply to a table size request.
    TableSize(TableSize),
    /// One CPU's statistics from a per-CPU statistics dump.
    CpuStats(CpuStats),
    /// End of a dump.
    Done,
    /// A positive acknowledgement.
    Ack,
    /// The kernel rejected a request with this errno.
    Error(i32),
    /// Anything else (other message types are skipped by callers).
    Other {
        /// The netlink message type.
        message_type: u16,
    },
}

/// Iterates over the netlink messages in a received buffer.
///
/// A message whose payload is malformed yields an error and iteration continues with the next
/// one. A header whose length cannot be trusted yields an error and ends the iteration, because
/// the following messages cannot be located.
pub fn messages(buffer: &[u8]) -> Messages<'_> {
    Messages { rest: buffer }
}

/// Iterator returned by [`messages`].
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl Iterator for Messages<'_> {
    type Item = Result<Message, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let available = self.rest.len();
        let length = match self.rest.first_chunk::<4>() {
            Some(bytes) => u32::from_ne_bytes(*bytes) as usize,
            None => available,
        };
        if available < wire::NLMSG_HDRLEN || length < wire::NLMSG_HDRLEN || length > available {
            self.rest = &[];
            return Some(Err(ParseError::MessageFraming { length, available }));
        }
        let message = &self.rest[..length];
        self.rest = self.rest.get(align(length)..).unwrap_or(&[]);
        Some(parse_message(message))
    }
}

/// Decodes exactly one netlink message (header included).
pub fn parse_message(message: &[u8]) -> Result<Message, ParseError> {
    let Some((header, payload)) = message.split_first_chunk::<{ wire::NLMSG_HDRLEN }>() else {
        return Err(ParseError::Truncated {
            what: "netlink header",
            needed: wire::NLMSG_HDRLEN,
            available: message.len(),
        });
    };
    let message_type = u16::from_ne_bytes([header[4], header[5]]);
    let flags = u16::from_ne_bytes([header[6], header[7]]);
    match message_type {
        wire::NLMSG_DONE => return Ok(Message::Done),
        wire::NLMSG_ERROR => return parse_error(payload),
        wire::NLMSG_OVERRUN => return Ok(Message::Other { message_type }),
        _ => {}
    }
    if message_type >> 8 != wire::NFNL_SUBSYS_CTNETLINK {
        return Ok(Message::Other { message_type });
    }
    let Some((nfgen, attributes)) = payload.split_first_chunk::<{ wire::NFGENMSG_LEN }>() else {
        return Err(ParseError::Truncated {
            what: "nfgenmsg",
            needed: wire::NFGENMSG_LEN,
            available: payload.len(),
        });
    };
    match message_type & 0xff {
        wire::IPCTNL_MSG_CT_NEW | wire::IPCTNL_MSG_CT_DELETE => {
            let kind = entry_kind(message_type & 0xff, flags);
            let entry = parse_entry(nfgen[0], attributes)?;
            Ok(Message::Entry { kind, entry })
        }
        wire::IPCTNL_MSG_CT_GET_STATS => Ok(Message::TableSize(TableSize::parse(attributes)?)),
        wire::IPCTNL_MSG_CT_GET_STATS_CPU => {
            let cpu = u16::from_be_bytes([nfgen[2], nfgen[3]]);
            Ok(Message::CpuStats(CpuStats::parse(cpu, attributes)?))
        }
        _ => Ok(Message::Other { message_type }),
    }
}

/// Tells dump replies and the three event kinds apart, the way the kernel marks them:
/// DESTROY is a DELETE message, NEW carries `NLM_F_CREATE|NLM_F_EXCL`, a dump reply carries
/// `NLM_F_MULTI`, and UPDATE is a NEW message with none of these.
fn entry_kind(message: u16, flags: u16) -> EntryKind {
    if message == wire::IPCTNL_MSG_CT_DELETE {
        EntryKind::Destroy
    } else if flags & wire::NLM_F_MULTI != 0 {
        EntryKind::Dumped
    } else if flags & (wire::NLM_F_CREATE | wire::NLM_F_EXCL) != 0 {
        EntryKind::New
    } else {
        EntryKind::Update
    }
}

/// `NLMSG_ERROR` carries a negative errno followed by the offending request's header.
fn parse_error(payload: &[u8]) -> Result<Message, ParseError> {
    let Some(errno) = payload.first_chunk::<4>() else {
        return Err(ParseError::Truncated {
            what: "netlink error code",
            needed: 4,
            available: payload.len(),
        });
    };
    match i32::from_ne_bytes(*errno) {
        0 => Ok(Message::Ack),
        code => Ok(Message::Error(code.saturating_neg())),
    }
}

/// Decodes the attributes of a conntrack entry.
fn parse_entry(family: u8, attributes: &[u8]) -> Result<Entry, ParseError> {
    let mut original = None;
    let mut entry = EntryFields::default();
    for attr in Attrs::new(attributes) {
        let attr = attr?;
        match attr.kind {
            cta::TUPLE_ORIG => original = Some(parse_tuple(attr)?),
            cta::TUPLE_REPLY => entry.reply = Some(parse_tuple(attr)?),
            cta::STATUS => entry.status = Some(Status(attr.u32_be("CTA_STATUS")?)),
            cta::PROTOINFO => parse_protoinfo(attr, &mut entry)?,
            cta::TIMEOUT => entry.timeout = Some(attr.u32_be("CTA_TIMEOUT")?),
            cta::MARK => entry.mark = Some(attr.u32_be("CTA_MARK")?),
            cta::COUNTERS_ORIG => entry.counters_original = Some(parse_counters(attr)?),
            cta::COUNTERS_REPLY => entry.counters_reply = Some(parse_counters(attr)?),
            cta::ID => entry.id = Some(attr.u32_be("CTA_ID")?),
            cta::ZONE => entry.zone = Some(attr.u16_be("CTA_ZONE")?),
            cta::TIMESTAMP => entry.timestamp = Some(parse_timestamp(attr)?),
            _ => {}
        }
    }
    let original = original.ok_or(ParseError::MissingAttribute("CTA_TUPLE_ORIG"))?;
    let family = match family {
        wire::AF_INET => Family::Ipv4,
        wire::AF_INET6 => Family::Ipv6,
        // The tuple is authoritative; nfgenmsg may say AF_UNSPEC in some replies.
        _ => Family::of(original.src),
    };
    Ok(Entry {
        family,
        original,
        reply: entry.reply,
        status: entry.status,
        tcp_state: entry.tcp_state,
        sctp_state: entry.sctp_state,
        timeout: entry.timeout,
        mark: entry.mark,
        zone: entry.zone,
        id: entry.id,
        counters_original: entry.counters_original,
        counters_reply: entry.counters_reply,
        timestamp: entry.timestamp,
    })
}

/// The optional parts of an [`Entry`], gathered while its required tuple may still be missing.
#[derive(Default)]
struct EntryFields {
    reply: Option<Tuple>,
    status: Option<Status>,
    tcp_state: Option<TcpState>,
    sctp_state: Option<u8>,
    timeout: Option<u32>,
    mark: Option<u32>,
    zone: Option<u16>,
    id: Option<u32>,
    counters_original: Option<Counters>,
    counters_reply: Option<Counters>,
    timestamp: Option<Timestamp>,
}

fn parse_tuple(attr: Attr<'_>) -> Result<Tuple, ParseError> {
    let (mut src, mut dst) = (None, None);
    let mut protocol = None;
    let (mut src_port, mut dst_port) = (None, None);
    let (mut icmp_id, mut icmp_type, mut icmp_code) = (None, None, None);
    for part in attr.nested() {
        let part = part?;
        match part.kind {
            wire::tuple::IP => {
                for address in part.nested() {
                    let address = address?;
                    match address.kind {
                        wire::ip::V4_SRC => src = Some(ipv4(address, "CTA_IP_V4_SRC")?),
                        wire::ip::V4_DST => dst = Some(ipv4(address, "CTA_IP_V4_DST")?),
                        wire::ip::V6_SRC => src = Some(ipv6(address, "CTA_IP_V6_SRC")?),
                        wire::ip::V6_DST => dst = Some(ipv6(address, "CTA_IP_V6_DST")?),
                        _ => {}
                    }
                }
            }
            wire::tuple::PROTO => {
                for field in part.nested() {
                    let field = field?;
                    use wire::proto;
                    match field.kind {
                        proto::NUM => protocol = Some(Protocol(field.u8("CTA_PROTO_NUM")?)),
                        proto::SRC_PORT => src_port = Some(field.u16_be("CTA_PROTO_SRC_PORT")?),
                        proto::DST_PORT => dst_port = Some(field.u16_be("CTA_PROTO_DST_PORT")?),
                        proto::ICMP_ID | proto::ICMPV6_ID => {
                            icmp_id = Some(field.u16_be("CTA_PROTO_ICMP_ID")?)
                        }
                        proto::ICMP_TYPE | proto::ICMPV6_TYPE => {
                            icmp_type = Some(field.u8("CTA_PROTO_ICMP_TYPE")?)
                        }
                        proto::ICMP_CODE | proto::ICMPV6_CODE => {
                            icmp_code = Some(field.u8("CTA_PROTO_ICMP_CODE")?)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let src = src.ok_or(ParseError::MissingAttribute("CTA_IP_*_SRC"))?;
    let dst = dst.ok_or(ParseError::MissingAttribute("CTA_IP_*_DST"))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(ParseError::MixedFamilies);
    }
    let protocol = protocol.ok_or(ParseError::MissingAttribute("CTA_PROTO_NUM"))?;
    let layer4 = match (src_port, dst_port, icmp_type) {
        (Some(src), Some(dst), _) => Layer4::Ports { src, dst },
        (_, _, Some(kind)) => Layer4::Icmp {
            id: icmp_id.unwrap_or(0),
            kind,
            code: icmp_code.unwrap_or(0),
        },
        _ => Layer4::None,
    };
    Ok(Tuple {
        src,
        dst,
        protocol,
        layer4,
    })
}

fn ipv4(attr: Attr<'_>, name: &'static str) -> Result<IpAddr, ParseError> {
    Ok(IpAddr::V4(Ipv4Addr::from(attr.exact::<4>(name)?)))
}

fn ipv6(attr: Attr<'_>, name: &'static str) -> Result<IpAddr, ParseError> {
    Ok(IpAddr::V6(Ipv6Addr::from(attr.exact::<16>(name)?)))
}

fn parse_protoinfo(attr: Attr<'_>, entry: &mut EntryFields) -> Result<(), ParseError> {
    use wire::protoinfo;
    for info in attr.nested() {
        let info = info?;
        let state_attr = match info.kind {
            protoinfo::TCP => protoinfo::TCP_STATE,
            protoinfo::SCTP => protoinfo::SCTP_STATE,
            _ => continue,
        };
        for field in info.nested() {
            let field = field?;
            if field.kind != state_attr {
                continue;
            }
            if info.kind == protoinfo::TCP {
                entry.tcp_state = Some(TcpState::from_raw(field.u8("CTA_PROTOINFO_TCP_STATE")?));
            } else {
                entry.sctp_state = Some(field.u8("CTA_PROTOINFO_SCTP_STATE")?);
            }
        }
    }
    Ok(())
}

fn parse_counters(attr: Attr<'_>) -> Result<Counters, ParseError> {
    use wire::counters;
    let mut result = Counters::default();
    for field in attr.nested() {
        let field = field?;
        match field.kind {
            counters::PACKETS => result.packets = field.u64_be("CTA_COUNTERS_PACKETS")?,
            counters::BYTES => result.bytes = field.u64_be("CTA_COUNTERS_BYTES")?,
            counters::PACKETS_32 => result.packets = field.u32_be("CTA_COUNTERS32_PACKETS")?.into(),
            counters::BYTES_32 => result.bytes = field.u32_be("CTA_COUNTERS32_BYTES")?.into(),
            _ => {}
        }
    }
    Ok(result)
}

fn parse_timestamp(attr: Attr<'_>) -> Result<Timestamp, ParseError> {
    let mut result = Timestamp::default();
    for field in attr.nested() {
        let field = field?;
        match field.kind {
            wire::timestamp::START => result.start = Some(field.u64_be("CTA_TIMESTAMP_START")?),
            wire::timestamp::STOP => result.stop = Some(field.u64_be("CTA_TIMESTAMP_STOP")?),
            _ => {}
        }
    }
    Ok(result)
}
