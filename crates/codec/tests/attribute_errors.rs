//! Captured kernel messages with one optional attribute spoiled: the entry still decodes,
//! exactly as before less that attribute, and the message counts what was left out. Spoiling
//! the original tuple instead still fails the message.
//!
//! Each test rewrites one top-level attribute of a captured message (see
//! `tests/fixtures/README.md`) and fixes up the message length. The fixtures are host-endian
//! netlink captured on x86_64, so the tests only run on little-endian targets.
#![cfg(target_endian = "little")]

mod common;

use common::fixture;
use conntrack_codec::{Entry, EntryMessage, Message, ParseError, parse_message};

const NLA_F_NESTED: u16 = 0x8000;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_PROTOINFO: u16 = 4;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ZONE: u16 = 18;
const CTA_TIMESTAMP: u16 = 20;

/// A DESTROY event with both counters and a start/stop timestamp.
fn tcp_destroy() -> Vec<u8> {
    let events = fixture(include_str!("fixtures/events_tcp_ipv4.hex"));
    events.last().expect("events").clone()
}

/// A NEW event of an entry in zone 3.
fn udp_new_in_zone() -> Vec<u8> {
    fixture(include_str!("fixtures/events_synthetic.hex"))[1].clone()
}

/// An ESTABLISHED UPDATE event with its TCP state.
fn tcp_update() -> Vec<u8> {
    fixture(include_str!("fixtures/events_tcp_ipv4.hex"))[3].clone()
}

/// `message` with the payload of its top-level attribute `kind` replaced by `payload`.
fn spoil(message: &[u8], kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = message[..20].to_vec(); // header and nfgenmsg
    let mut rest = &message[20..];
    let mut found = false;
    while rest.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let type_and_flags = u16::from_ne_bytes([rest[2], rest[3]]);
        let padded = length.next_multiple_of(4).min(rest.len());
        if type_and_flags & 0x3fff == kind {
            found = true;
            let new_length = u16::try_from(4 + payload.len()).unwrap();
            out.extend_from_slice(&new_length.to_ne_bytes());
            out.extend_from_slice(&type_and_flags.to_ne_bytes());
            out.extend_from_slice(payload);
            out.resize(out.len().next_multiple_of(4), 0);
        } else {
            out.extend_from_slice(&rest[..padded]);
        }
        rest = &rest[padded..];
    }
    assert!(found, "the message has no attribute {kind}");
    let length = u32::try_from(out.len()).unwrap();
    out[..4].copy_from_slice(&length.to_ne_bytes());
    out
}

/// A netlink attribute with an honest length.
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(4 + payload.len())
        .unwrap()
        .to_ne_bytes()
        .to_vec();
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

fn decode(message: &[u8]) -> EntryMessage {
    match parse_message(message) {
        Ok(Message::Entry(decoded)) => decoded,
        other => panic!("expected an entry, got {other:?}"),
    }
}

/// Decodes `spoiled`, checks that it is `original` with `forget` applied to its entry and one
/// attribute left out because of `error`.
fn assert_costs_only_itself(
    original: &[u8],
    spoiled: &[u8],
    forget: impl FnOnce(&mut Entry),
    error: ParseError,
) {
    let before = decode(original);
    assert!(before.attribute_errors.is_empty());
    let mut expected = before.entry.clone();
    forget(&mut expected);
    assert_ne!(
        expected, before.entry,
        "the attribute was not there to lose"
    );

    let after = decode(spoiled);
    assert_eq!(after.kind, before.kind);
    assert_eq!(after.entry, expected);
    assert_eq!(after.attribute_errors.count(), 1);
    assert_eq!(after.attribute_errors.first(), Some(&error));
}

#[test]
fn a_zone_of_the_wrong_length() {
    let original = udp_new_in_zone();
    let spoiled = spoil(&original, CTA_ZONE, &[0, 0, 0, 3]);
    let error = ParseError::AttributeLength {
        attribute: "CTA_ZONE",
        length: 4,
        expected: 2,
    };
    assert_costs_only_itself(&original, &spoiled, |entry| entry.zone = None, error);
}

#[test]
fn an_empty_counters_nest() {
    let original = tcp_destroy();
    for (kind, missing) in [(CTA_COUNTERS_ORIG, true), (CTA_COUNTERS_REPLY, false)] {
        let spoiled = spoil(&original, kind, &[]);
        let forget = |entry: &mut Entry| {
            if missing {
                entry.counters_original = None;
            } else {
                entry.counters_reply = None;
            }
        };
        let error = ParseError::MissingAttribute("CTA_COUNTERS_PACKETS");
        assert_costs_only_itself(&original, &spoiled, forget, error);
    }
}

#[test]
fn a_timestamp_of_the_wrong_length() {
    let original = tcp_destroy();
    // CTA_TIMESTAMP_START with seven bytes instead of eight.
    let spoiled = spoil(&original, CTA_TIMESTAMP, &attr(1, &[0; 7]));
    let error = ParseError::AttributeLength {
        attribute: "CTA_TIMESTAMP_START",
        length: 7,
        expected: 8,
    };
    assert_costs_only_itself(&original, &spoiled, |entry| entry.timestamp = None, error);
}

#[test]
fn a_tcp_state_of_the_wrong_length() {
    let original = tcp_update();
    // CTA_PROTOINFO_TCP holding a two-byte CTA_PROTOINFO_TCP_STATE.
    let tcp = attr(1 | NLA_F_NESTED, &attr(1, &[3, 0]));
    let spoiled = spoil(&original, CTA_PROTOINFO, &tcp);
    let error = ParseError::AttributeLength {
        attribute: "CTA_PROTOINFO_TCP_STATE",
        length: 2,
        expected: 1,
    };
    assert_costs_only_itself(&original, &spoiled, |entry| entry.tcp_state = None, error);
}

#[test]
fn a_reply_tuple_without_addresses() {
    let original = tcp_destroy();
    let spoiled = spoil(&original, CTA_TUPLE_REPLY, &[]);
    let error = ParseError::MissingAttribute("CTA_IP_*_SRC");
    assert_costs_only_itself(&original, &spoiled, |entry| entry.reply = None, error);
}

#[test]
fn several_spoiled_attributes_are_all_counted_and_the_first_named() {
    let original = tcp_destroy();
    let spoiled = spoil(&original, CTA_COUNTERS_REPLY, &[]);
    let spoiled = spoil(&spoiled, CTA_TIMESTAMP, &attr(2, &[1]));
    let spoiled = spoil(&spoiled, CTA_TUPLE_REPLY, &[]);
    let decoded = decode(&spoiled);
    let mut expected = decode(&original).entry;
    expected.reply = None;
    expected.counters_reply = None;
    expected.timestamp = None;
    assert_eq!(decoded.entry, expected);
    assert_eq!(decoded.attribute_errors.count(), 3);
    // The reply tuple comes first in the kernel's order.
    assert_eq!(
        decoded.attribute_errors.first(),
        Some(&ParseError::MissingAttribute("CTA_IP_*_SRC"))
    );
}

#[test]
fn a_spoiled_original_tuple_still_fails_the_message() {
    let original = tcp_destroy();
    let spoiled = spoil(&original, CTA_TUPLE_ORIG, &[]);
    assert_eq!(
        parse_message(&spoiled),
        Err(ParseError::MissingAttribute("CTA_IP_*_SRC"))
    );
}
