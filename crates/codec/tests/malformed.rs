//! Malformed input: the decoder returns a value or an error for any bytes and never panics.
//!
//! Hand-built messages cover each way a message can be wrong (truncated, wrong attribute
//! sizes, zero and overlong lengths, garbage inside nested attributes, missing tuples), and
//! that a malformed optional attribute costs only itself; the
//! captured kernel messages are cut at every byte offset; and property tests feed arbitrary
//! bytes and randomly mutated captures to [`messages`] and [`parse_message`]. A last property
//! checks that what the request builder encodes, the parser decodes to the same values.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::fixture;
use conntrack_codec::{
    EntryKind, EntryMessage, Layer4, Message, NewEntry, ParseError, Protocol, Status, TcpState,
    Tuple, messages, parse_message, request,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// A tiny netlink writer, independent of the crate's own, to build messages byte by byte.

const NLA_F_NESTED: u16 = 0x8000;
const CT_NEW: u16 = 0x100;
const CT_DELETE: u16 = 0x102;
const CT_GET_STATS_CPU: u16 = 0x104;
const CT_GET_STATS: u16 = 0x105;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_CREATE_EXCL: u16 = 0x600;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// An attribute with an honest length and padding.
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let length = u16::try_from(4 + payload.len()).unwrap();
    attr_with_length(kind, length, payload)
}

/// An attribute whose header claims `length`, whatever the payload really is.
fn attr_with_length(kind: u16, length: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

fn nested(kind: u16, children: &[Vec<u8>]) -> Vec<u8> {
    attr(kind | NLA_F_NESTED, &children.concat())
}

/// A netlink message: header, `nfgenmsg` (family, version, resource id) and attributes.
fn message(kind: u16, flags: u16, family: u8, attributes: &[Vec<u8>]) -> Vec<u8> {
    message_with_res_id(kind, flags, family, 0, attributes)
}

fn message_with_res_id(
    kind: u16,
    flags: u16,
    family: u8,
    res_id: u16,
    attributes: &[Vec<u8>],
) -> Vec<u8> {
    let body = attributes.concat();
    let length = u32::try_from(16 + 4 + body.len()).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&7u32.to_ne_bytes()); // sequence
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn ip_v4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    nested(1, &[attr(1, &src), attr(2, &dst)])
}

fn ip_v6(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    nested(1, &[attr(3, &src), attr(4, &dst)])
}

fn proto_ports(protocol: u8, src: u16, dst: u16) -> Vec<u8> {
    nested(
        2,
        &[
            attr(1, &[protocol]),
            attr(2, &src.to_be_bytes()),
            attr(3, &dst.to_be_bytes()),
        ],
    )
}

fn tuple_orig(children: &[Vec<u8>]) -> Vec<u8> {
    nested(1, children)
}

fn good_tuple() -> Vec<u8> {
    tuple_orig(&[
        ip_v4([10, 0, 0, 1], [10, 0, 0, 2]),
        proto_ports(6, 1234, 80),
    ])
}

/// A well-formed IPv4 TCP NEW event carrying `extra` attributes after its tuple.
fn entry_with(extra: &[Vec<u8>]) -> Vec<u8> {
    let mut attributes = vec![good_tuple()];
    attributes.extend_from_slice(extra);
    message(CT_NEW, NLM_F_CREATE_EXCL, AF_INET, &attributes)
}

fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    // Whatever `parse_message` says, the iterator must say the same for a single message.
    let single = parse_message(bytes);
    let streamed: Vec<_> = messages(bytes).collect();
    assert_eq!(streamed, vec![single.clone()]);
    single
}

