//! Throughput of the event path: what the collector thread does for every kernel event
//! (decode the message, classify the entry, update the live table and its per-host counts).
//!
//! - `apply/parse_and_apply_captured`: the captured event messages of
//!   `crates/codec/tests/fixtures/` (TCP and UDP, IPv4 and IPv6, each connection from NEW
//!   to DESTROY), decoded and applied; the table stays tiny.
//! - `apply/parse_and_apply_100k_connections`: a churn stream over a table of 100,000 TCP
//!   connections to 1,000 remote hosts (800 IPv4, 200 IPv6). Its messages are the captured
//!   TCP event messages with their addresses and ports rewritten, so they carry every
//!   attribute a real kernel sends (status, timeout, protocol info, id; counters and
//!   timestamps on DESTROY). Every connection closes (FIN_WAIT, TIME_WAIT, DESTROY) and is
//!   replaced by a new one to the same host (NEW, SYN_RECV, ESTABLISHED); the connections are
//!   visited in random order with their events interleaved, so that the table's memory is
//!   touched the way a busy host touches it.
//! - `apply/parse_and_apply_100k_connections_every_label_accounting`: the same, with every
//!   label, every protocol and accounting on (the DESTROY messages carry counters).
//! - `apply/apply_100k_connections`: the same stream, decoded beforehand: classification and
//!   table update only.
//!
//! Each reports events per second. The stream is a closed cycle (after all of it the table is
//! back where it started), so the benchmarks apply it in batches from wherever the previous
//! batch stopped.
//!
//! ```text
//! cargo bench -p benches --bench apply
//! ```

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use benches::{Random, fixture};
use conntrack_codec::{Entry, EntryKind, EntryMessage, Message, messages};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracker::{Classifier, LabelName, LabelNames, ProtocolSet, StateGroup, Tracker};

/// Remote hosts of the large table; the last [`IPV6_HOSTS`] of them are IPv6.
const HOSTS: u32 = 1_000;
const IPV6_HOSTS: u32 = 200;
/// Connections of the large table.
const CONNECTIONS: u32 = 100_000;
/// Events applied per measured iteration of the cyclic benchmarks.
const BATCH: usize = 1_000;

const LOCAL_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const LOCAL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const SERVICE_PORT: u16 = 443;

/// Which captured message each step of a connection's turn uses: indexes into
/// `events_tcp_ipv*.hex` (0 NEW in SYN_SENT, 1 SYN_RECV, 2 ESTABLISHED, 3 FIN_WAIT,
/// 6 TIME_WAIT, 7 DESTROY), and whether the step concerns the connection that closes (`true`)
/// or the one that replaces it.
const TURN: [(usize, bool); 6] = [
    (3, true),
    (6, true),
    (7, true),
    (0, false),
    (1, false),
    (2, false),
];
/// The captured message of an established connection, with which the table is filled first.
const ESTABLISHED: usize = 2;

/// Attributes in `bytes[start..end]`: kind (flags stripped), value offset, value length.
fn attributes(bytes: &[u8], start: usize, end: usize) -> Vec<(u16, usize, usize)> {
    let mut found = Vec::new();
    let mut at = start;
    while at + 4 <= end {
        let length = usize::from(u16::from_ne_bytes([bytes[at], bytes[at + 1]]));
        let kind = u16::from_ne_bytes([bytes[at + 2], bytes[at + 3]]) & 0x3fff;
        assert!(
            length >= 4 && at + length <= end,
            "captured attribute framing"
        );
        found.push((kind, at + 4, length - 4));
        at += length.next_multiple_of(4);
    }
    found
}

fn attribute(bytes: &[u8], within: (usize, usize), kinds: &[u16]) -> (usize, usize) {
    attributes(bytes, within.0, within.0 + within.1)
        .into_iter()
        .find(|(kind, _, _)| kinds.contains(kind))
        .map(|(_, offset, length)| (offset, length))
        .expect("captured message has the attribute")
}

/// A captured event message and where its tuples' addresses and ports are, so that copies
/// can describe other connections.
struct Template {
    bytes: Vec<u8>,
    /// Original source, original destination, reply source, reply destination.
    addresses: [(usize, usize); 4],
    /// The same for the ports.
    ports: [usize; 4],
}

