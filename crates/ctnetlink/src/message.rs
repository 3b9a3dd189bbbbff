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
    Messages {
        frames: Frames { rest: buffer },
    }
}

/// Iterator returned by [`messages`].
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    frames: Frames<'a>,
}

impl Iterator for Messages<'_> {
    type Item = Result<Message, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.frames.next()?.and_then(parse_message))
    }
}

/// Splits a received buffer into whole netlink messages (header included) without decoding
/// them. A header whose length cannot be trusted yields an error and ends the iteration.
#[derive(Debug, Clone)]
pub(crate) struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Frames<'a> {
    pub(crate) fn new(buffer: &'a [u8]) -> Self {
        Frames { rest: buffer }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<&'a [u8], ParseError>;

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
        Some(Ok(message))
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
        dccp_state: entry.dccp_state,
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
    dccp_state: Option<u8>,
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
            protoinfo::DCCP => protoinfo::DCCP_STATE,
            protoinfo::SCTP => protoinfo::SCTP_STATE,
            _ => continue,
        };
        for field in info.nested() {
            let field = field?;
            if field.kind != state_attr {
                continue;
            }
            match info.kind {
                protoinfo::TCP => {
                    let state = field.u8("CTA_PROTOINFO_TCP_STATE")?;
                    entry.tcp_state = Some(TcpState::from_raw(state));
                }
                protoinfo::DCCP => entry.dccp_state = Some(field.u8("CTA_PROTOINFO_DCCP_STATE")?),
                _ => entry.sctp_state = Some(field.u8("CTA_PROTOINFO_SCTP_STATE")?),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrWriter;
    use crate::wire::{counters, protoinfo, timestamp};

    /// The attributes `fill` writes, as bytes.
    fn attributes(fill: impl FnOnce(&mut AttrWriter<'_>)) -> Vec<u8> {
        let mut buf = Vec::new();
        fill(&mut AttrWriter::new(&mut buf));
        buf
    }

    /// An IPv6 UDP original tuple `[::1]:1000 -> [::2]:53`.
    fn write_tuple(attrs: &mut AttrWriter<'_>) {
        attrs.nested(cta::TUPLE_ORIG, |t| {
            t.nested(wire::tuple::IP, |ip| {
                ip.bytes(wire::ip::V6_SRC, &Ipv6Addr::from(1u128).octets());
                ip.bytes(wire::ip::V6_DST, &Ipv6Addr::from(2u128).octets());
            });
            t.nested(wire::tuple::PROTO, |p| {
                p.u8(wire::proto::NUM, 17)
                    .u16_be(wire::proto::SRC_PORT, 1000)
                    .u16_be(wire::proto::DST_PORT, 53);
            });
        });
    }

    #[test]
    fn entry_kind_follows_the_kernel_flags() {
        use wire::{IPCTNL_MSG_CT_DELETE as DELETE, IPCTNL_MSG_CT_NEW as NEW};
        assert_eq!(entry_kind(DELETE, 0), EntryKind::Destroy);
        assert_eq!(entry_kind(DELETE, wire::NLM_F_MULTI), EntryKind::Destroy);
        assert_eq!(entry_kind(NEW, wire::NLM_F_MULTI), EntryKind::Dumped);
        let create_excl = wire::NLM_F_CREATE | wire::NLM_F_EXCL;
        assert_eq!(entry_kind(NEW, create_excl), EntryKind::New);
        assert_eq!(entry_kind(NEW, wire::NLM_F_CREATE), EntryKind::New);
        assert_eq!(entry_kind(NEW, 0), EntryKind::Update);
        assert_eq!(entry_kind(NEW, wire::NLM_F_ACK), EntryKind::Update);
    }

    #[test]
    fn error_codes() {
        assert_eq!(parse_error(&0i32.to_ne_bytes()), Ok(Message::Ack));
        assert_eq!(parse_error(&(-17i32).to_ne_bytes()), Ok(Message::Error(17)));
        assert_eq!(parse_error(&(-1i32).to_ne_bytes()), Ok(Message::Error(1)));
        // Not a valid errno, but representable without overflow.
        assert_eq!(
            parse_error(&i32::MIN.to_ne_bytes()),
            Ok(Message::Error(i32::MAX))
        );
        assert_eq!(
            parse_error(&[0, 0, 0]),
            Err(ParseError::Truncated {
                what: "netlink error code",
                needed: 4,
                available: 3
            })
        );
    }

    #[test]
    fn counters_in_64_and_32_bits() {
        let wide = attributes(|a| {
            a.nested(cta::COUNTERS_ORIG, |c| {
                c.bytes(counters::PACKETS, &(5u64 << 32).to_be_bytes())
                    .bytes(counters::BYTES, &u64::MAX.to_be_bytes())
                    .u8(99, 1);
            });
        });
        let attr = Attrs::new(&wide).next().unwrap().unwrap();
        assert_eq!(
            parse_counters(attr),
            Ok(Counters {
                packets: 5 << 32,
                bytes: u64::MAX
            })
        );
        let narrow = attributes(|a| {
            a.nested(cta::COUNTERS_REPLY, |c| {
                c.u32_be(counters::PACKETS_32, 7)
                    .u32_be(counters::BYTES_32, 700);
            });
        });
        let attr = Attrs::new(&narrow).next().unwrap().unwrap();
        assert_eq!(
            parse_counters(attr),
            Ok(Counters {
                packets: 7,
                bytes: 700
            })
        );
    }

    #[test]
    fn timestamps_with_and_without_stop() {
        let both = attributes(|a| {
            a.nested(cta::TIMESTAMP, |t| {
                t.bytes(timestamp::START, &10u64.to_be_bytes())
                    .bytes(timestamp::STOP, &25u64.to_be_bytes());
            });
        });
        let attr = Attrs::new(&both).next().unwrap().unwrap();
        assert_eq!(
            parse_timestamp(attr),
            Ok(Timestamp {
                start: Some(10),
                stop: Some(25)
            })
        );
        let empty = attributes(|a| {
            a.nested(cta::TIMESTAMP, |_| {});
        });
        let attr = Attrs::new(&empty).next().unwrap().unwrap();
        assert_eq!(parse_timestamp(attr), Ok(Timestamp::default()));
    }

    #[test]
    fn protocol_states_of_tcp_sctp_and_dccp_and_others_skipped() {
        let info = |kind: u16, state: u8| {
            attributes(|a| {
                a.nested(cta::PROTOINFO, |p| {
                    p.nested(kind, |inner| {
                        // A member before the state, as the kernel sends window scales.
                        inner.u8(2, 14).u8(protoinfo::TCP_STATE, state);
                    });
                });
            })
        };
        let decode = |bytes: Vec<u8>| {
            let mut fields = EntryFields::default();
            let attr = Attrs::new(&bytes).next().unwrap().unwrap();
            parse_protoinfo(attr, &mut fields)
                .map(|()| (fields.tcp_state, fields.sctp_state, fields.dccp_state))
        };
        assert_eq!(
            decode(info(protoinfo::TCP, 7)),
            Ok((Some(TcpState::TimeWait), None, None))
        );
        assert_eq!(
            decode(info(protoinfo::TCP, 42)),
            Ok((Some(TcpState::Other(42)), None, None))
        );
        assert_eq!(decode(info(protoinfo::SCTP, 3)), Ok((None, Some(3), None)));
        assert_eq!(decode(info(protoinfo::DCCP, 4)), Ok((None, None, Some(4))));
        // Members of the protocol information the exporter does not know are skipped.
        assert_eq!(decode(info(9, 3)), Ok((None, None, None)));
    }

    #[test]
    fn family_falls_back_to_the_tuple() {
        let bytes = attributes(|a| {
            write_tuple(a);
            a.u32_be(cta::MARK, 9).u16_be(cta::ZONE, 4);
        });
        for family in [0, 7, wire::AF_INET6] {
            let entry = parse_entry(family, &bytes).unwrap();
            assert_eq!(entry.family, Family::Ipv6);
            assert_eq!(entry.mark, Some(9));
            assert_eq!(entry.zone, Some(4));
            assert_eq!(entry.reply, None);
            assert_eq!(entry.original.dst, IpAddr::V6(Ipv6Addr::from(2u128)));
            assert_eq!(entry.original.layer4, Layer4::Ports { src: 1000, dst: 53 });
        }
    }

    #[test]
    fn messages_skip_padding_between_messages() {
        // A 20-byte DONE, then a 17-byte message padded to 20, then an ACK.
        let mut buffer = Vec::new();
        let header = |length: u32, kind: u16| {
            let mut h = Vec::new();
            h.extend_from_slice(&length.to_ne_bytes());
            h.extend_from_slice(&kind.to_ne_bytes());
            h.extend_from_slice(&[0; 10]);
            h
        };
        buffer.extend(header(20, wire::NLMSG_DONE));
        buffer.extend_from_slice(&[0; 4]);
        buffer.extend(header(17, 0x10));
        buffer.extend_from_slice(&[0; 4]);
        buffer.extend(header(20, wire::NLMSG_ERROR));
        buffer.extend_from_slice(&[0; 4]);
        let decoded: Vec<_> = messages(&buffer).collect();
        assert_eq!(
            decoded,
            [
                Ok(Message::Done),
                Ok(Message::Other { message_type: 0x10 }),
                Ok(Message::Ack)
            ]
        );
    }
}
