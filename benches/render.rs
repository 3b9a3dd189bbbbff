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

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use benches::table;
use conntrack_exporter::exposition::{Exposition, Status};
use conntrack_exporter::settings::Naming;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

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
