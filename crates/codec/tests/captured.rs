//! Decoding of real kernel messages, captured from Linux 6.18 by `examples/capture.rs` (see
//! `tests/fixtures/README.md`): a dump reply, NEW / UPDATE / DESTROY events of IPv4 and IPv6,
//! TCP and UDP connections with and without counters and timestamps, the table size and
//! per-CPU statistics replies, an acknowledgement and two errors.
//!
//! The expected values were checked against what the `conntrack` tool printed for the same
//! messages (kept as comments in the fixture files). The fixtures are host-endian netlink
//! captured on x86_64, so the tests only run on little-endian targets.
#![cfg(target_endian = "little")]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::fixture;
use conntrack_codec::{
    Counters, CpuStats, Entry, EntryKind, Family, Layer4, Message, Protocol, Status, TableSize,
    TcpState, Timestamp, Tuple, messages, parse_message,
};

/// Decodes a fixture twice, as one buffer with [`messages`] and line by line with
/// [`parse_message`], checks that both agree, and returns the messages.
fn decode(text: &str) -> Vec<Message> {
    let lines = fixture(text);
    assert!(!lines.is_empty(), "empty fixture");
    let buffer = lines.concat();
    let streamed: Vec<Message> = messages(&buffer)
        .map(|message| message.expect("captured message decodes"))
        .collect();
    let one_by_one: Vec<Message> = lines
        .iter()
        .map(|line| parse_message(line).expect("captured message decodes"))
        .collect();
    assert_eq!(streamed, one_by_one);
    assert_eq!(streamed.len(), lines.len());
    streamed
}

/// The entries of decoded messages with their kinds; panics on any other message, and on an
/// attribute left out (the kernel sends none malformed).
fn entries(messages: Vec<Message>) -> Vec<(EntryKind, Entry)> {
    messages
        .into_iter()
        .map(|message| match message {
            Message::Entry(decoded) => {
                assert!(decoded.attribute_errors.is_empty(), "{decoded:?}");
                (decoded.kind, decoded.entry)
            }
            other => panic!("expected an entry, got {other:?}"),
        })
        .collect()
}

const DUMP: &str = include_str!("fixtures/dump.hex");
const EVENTS_SYNTHETIC: &str = include_str!("fixtures/events_synthetic.hex");
const EVENTS_TCP_IPV4: &str = include_str!("fixtures/events_tcp_ipv4.hex");
const EVENTS_TCP_IPV6: &str = include_str!("fixtures/events_tcp_ipv6.hex");
const EVENTS_UDP_IPV4: &str = include_str!("fixtures/events_udp_ipv4.hex");
const EVENTS_UDP_IPV6: &str = include_str!("fixtures/events_udp_ipv6.hex");

const CONFIRMED: Status = Status::CONFIRMED;
const REPLIED: Status = Status(Status::SEEN_REPLY.0 | Status::CONFIRMED.0);
const ASSURED: Status = Status(Status::ASSURED.0 | REPLIED.0);

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

const LOCALHOST4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOCALHOST6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// The synthetic TCP entry: `192.0.2.1:40001 -> 192.0.2.2:443`.
fn synthetic_tcp() -> Tuple {
    Tuple::tcp(v4(1), 40001, v4(2), 443)
}

/// The synthetic UDP entry, in zone 3: `[2001:db8::1]:40002 -> [2001:db8::2]:53`.
fn synthetic_udp() -> Tuple {
    Tuple::udp(v6(1), 40002, v6(2), 53)
}

/// The real connections: their tuples, ids and start times as the captures show them.
fn tcp4() -> Tuple {
    Tuple::tcp(LOCALHOST4, 40040, LOCALHOST4, 8080)
}
fn tcp6() -> Tuple {
    Tuple::tcp(LOCALHOST6, 52786, LOCALHOST6, 8080)
}
fn udp4() -> Tuple {
    Tuple::udp(LOCALHOST4, 51105, LOCALHOST4, 5353)
}
fn udp6() -> Tuple {
    Tuple::udp(LOCALHOST6, 59350, LOCALHOST6, 5353)
}
const TCP4_ID: u32 = 2_654_891_633;
const TCP6_ID: u32 = 1_658_765_407;
const UDP4_ID: u32 = 1_364_004_139;
const UDP6_ID: u32 = 2_851_675_113;
const SYNTHETIC_TCP_ID: u32 = 2_562_923_882;
const SYNTHETIC_UDP_ID: u32 = 2_987_784_502;
/// Start times: 2026-11-27 12:57:36 UTC, as `conntrack -o ktimestamp` printed them.
const TCP4_START: u64 = 1_795_784_256_052_820_315;
const TCP6_START: u64 = 1_795_784_256_357_585_957;
const UDP4_START: u64 = 1_795_784_256_658_525_780;
const UDP6_START: u64 = 1_795_784_256_959_278_696;