fn length_error(attribute: &'static str, length: usize, expected: usize) -> ParseError {
    ParseError::AttributeLength {
        attribute,
        length,
        expected,
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built malformed messages.

#[test]
fn the_hand_built_reference_message_is_valid() {
    let Ok(Message::Entry(EntryMessage {
        kind,
        entry,
        attribute_errors,
    })) = parse(&entry_with(&[]))
    else {
        panic!("reference message must decode");
    };
    assert!(attribute_errors.is_empty());
    assert_eq!(kind, EntryKind::New);
    assert_eq!(
        entry.original,
        Tuple::tcp(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            1234,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            80
        )
    );
}

#[test]
fn wrong_attribute_lengths_name_the_attribute() {
    // Optional attributes of an entry: each costs only itself. The entry decodes without it,
    // and the message reports what was left out.
    let optional: Vec<(Vec<u8>, ParseError)> = vec![
        // CTA_STATUS, CTA_TIMEOUT, CTA_MARK, CTA_ID: u32 with 2, 0, 8 and 3 bytes.
        (
            entry_with(&[attr(3, &[0, 8])]),
            length_error("CTA_STATUS", 2, 4),
        ),
        (
            entry_with(&[attr(7, &[])]),
            length_error("CTA_TIMEOUT", 0, 4),
        ),
        (
            entry_with(&[attr(8, &[0; 8])]),
            length_error("CTA_MARK", 8, 4),
        ),
        (
            entry_with(&[attr(12, &[1, 2, 3])]),
            length_error("CTA_ID", 3, 4),
        ),
        // CTA_ZONE: u16 with 4 bytes.
        (
            entry_with(&[attr(18, &[0; 4])]),
            length_error("CTA_ZONE", 4, 2),
        ),
        // CTA_COUNTERS_ORIG / PACKETS: u64 with 4 bytes.
        (
            entry_with(&[nested(9, &[attr(1, &[0; 4])])]),
            length_error("CTA_COUNTERS_PACKETS", 4, 8),
        ),
        // CTA_COUNTERS_REPLY / BYTES32: u32 with 8 bytes.
        (
            entry_with(&[nested(10, &[attr(4, &[0; 8])])]),
            length_error("CTA_COUNTERS32_BYTES", 8, 4),
        ),
        // CTA_TIMESTAMP / START: u64 with 7 bytes.
        (
            entry_with(&[nested(20, &[attr(1, &[0; 7])])]),
            length_error("CTA_TIMESTAMP_START", 7, 8),
        ),
        // CTA_PROTOINFO / TCP / STATE: u8 with 2 bytes.
        (
            entry_with(&[nested(4, &[nested(1, &[attr(1, &[3, 0])])])]),
            length_error("CTA_PROTOINFO_TCP_STATE", 2, 1),
        ),
    ];
    // What makes an entry (its original tuple) and statistics replies: the message is an
    // error.
    let fatal: Vec<(Vec<u8>, ParseError)> = vec![
        // Tuple: IPv4 address of 3 bytes, IPv6 address of 4, port of 1, protocol of 2.
        (
            message(
                CT_NEW,
                0,
                AF_INET,
                &[tuple_orig(&[
                    nested(1, &[attr(1, &[10, 0, 0]), attr(2, &[10, 0, 0, 2])]),
                    proto_ports(6, 1, 2),
                ])],
            ),
            length_error("CTA_IP_V4_SRC", 3, 4),
        ),
        (
            message(
                CT_NEW,
                0,
                AF_INET6,
                &[tuple_orig(&[
                    nested(1, &[attr(3, &[0; 16]), attr(4, &[0; 4])]),
                    proto_ports(6, 1, 2),
                ])],
            ),
            length_error("CTA_IP_V6_DST", 4, 16),
        ),
        (
            message(
                CT_NEW,
                0,
                AF_INET,
                &[tuple_orig(&[
                    ip_v4([1; 4], [2; 4]),
                    nested(2, &[attr(1, &[6]), attr(2, &[0]), attr(3, &[0, 80])]),
                ])],
            ),
            length_error("CTA_PROTO_SRC_PORT", 1, 2),
        ),
        (
            message(
                CT_NEW,
                0,
                AF_INET,
                &[tuple_orig(&[
                    ip_v4([1; 4], [2; 4]),
                    nested(2, &[attr(1, &[0, 6])]),
                ])],
            ),
            length_error("CTA_PROTO_NUM", 2, 1),
        ),
        // Statistics replies: u32 counters with 2 bytes.
        (
            message(CT_GET_STATS, 0, 0, &[attr(1, &[0, 1])]),
            length_error("CTA_STATS_GLOBAL_ENTRIES", 2, 4),
        ),
        (
            message(CT_GET_STATS_CPU, 0, 0, &[attr(8, &[0, 1])]),
            length_error("CTA_STATS_*", 2, 4),
        ),
    ];
    assert_eq!(optional.len() + fatal.len(), 15);
    let Ok(Message::Entry(reference)) = parse(&entry_with(&[])) else {
        panic!("reference message must decode");
    };
    for (bytes, expected) in optional {
        let Ok(Message::Entry(decoded)) = parse(&bytes) else {
            panic!("{expected}: the entry must decode without the attribute");
        };
        assert_eq!(decoded.entry, reference.entry, "{expected}");
        assert_eq!(decoded.attribute_errors.count(), 1, "{expected}");
        assert_eq!(decoded.attribute_errors.first(), Some(&expected));
    }
    for (bytes, expected) in fatal {
        assert_eq!(parse(&bytes), Err(expected));
    }
}

#[test]
fn zero_and_short_attribute_lengths_are_framing_errors() {
    for length in [0u16, 1, 2, 3] {
        // At the top level, inside the tuple, and inside the address list.
        let top = entry_with(&[attr_with_length(7, length, &[0; 4])]);
        let in_tuple = message(
            CT_NEW,
            0,
            AF_INET,
            &[tuple_orig(&[attr_with_length(1, length, &[])])],
        );
        let in_ip = message(
            CT_NEW,
            0,
            AF_INET,
            &[tuple_orig(&[nested(
                1,
                &[attr_with_length(1, length, &[])],
            )])],
        );
        for bytes in [top, in_tuple, in_ip] {
            assert!(
                matches!(
                    parse(&bytes),
                    Err(ParseError::AttributeFraming { length: l, .. }) if l == usize::from(length)
                ),
                "length {length}: {:?}",
                parse(&bytes)
            );
        }
    }
}

#[test]
fn overlong_attribute_lengths_are_framing_errors() {
    for length in [9u16, 100, 0x3fff, 0xffff] {
        // A CTA_TIMEOUT that claims more than the message holds.
        let top = entry_with(&[attr_with_length(7, length, &[0; 4])]);
        // A CTA_TUPLE_ORIG whose inner IP attribute claims more than the tuple holds.
        let inner = message(
            CT_NEW,
            0,
            AF_INET,
            &[tuple_orig(&[attr_with_length(
                1 | NLA_F_NESTED,
                length,
                &[0; 4],
            )])],
        );
        for bytes in [top, inner] {
            assert!(
                matches!(parse(&bytes), Err(ParseError::AttributeFraming { .. })),
                "length {length}: {:?}",
                parse(&bytes)
            );
        }
    }
}

#[test]
fn message_lengths_that_cannot_be_trusted_end_the_iteration() {
    let good = entry_with(&[]);
    for claimed in [
        0u32,
        1,
        15,
        u32::try_from(good.len()).unwrap() + 4,
        u32::MAX,
    ] {
        let mut bad = good.clone();
        bad[..4].copy_from_slice(&claimed.to_ne_bytes());
        // A bad header first: one framing error, nothing after it.
        let mut buffer = bad.clone();
        buffer.extend_from_slice(&good);
        let all: Vec<_> = messages(&buffer).collect();
        if claimed as usize <= buffer.len() && claimed >= 16 {
            // Framing still fits in the buffer: the length is believed and the rest is
            // decoded from wherever it lands, without panicking.
            assert!(!all.is_empty());
        } else {
            assert_eq!(all.len(), 1, "claimed {claimed}");
            assert!(matches!(all[0], Err(ParseError::MessageFraming { .. })));
        }
    }
    // Fewer bytes than a header.
    for length in 1..16 {
        let all: Vec<_> = messages(&good[..length]).collect();
        assert_eq!(all.len(), 1);
        assert!(matches!(all[0], Err(ParseError::MessageFraming { .. })));
        assert!(matches!(
            parse_message(&good[..length]),
            Err(ParseError::Truncated { .. })
        ));
    }
    assert_eq!(messages(&[]).count(), 0);
}

#[test]
fn a_bad_payload_does_not_stop_the_following_messages() {
    // An original tuple whose protocol number has two bytes.
    let bad = message(
        CT_NEW,
        NLM_F_CREATE_EXCL,
        AF_INET,
        &[tuple_orig(&[
            ip_v4([1; 4], [2; 4]),
            nested(2, &[attr(1, &[0, 6])]),
        ])],
    );
    let good = entry_with(&[]);
    let buffer = [bad.clone(), good.clone(), bad, good].concat();
    let results: Vec<_> = messages(&buffer).collect();
    assert_eq!(results.len(), 4);
    assert!(results[0].is_err() && results[2].is_err());
    assert!(matches!(results[1], Ok(Message::Entry(_))));
    assert_eq!(results[1], results[3]);
}

#[test]
fn nested_garbage_is_an_error_or_ignored_never_a_panic() {
    let garbage: [&[u8]; 5] = [
        &[0xff; 4],
        &[0x01, 0x00, 0x01, 0x00, 0xaa],
        &[0x08, 0x00, 0x01, 0x80, 0xde, 0xad, 0xbe, 0xef],
        &[0x05, 0x00, 0x02, 0x00, 0x11, 0x22],
        &[0; 13],
    ];
    for junk in garbage {
        for kind in [1u16, 2, 4, 9, 10, 20] {
            let bytes = if kind == 1 {
                message(CT_NEW, 0, AF_INET, &[attr(kind | NLA_F_NESTED, junk)])
            } else {
                entry_with(&[attr(kind | NLA_F_NESTED, junk)])
            };
            // Garbage in the original tuple never yields an entry; elsewhere it may be
            // skipped (unknown inner types) or rejected, but never panics.
            let result = parse(&bytes);
            if kind == 1 {
                assert!(result.is_err(), "{junk:?}: {result:?}");
            }
        }
    }
    // Nested garbage in statistics replies.
    for junk in garbage {
        let _ = parse(&message(
            CT_GET_STATS,
            0,
            0,
            &[attr(1 | NLA_F_NESTED, junk)],
        ));
        let _ = parse(&message(CT_GET_STATS_CPU, 0, 0, &[attr(2, junk)]));
    }
}

#[test]
fn missing_tuple_parts_are_reported() {
    let v4 = ip_v4([1; 4], [2; 4]);
    let ports = proto_ports(6, 1, 2);
    let cases = [
        (vec![], "CTA_TUPLE_ORIG"),
        // Only a reply tuple.
        (
            vec![nested(2, &[v4.clone(), ports.clone()])],
            "CTA_TUPLE_ORIG",
        ),
        (vec![tuple_orig(&[])], "CTA_IP_*_SRC"),
        (
            vec![tuple_orig(std::slice::from_ref(&ports))],
            "CTA_IP_*_SRC",
        ),
        (
            vec![tuple_orig(&[nested(1, &[attr(1, &[1; 4])]), ports.clone()])],
            "CTA_IP_*_DST",
        ),
        (vec![tuple_orig(std::slice::from_ref(&v4))], "CTA_PROTO_NUM"),
        (
            vec![tuple_orig(&[
                v4,
                nested(2, &[attr(2, &[0, 1]), attr(3, &[0, 2])]),
            ])],
            "CTA_PROTO_NUM",
        ),
    ];
    for (attributes, missing) in cases {
        for kind in [CT_NEW, CT_DELETE] {
            assert_eq!(
                parse(&message(kind, 0, AF_INET, &attributes)),
                Err(ParseError::MissingAttribute(missing))
            );
        }
    }
    // A status and a timeout alone are not an entry.
    assert_eq!(
        parse(&message(
            CT_NEW,
            0,
            AF_INET,
            &[attr(3, &8u32.to_be_bytes()), attr(7, &30u32.to_be_bytes())]
        )),
        Err(ParseError::MissingAttribute("CTA_TUPLE_ORIG"))
    );
}

#[test]
fn mixed_address_families_are_rejected() {
    let mixed = nested(1, &[attr(1, &[1; 4]), attr(4, &[2; 16])]);
    let bytes = message(
        CT_NEW,
        0,
        AF_INET,
        &[tuple_orig(&[mixed, proto_ports(6, 1, 2)])],
    );
    assert_eq!(parse(&bytes), Err(ParseError::MixedFamilies));
}

#[test]
fn truncated_headers() {
    let good = entry_with(&[]);
    // An nfgenmsg cut short: the header says 18 bytes and there are 18.
    let mut short = good[..18].to_vec();
    short[..4].copy_from_slice(&18u32.to_ne_bytes());
    assert!(matches!(
        parse(&short),
        Err(ParseError::Truncated {
            what: "nfgenmsg",
            ..
        })
    ));
    // An error message without its errno.
    let mut error = vec![0u8; 16];
    error[..4].copy_from_slice(&16u32.to_ne_bytes());
    error[4..6].copy_from_slice(&2u16.to_ne_bytes());
    assert!(matches!(
        parse(&error),
        Err(ParseError::Truncated {
            what: "netlink error code",
            ..
        })
    ));
    // Attribute bytes that stop inside an attribute header.
    let mut cut = good.clone();
    cut.extend_from_slice(&[8, 0]);
    let length = u32::try_from(cut.len()).unwrap();
    cut[..4].copy_from_slice(&length.to_ne_bytes());
    assert!(matches!(
        parse(&cut),
        Err(ParseError::Truncated {
            what: "attribute header",
            ..
        })
    ));
}

#[test]
fn unknown_attributes_and_messages_are_skipped() {
    let with_unknown = entry_with(&[attr(99, &[1, 2, 3]), nested(98, &[attr(1, &[0xff])])]);
    assert_eq!(parse(&with_unknown), parse(&entry_with(&[])));
    // Another netfilter subsystem, and a plain netlink type.
    assert_eq!(
        parse(&message(0x0300, 0, AF_INET, &[])),
        Ok(Message::Other {
            message_type: 0x0300
        })
    );
    assert_eq!(
        parse(&message(0x0010, 0, AF_INET, &[])),
        Ok(Message::Other {
            message_type: 0x0010
        })
    );
    // NLMSG_OVERRUN and an unknown ctnetlink message (expectation subsystem-like numbers).
    assert_eq!(
        parse(&message(4, 0, 0, &[])),
        Ok(Message::Other { message_type: 4 })
    );
    assert_eq!(
        parse(&message(0x0107, 0, 0, &[])),
        Ok(Message::Other {
            message_type: 0x0107
        })
    );
}

#[test]
fn kinds_follow_message_type_and_flags() {
    let tuple = [good_tuple()];
    let kind = |message_type, flags| match parse(&message(message_type, flags, AF_INET, &tuple)) {
        Ok(Message::Entry(decoded)) => decoded.kind,
        other => panic!("{other:?}"),
    };
    assert_eq!(kind(CT_NEW, NLM_F_CREATE_EXCL), EntryKind::New);
    assert_eq!(kind(CT_NEW, 0x400), EntryKind::New);
    assert_eq!(kind(CT_NEW, 0), EntryKind::Update);
    assert_eq!(kind(CT_NEW, NLM_F_MULTI), EntryKind::Dumped);
    assert_eq!(kind(CT_DELETE, 0), EntryKind::Destroy);
    assert_eq!(kind(CT_DELETE, NLM_F_MULTI), EntryKind::Destroy);
}

#[test]
fn icmp_and_portless_tuples() {
    let icmp = tuple_orig(&[
        ip_v4([1; 4], [2; 4]),
        nested(
            2,
            &[
                attr(1, &[1]),
                attr(4, &[0x12, 0x34]),
                attr(5, &[8]),
                attr(6, &[0]),
            ],
        ),
    ]);
    let Ok(Message::Entry(EntryMessage { entry, .. })) =
        parse(&message(CT_NEW, 0, AF_INET, &[icmp]))
    else {
        panic!("ICMP entry must decode");
    };
    assert_eq!(entry.original.protocol, Protocol::ICMP);
    assert_eq!(
        entry.original.layer4,
        Layer4::Icmp {
            id: 0x1234,
            kind: 8,
            code: 0
        }
    );
    let gre = tuple_orig(&[ip_v6([1; 16], [2; 16]), nested(2, &[attr(1, &[47])])]);
    let Ok(Message::Entry(EntryMessage { entry, .. })) =
        parse(&message(CT_NEW, 0, AF_INET6, &[gre]))
    else {
        panic!("portless entry must decode");
    };
    assert_eq!(entry.original.layer4, Layer4::None);
    assert_eq!(entry.original.src_port(), None);
}

#[test]
fn cpu_number_comes_from_the_resource_id() {
    let bytes = message_with_res_id(
        CT_GET_STATS_CPU,
        NLM_F_MULTI,
        0,
        513,
        &[attr(8, &5u32.to_be_bytes())],
    );
    let Ok(Message::CpuStats(stats)) = parse(&bytes) else {
        panic!("statistics must decode");
    };
    assert_eq!((stats.cpu, stats.insert), (513, 5));
}

// ---------------------------------------------------------------------------------------------
// Captured messages, cut and mutated.

const FIXTURES: [&str; 11] = [
    include_str!("fixtures/dump.hex"),
    include_str!("fixtures/events_synthetic.hex"),
    include_str!("fixtures/events_tcp_ipv4.hex"),
    include_str!("fixtures/events_tcp_ipv6.hex"),
    include_str!("fixtures/events_udp_ipv4.hex"),
    include_str!("fixtures/events_udp_ipv6.hex"),
    include_str!("fixtures/table_size.hex"),
    include_str!("fixtures/cpu_stats.hex"),
    include_str!("fixtures/ack.hex"),
    include_str!("fixtures/error_exists.hex"),
    include_str!("fixtures/error_not_found.hex"),
];

/// Every captured message, one per element.
fn captured() -> Vec<Vec<u8>> {
    let all: Vec<Vec<u8>> = FIXTURES.iter().flat_map(|text| fixture(text)).collect();
    assert!(all.len() > 40, "fixtures missing: {}", all.len());
    all
}

/// Runs both entry points to completion on `bytes`; returns how many items the iterator gave.
fn exercise(bytes: &[u8]) -> usize {
    let _ = parse_message(bytes);
    let mut count = 0;
    for item in messages(bytes) {
        let _ = item;
        count += 1;
        // The iterator must make progress: at most one item per header's worth of bytes.
        assert!(count <= bytes.len() / 16 + 1, "iterator does not advance");
    }
    count
}

#[test]
fn captured_messages_truncated_at_every_offset() {
    let mut checked = 0;
    for message in captured() {
        // The whole message decodes (on the machine that captured it).
        if cfg!(target_endian = "little") {
            assert!(parse_message(&message).is_ok());
        }
        for cut in 0..message.len() {
            let prefix = &message[..cut];
            let _ = parse_message(prefix);
            // The header claims more than the prefix holds: a framing error, then nothing.
            let all: Vec<_> = messages(prefix).collect();
            if cut == 0 {
                assert!(all.is_empty());
            } else if cfg!(target_endian = "little") {
                assert_eq!(all.len(), 1);
                assert!(matches!(all[0], Err(ParseError::MessageFraming { .. })));
            }
            // With the header's length fixed up, the payload itself is cut short.
            if cut >= 16 {
                let mut honest = prefix.to_vec();
                honest[..4].copy_from_slice(&u32::try_from(cut).unwrap().to_ne_bytes());
                exercise(&honest);
            }
            checked += 1;
        }
    }
    assert!(checked > 5_000, "only {checked} cuts");
}

#[test]
#[cfg(target_endian = "little")]
fn captured_dump_split_anywhere_decodes_the_prefix() {
    // Every message that fits entirely before the cut decodes as in the whole buffer.
    let whole: Vec<u8> = captured().into_iter().take(7).flatten().collect();
    let full: Vec<_> = messages(&whole).collect();
    assert_eq!(full.len(), 7);
    for cut in 0..whole.len() {
        let part: Vec<_> = messages(&whole[..cut]).collect();
        let complete = part.iter().take_while(|item| item.is_ok()).count();
        assert_eq!(part[..complete], full[..complete]);
        assert!(part.len() <= complete + 1);
    }
}

fn any_tuple() -> impl Strategy<Value = Tuple> {
    let v4 = (any::<[u8; 4]>(), any::<[u8; 4]>())
        .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b))));
    let v6 = (any::<[u8; 16]>(), any::<[u8; 16]>())
        .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b))));
    let layer4 = prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(src, dst)| (6, Layer4::Ports { src, dst })),
        (any::<u16>(), any::<u16>()).prop_map(|(src, dst)| (17, Layer4::Ports { src, dst })),
        (any::<u16>(), any::<u8>(), any::<u8>())
            .prop_map(|(id, kind, code)| (1, Layer4::Icmp { id, kind, code })),
        Just((47, Layer4::None)),
    ];
    (prop_oneof![v4, v6], layer4).prop_map(|((src, dst), (protocol, layer4))| Tuple {
        src,
        dst,
        protocol: Protocol(protocol),
        layer4,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    /// Arbitrary attribute bytes behind a valid header, so the attribute decoder is reached.
    #[test]
    fn arbitrary_attributes_never_panic(
        message_type in prop_oneof![
            Just(CT_NEW), Just(CT_DELETE), Just(CT_GET_STATS), Just(CT_GET_STATS_CPU)
        ],
        flags in any::<u16>(),
        family in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let bytes = message(message_type, flags, family, &[body]);
        prop_assert_eq!(exercise(&bytes), 1);
    }

    #[test]
    fn mutated_captures_never_panic(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        keep_length in any::<bool>(),
    ) {
        let all = captured();
        let mut bytes = all[pick.index(all.len())].clone();
        for (at, value) in flips {
            let at = at.index(bytes.len());
            // Leave the header's length alone in half the cases, so the payload is parsed.
            if keep_length && at < 4 {
                continue;
            }
            bytes[at] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        exercise(&bytes);
    }

    /// What the request builder encodes, the parser reads back (a create request has the
    /// layout of a NEW event).
    #[test]
    fn create_requests_decode_to_what_was_asked(
        original in any_tuple(),
        state in prop::option::of(0u8..10),
        timeout in any::<u32>(),
        status in any::<u32>(),
        mark in prop::option::of(any::<u32>()),
        zone in prop::option::of(any::<u16>()),
    ) {
        let entry = NewEntry {
            original,
            reply: None,
            tcp_state: state.map(TcpState::from_raw),
            protocol_state: None,
            timeout,
            status: Status(status),
            mark,
            zone,
        };
        let bytes = request::create(1, &entry);
        let Ok(Message::Entry(EntryMessage { kind, entry: decoded, attribute_errors })) =
            parse_message(&bytes)
        else {
            panic!("request does not decode: {:?}", parse_message(&bytes));
        };
        prop_assert!(attribute_errors.is_empty());
        prop_assert_eq!(kind, EntryKind::New);
        prop_assert_eq!(decoded.original, original);
        prop_assert_eq!(decoded.reply, Some(original.inverted()));
        prop_assert_eq!(decoded.tcp_state, entry.tcp_state);
        prop_assert_eq!(decoded.timeout, Some(timeout));
        prop_assert_eq!(decoded.mark, mark);
        prop_assert_eq!(decoded.zone, zone);
        let expected_status = (status != 0).then_some(Status(status) | Status::CONFIRMED);
        prop_assert_eq!(decoded.status, expected_status);
    }
}
