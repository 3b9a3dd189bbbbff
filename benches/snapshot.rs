//! A scrape never waits for a resync: the scrape's snapshot of the counts takes the
//! aggregates' lock, which a resync's apply takes once per entry and its sweep once at the
//! end, so a snapshot taken while another thread resyncs must cost what it costs alone.
//!
//! - `snapshot/10000_label_sets/idle`: the snapshot of 10,000 label sets over 250,000
//!   connections, nothing else running.
//! - `snapshot/10000_label_sets/during_resyncs`: the same while a second thread reconciles
//!   the 250,000 connections with a dump of them, back to back (each resync observes every
//!   entry, then sweeps).
//!
//! The second should be about equal to the first; on a machine with one core per thread it is
//! (a lock held for a long time would show here as a multiple).
//!
//! ```text
//! cargo bench -p benches --bench snapshot
//! ```

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conntrack_codec::{Entry, TcpState, Tuple};
use criterion::{Criterion, criterion_group, criterion_main};
use tracker::{Classification, Classifier, Tracker};

const HOSTS: u32 = 10_000;
const CONNECTIONS: u32 = 250_000;
const IDLE: Duration = Duration::from_secs(300);

/// The entries of a dump of the table and their classifications.
fn dump() -> Vec<(Entry, Option<Classification>)> {
    let local = Ipv4Addr::new(192, 0, 2, 1);
    let mut classifier = Classifier::new(Vec::new());
    classifier.set_local_addresses(HashSet::from([IpAddr::V4(local)]));
    (0..CONNECTIONS)
        .map(|index| {
            let host = index % HOSTS;
            let remote = Ipv4Addr::new(10, (host >> 16) as u8, (host >> 8) as u8, host as u8);
            let port = u16::try_from(1024 + index / HOSTS).expect("few connections per host");
            let tuple = Tuple::tcp(IpAddr::V4(local), port, IpAddr::V4(remote), 443);
            let mut entry = Entry::new(tuple);
            entry.tcp_state = Some(TcpState::Established);
            let class = classifier.classify(&entry);
            (entry, class)
        })
        .collect()
}

fn resync(tracker: &Tracker, dump: &[(Entry, Option<Classification>)]) {
    let mut resync = tracker.begin_resync();
    for (entry, class) in dump {
        resync.observe(entry, *class);
    }
    resync.finish();
}

fn snapshot(c: &mut Criterion) {
    let dump = dump();
    let tracker = Tracker::new();
    resync(&tracker, &dump);
    let mut group = c.benchmark_group("snapshot");
    group.bench_function("10000_label_sets/idle", |b| {
        b.iter(|| black_box(tracker.snapshot(Instant::now(), IDLE)))
    });
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                resync(&tracker, &dump);
            }
        });
        group.bench_function("10000_label_sets/during_resyncs", |b| {
            b.iter(|| black_box(tracker.snapshot(Instant::now(), IDLE)))
        });
        stop.store(true, Ordering::Relaxed);
    });
    group.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);