fn counters(packets: u64, bytes: u64) -> Option<Counters> {
    Some(Counters { packets, bytes })
}

fn started(start: u64) -> Option<Timestamp> {
    Some(Timestamp {
        start: Some(start),
        stop: None,
    })
}

#[test]
fn dump_reply_decodes_every_field() {
    let mut messages = decode(DUMP);
    assert_eq!(messages.pop(), Some(Message::Done));
    let dumped = entries(messages);
    assert!(dumped.iter().all(|(kind, _)| *kind == EntryKind::Dumped));
    let dumped: Vec<Entry> = dumped.into_iter().map(|(_, entry)| entry).collect();

    // The kernel's order (hash order), as `conntrack -L` printed the same table.
    let expected = [
        Entry {
            reply: Some(synthetic_tcp().inverted()),
            status: Some(ASSURED),
            tcp_state: Some(TcpState::Established),
            timeout: Some(3597),
            mark: Some(42),
            id: Some(SYNTHETIC_TCP_ID),
            ..Entry::new(synthetic_tcp())
        },
        Entry {
            reply: Some(tcp4().inverted()),
            status: Some(ASSURED),
            tcp_state: Some(TcpState::Established),
            timeout: Some(431_998),
            mark: Some(0),
            id: Some(TCP4_ID),
            counters_original: counters(4, 221),
            counters_reply: counters(3, 172),
            timestamp: started(TCP4_START),
            ..Entry::new(tcp4())
        },
        Entry {
            reply: Some(synthetic_udp().inverted()),
            status: Some(CONFIRMED),
            timeout: Some(1798),
            mark: Some(0),
            zone: Some(3),
            id: Some(SYNTHETIC_UDP_ID),
            ..Entry::new(synthetic_udp())
        },
        Entry {
            reply: Some(udp4().inverted()),
            status: Some(REPLIED),
            timeout: Some(29),
            mark: Some(0),
            id: Some(UDP4_ID),
            counters_original: counters(1, 32),
            counters_reply: counters(1, 33),
            timestamp: started(UDP4_START),
            ..Entry::new(udp4())
        },
        Entry {
            reply: Some(udp6().inverted()),
            status: Some(REPLIED),
            timeout: Some(29),
            mark: Some(0),
            id: Some(UDP6_ID),
            counters_original: counters(1, 52),
            counters_reply: counters(1, 53),
            timestamp: started(UDP6_START),
            ..Entry::new(udp6())
        },
        Entry {
            reply: Some(tcp6().inverted()),
            status: Some(ASSURED),
            tcp_state: Some(TcpState::Established),
            timeout: Some(431_999),
            mark: Some(0),
            id: Some(TCP6_ID),
            counters_original: counters(4, 301),
            counters_reply: counters(3, 232),
            timestamp: started(TCP6_START),
            ..Entry::new(tcp6())
        },
    ];
    assert_eq!(dumped.len(), expected.len());
    for (got, want) in dumped.iter().zip(&expected) {
        assert_eq!(got, want);
    }

    // Spot checks that do not go through the helpers above.
    let first = &dumped[0];
    assert_eq!(first.family, Family::Ipv4);
    assert_eq!(first.original.src, "192.0.2.1".parse::<IpAddr>().unwrap());
    assert_eq!(first.original.dst, "192.0.2.2".parse::<IpAddr>().unwrap());
    assert_eq!(first.original.protocol, Protocol::TCP);
    assert_eq!(first.original.src_port(), Some(40001));
    assert_eq!(first.original.dst_port(), Some(443));
    assert!(first.status.unwrap().contains(Status::ASSURED));
    let udp = &dumped[2];
    assert_eq!(udp.family, Family::Ipv6);
    assert_eq!(udp.original.src, "2001:db8::1".parse::<IpAddr>().unwrap());
    assert_eq!(udp.original.protocol, Protocol::UDP);
    assert_eq!(
        udp.original.layer4,
        Layer4::Ports {
            src: 40002,
            dst: 53
        }
    );
}

