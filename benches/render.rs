//! Cost of one scrape: `Exposition::render`, which reads the per-host counts from the live
//! table and writes the text exposition format.
//!
//! A scrape must cost one step per remote host, never one per connection: the same 1,000
//! hosts are rendered with 1,000 and with 250,000 connections in the table, and the two times
//! should be about equal. A third case renders 10,000 hosts (250,000 connections).
//!
//! With every label on and accounting, 1,000 label sets give 11,000 series (four gauges,
//! seven counters each); `recorder_floor/1000_label_sets` renders the same number of series,
//! with the same labels, straight from the metrics recorder, as the floor a scrape is measured
//! against (a scrape should stay within 1.3 times of it).
//!
//! ```text
//! cargo bench -p benches --bench render
//! ```

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use conntrack_exporter::exposition::{Exposition, Status};
use conntrack_exporter::settings::Naming;
use conntrack_exporter::watched::Namespaces;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use metrics::{Label, counter, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracker::{LabelName, LabelNames};

/// Every label, in the order the documentation lists them.
fn every_label() -> LabelNames {
    LabelNames::new(LabelName::ALL.into()).expect("each label once")
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    // A render of 10,000 hosts takes tens of milliseconds: fewer samples keep the run short.
    group.sample_size(30);
    for (hosts, connections, labels, label) in [
        (
            1_000,
            1_000,
            LabelNames::default(),
            "1000_hosts/1k_connections",
        ),
        (
            1_000,
            250_000,
            LabelNames::default(),
            "1000_hosts/250k_connections",
        ),
        (
            10_000,
            250_000,
            LabelNames::default(),
            "10000_hosts/250k_connections",
        ),
        (
            1_000,
            250_000,
            every_label(),
            "1000_label_sets/every_label/accounting",
        ),
    ] {
        let accounting = labels.names().len() > 1;
        let tracker = benches::table(hosts, connections, &labels);
        let exposition = Exposition::new(
            Namespaces::own(tracker).0,
            Arc::new(Status::default()),
            Naming::Seed,
            labels,
            Arc::default(),
            accounting,
            Duration::from_secs(300),
        );
        let text = exposition.render();
        let samples = text
            .lines()
            .filter(|line| line.starts_with("conntrack_open_connections_total{"))
            .count();
        assert_eq!(samples, hosts as usize, "every host is rendered");
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| black_box(exposition.render()))
        });
    }
    group.finish();
    recorder_floor(c);
}

/// The recorder's own render of as many series as a scrape of 1,000 label sets with every
/// label and accounting: four gauges and seven counters per label set, with the same labels.
fn recorder_floor(c: &mut Criterion) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let gauges = [
        "conntrack_opening_connections_total",
        "conntrack_open_connections_total",
        "conntrack_closing_connections_total",
        "conntrack_closed_connections_total",
    ];
    let counters = [
        "conntrack_connections_opened_total",
        "conntrack_connections_closed_total",
        "conntrack_connections_failed_total",
        "conntrack_sent_bytes_total",
        "conntrack_received_bytes_total",
        "conntrack_sent_packets_total",
        "conntrack_received_packets_total",
    ];
    metrics::with_local_recorder(&recorder, || {
        for host in 0..1_000u32 {
            let remote = Ipv4Addr::new(10, 0, (host >> 8) as u8, host as u8);
            let labels = [
                ("host", remote.to_string()),
                ("direction", "out".to_owned()),
                ("service_port", "443".to_owned()),
                ("local_host", benches::LOCAL.to_string()),
                ("protocol", "tcp".to_owned()),
                ("zone", "0".to_owned()),
            ]
            .map(|(name, value)| Label::new(name, value));
            for name in gauges {
                gauge!(name, labels.iter()).set(f64::from(host % 7));
            }
            for name in counters {
                counter!(name, labels.iter()).absolute(u64::from(host) * 1_000);
            }
        }
    });
    let samples = handle
        .render()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .count();
    assert!(samples >= 11_000, "{samples} samples");
    let mut group = c.benchmark_group("recorder_floor");
    group.sample_size(30);
    group.bench_function("1000_label_sets", |b| b.iter(|| black_box(handle.render())));
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
