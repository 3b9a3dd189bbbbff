//! Decoding the attributes of a conntrack entry.
//!
//! The original tuple is what makes an entry: a message without a readable one is an error.
//! Every other attribute is decoded on its own, and a malformed one costs only itself: the
//! entry goes on without it, and [`AttributeErrors`] counts it. Only a broken attribute
//! header at the top level fails the whole message, since nothing after it can be framed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::attr::{Attr, Attrs};
use crate::entry::{Counters, Entry, Family, Layer4, Protocol, Status, TcpState, Timestamp, Tuple};
use crate::error::ParseError;
use crate::wire::{self, cta};

/// The optional attributes of one entry that were malformed and left out of it.
///
/// Bounded whatever the input: a count, and the first error for the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttributeErrors {
    count: u32,
    first: Option<ParseError>,
}

impl AttributeErrors {
    /// True when every attribute of the entry decoded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many attributes were left out.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Why the first of them was.
    pub fn first(&self) -> Option<&ParseError> {
        self.first.as_ref()
    }

    fn record(&mut self, error: ParseError) {
        self.count = self.count.saturating_add(1);
        self.first.get_or_insert(error);
    }

    /// The decoded value, or `None` with the error recorded.
    fn keep<T>(&mut self, decoded: Result<T, ParseError>) -> Option<T> {
        decoded.map_err(|error| self.record(error)).ok()
    }
}

/// Decodes the attributes of a conntrack entry: the entry, and the optional attributes that
/// were malformed and left out.
pub(crate) fn parse_entry(
    family: u8,
    attributes: &[u8],
) -> Result<(Entry, AttributeErrors), ParseError> {
    let mut original = None;
    let mut entry = EntryFields::default();
    let mut skipped = AttributeErrors::default();
    for attr in Attrs::new(attributes) {
        let attr = attr?;
        match attr.kind {
            cta::TUPLE_ORIG => original = Some(parse_tuple(attr)?),
            cta::TUPLE_REPLY => entry.reply = skipped.keep(parse_tuple(attr)),
            cta::STATUS => entry.status = skipped.keep(attr.u32_be("CTA_STATUS").map(Status)),
            cta::PROTOINFO => {
                if let Err(error) = parse_protoinfo(attr, &mut entry) {
                    skipped.record(error);
                    (entry.tcp_state, entry.sctp_state) = (None, None);
                }
            }
            cta::TIMEOUT => entry.timeout = skipped.keep(attr.u32_be("CTA_TIMEOUT")),
            cta::MARK => entry.mark = skipped.keep(attr.u32_be("CTA_MARK")),
            cta::COUNTERS_ORIG => entry.counters_original = skipped.keep(parse_counters(attr)),
            cta::COUNTERS_REPLY => entry.counters_reply = skipped.keep(parse_counters(attr)),
            cta::ID => entry.id = skipped.keep(attr.u32_be("CTA_ID")),
            cta::ZONE => entry.zone = skipped.keep(attr.u16_be("CTA_ZONE")),
            cta::TIMESTAMP => entry.timestamp = skipped.keep(parse_timestamp(attr)),
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
    let entry = Entry {
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
    };
    Ok((entry, skipped))
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

/// Packets and bytes, both required: the kernel always sends the two, and a count that is
/// missing must not read as zero.
fn parse_counters(attr: Attr<'_>) -> Result<Counters, ParseError> {
    use wire::counters;
    let (mut packets, mut bytes) = (None, None);
    for field in attr.nested() {
        let field = field?;
        match field.kind {
            counters::PACKETS => packets = Some(field.u64_be("CTA_COUNTERS_PACKETS")?),
            counters::BYTES => bytes = Some(field.u64_be("CTA_COUNTERS_BYTES")?),
            counters::PACKETS_32 => packets = Some(field.u32_be("CTA_COUNTERS32_PACKETS")?.into()),
            counters::BYTES_32 => bytes = Some(field.u32_be("CTA_COUNTERS32_BYTES")?.into()),
            _ => {}
        }
    }
    Ok(Counters {
        packets: packets.ok_or(ParseError::MissingAttribute("CTA_COUNTERS_PACKETS"))?,
        bytes: bytes.ok_or(ParseError::MissingAttribute("CTA_COUNTERS_BYTES"))?,
    })
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
    fn counters_need_packets_and_bytes() {
        for (member, missing) in [
            (counters::PACKETS, "CTA_COUNTERS_BYTES"),
            (counters::BYTES, "CTA_COUNTERS_PACKETS"),
        ] {
            let one = attributes(|a| {
                a.nested(cta::COUNTERS_ORIG, |c| {
                    c.bytes(member, &1u64.to_be_bytes());
                });
            });
            let attr = Attrs::new(&one).next().unwrap().unwrap();
            assert_eq!(
                parse_counters(attr),
                Err(ParseError::MissingAttribute(missing))
            );
        }
    }

    #[test]
    fn malformed_optional_attributes_cost_only_themselves() {
        let bytes = attributes(|a| {
            a.u32_be(cta::ZONE, 3); // four bytes where two belong
            write_tuple(a);
            a.nested(cta::COUNTERS_ORIG, |_| {});
            a.u32_be(cta::MARK, 9);
            a.nested(cta::TIMESTAMP, |t| {
                t.bytes(timestamp::START, &[0; 7]);
            });
            a.nested(cta::PROTOINFO, |p| {
                // A good state, then a second one of two bytes: the whole attribute goes.
                p.nested(protoinfo::TCP, |tcp| {
                    tcp.u8(protoinfo::TCP_STATE, 3)
                        .u8(2, 14)
                        .u16_be(protoinfo::TCP_STATE, 3);
                });
            });
            // A reply tuple without addresses.
            a.nested(cta::TUPLE_REPLY, |t| {
                t.nested(wire::tuple::PROTO, |p| {
                    p.u8(wire::proto::NUM, 17);
                });
            });
        });
        let (entry, skipped) = parse_entry(wire::AF_INET6, &bytes).unwrap();
        assert_eq!(entry.mark, Some(9));
        assert_eq!(entry.original.dst, IpAddr::V6(Ipv6Addr::from(2u128)));
        let left_out = (
            entry.zone,
            entry.counters_original,
            entry.timestamp,
            entry.tcp_state,
            entry.reply,
        );
        assert_eq!(left_out, (None, None, None, None, None));
        assert_eq!(skipped.count(), 5);
        assert_eq!(
            skipped.first(),
            Some(&ParseError::AttributeLength {
                attribute: "CTA_ZONE",
                length: 4,
                expected: 2
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
            let (entry, skipped) = parse_entry(family, &bytes).unwrap();
            assert!(skipped.is_empty());
            assert_eq!(entry.family, Family::Ipv6);
            assert_eq!(entry.mark, Some(9));
            assert_eq!(entry.zone, Some(4));
            assert_eq!(entry.reply, None);
            assert_eq!(entry.original.dst, IpAddr::V6(Ipv6Addr::from(2u128)));
            assert_eq!(entry.original.layer4, Layer4::Ports { src: 1000, dst: 53 });
        }
    }
}