/// Checks a real connection's events: the kinds, the TCP states, the status bits and the
/// timeouts in order; the same tuples and id throughout; counters and timestamps only in
/// the DESTROY event.
#[allow(clippy::too_many_arguments)]
fn check_connection(
    text: &str,
    tuple: Tuple,
    id: u32,
    states: &[Option<TcpState>],
    statuses: &[Status],
    timeouts: &[u32],
    destroy_counters: (Counters, Counters),
    start: u64,
) -> Vec<(EntryKind, Entry)> {
    let events = entries(decode(text));
    assert_eq!(events.len(), states.len());
    let kinds: Vec<EntryKind> = events.iter().map(|(kind, _)| *kind).collect();
    let mut expected_kinds = vec![EntryKind::New];
    expected_kinds.resize(events.len() - 1, EntryKind::Update);
    expected_kinds.push(EntryKind::Destroy);
    assert_eq!(kinds, expected_kinds);

    let family = Family::of(tuple.src);
    let last = events.len() - 1;
    for (index, (_, entry)) in events.iter().enumerate() {
        let destroy = index == last;
        let expected = Entry {
            family,
            reply: Some(tuple.inverted()),
            status: Some(statuses[index]),
            tcp_state: states[index],
            timeout: Some(timeouts[index]),
            id: Some(id),
            counters_original: destroy.then_some(destroy_counters.0),
            counters_reply: destroy.then_some(destroy_counters.1),
            timestamp: entry.timestamp.filter(|_| destroy),
            ..Entry::new(tuple)
        };
        assert_eq!(entry, &expected, "event {index}");
    }
    let timestamp = events[last]
        .1
        .timestamp
        .expect("DESTROY carries timestamps");
    assert_eq!(timestamp.start, Some(start));
    let stop = timestamp.stop.expect("DESTROY carries a stop time");
    // `conntrack -E` printed delta-time=2 or 3 for these.
    assert!((2_000_000_000..4_000_000_000).contains(&(stop - start)));
    events
}

const TCP_STATES: [Option<TcpState>; 8] = [
    Some(TcpState::SynSent),
    Some(TcpState::SynRecv),
    Some(TcpState::Established),
    Some(TcpState::FinWait),
    Some(TcpState::CloseWait),
    Some(TcpState::LastAck),
    Some(TcpState::TimeWait),
    Some(TcpState::TimeWait),
];
const TCP_STATUSES: [Status; 8] = [
    CONFIRMED,
    REPLIED,
    ASSURED,
    ASSURED,
    ASSURED,
    ASSURED,
    ASSURED,
    Status(ASSURED.0 | Status::DYING.0),
];
/// The kernel's default TCP timeouts per state, and 119 s left in TIME_WAIT at the delete.
const TCP_TIMEOUTS: [u32; 8] = [120, 60, 432_000, 120, 60, 30, 120, 119];

#[test]
fn tcp_ipv4_connection_events() {
    check_connection(
        EVENTS_TCP_IPV4,
        tcp4(),
        TCP4_ID,
        &TCP_STATES,
        &TCP_STATUSES,
        &TCP_TIMEOUTS,
        (
            Counters {
                packets: 6,
                bytes: 325,
            },
            Counters {
                packets: 5,
                bytes: 276,
            },
        ),
        TCP4_START,
    );
}

#[test]
fn tcp_ipv6_connection_events() {
    let events = check_connection(
        EVENTS_TCP_IPV6,
        tcp6(),
        TCP6_ID,
        &TCP_STATES,
        &TCP_STATUSES,
        &TCP_TIMEOUTS,
        (
            Counters {
                packets: 6,
                bytes: 445,
            },
            Counters {
                packets: 5,
                bytes: 376,
            },
        ),
        TCP6_START,
    );
    assert_eq!(events[0].1.family, Family::Ipv6);
    assert_eq!(events[0].1.original.src, "::1".parse::<IpAddr>().unwrap());
}

const UDP_STATES: [Option<TcpState>; 3] = [None, None, None];
const UDP_STATUSES: [Status; 3] = [CONFIRMED, REPLIED, Status(REPLIED.0 | Status::DYING.0)];
const UDP_TIMEOUTS: [u32; 3] = [30, 30, 27];

#[test]
fn udp_ipv4_connection_events() {
    check_connection(
        EVENTS_UDP_IPV4,
        udp4(),
        UDP4_ID,
        &UDP_STATES,
        &UDP_STATUSES,
        &UDP_TIMEOUTS,
        (
            Counters {
                packets: 1,
                bytes: 32,
            },
            Counters {
                packets: 1,
                bytes: 33,
            },
        ),
        UDP4_START,
    );
}