impl Template {
    fn new(bytes: Vec<u8>) -> Template {
        // netlink header (16 bytes) and nfgenmsg (4 bytes), then the attributes.
        let all = (20, bytes.len() - 20);
        let mut addresses = [(0, 0); 4];
        let mut ports = [0; 4];
        for (direction, kind) in [1u16, 2].into_iter().enumerate() {
            let tuple = attribute(&bytes, all, &[kind]);
            let ip = attribute(&bytes, tuple, &[1]);
            let proto = attribute(&bytes, tuple, &[2]);
            addresses[2 * direction] = attribute(&bytes, ip, &[1, 3]);
            addresses[2 * direction + 1] = attribute(&bytes, ip, &[2, 4]);
            ports[2 * direction] = attribute(&bytes, proto, &[2]).0;
            ports[2 * direction + 1] = attribute(&bytes, proto, &[3]).0;
        }
        Template {
            bytes,
            addresses,
            ports,
        }
    }

    /// Appends a copy describing the connection from `local:port` to `remote:SERVICE_PORT`.
    fn write(&self, local: IpAddr, remote: IpAddr, port: u16, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let message = &mut out[start..];
        let octets = |address: IpAddr| match address {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let values = [(local, port), (remote, SERVICE_PORT)];
        let values = [values[0], values[1], values[1], values[0]];
        for ((address, port), ((at, length), port_at)) in values
            .into_iter()
            .zip(self.addresses.iter().zip(self.ports))
        {
            let address = octets(address);
            assert_eq!(address.len(), *length, "template of the other family");
            message[*at..at + length].copy_from_slice(&address);
            message[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
        }
    }
}

/// Event messages back to back, as the kernel would have sent them one per datagram.
struct Stream {
    bytes: Vec<u8>,
    /// Where each message starts; one more entry marks the end of the last.
    starts: Vec<usize>,
}

impl Stream {
    fn len(&self) -> usize {
        self.starts.len() - 1
    }

    fn message(&self, index: usize) -> &[u8] {
        &self.bytes[self.starts[index]..self.starts[index + 1]]
    }
}

/// The large table's workload: the messages that fill it, and the churn stream.
struct Workload {
    fill: Stream,
    churn: Stream,
    classifier: Classifier,
}

fn workload() -> Workload {
    let templates =
        |text: Vec<Vec<u8>>| -> Vec<Template> { text.into_iter().map(Template::new).collect() };
    let v4 = templates(fixture!("events_tcp_ipv4.hex"));
    let v6 = templates(fixture!("events_tcp_ipv6.hex"));
    // Connection `slot` goes to host `slot % HOSTS`; its two alternating incarnations use
    // two local ports.
    let endpoints = |slot: u32, incarnation: u32| {
        let host = slot % HOSTS;
        let port = u16::try_from(20_000 + 2 * (slot / HOSTS) + incarnation).unwrap();
        if host >= HOSTS - IPV6_HOSTS {
            let remote = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, host as u16);
            (&v6, IpAddr::V6(LOCAL_V6), IpAddr::V6(remote), port)
        } else {
            let remote = Ipv4Addr::new(10, 1, (host >> 8) as u8, host as u8);
            (&v4, IpAddr::V4(LOCAL_V4), IpAddr::V4(remote), port)
        }
    };
    let write = |stream: &mut Stream, slot: u32, incarnation: u32, message: usize| {
        let (templates, local, remote, port) = endpoints(slot, incarnation);
        templates[message].write(local, remote, port, &mut stream.bytes);
        stream.starts.push(stream.bytes.len());
    };
    let empty = || Stream {
        bytes: Vec::new(),
        starts: vec![0],
    };

    let mut fill = empty();
    for slot in 0..CONNECTIONS {
        write(&mut fill, slot, 0, ESTABLISHED);
    }

    // Two rounds: every connection of incarnation 0 is replaced by incarnation 1, then back.
    // In each round a connection's turn starts at a random point and its steps follow at a
    // fixed distance, so that about 4% of the connections are in their turn at any time.
    let mut random = Random(0x5eed);
    let mut churn = empty();
    for (old, new) in [(0, 1), (1, 0)] {
        let mut steps: Vec<(u64, u32, usize)> = Vec::new();
        for slot in 0..CONNECTIONS {
            let start = random.next_u64() >> 33;
            for (step, _) in TURN.iter().enumerate() {
                steps.push((start + ((step as u64) << 24), slot, step));
            }
        }
        steps.sort_unstable();
        for (_, slot, step) in steps {
            let (message, closing) = TURN[step];
            write(&mut churn, slot, if closing { old } else { new }, message);
        }
    }

    let mut classifier = Classifier::new(Vec::new());
    classifier.set_local_addresses(HashSet::from([IpAddr::V4(LOCAL_V4), IpAddr::V6(LOCAL_V6)]));
    Workload {
        fill,
        churn,
        classifier,
    }
}

/// Decodes, classifies and applies every message of `datagram`: the collector's work per
/// received datagram (less the metrics counters and the optional event log).
fn parse_and_apply(classifier: &Classifier, tracker: &Tracker, datagram: &[u8]) {
    for message in messages(datagram) {
        if let Ok(Message::Entry(EntryMessage { kind, entry, .. })) = message {
            black_box(tracker.apply(kind, &entry, classifier.classify(&entry)));
        }
    }
}

fn decoded(stream: &Stream) -> Vec<(EntryKind, Entry)> {
    (0..stream.len())
        .flat_map(|index| messages(stream.message(index)))
        .map(|message| match message {
            Ok(Message::Entry(EntryMessage { kind, entry, .. })) => (kind, entry),
            other => panic!("not an event: {other:?}"),
        })
        .collect()
}

/// Checks that the table holds the large workload's steady state.
fn assert_full(tracker: &Tracker) {
    assert_eq!(tracker.connections(), CONNECTIONS as usize);
    let hosts = tracker.snapshot(Instant::now(), Duration::from_secs(300));
    assert_eq!(hosts.len(), HOSTS as usize);
    let open: u32 = hosts.iter().map(|host| host.get(StateGroup::Open)).sum();
    assert_eq!(open, CONNECTIONS);
}

/// Measures `apply(index)` on `length` items used in a cycle, `BATCH` per iteration, each
/// batch starting where the previous one ended.
fn cyclic(length: usize, mut apply: impl FnMut(usize)) -> impl FnMut(u64) -> Duration {
    let mut cursor = 0;
    move |iterations| {
        let started = Instant::now();
        for _ in 0..iterations {
            for _ in 0..BATCH {
                apply(cursor);
                cursor += 1;
                if cursor == length {
                    cursor = 0;
                }
            }
        }
        started.elapsed()
    }
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");

    // The captured events: a few connections, each from NEW to DESTROY.
    let captured: Vec<Vec<u8>> = [
        fixture!("events_tcp_ipv4.hex"),
        fixture!("events_tcp_ipv6.hex"),
        fixture!("events_udp_ipv4.hex"),
        fixture!("events_udp_ipv6.hex"),
        fixture!("events_synthetic.hex"),
    ]
    .concat();
    let mut classifier = Classifier::new(Vec::new());
    classifier.set_local_addresses(HashSet::from([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]));
    let tracker = Tracker::new();
    group.throughput(Throughput::Elements(captured.len() as u64));
    group.bench_function("parse_and_apply_captured", |b| {
        b.iter(|| {
            for datagram in &captured {
                parse_and_apply(&classifier, &tracker, black_box(datagram));
            }
        })
    });
    assert_eq!(tracker.connections(), 0, "every captured connection ends");

    let workload = workload();
    let classifier = &workload.classifier;
    group.throughput(Throughput::Elements(BATCH as u64));

    let every_label = classifier
        .clone()
        .with_protocols(ProtocolSet::ALL)
        .with_labels(LabelNames::new(LabelName::ALL.into()).expect("each label once"));
    for (name, classifier, tracker) in [
        (
            "parse_and_apply_100k_connections",
            classifier,
            Tracker::new(),
        ),
        (
            "parse_and_apply_100k_connections_every_label_accounting",
            &every_label,
            Tracker::with_accounting(),
        ),
    ] {
        let churn = &workload.churn;
        for index in 0..workload.fill.len() {
            parse_and_apply(classifier, &tracker, workload.fill.message(index));
        }
        assert_full(&tracker);
        // Once through the cycle, untimed: the table must come back to where it started.
        for index in 0..churn.len() {
            parse_and_apply(classifier, &tracker, churn.message(index));
        }
        assert_full(&tracker);
        group.bench_function(name, |b| {
            b.iter_custom(cyclic(churn.len(), |index| {
                parse_and_apply(classifier, &tracker, black_box(churn.message(index)))
            }))
        });
    }

    let tracker = Tracker::new();
    for (kind, entry) in decoded(&workload.fill) {
        tracker.apply(kind, &entry, classifier.classify(&entry));
    }
    let events = decoded(&workload.churn);
    drop(workload.churn);
    group.bench_function("apply_100k_connections", |b| {
        b.iter_custom(cyclic(events.len(), |index| {
            let (kind, entry) = black_box(&events[index]);
            black_box(tracker.apply(*kind, entry, classifier.classify(entry)));
        }))
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
