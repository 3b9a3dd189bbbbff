//! Cost of one scrape: `Exposition::render`, which reads the per-host counts from the live
//! table and writes the text exposition format.
//!
//! A scrape must cost one step per remote host, never one per connection: the same 1,000
//! hosts are rendered with 1,000 and with 250,000 connections in the table, and the two times
//! should be about equal. A third case renders 10,000 hosts (250,000 connections).
//!
//! ```text
//! cargo bench -p benches --bench render
//! ```

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use conntrack_exporter::exposition::{Exposition, Status};
use conntrack_exporter::settings::Naming;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ctnetlink::{Entry, EntryKind, TcpState, Tuple};
use tracker::{Classifier, LabelNames, Tracker};

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// A table of `connections` TCP connections spread evenly over `hosts` remote hosts, in a mix
/// of states (mostly established, some opening, closing and closed).
fn table(hosts: u32, connections: u32) -> Arc<Tracker> {
    const STATES: [TcpState; 10] = [
        TcpState::Established,
        TcpState::Established,
        TcpState::Established,
        TcpState::Established,
        TcpState::Established,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::TimeWait,
        TcpState::FinWait,
        TcpState::Close,
    ];
    let mut classifier = Classifier::new(Vec::new());
    classifier.set_local_addresses(HashSet::from([IpAddr::V4(LOCAL)]));
    let tracker = Tracker::new();
    for index in 0..connections {
        let host = index % hosts;
        let remote = Ipv4Addr::new(10, (host >> 16) as u8, (host >> 8) as u8, host as u8);
        let port = u16::try_from(1024 + index / hosts).expect("few connections per host");
        let mut entry = Entry::new(Tuple::tcp(IpAddr::V4(LOCAL), port, remote.into(), 443));
        entry.tcp_state = Some(STATES[index as usize % STATES.len()]);
        tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
    }
    assert_eq!(tracker.connections(), connections as usize);
    Arc::new(tracker)
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    // A render of 10,000 hosts takes tens of milliseconds: fewer samples keep the run short.
    group.sample_size(30);
    for (hosts, connections, label) in [
        (1_000, 1_000, "1000_hosts/1k_connections"),
        (1_000, 250_000, "1000_hosts/250k_connections"),
        (10_000, 250_000, "10000_hosts/250k_connections"),
    ] {
        let tracker = table(hosts, connections);
        let (exposition, _counters) = Exposition::new(
            tracker,
            Arc::new(Status::default()),
            Naming::Seed,
            LabelNames::default(),
            false,
            Duration::from_secs(300),
        );
        let text = exposition.render();
        let samples = text
            .lines()
            .filter(|line| line.starts_with("conntrack_open_connections_total{host="))
            .count();
        assert_eq!(samples, hosts as usize, "every host is rendered");
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| black_box(exposition.render()))
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