#[test]
fn udp_ipv6_connection_events() {
    check_connection(
        EVENTS_UDP_IPV6,
        udp6(),
        UDP6_ID,
        &UDP_STATES,
        &UDP_STATUSES,
        &UDP_TIMEOUTS,
        (
            Counters {
                packets: 1,
                bytes: 52,
            },
            Counters {
                packets: 1,
                bytes: 53,
            },
        ),
        UDP6_START,
    );
}

#[test]
fn events_of_entries_created_without_accounting() {
    let events = entries(decode(EVENTS_SYNTHETIC));
    let tcp = Entry {
        reply: Some(synthetic_tcp().inverted()),
        status: Some(ASSURED),
        tcp_state: Some(TcpState::Established),
        id: Some(SYNTHETIC_TCP_ID),
        ..Entry::new(synthetic_tcp())
    };
    let udp = Entry {
        reply: Some(synthetic_udp().inverted()),
        status: Some(CONFIRMED),
        zone: Some(3),
        id: Some(SYNTHETIC_UDP_ID),
        ..Entry::new(synthetic_udp())
    };
    let expected = [
        (
            EntryKind::New,
            Entry {
                timeout: Some(3600),
                mark: Some(7),
                ..tcp.clone()
            },
        ),
        (
            EntryKind::New,
            Entry {
                timeout: Some(1800),
                mark: Some(0),
                ..udp.clone()
            },
        ),
        // `conntrack -U -m 42`: the mark changed.
        (
            EntryKind::Update,
            Entry {
                timeout: Some(3599),
                mark: Some(42),
                ..tcp.clone()
            },
        ),
        (
            EntryKind::Destroy,
            Entry {
                status: Some(Status(ASSURED.0 | Status::DYING.0)),
                timeout: Some(3595),
                mark: Some(42),
                ..tcp
            },
        ),
        // The kernel leaves a zero mark out of DESTROY events.
        (
            EntryKind::Destroy,
            Entry {
                status: Some(Status(CONFIRMED.0 | Status::DYING.0)),
                timeout: Some(1795),
                ..udp
            },
        ),
    ];
    assert_eq!(events.len(), expected.len());
    for (index, (got, want)) in events.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "event {index}");
    }
}

#[test]
fn events_and_dump_agree_on_ids() {
    let dumped = entries(decode(DUMP)[..6].to_vec());
    for text in [
        EVENTS_TCP_IPV4,
        EVENTS_TCP_IPV6,
        EVENTS_UDP_IPV4,
        EVENTS_UDP_IPV6,
        EVENTS_SYNTHETIC,
    ] {
        for (_, event) in entries(decode(text)) {
            let twin = dumped
                .iter()
                .find(|(_, entry)| entry.original == event.original)
                .expect("every event's connection is in the dump");
            assert_eq!(twin.1.id, event.id);
            assert_eq!(twin.1.reply, event.reply);
        }
    }
}

#[test]
fn table_size_reply() {
    let messages = decode(include_str!("fixtures/table_size.hex"));
    assert_eq!(
        messages,
        [Message::TableSize(TableSize {
            entries: 6,
            max_entries: 262_144,
        })]
    );
}

#[test]
fn cpu_stats_reply() {
    let messages = decode(include_str!("fixtures/cpu_stats.hex"));
    // `conntrack -S` printed insert=0 for cpu 0 and insert=2 for cpu 1, all else 0.
    assert_eq!(
        messages,
        [
            Message::CpuStats(CpuStats {
                cpu: 0,
                ..CpuStats::default()
            }),
            Message::CpuStats(CpuStats {
                cpu: 1,
                insert: 2,
                ..CpuStats::default()
            }),
            Message::Done,
        ]
    );
}

/// Errno values from `asm-generic/errno-base.h` (the codec links no C library to ask).
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;

#[test]
fn acknowledgement_and_errors() {
    assert_eq!(decode(include_str!("fixtures/ack.hex")), [Message::Ack]);
    assert_eq!(
        decode(include_str!("fixtures/error_exists.hex")),
        [Message::Error(EEXIST)]
    );
    assert_eq!(
        decode(include_str!("fixtures/error_not_found.hex")),
        [Message::Error(ENOENT)]
    );
}
