//! Throughput of the conntrack message decoder on messages captured from a real kernel.
//!
//! The workload mimics what the exporter reads on a busy host: mostly TCP events (NEW,
//! UPDATE, DESTROY; IPv4 and IPv6, with counters and timestamps on DESTROY), some UDP events,
//! and dump replies. Each event is its own datagram, as the kernel sends them; a dump reply is
//! one datagram of several entries. Throughput is reported in messages per second.
//!
//! ```text
//! cargo bench -p benches --bench parse
//! ```

use std::hint::black_box;

use benches::fixture;
use conntrack_codec::{Message, messages};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The datagrams of the mix, and how many netlink messages they hold in all.
fn workload() -> (Vec<Vec<u8>>, u64) {
    let tcp: Vec<Vec<u8>> = [
        fixture!("events_tcp_ipv4.hex"),
        fixture!("events_tcp_ipv6.hex"),
    ]
    .concat();
    let other_events: Vec<Vec<u8>> = [
        fixture!("events_udp_ipv4.hex"),
        fixture!("events_udp_ipv6.hex"),
        fixture!("events_synthetic.hex"),
    ]
    .concat();
    // The dump as one datagram: six entries and the end marker.
    let dump = fixture!("dump.hex").concat();

    let mut datagrams = Vec::new();
    for _ in 0..4 {
        datagrams.extend(tcp.iter().cloned());
    }
    datagrams.extend(other_events);
    datagrams.push(dump);
    let count = datagrams.iter().map(|d| messages(d).count() as u64).sum();
    (datagrams, count)
}

fn parse(c: &mut Criterion) {
    let (datagrams, count) = workload();
    // Every message decodes, and the mix is what it says: 64 TCP events out of 82 messages.
    let decoded: Vec<Message> = datagrams
        .iter()
        .flat_map(|d| messages(d))
        .map(|m| m.expect("captured message decodes"))
        .collect();
    assert_eq!(decoded.len() as u64, count);
    assert_eq!(count, 82);

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(count));
    group.bench_function("event_and_dump_mix", |b| {
        b.iter(|| {
            for datagram in &datagrams {
                for message in messages(black_box(datagram)) {
                    let _ = black_box(message);
                }
            }
        })
    });

    let dump = fixture!("dump.hex").concat();
    let entries = messages(&dump).count() as u64;
    group.throughput(Throughput::Elements(entries));
    group.bench_function("dump_reply", |b| {
        b.iter(|| {
            for message in messages(black_box(&dump)) {
                let _ = black_box(message);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
