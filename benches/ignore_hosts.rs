//! Cost of `--ignore-hosts` with many patterns: classifying the 20,000 entries of a start-up
//! dump with 10, 1,000 and 200,000 patterns (addresses, `address:port` and networks, IPv4 and
//! IPv6). Each entry costs one lookup in a prefix trie and one in a hash set, whatever the
//! number of patterns; comparing every entry with every pattern, as before, made 200,000
//! patterns 200 times slower than 10. What still grows is memory latency: 200,000 patterns
//! no longer fit in the CPU caches, so a lookup waits for memory a few times.
//!
//! ```text
//! cargo bench -p benches --bench ignore_hosts
//! ```

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use benches::Random;
use conntrack_codec::{Entry, TcpState, Tuple};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tracker::{Classifier, HostPattern};

/// The exporter's own address: the remote end of every entry is its destination.
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Entries in the dump that is classified.
const ENTRIES: u32 = 20_000;

/// An address anywhere in IPv4 (three in four) or in fd00::/16, the space both the patterns
/// and the remote hosts are drawn from.
fn address(random: &mut Random) -> IpAddr {
    let bits = random.next_u64();
    if bits.is_multiple_of(4) {
        let groups = [(bits >> 8) as u16, (bits >> 24) as u16, (bits >> 40) as u16];
        IpAddr::V6(Ipv6Addr::new(
            0xfd00, 0, 0, 0, 0, groups[0], groups[1], groups[2],
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from((bits >> 16) as u32))
    }
}

/// `count` patterns: half addresses, a quarter `address:port`, a quarter networks.
fn patterns(count: usize) -> Vec<HostPattern> {
    let mut random = Random(0x1900_0000 + count as u64);
    (0..count)
        .map(|index| {
            let address = address(&mut random);
            let prefix = match address {
                IpAddr::V4(_) => 24 + random.next_u64() % 9,
                IpAddr::V6(_) => 104 + random.next_u64() % 25,
            };
            match index % 4 {
                0 | 1 => HostPattern::Address(address),
                2 => HostPattern::Endpoint(SocketAddr::new(address, 443)),
                _ => format!("{address}/{prefix}").parse().expect("a network"),
            }
        })
        .collect()
}

/// The entries of a dump: TCP connections from [`LOCAL`] to hosts of [`address`], to port
/// 443 or 80.
fn dump() -> Vec<Entry> {
    let mut random = Random(0xd0);
    (0..ENTRIES)
        .map(|index| {
            let remote = address(&mut random);
            let local = match remote {
                IpAddr::V4(_) => IpAddr::V4(LOCAL),
                IpAddr::V6(_) => IpAddr::V6(LOCAL.to_ipv6_mapped()),
            };
            let port = if index % 2 == 0 { 443 } else { 80 };
            let sport = 1024 + (index % 60_000) as u16;
            let mut entry = Entry::new(Tuple::tcp(local, sport, remote, port));
            entry.tcp_state = Some(TcpState::Established);
            entry
        })
        .collect()
}

fn ignore_hosts(c: &mut Criterion) {
    let entries = dump();
    let mut group = c.benchmark_group("ignore_hosts");
    group.throughput(Throughput::Elements(u64::from(ENTRIES)));
    for count in [10, 1_000, 200_000] {
        let mut classifier = Classifier::new(patterns(count));
        classifier.set_local_addresses(HashSet::from([
            IpAddr::V4(LOCAL),
            IpAddr::V6(LOCAL.to_ipv6_mapped()),
        ]));
        let ignored = entries
            .iter()
            .filter(|entry| classifier.classify(entry).is_none())
            .count();
        eprintln!("{count} patterns ignore {ignored} of {ENTRIES} entries");
        group.bench_with_input(
            BenchmarkId::new("classify_20k_entries", format!("{count}_patterns")),
            &classifier,
            |bencher, classifier| {
                bencher.iter(|| {
                    entries
                        .iter()
                        .filter(|entry| classifier.classify(black_box(entry)).is_some())
                        .count()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, ignore_hosts);
criterion_main!(benches);
